"""Activation Addition (ActAdd): steer a language model by adding the difference of two
prompts' residual streams to its forward pass (Turner et al., arXiv 2308.10248), on nnsight.

The core needs only torch, nnsight, transformers, safetensors, numpy, tqdm and gguf. The studies
(data, metrics, scorers, runner, report, explorer) are :mod:`actadd.studies`, installed with
``pip install 'actadd[studies]'``; this package never imports them.

The exported names are imported on first use (PEP 562), so ``import actadd`` and the light
modules under it (``actadd.io``, ``actadd.checks``, ``python -m actadd``'s argument errors) do
not pay for torch, nnsight and transformers until a name that needs them is touched.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING

from actadd.lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and editors see; at run time _EXPORTS imports these on first use
    from actadd.control_vectors import export_gguf, import_gguf
    from actadd.embedded import EMBEDDED_MODELS
    from actadd.extraction import REDUCTIONS, mean_difference, residual_norms, residual_stream, steering_vector
    from actadd.generation import generate, generate_sweep
    from actadd.models import (
        DEFAULT_MODEL,
        ModelInfo,
        load_model,
        model_info,
        resolve_layer,
        set_threads,
        transformers_model,
        wrap_model,
    )
    from actadd.sampling import RowSampler, row_seeds
    from actadd.scoring import forward_logits, logprobs, next_token_logprobs
    from actadd.steer import Positions, apply, encode, tokenize
    from actadd.vectors import (
        ControlVectorFile,
        DirectionVector,
        MeanOfPairs,
        Steerable,
        Steering,
        SteeringVector,
        Vector,
        as_steering,
    )

# Every exported name and the module that defines it: the one table __getattr__ imports from.
_EXPORTS: dict[str, str] = {
    "export_gguf": "actadd.control_vectors",
    "import_gguf": "actadd.control_vectors",
    "EMBEDDED_MODELS": "actadd.embedded",
    "REDUCTIONS": "actadd.extraction",
    "mean_difference": "actadd.extraction",
    "residual_norms": "actadd.extraction",
    "residual_stream": "actadd.extraction",
    "steering_vector": "actadd.extraction",
    "generate": "actadd.generation",
    "generate_sweep": "actadd.generation",
    "DEFAULT_MODEL": "actadd.models",
    "ModelInfo": "actadd.models",
    "load_model": "actadd.models",
    "model_info": "actadd.models",
    "resolve_layer": "actadd.models",
    "set_threads": "actadd.models",
    "transformers_model": "actadd.models",
    "wrap_model": "actadd.models",
    "RowSampler": "actadd.sampling",
    "row_seeds": "actadd.sampling",
    "forward_logits": "actadd.scoring",
    "logprobs": "actadd.scoring",
    "next_token_logprobs": "actadd.scoring",
    "Positions": "actadd.steer",
    "apply": "actadd.steer",
    "encode": "actadd.steer",
    "tokenize": "actadd.steer",
    "ControlVectorFile": "actadd.vectors",
    "DirectionVector": "actadd.vectors",
    "MeanOfPairs": "actadd.vectors",
    "Steerable": "actadd.vectors",
    "Steering": "actadd.vectors",
    "SteeringVector": "actadd.vectors",
    "Vector": "actadd.vectors",
    "as_steering": "actadd.vectors",
}

try:
    __version__ = _version("actadd")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "REDUCTIONS",
    "ControlVectorFile",
    "DirectionVector",
    "MeanOfPairs",
    "ModelInfo",
    "Positions",
    "RowSampler",
    "Steerable",
    "Steering",
    "SteeringVector",
    "Vector",
    "__version__",
    "apply",
    "as_steering",
    "encode",
    "export_gguf",
    "forward_logits",
    "generate",
    "generate_sweep",
    "import_gguf",
    "load_model",
    "logprobs",
    "mean_difference",
    "model_info",
    "next_token_logprobs",
    "residual_norms",
    "residual_stream",
    "resolve_layer",
    "row_seeds",
    "set_threads",
    "steering_vector",
    "tokenize",
    "transformers_model",
    "wrap_model",
]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute (a typo) as Any
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, globals())
