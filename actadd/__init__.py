"""Activation Addition (ActAdd): steer a language model by adding the difference of two
prompts' residual streams to its forward pass (Turner et al., arXiv 2308.10248), on nnsight.

The core needs only torch, nnsight, transformers, safetensors, numpy, tqdm and gguf. The studies
(data, metrics, scorers, runner, report, explorer) are :mod:`actadd.studies`, installed with
``pip install 'actadd[studies]'``; this package never imports them.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from actadd.control_vectors import export_gguf, import_gguf
from actadd.embedded import EMBEDDED_MODELS
from actadd.generation import generate, generate_sweep, logprobs, next_token_logprobs
from actadd.models import (
    DEFAULT_MODEL,
    ModelInfo,
    load_model,
    model_info,
    set_threads,
    wrap_model,
)
from actadd.sampling import row_seeds
from actadd.steer import Positions, apply, tokenize
from actadd.vectors import (
    ControlVectorFile,
    DirectionVector,
    MeanOfPairs,
    Steerable,
    Steering,
    SteeringVector,
    Vector,
    as_steering,
    encode,
    mean_difference,
    steering_vector,
)

try:
    __version__ = _version("actadd")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "ControlVectorFile",
    "DirectionVector",
    "MeanOfPairs",
    "ModelInfo",
    "Positions",
    "Steerable",
    "Steering",
    "SteeringVector",
    "Vector",
    "__version__",
    "apply",
    "as_steering",
    "encode",
    "export_gguf",
    "generate",
    "generate_sweep",
    "import_gguf",
    "load_model",
    "logprobs",
    "mean_difference",
    "model_info",
    "next_token_logprobs",
    "row_seeds",
    "set_threads",
    "steering_vector",
    "tokenize",
    "wrap_model",
]
