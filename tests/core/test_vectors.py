"""Steering vectors (actadd.vectors) against the plain-torch reference: values, strengths,
layers, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import actadd
from tests.core.reference import reference_vector, resid_pre, token_ids


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_vector_matches_reference(fixture, request):
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " weddings and brides", " the", layer=2, coeff=3.0)
    ref = reference_vector(model, " weddings and brides", " the", 2, 3.0)
    assert (
        v.vector.shape == ref.shape == (len(token_ids(model, " weddings and brides")), actadd.model_info(model).d_model)
    )
    torch.testing.assert_close(v.vector, ref, atol=1e-5, rtol=0)
    assert v.vector[0].abs().max() == 0  # the start token cancels


def test_vector_is_linear_in_coefficient(smol):
    v1 = actadd.steering_vector(smol, " Love", " Hate", layer=6, coeff=1.0)
    v3 = actadd.steering_vector(smol, " Love", " Hate", layer=6, coeff=3.0)
    torch.testing.assert_close(v3.vector, 3 * v1.vector)
    scaled = v1 * 3
    torch.testing.assert_close(scaled.vector, v3.vector)
    assert scaled.coeff == 3.0 and math.isclose(scaled.relative_norm, v3.relative_norm, rel_tol=1e-5)
    assert math.isclose((-v1).relative_norm, v1.relative_norm) and (-v1).coeff == -1.0


def test_save_load_roundtrip_and_refusal(smol, gpt2_random, tmp_path):
    v = actadd.steering_vector(smol, " Love", " Hate", layer=6, coeff=5.0)
    path = v.save(tmp_path / "love.safetensors")
    loaded = actadd.SteeringVector.load(path, smol)
    assert torch.equal(loaded.vector, v.vector)
    assert (loaded.layer, loaded.coeff, loaded.p_plus, loaded.tokens_plus, loaded.model_name) == (
        6,
        5.0,
        " Love",
        v.tokens_plus,
        "smollm2-135m",
    )
    with pytest.raises(ValueError, match="made on model 'smollm2-135m'"):
        actadd.SteeringVector.load(path, gpt2_random)
    with pytest.raises(ValueError, match="made on model 'smollm2-135m'"):
        actadd.generate(gpt2_random, "Hello there", v, max_new_tokens=2, progress=False)


def test_load_refuses_files_that_are_not_saved_vectors(tmp_path):
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"vector": torch.zeros(2, 3)}, str(bare))
    with pytest.raises(ValueError, match=r"bare\.safetensors.*without actadd's 'actadd' metadata"):
        actadd.SteeringVector.load(bare)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"cannot read .*corrupt\.safetensors as a safetensors file"):
        actadd.SteeringVector.load(corrupt)
    with pytest.raises(ValueError, match="cannot read"):
        actadd.SteeringVector.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("fixture", ["smol", "gemma"])
def test_a_requested_relative_norm_is_the_vectors_relative_norm(fixture, request):
    model = request.getfixturevalue(fixture)
    info = actadd.model_info(model)
    for target in (0.5, 2.0):
        v = actadd.steering_vector(model, " weddings", "", layer=info.n_layers // 2, relative_norm=target)
        assert v.relative_norm == pytest.approx(target, rel=1e-5)
        # the recorded coefficient reproduces it, and the relative norm is measured independently
        again = actadd.steering_vector(model, " weddings", "", layer=info.n_layers // 2, coeff=v.coeff)
        torch.testing.assert_close(again.vector, v.vector, rtol=1e-5, atol=1e-5)
        ref = reference_vector(model, " weddings", "", info.n_layers // 2, v.coeff)
        resid = resid_pre(model, [list(v.tokens_plus), list(v.tokens_minus)], info.n_layers // 2)
        measured = ref[1:].norm(dim=-1).mean() / resid[:, 1:].norm(dim=-1).mean()
        assert float(measured) == pytest.approx(target, rel=1e-4)


@pytest.mark.parametrize("fixture", ["smol", "gemma"])
def test_fraction_of_depth_and_negative_layers_resolve_to_the_right_block(fixture, request):
    model = request.getfixturevalue(fixture)
    n = actadd.model_info(model).n_layers
    for given, block in [(-1, n - 1), (-n, 0), (0.0, 0), (0.5, round(0.5 * n)), (0.999, n - 1), (n - 1, n - 1)]:
        v = actadd.steering_vector(model, " Love", " Hate", layer=given, coeff=2.0)
        assert v.layer == block, given
        torch.testing.assert_close(
            v.vector, reference_vector(model, " Love", " Hate", block, 2.0), atol=1e-4, rtol=1e-4
        )


# --- Bad input: a clear ValueError naming the value


def test_bad_vector_inputs(smol):
    v = actadd.steering_vector(smol, " Love", " Hate", layer=2)
    with pytest.raises(ValueError, match="empty"):
        actadd.steering_vector(smol, "", "", layer=2)
    with pytest.warns(UserWarning, match="zero"):
        actadd.steering_vector(smol, " Love", " Love", layer=2)
    for layer in (-31, 30, 2.5, 1.0, True, "3"):
        with pytest.raises(ValueError, match=r"layer must be .*\[-30, 29\]"):
            actadd.steering_vector(smol, " Love", " Hate", layer=layer)
    with pytest.raises(ValueError, match="not both"):
        actadd.steering_vector(smol, " Love", " Hate", layer=2, coeff=2.0, relative_norm=1.0)
    for coeff in (float("nan"), float("inf"), "3"):  # None means the default, c = 1
        with pytest.raises(ValueError, match="coeff must be a finite number"):
            actadd.steering_vector(smol, " Love", " Hate", layer=2, coeff=coeff)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        v * float("nan")


def _other_model(gpt2_tokenizer):
    """A second tiny GPT-2 of the same width, under another name."""
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=256, vocab_size=len(gpt2_tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), gpt2_tokenizer, name="other-gpt2")


# --- Rough edges: a clear ValueError at once


def test_a_prompt_beyond_the_context_is_refused_as_scoring_refuses_it(gpt2_random):
    """steering_vector runs the same context check as generate and logprobs."""
    long = " word" * 300  # 301 tokens with the start token; the context is 256
    with pytest.raises(ValueError) as scoring:
        actadd.logprobs(gpt2_random, [long])
    with pytest.raises(ValueError, match=r"prompt 0 has 301 tokens.*context of 256 positions") as vector:
        actadd.steering_vector(gpt2_random, long, "", layer=1)
    assert str(vector.value) == str(scoring.value)


def test_vectors_of_different_models_are_refused_when_combined(gpt2_random, gpt2_tokenizer):
    other = _other_model(gpt2_tokenizer)
    v1 = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1)
    v2 = actadd.steering_vector(other, " Love", " Hate", layer=1)
    both_models = r"different models: .* on 'gpt2-random' and .* on 'other-gpt2'"
    with pytest.raises(ValueError, match=both_models):
        v1 + v2
    with pytest.raises(ValueError, match=both_models):
        actadd.as_steering(v1) + v2
    with pytest.raises(ValueError, match=both_models):
        actadd.as_steering([v1, v2])
