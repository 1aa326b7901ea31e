"""Where a vector is added (actadd.steer): the nnsight path against the plain-torch reference,
inside ActAdd's own passes and inside a user's own trace or generate."""

from __future__ import annotations

import pytest
import torch

import actadd
from actadd.generation import forward_logits
from tests.core.reference import PROMPTS, reference_greedy, reference_logits, token_ids


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_batched_steered_logits_match_hook_reference(fixture, request):
    """Several vectors at two layers: the nnsight path equals the plain-hook forward to 1e-5 per
    prompt; in one padded batch of prompts of different lengths, to float32 batching noise (the
    matmuls block differently by batch shape: seen up to 2e-4 on logits of SmolLM2's scale, where a
    misaligned vector moves them by more than 0.1)."""
    model = request.getfixturevalue(fixture)
    v1 = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=4.0)
    v2 = actadd.steering_vector(model, " weddings", "", layer=3, coeff=-2.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    batched = forward_logits(model, seqs, [v1 + v2] * len(seqs))
    for i, p in enumerate(PROMPTS):
        ref = reference_logits(model, p, [(1, v1.vector, 0), (3, v2.vector, 0)])
        alone = forward_logits(model, [seqs[i]], [v1 + v2])[0]
        torch.testing.assert_close(alone, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[i, : len(seqs[i])], ref, atol=1e-4, rtol=1e-4)


def test_back_alignment_matches_reference(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love and joy", " Hate", layer=2, coeff=5.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, [actadd.as_steering(v)] * len(seqs), alignment="back")
    for i, p in enumerate(PROMPTS):
        ref = reference_logits(model, p, [(2, v.vector, len(seqs[i]) - v.k)])
        torch.testing.assert_close(logits[i, : len(seqs[i])], ref, atol=1e-5, rtol=0)


def test_apply_in_your_own_trace_matches_the_hook_reference(gpt2_random):
    """A left-padded batch from actadd.tokenize, steered by actadd.apply in the user's own trace,
    with the user's own read of a later block beside it."""
    model = gpt2_random
    v = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=4.0)
    inputs = actadd.tokenize(model, PROMPTS)
    with torch.no_grad(), model.trace(inputs):
        actadd.apply(model, v)
        late = model.transformer.h[3].output.save()
        logits = model.output.logits.save()
    width = inputs["input_ids"].shape[1]
    for i, prompt in enumerate(PROMPTS):
        n = len(token_ids(model, prompt))
        ref = reference_logits(model, prompt, [(1, v.vector, 0)])
        torch.testing.assert_close(logits[i, width - n :], ref, atol=1e-4, rtol=0)
    assert (late[0] if isinstance(late, tuple) else late).shape[:2] == (len(PROMPTS), width)


def test_apply_reads_right_padding_too(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=3.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad(), model.trace({"input_ids": ids, "attention_mask": mask}):
        actadd.apply(model, row_vectors=[v, None, v])
        logits = model.output.logits.save()
    for i, prompt in enumerate(PROMPTS):
        hooks = [(2, v.vector, 0)] if i != 1 else []
        torch.testing.assert_close(logits[i, : len(seqs[i])], reference_logits(model, prompt, hooks), atol=1e-4, rtol=0)


def test_apply_in_your_own_generate_steers_the_prompt_pass_only(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=4.0)
    inputs = actadd.tokenize(model, PROMPTS[0])
    info = actadd.model_info(model)
    with (
        torch.no_grad(),
        model.generate(
            inputs, max_new_tokens=6, do_sample=False, pad_token_id=info.pad_token_id, eos_token_id=None
        ) as tracer,
    ):
        actadd.apply(model, v)
        out = tracer.result.save()
    assert out[0, inputs["input_ids"].shape[1] :].tolist() == reference_greedy(model, PROMPTS[0], 2, v.vector, 6)


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_two_vectors_at_one_layer_add_up(fixture, request):
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " Love", " Hate", layer=2, coeff=2.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    twice = forward_logits(model, seqs, [v + v] * 3)
    doubled = forward_logits(model, seqs, [actadd.as_steering(2 * v)] * 3)
    torch.testing.assert_close(twice, doubled, atol=1e-5, rtol=0)
    assert (twice - forward_logits(model, seqs, [actadd.as_steering(v)] * 3)).abs().max() > 1e-3


def test_vectors_of_different_lengths_steer_together(gpt2_random):
    model = gpt2_random
    short = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=3.0)
    long = actadd.steering_vector(model, " I talk about weddings constantly", " I do not talk", layer=1, coeff=2.0)
    other = actadd.steering_vector(model, " Anger", "", layer=3, coeff=-2.0)
    assert short.k != long.k
    seqs = [token_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, [short + long + other] * 3)
    for i, prompt in enumerate(PROMPTS):
        ref = reference_logits(model, prompt, [(1, short.vector, 0), (1, long.vector, 0), (3, other.vector, 0)])
        torch.testing.assert_close(logits[i, : len(seqs[i])], ref, atol=1e-4, rtol=0)


def test_apply_outside_a_trace_says_where_to_call_it(gpt2_random):
    v = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1)
    with pytest.raises(ValueError, match=r"inside a `with model.trace\(...\):` or `with model.generate\(...\):` body"):
        actadd.apply(gpt2_random, v)
