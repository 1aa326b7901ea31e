"""Where a vector is added (actadd.steer): the nnsight path against the plain-torch reference,
inside ActAdd's own passes and inside a user's own trace or generate."""

from __future__ import annotations

import pytest
import torch

import actadd
from actadd.scoring import forward_logits
from tests.core.reference import (
    PAIRS,
    PROMPTS,
    DirectionHook,
    block,
    greedy,
    reference_greedy,
    reference_logits,
    token_ids,
)


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
    batched = forward_logits(model, seqs, row_vectors=[v1 + v2] * len(seqs))
    for i, p in enumerate(PROMPTS):
        ref = reference_logits(model, p, [(1, v1.vector, 0), (3, v2.vector, 0)])
        alone = forward_logits(model, [seqs[i]], row_vectors=[v1 + v2])[0]
        torch.testing.assert_close(alone, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[i, : len(seqs[i])], ref, atol=1e-4, rtol=1e-4)


def test_back_positions_match_reference(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love and joy", " Hate", layer=2, coeff=5.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, row_vectors=[actadd.as_steering(v)] * len(seqs), positions="back")
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
    twice = forward_logits(model, seqs, row_vectors=[v + v] * 3)
    doubled = forward_logits(model, seqs, row_vectors=[actadd.as_steering(2 * v)] * 3)
    torch.testing.assert_close(twice, doubled, atol=1e-5, rtol=0)
    assert (twice - forward_logits(model, seqs, row_vectors=[actadd.as_steering(v)] * 3)).abs().max() > 1e-3


def test_vectors_of_different_lengths_steer_together(gpt2_random):
    model = gpt2_random
    short = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=3.0)
    long = actadd.steering_vector(model, " I talk about weddings constantly", " I do not talk", layer=1, coeff=2.0)
    other = actadd.steering_vector(model, " Anger", "", layer=3, coeff=-2.0)
    assert short.k != long.k
    seqs = [token_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, row_vectors=[short + long + other] * 3)
    for i, prompt in enumerate(PROMPTS):
        ref = reference_logits(model, prompt, [(1, short.vector, 0), (1, long.vector, 0), (3, other.vector, 0)])
        torch.testing.assert_close(logits[i, : len(seqs[i])], ref, atol=1e-4, rtol=0)


# --- positions="all": a [d_model] direction at every position after the start token


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_all_positions_match_the_mask_hook_reference(fixture, request):
    """In one right-padded scoring pass and in the user's own left-padded trace, every row equals
    the reference that adds the direction wherever the mask says its tokens are, but its first."""
    model = request.getfixturevalue(fixture)
    d = actadd.mean_difference(model, PAIRS, layer=2, relative_norm=4.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    scored = forward_logits(model, seqs, row_vectors=[actadd.as_steering(d)] * len(seqs), positions="all")
    inputs = actadd.tokenize(model, PROMPTS)
    with torch.no_grad(), model.trace(inputs):
        actadd.apply(model, d, positions="all")
        traced = model.output.logits.save()
    width = inputs["input_ids"].shape[1]
    for i, seq in enumerate(seqs):
        with torch.no_grad(), DirectionHook(model, 2, d.vector) as hook:
            ref = model._module(torch.tensor([seq])).logits[0]
        assert hook.seen == [len(seq) - 1]
        torch.testing.assert_close(scored[i, : len(seq)], ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(traced[i, width - len(seq) :], ref, atol=1e-4, rtol=1e-4)
    assert (
        scored - forward_logits(model, seqs, row_vectors=[None] * len(seqs))
    ).abs().max() > 0.1  # the direction steers


def test_apply_all_in_your_own_generate_steers_every_token_once(gpt2_random):
    """The step loop of apply's docstring, on a left-padded batch: token for token, and block
    inputs downstream of the addition step by step, the reference greedy loop that steers the
    prompt pass after the start token and each decoded token."""
    model = gpt2_random
    d = actadd.mean_difference(model, PAIRS, layer=2, relative_norm=4.0)
    prompts, n = PROMPTS[:2], 6
    inputs = actadd.tokenize(model, prompts)
    info = actadd.model_info(model)
    seen: list[torch.Tensor] = []
    handle = block(model, 3).register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        with (
            torch.no_grad(),
            model.generate(
                max_new_tokens=n, do_sample=False, pad_token_id=info.pad_token_id, eos_token_id=None
            ) as tracer,
        ):
            with tracer.invoke(inputs):
                for _ in tracer.iter[:n]:
                    actadd.apply(model, d, positions="all")
            with tracer.invoke():
                out = tracer.result.save()
    finally:
        handle.remove()
    width = inputs["input_ids"].shape[1]
    changed = False
    for i, prompt in enumerate(prompts):
        ids = token_ids(model, prompt)
        ref_seen: list[torch.Tensor] = []
        handle = block(model, 3).register_forward_pre_hook(lambda m, args, seen=ref_seen: seen.append(args[0].clone()))
        try:
            with DirectionHook(model, 2, d.vector) as hook:
                ref = greedy(model, ids, n, stop=False)
        finally:
            handle.remove()
        assert hook.seen == [len(ids) - 1] + [1] * (n - 1)
        assert out[i, width:].tolist() == ref
        torch.testing.assert_close(seen[0][i, width - len(ids) :], ref_seen[0][0], atol=1e-4, rtol=1e-4)
        for ours, theirs in zip(seen[1:], ref_seen[1:]):  # each decode step's one new token
            torch.testing.assert_close(ours[i], theirs[0], atol=1e-4, rtol=1e-4)
        changed |= ref != greedy(model, ids, n, stop=False)
    assert changed  # the direction changed the greedy text


def test_positions_refuse_the_wrong_kind_of_vector(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=4.0)
    d = actadd.mean_difference(model, PAIRS, layer=1)
    seqs = [token_ids(model, p) for p in PROMPTS]
    with pytest.raises(ValueError, match=r"\[k, d_model\] ActAdd vector.*pass positions='front' \(the paper's\)"):
        forward_logits(model, seqs, row_vectors=[actadd.as_steering(v)] * 3, positions="all")
    with pytest.raises(ValueError, match=r"one \[d_model\] direction.*pass positions='all'"):
        actadd.generate(model, "Hello there", d, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match=r"one \[d_model\] direction.*pass positions='all'"):
        actadd.logprobs(model, ["Hello there"], d, positions="back")
    with pytest.raises(ValueError, match="positions must be 'front' .ActAdd's., 'back' or 'all'.*got 'middle'"):
        actadd.generate(model, "Hello there", v, positions="middle", max_new_tokens=2, progress=False)
    inputs = actadd.tokenize(model, PROMPTS[0])
    with pytest.raises(ValueError, match=r"computes 1 of \d+ positions \(a decode step with the KV cache\)"):
        with torch.no_grad(), model.generate(max_new_tokens=3, pad_token_id=0) as tracer:
            with tracer.invoke(inputs):
                for _ in tracer.iter[:3]:
                    actadd.apply(model, v)
            with tracer.invoke():
                tracer.result.save()


def test_apply_outside_a_trace_says_where_to_call_it(gpt2_random):
    v = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1)
    with pytest.raises(ValueError, match=r"inside a `with model.trace\(...\):` or `with model.generate\(...\):` body"):
        actadd.apply(gpt2_random, v)
