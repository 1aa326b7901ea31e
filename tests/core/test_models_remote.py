"""Larger models: NDIF remote execution and accelerate device maps, tested offline.

The NDIF service itself is not reachable here. What is tested: the clear error without an API
key, that the hub id and ``remote=True`` reach nnsight unchanged, and that every ActAdd trace
(steering_vector, logprobs, generate) runs through nnsight's remote path, using nnsight's own
local simulation of it (the trace is serialised as for NDIF, then run here), with the same
numbers as a plain local run. ``device_map`` is checked to reach ``from_pretrained`` unchanged.
"""

from __future__ import annotations

import sys

import pytest
import torch
from nnsight import CONFIG
from nnsight.intervention.backends.local import LocalSimulationBackend
from nnsight.modeling.mixins.remotable import Remotable
from transformers import GPT2Config, GPT2LMHeadModel

import actadd
from actadd import models
from actadd.models import input_device

PROMPT = "I went up to my friend and said"


class _NoActadd:
    """A meta path finder that makes ``import actadd`` fail, as on an NDIF server."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "actadd":
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: the server has no actadd)")
        return None


def _tiny(tokenizer, *, remote: bool | str = False):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), tokenizer, name="tiny", remote=remote)


def test_remote_without_api_key_says_how_to_get_access(monkeypatch):
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(ValueError, match=r"NDIF API key.*https://login\.ndif\.us.*NDIF_API_KEY"):
        actadd.load_model("openai-community/gpt2-xl", remote=True)


def test_remote_refuses_embedded_models_and_bad_values(monkeypatch):
    monkeypatch.setattr(CONFIG.API, "APIKEY", "test-key")
    with pytest.raises(ValueError, match="hub id the NDIF service serves"):
        actadd.load_model("smollm2-135m", remote=True)
    with pytest.raises(ValueError, match="remote must be False, True .* got 'yes'"):
        actadd.load_model("smollm2-135m", remote="yes")


def test_remote_model_is_built_by_hub_id_and_marked_remote(monkeypatch, gpt2_tokenizer):
    """The hub id and dtype reach nnsight's TransformersModel unchanged (no weights loaded here)."""
    monkeypatch.setattr(CONFIG.API, "APIKEY", "test-key")
    calls, tiny = [], _tiny(gpt2_tokenizer)

    def fake_transformers_model(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return tiny

    monkeypatch.setattr(models, "TransformersModel", fake_transformers_model)
    model = actadd.load_model("openai-community/gpt2-xl", remote=True, dtype=torch.bfloat16)
    assert calls == [("openai-community/gpt2-xl", {"dtype": torch.bfloat16})]
    info = actadd.model_info(model)
    assert info.remote is True and info.name == "openai-community/gpt2-xl"
    assert input_device(model) == torch.device("cpu")  # inputs travel from the client's CPU


def test_every_trace_goes_through_nnsights_remote_path(monkeypatch, gpt2_tokenizer):
    """remote=True reaches nnsight from steering_vector, mean_difference, logprobs and generate (also
    with positions="all"); same results as local.

    nnsight would send the request to NDIF; here its backend factory is replaced by nnsight's
    local simulation, which serialises each trace exactly as for the server and runs it here.
    """
    asked = []

    def simulated_backend(self, remote, blocking, job_id, verbose):
        asked.append(remote)
        return LocalSimulationBackend(self)

    monkeypatch.setattr(Remotable, "_remote_backend", simulated_backend)
    # The server has no actadd: nnsight's rehearsal hides only non-installed modules, and actadd
    # is pip-installed here, so also make it unimportable while the request is deserialised.
    hide, restore = LocalSimulationBackend._hide_local_modules, LocalSimulationBackend._restore

    def hide_actadd_too(self):
        hidden = hide(self)
        sys.meta_path.insert(0, _NoActadd)
        return hidden

    def restore_actadd(self, hidden):
        sys.meta_path.remove(_NoActadd)
        restore(self, hidden)

    monkeypatch.setattr(LocalSimulationBackend, "_hide_local_modules", hide_actadd_too)
    monkeypatch.setattr(LocalSimulationBackend, "_restore", restore_actadd)
    local, remote = _tiny(gpt2_tokenizer), _tiny(gpt2_tokenizer, remote=True)

    v_local = actadd.steering_vector(local, " Love", " Hate", layer=1, coeff=3.0)
    v_remote = actadd.steering_vector(remote, " Love", " Hate", layer=1, coeff=3.0)
    assert asked == [True]
    torch.testing.assert_close(v_remote.vector, v_local.vector, rtol=0, atol=0)

    lp_local = actadd.logprobs(local, [PROMPT, "Hi"], v_local)
    lp_remote = actadd.logprobs(remote, [PROMPT, "Hi"], v_remote)
    assert asked == [True, True]
    for a, b in zip(lp_local, lp_remote):
        torch.testing.assert_close(b, a, rtol=0, atol=0)

    kwargs = dict(max_new_tokens=3, seed=3, progress=False, pad_prompts=True)
    g_local = actadd.generate(local, [PROMPT, "Hi"], v_local, **kwargs)
    g_remote = actadd.generate(remote, [PROMPT, "Hi"], v_remote, **kwargs)
    assert asked == [True, True, True]
    assert g_remote == g_local

    # A mean-difference direction, and generation that steers every step (two invokes, a step loop).
    d_local = actadd.mean_difference(local, [(" Love", " Hate"), (" joy", " grief")], layer=1, coeff=3.0)
    d_remote = actadd.mean_difference(remote, [(" Love", " Hate"), (" joy", " grief")], layer=1, coeff=3.0)
    assert asked == [True] * 4
    torch.testing.assert_close(d_remote.vector, d_local.vector, rtol=0, atol=0)
    g_local = actadd.generate(local, [PROMPT, "Hi"], d_local, positions="all", **kwargs)
    g_remote = actadd.generate(remote, [PROMPT, "Hi"], d_remote, positions="all", **kwargs)
    assert asked == [True] * 5
    assert g_remote == g_local


def test_local_models_do_not_ask_for_remote(monkeypatch, gpt2_tokenizer):
    def refuse(*args):
        raise AssertionError("a local model must not build a remote backend")

    monkeypatch.setattr(Remotable, "_remote_backend", refuse)
    model = _tiny(gpt2_tokenizer)
    vector = actadd.steering_vector(model, " Love", " Hate", layer=1)
    assert actadd.generate(model, PROMPT, vector, max_new_tokens=2, progress=False)


def test_device_map_reaches_from_pretrained_unchanged(monkeypatch, tmp_path, gpt2_tokenizer):
    loaded = []
    device_map = {"transformer.wte": 0, "transformer.h.0": 0, "transformer.h.1": 1, "lm_head": 1}

    def fake_from_pretrained(folder, **kwargs):
        loaded.append(kwargs)
        return _tiny(gpt2_tokenizer)._module

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda folder, **kwargs: gpt2_tokenizer)
    actadd.load_model(str(tmp_path), device_map=device_map)
    assert loaded[-1]["device_map"] is device_map
    actadd.load_model(str(tmp_path), device_map="auto")
    assert loaded[-1]["device_map"] == "auto"
    actadd.load_model(str(tmp_path))
    assert "device_map" not in loaded[-1]
