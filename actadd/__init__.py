"""Activation Addition (ActAdd): steer a language model by adding the difference of two
prompts' residual streams to its forward pass (Turner et al., arXiv 2308.10248), on nnsight."""

from actadd.core import Steering, SteeringVector, as_steering, encode, steering_vector
from actadd.generation import generate, generate_sweep, logprobs, next_token_logprobs, row_seeds
from actadd.study import Results
from actadd.runtime import on_colab
from actadd.explorer import explore
from actadd.models import DEFAULT_MODEL, EMBEDDED_MODELS, ModelInfo, load_model, model_info, set_threads, wrap_model

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "ModelInfo",
    "Steering",
    "SteeringVector",
    "as_steering",
    "encode",
    "explore",
    "generate",
    "generate_sweep",
    "Results",
    "load_model",
    "logprobs",
    "model_info",
    "next_token_logprobs",
    "on_colab",
    "row_seeds",
    "set_threads",
    "steering_vector",
    "wrap_model",
]
