"""Steering vectors (actadd.vectors) against the plain-torch reference: ActAdd's pair vectors
and mean-difference directions, their strengths, layers, save/load and model checks."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import actadd
from tests.core.reference import PAIRS, PROMPTS, DirectionHook, reference_vector, resid_pre, token_ids


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


# --- Mean-difference directions (CAA): the mean over pairs of h(positive) - h(negative)


def _reference_mean_difference(model, pairs, layer: int, reduce: str) -> tuple[torch.Tensor, float]:
    """One text at a time through the plain-torch hook: the mean difference, and the mean
    residual norm of the texts at the positions read."""
    reads, norms = [], []
    for text in [p for p, _ in pairs] + [n for _, n in pairs]:
        h = resid_pre(model, [token_ids(model, text)], layer)[0]
        read = h[-1:] if reduce == "last" else h[1:]
        reads.append(read.mean(dim=0))
        norms.append(read.norm(dim=-1).mean())
    n = len(pairs)
    return torch.stack(reads[:n]).mean(0) - torch.stack(reads[n:]).mean(0), float(torch.stack(norms).mean())


def _other_model(gpt2_tokenizer):
    """A second tiny GPT-2 of the same width, under another name."""
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=256, vocab_size=len(gpt2_tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), gpt2_tokenizer, name="other-gpt2")


@pytest.mark.parametrize("reduce", ["last", "mean"])
@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_mean_difference_matches_the_one_text_at_a_time_reference(fixture, reduce, request):
    """Right-padded batches of 4 (texts of different lengths share them) against one text at a
    time; the recorded relative norm against the reference's norms."""
    model = request.getfixturevalue(fixture)
    d = actadd.mean_difference(model, PAIRS, layer=3, coeff=2.0, reduce=reduce, batch_size=4)
    ref, resid_norm = _reference_mean_difference(model, PAIRS, 3, reduce)
    assert d.vector.shape == (actadd.model_info(model).d_model,)
    torch.testing.assert_close(d.vector, 2.0 * ref, atol=1e-4, rtol=1e-4)
    assert d.relative_norm == pytest.approx(2.0 * float(ref.norm()) / resid_norm, rel=1e-4)
    assert (d.layer, d.coeff, d.source.pairs, d.source.reduce) == (3, 2.0, tuple(PAIRS), reduce)
    one_batch = actadd.mean_difference(model, PAIRS, layer=3, coeff=2.0, reduce=reduce, batch_size=64)
    torch.testing.assert_close(one_batch.vector, d.vector, atol=1e-4, rtol=1e-4)


def test_mean_difference_relative_norm_sets_the_coefficient(gpt2_random):
    unit = actadd.mean_difference(gpt2_random, PAIRS, layer=-1, reduce="mean")
    assert unit.layer == 3 and unit.coeff == 1.0
    for target in (0.5, 4.0):
        d = actadd.mean_difference(gpt2_random, PAIRS, layer=0.75, reduce="mean", relative_norm=target)
        assert d.layer == 3 and d.relative_norm == pytest.approx(target, rel=1e-6)
        assert d.coeff == pytest.approx(target / unit.relative_norm, rel=1e-6)
        torch.testing.assert_close(d.vector, d.coeff * unit.vector, atol=1e-5, rtol=1e-5)


def test_direction_save_load_roundtrip_and_model_check(gpt2_random, gpt2_tokenizer, tmp_path):
    d = actadd.mean_difference(gpt2_random, PAIRS, layer=2, coeff=-3.0, reduce="mean")
    loaded = actadd.DirectionVector.load(d.save(tmp_path / "wedding.safetensors"), gpt2_random)
    assert torch.equal(loaded.vector, d.vector)
    assert (loaded.layer, loaded.coeff, loaded.relative_norm, loaded.model_name, loaded.source) == (
        2,
        -3.0,
        d.relative_norm,
        "gpt2-random",
        actadd.MeanOfPairs(pairs=tuple(PAIRS), reduce="mean"),
    )
    other = _other_model(gpt2_tokenizer)
    with pytest.raises(ValueError, match=r"mean difference of 3 pairs .* was made on model 'gpt2-random'"):
        actadd.DirectionVector.load(tmp_path / "wedding.safetensors", other)
    with pytest.raises(ValueError, match="made on model 'gpt2-random'"):
        actadd.generate(other, "Hello there", d, positions="all", max_new_tokens=2, progress=False)
    with pytest.raises(
        ValueError, match=r"holds a DirectionVector, not a SteeringVector: read it with DirectionVector"
    ):
        actadd.SteeringVector.load(tmp_path / "wedding.safetensors")
    v = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1)
    with pytest.raises(ValueError, match=r"holds a SteeringVector, not a DirectionVector"):
        actadd.DirectionVector.load(v.save(tmp_path / "love.safetensors"))


def test_a_vector_saved_before_directions_existed_still_loads(gpt2_random, tmp_path):
    """Files from before DirectionVector have no 'kind': they hold ActAdd vectors."""
    import json

    from safetensors.torch import save_file

    v = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1, coeff=2.0)
    meta = {"layer": 1, "coeff": 2.0, "p_plus": " Love", "p_minus": " Hate", "tokens_plus": list(v.tokens_plus),
            "tokens_minus": list(v.tokens_minus), "model_name": "gpt2-random", "relative_norm": v.relative_norm}  # fmt: skip
    path = tmp_path / "old.safetensors"
    save_file({"vector": v.vector.contiguous()}, str(path), metadata={"actadd": json.dumps(meta)})
    loaded = actadd.SteeringVector.load(path, gpt2_random)
    assert torch.equal(loaded.vector, v.vector) and loaded.tokens_plus == v.tokens_plus


def test_directions_compose_in_a_steering(gpt2_random):
    """Directions at two layers add up, at one layer sum to their sum; logprobs takes them too."""
    from actadd.scoring import forward_logits

    model = gpt2_random
    d1 = actadd.mean_difference(model, PAIRS, layer=1, relative_norm=2.0)
    d3 = actadd.mean_difference(model, PAIRS[:2], layer=3, reduce="mean", relative_norm=1.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    both = forward_logits(model, seqs, row_vectors=[d1 + d3] * 3, positions="all")
    for i, seq in enumerate(seqs):
        with torch.no_grad(), DirectionHook(model, 1, d1.vector), DirectionHook(model, 3, d3.vector):
            ref = model._module(torch.tensor([seq])).logits[0]
        torch.testing.assert_close(both[i, : len(seq)], ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        forward_logits(model, seqs, row_vectors=[d1 + d1] * 3, positions="all"), forward_logits(model, seqs, row_vectors=[actadd.as_steering(2 * d1)] * 3, positions="all"),
        atol=1e-5, rtol=1e-5,
    )  # fmt: skip
    scores = actadd.logprobs(model, [" and the bride"], d1 + d3, contexts=[PROMPTS[0]], positions="all")
    plain = actadd.logprobs(model, [" and the bride"], contexts=[PROMPTS[0]])
    assert scores[0].shape == plain[0].shape and not torch.allclose(scores[0], plain[0])


def test_bad_mean_difference_inputs(gpt2_random):
    model = gpt2_random
    for pairs in ([], "a pair", [(" a", " b", " c")], [(" a", 3)], None):
        with pytest.raises(ValueError, match="pair"):
            actadd.mean_difference(model, pairs, layer=1)
    with pytest.raises(ValueError, match=r"pair 1 has an empty text ''"):
        actadd.mean_difference(model, [(" a", " b"), (" c", "")], layer=1)
    with pytest.raises(ValueError, match=r"reduce must be one of \['last', 'mean'\]"):
        actadd.mean_difference(model, PAIRS, layer=1, reduce="first")
    with pytest.raises(ValueError, match="not both"):
        actadd.mean_difference(model, PAIRS, layer=1, coeff=1.0, relative_norm=1.0)
    with pytest.raises(ValueError, match="zero difference"):
        actadd.mean_difference(model, [(" a", " a")], layer=1, relative_norm=1.0)
    with pytest.raises(ValueError, match=r"layer must be .*\[-4, 3\]"):
        actadd.mean_difference(model, PAIRS, layer=4)


# --- Rough edges: a clear ValueError at once


def test_a_prompt_beyond_the_context_is_refused_as_scoring_refuses_it(gpt2_random):
    """steering_vector and mean_difference run the same context check as generate and logprobs."""
    long = " word" * 300  # 301 tokens with the start token; the context is 256
    with pytest.raises(ValueError) as scoring:
        actadd.logprobs(gpt2_random, [long])
    with pytest.raises(ValueError, match=r"prompt 0 has 301 tokens.*context of 256 positions") as vector:
        actadd.steering_vector(gpt2_random, long, "", layer=1)
    assert str(vector.value) == str(scoring.value)
    with pytest.raises(ValueError, match=r"prompt 3 has 301 tokens.*context of 256 positions"):
        actadd.mean_difference(gpt2_random, [(" a", " b"), (" c", long)], layer=1)


def test_vectors_of_different_models_are_refused_when_combined(gpt2_random, gpt2_tokenizer):
    other = _other_model(gpt2_tokenizer)
    v1 = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1)
    v2 = actadd.steering_vector(other, " Love", " Hate", layer=1)
    d2 = actadd.mean_difference(other, PAIRS, layer=1)
    both_models = r"different models: .* on 'gpt2-random' and .* on 'other-gpt2'"
    with pytest.raises(ValueError, match=both_models):
        v1 + v2
    with pytest.raises(ValueError, match=both_models):
        actadd.as_steering(v1) + v2
    with pytest.raises(ValueError, match=both_models):
        actadd.as_steering([v1, d2])
    with pytest.raises(ValueError, match=r"different models: .* on 'other-gpt2' and .* on 'gpt2-random'"):
        (v2 + d2) + v1


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_residual_stream_matches_a_plain_torch_read(fixture, request):
    """The public read, batched and right-padded, against a hook on the block's input, one text at a time."""
    model = request.getfixturevalue(fixture)
    texts = [*PROMPTS, " wedding"]
    read = actadd.residual_stream(model, texts, layer=2, batch_size=2)
    assert [r.shape for r in read] == [(len(token_ids(model, t)), actadd.model_info(model).d_model) for t in texts]
    for text, r in zip(texts, read):
        torch.testing.assert_close(r, resid_pre(model, [token_ids(model, text)], 2)[0], atol=1e-4, rtol=1e-4)


def test_residual_stream_refuses_bad_input(gpt2_random):
    with pytest.raises(ValueError, match="texts is empty"):
        actadd.residual_stream(gpt2_random, [], layer=1)
    with pytest.raises(ValueError, match="layer must be"):
        actadd.residual_stream(gpt2_random, ["a"], layer=9)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        actadd.residual_stream(gpt2_random, ["a"], layer=1, batch_size=0)


def test_a_reduction_is_a_pluggable_function(gpt2_random):
    """A function of one text's residual picks the rows read; 'mean' by name equals its function."""
    model = gpt2_random

    def second_token(resid: torch.Tensor) -> torch.Tensor:
        return resid[1:2]

    by_name = actadd.mean_difference(model, PAIRS, layer=2, reduce="mean")
    by_function = actadd.mean_difference(model, PAIRS, layer=2, reduce=actadd.REDUCTIONS["mean"])
    torch.testing.assert_close(by_function.vector, by_name.vector, atol=0, rtol=0)
    custom = actadd.mean_difference(model, PAIRS, layer=2, reduce=second_token)
    h = [resid_pre(model, [token_ids(model, t)], 2)[0, 1] for pair in PAIRS for t in pair]
    expected = torch.stack(h[0::2]).mean(0) - torch.stack(h[1::2]).mean(0)
    torch.testing.assert_close(custom.vector, expected, atol=1e-4, rtol=1e-4)
    assert custom.source.reduce == "second_token"

    def nothing(resid: torch.Tensor) -> torch.Tensor:
        return resid[:0]

    with pytest.raises(ValueError, match="reduce 'nothing' returned shape"):
        actadd.mean_difference(model, PAIRS, layer=2, reduce=nothing)


def test_at_relative_norm_rescales_either_kind(gpt2_random, tmp_path):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love", " Hate", layer=2, coeff=-2.0)
    d = actadd.mean_difference(model, PAIRS, layer=2, reduce="mean")
    for vector in (v, d):
        rescaled = vector.at_relative_norm(3.0)
        assert rescaled.relative_norm == pytest.approx(3.0, rel=1e-9)
        assert rescaled.coeff == pytest.approx(vector.coeff * 3.0 / vector.relative_norm, rel=1e-9)
        torch.testing.assert_close(rescaled.vector, vector.vector * (3.0 / vector.relative_norm))
    path = actadd.export_gguf(model, d, tmp_path / "d.gguf")
    imported = actadd.import_gguf(model, path).vectors[0]
    with pytest.raises(ValueError, match="relative norm None"):
        imported.at_relative_norm(1.0)
    with pytest.raises(ValueError, match="relative_norm must be a finite number"):
        v.at_relative_norm(-1.0)


def test_residual_norms_match_a_plain_torch_read(gpt2_random):
    """Each layer's mean residual norm over the texts' tokens after the start token, from batches of
    texts of different lengths, against a hook on each block's input, one text at a time."""
    model = gpt2_random
    norms = actadd.residual_norms(model, PROMPTS, batch_size=2)
    assert norms.shape == (actadd.model_info(model).n_layers,)
    for layer in range(4):
        reads = [resid_pre(model, [token_ids(model, p)], layer)[0, 1:].norm(dim=-1) for p in PROMPTS]
        assert float(norms[layer]) == pytest.approx(float(torch.cat(reads).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="at least one token"):
        actadd.residual_norms(model, ["fine", ""])


def test_added_norms_say_what_a_vector_adds_per_position_and_per_completion(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love", " Hate and more", layer=2, coeff=2.0)
    rows = v.vector.float().norm(dim=-1)
    assert float(rows[0]) == pytest.approx(0.0, abs=1e-6)  # the start token cancels
    assert v.added_norm == pytest.approx(float(rows[1:].mean()), rel=1e-6)
    assert v.total_added_norm == pytest.approx(float(rows.sum()), rel=1e-6)
    assert (3 * v).added_norm == pytest.approx(3 * v.added_norm, rel=1e-6)
    d = actadd.mean_difference(model, PAIRS, layer=2, reduce="mean")
    assert d.added_norm == pytest.approx(float(d.vector.float().norm()), rel=1e-6)
