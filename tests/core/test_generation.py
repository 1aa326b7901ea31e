"""The nnsight path against an independent plain-torch-hook implementation of ActAdd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import actadd
from actadd.generation import forward_logits
from actadd.sampling import RowSampler

PROMPTS = ["I went up to my friend and said", "Hello there, my friend", "The weather today is very nice and I think we"]


# --- An independent reference: plain torch hooks on the HF module, no nnsight, no actadd internals.


def _ids(model, text: str) -> list[int]:
    """Start token, then the text's tokens, straight from the tokenizer."""
    return [actadd.model_info(model).start_token_id, *model.tokenizer(text, add_special_tokens=False).input_ids]


def _block(model, layer: int) -> torch.nn.Module:
    hf = model._module
    return hf.transformer.h[layer] if hasattr(hf, "transformer") else hf.model.layers[layer]


def _resid_pre(model, ids: list[list[int]], layer: int) -> torch.Tensor:
    captured = {}

    def hook(module, args, kwargs):
        captured["h"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = _block(model, layer).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model._module(torch.tensor(ids))
    finally:
        handle.remove()
    return captured["h"]


def _reference_vector(model, p_plus: str, p_minus: str, layer: int, coeff: float) -> torch.Tensor:
    space = model.tokenizer(" ", add_special_tokens=False).input_ids[0]
    a, b = _ids(model, p_plus), _ids(model, p_minus)
    k = max(len(a), len(b))
    a, b = a + [space] * (k - len(a)), b + [space] * (k - len(b))
    h = _resid_pre(model, [a, b], layer)
    return coeff * (h[0] - h[1])


class _AddHook:
    """Adds ``vector`` [k, d] at positions ``offset .. offset + k - 1`` of a single-row forward."""

    def __init__(self, model, layer: int, vector: torch.Tensor, offset: int = 0, prompt_pass_only: bool = True):
        self.vector, self.offset, self.prompt_pass_only = vector, offset, prompt_pass_only
        self.handle = _block(model, layer).register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        if self.prompt_pass_only and h.shape[1] == 1:
            return None  # a decode step with the KV cache
        h = h.clone()
        h[:, self.offset : self.offset + self.vector.shape[0]] += self.vector
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}


def _reference_logits(model, text: str, hooks: list[tuple[int, torch.Tensor, int]]) -> torch.Tensor:
    added = [_AddHook(model, layer, vec, offset) for layer, vec, offset in hooks]
    try:
        with torch.no_grad():
            return model._module(torch.tensor([_ids(model, text)])).logits[0]
    finally:
        for a in added:
            a.handle.remove()


def _reference_greedy(model, prompt: str, layer: int, vector: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding with a KV cache, steering the prompt pass only, no frequency penalty."""
    hook = _AddHook(model, layer, vector)
    try:
        with torch.no_grad():
            ids = torch.tensor([_ids(model, prompt)])
            out = model._module.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=actadd.model_info(model).pad_token_id,
                eos_token_id=None,
            )
    finally:
        hook.handle.remove()
    return out[0, ids.shape[1] :].tolist()


# --- The tests


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_vector_matches_reference(fixture, request):
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " weddings and brides", " the", layer=2, coeff=3.0)
    ref = _reference_vector(model, " weddings and brides", " the", 2, 3.0)
    assert v.vector.shape == ref.shape == (len(_ids(model, " weddings and brides")), actadd.model_info(model).d_model)
    torch.testing.assert_close(v.vector, ref, atol=1e-5, rtol=0)
    assert v.vector[0].abs().max() == 0  # the start token cancels


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_batched_steered_logits_match_hook_reference(fixture, request):
    """Several vectors at two layers: the nnsight path equals the plain-hook forward to 1e-5 per
    prompt; in one padded batch of prompts of different lengths, to float32 batching noise (the
    matmuls block differently by batch shape: seen up to 2e-4 on logits of SmolLM2's scale, where a
    misaligned vector moves them by more than 0.1)."""
    model = request.getfixturevalue(fixture)
    v1 = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=4.0)
    v2 = actadd.steering_vector(model, " weddings", "", layer=3, coeff=-2.0)
    seqs = [_ids(model, p) for p in PROMPTS]
    batched = forward_logits(model, seqs, [v1 + v2] * len(seqs))
    for i, p in enumerate(PROMPTS):
        ref = _reference_logits(model, p, [(1, v1.vector, 0), (3, v2.vector, 0)])
        alone = forward_logits(model, [seqs[i]], [v1 + v2])[0]
        torch.testing.assert_close(alone, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[i, : len(seqs[i])], ref, atol=1e-4, rtol=1e-4)


def test_back_alignment_matches_reference(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love and joy", " Hate", layer=2, coeff=5.0)
    seqs = [_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, [actadd.as_steering(v)] * len(seqs), alignment="back")
    for i, p in enumerate(PROMPTS):
        ref = _reference_logits(model, p, [(2, v.vector, len(seqs[i]) - v.k)])
        torch.testing.assert_close(logits[i, : len(seqs[i])], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_greedy_generation_matches_reference_and_steers_prompt_pass_only(fixture, request):
    """Left-padded batched greedy generation equals the reference that steers only the prompt pass."""
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=4.0)
    texts = actadd.generate(model, PROMPTS, v, temperature=0, freq_penalty=0, max_new_tokens=8, progress=False)
    for prompt, text in zip(PROMPTS, texts):
        ref = _reference_greedy(model, prompt, 2, v.vector, 8)
        assert text == model.tokenizer.decode(ref, skip_special_tokens=True)


def test_decode_steps_are_not_steered(gpt2_random):
    """Block inputs seen during a steered generate equal those of the prompt-pass-only reference
    at every step; an addition on decode steps would shift them by the vector."""
    model = gpt2_random
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=50.0)

    def record(run) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        handle = _block(model, 3).register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
        try:
            run()
        finally:
            handle.remove()
        return seen

    ours = record(
        lambda: actadd.generate(model, PROMPTS[0], v, temperature=0, freq_penalty=0, max_new_tokens=4, progress=False)
    )
    ref = record(lambda: _reference_greedy(model, PROMPTS[0], 2, v.vector, 4))
    unsteered = record(lambda: _reference_greedy(model, PROMPTS[0], 2, 0 * v.vector, 4))
    assert [s.shape[1] for s in ours] == [len(_ids(model, PROMPTS[0])), 1, 1, 1]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert not torch.allclose(ours[0], unsteered[0])  # and the prompt pass was steered


def test_coefficient_zero_equals_unsteered_exactly(smol):
    v = actadd.steering_vector(smol, " Love", " Hate", layer=5, coeff=0.0)
    seqs = [_ids(smol, p) for p in PROMPTS]
    assert torch.equal(forward_logits(smol, seqs, [actadd.as_steering(v)] * 3), forward_logits(smol, seqs, [None] * 3))
    steered = actadd.generate(smol, PROMPTS, v, max_new_tokens=10, seed=3, progress=False)
    assert steered == actadd.generate(smol, PROMPTS, None, max_new_tokens=10, seed=3, progress=False)


def test_vector_is_linear_in_coefficient(smol):
    v1 = actadd.steering_vector(smol, " Love", " Hate", layer=6, coeff=1.0)
    v3 = actadd.steering_vector(smol, " Love", " Hate", layer=6, coeff=3.0)
    torch.testing.assert_close(v3.vector, 3 * v1.vector)
    scaled = v1 * 3
    torch.testing.assert_close(scaled.vector, v3.vector)
    assert scaled.coeff == 3.0 and math.isclose(scaled.relative_norm, v3.relative_norm, rel_tol=1e-5)
    assert math.isclose((-v1).relative_norm, v1.relative_norm) and (-v1).coeff == -1.0


def test_batched_equals_unbatched(smol):
    v = actadd.steering_vector(smol, " weddings", "", layer=4, coeff=2.0)
    together = actadd.logprobs(smol, PROMPTS, v, batch_size=3)
    apart = [actadd.logprobs(smol, [p], v, batch_size=1)[0] for p in PROMPTS]
    for a, b in zip(together, apart):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # float32 noise from padding
    greedy = dict(temperature=0, max_new_tokens=12, progress=False)
    assert actadd.generate(smol, PROMPTS, v, batch_size=3, **greedy) == [
        actadd.generate(smol, [p], v, batch_size=1, **greedy)[0] for p in PROMPTS
    ]


def test_sampling_is_reproducible_per_row(smol):
    prompts = [PROMPTS[0]] * 4
    a = actadd.generate(smol, prompts, max_new_tokens=12, seed=7, batch_size=4, progress=False)
    assert a == actadd.generate(smol, prompts, max_new_tokens=12, seed=7, batch_size=4, progress=False)
    assert len(set(a)) > 1  # rows draw from different generators
    assert a != actadd.generate(smol, prompts, max_new_tokens=12, seed=8, batch_size=4, progress=False)
    # a row's text depends on its seed, not on the rows beside it
    assert (
        a[2]
        == actadd.generate(smol, [PROMPTS[0]], max_new_tokens=12, seed=[actadd.row_seeds(7, 4)[2]], progress=False)[0]
    )


def test_per_row_vectors_match_each_setting_alone(smol):
    """A sweep as one batch: rows steered at different layers (and unsteered rows) give the same
    text as each setting run on its own."""
    settings = [
        None,
        actadd.steering_vector(smol, " weddings", "", layer=3, coeff=3.0),
        actadd.steering_vector(smol, " weddings", "", layer=10, coeff=3.0),
    ]
    n = 3
    rows = [s for s in settings for _ in range(n)]
    seeds = actadd.row_seeds(0, n) * len(settings)
    swept = actadd.generate(
        smol, [PROMPTS[0]] * len(rows), row_vectors=rows, seed=seeds, max_new_tokens=10, progress=False
    )
    alone = [
        t
        for s in settings
        for t in actadd.generate(smol, [PROMPTS[0]] * n, s, seed=0, max_new_tokens=10, progress=False)
    ]
    assert swept == alone
    assert swept[:n] != swept[n : 2 * n]


def test_frequency_penalty_is_openai_style():
    """Minus penalty x count in the completion so far; prompt tokens are not counted."""
    sampler = RowSampler(prompt_len=2, seeds=[0], temperature=0, top_p=1.0, freq_penalty=1.0)
    scores = torch.tensor([[3.0, 2.5, 0.0, 0.0]])
    # token 0 appears twice in the completion (positions 2, 3) and once in the prompt
    pick = sampler(torch.tensor([[0, 1, 0, 0]]), scores.clone()).argmax(-1).item()
    assert pick == 1  # 3.0 - 2 * 1.0 = 1.0 < 2.5 - 0
    prompt_only = sampler(torch.tensor([[0, 0]]), scores.clone()).argmax(-1).item()
    assert prompt_only == 0  # no completion yet: nothing penalised
    half = RowSampler(prompt_len=2, seeds=[0], temperature=0, top_p=1.0, freq_penalty=0.2)
    assert half(torch.tensor([[0, 1, 0, 0]]), scores.clone()).argmax(-1).item() == 0  # 3.0 - 0.4 > 2.5


def test_top_p_keeps_smallest_prefix():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    picks = {
        RowSampler(0, [s], temperature=1.0, top_p=0.4, freq_penalty=0)(torch.zeros(1, 0, dtype=torch.long), scores)
        .argmax()
        .item()
        for s in range(20)
    }
    assert picks == {0}
    picks = {
        RowSampler(0, [s], temperature=1.0, top_p=0.7, freq_penalty=0)(torch.zeros(1, 0, dtype=torch.long), scores)
        .argmax()
        .item()
        for s in range(40)
    }
    assert picks == {0, 1}


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


def test_pad_prompts_inserts_spaces_after_start(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " one two three four five six", "", layer=1, coeff=2.0)
    with pytest.raises(ValueError, match="shorter than the 7-token vector"):
        actadd.generate(model, "Hi", v, max_new_tokens=2, progress=False)
    padded = actadd.generate(
        model, "Hi", v, pad_prompts=True, temperature=0, freq_penalty=0, max_new_tokens=3, progress=False
    )
    space = model.tokenizer(" ").input_ids[0]
    ids = torch.tensor([[_ids(model, "")[0], *[space] * 5, *model.tokenizer("Hi").input_ids]])
    hook = _AddHook(model, 1, v.vector)
    try:
        ref = model._module.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            repetition_penalty=None,
        )
    finally:
        hook.handle.remove()
    assert padded == [model.tokenizer.decode(ref[0, ids.shape[1] :])]


# --- Bad input: a clear ValueError naming the value


def test_bad_inputs(smol):
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
    with pytest.raises(ValueError, match="prompts is empty"):
        actadd.generate(smol, [], v)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1, got 0"):
        actadd.generate(smol, "Hi there", v, max_new_tokens=0)
    for top_p in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"top_p must be a finite number in \(0, 1\]"):
            actadd.generate(smol, "Hi there", v, top_p=top_p)
    with pytest.raises(ValueError, match="temperature .0 is greedy. must be"):
        actadd.generate(smol, "Hi there", v, temperature=-1)
    long = actadd.steering_vector(smol, " a b c d e f g", "", layer=2)
    with pytest.raises(ValueError, match="prompt 0 has 2 tokens"):
        actadd.generate(smol, "Hi", long)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        v * float("nan")


def test_unknown_model_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'smollm2-135m', 'gemma3-270m'"):
        actadd.load_model("gpt2-xl-not-a-model")
    with pytest.raises(ValueError, match="non-empty string"):
        actadd.load_model("")


def test_model_info_per_architecture(smol, gpt2_random):
    s, g = actadd.model_info(smol), actadd.model_info(gpt2_random)
    assert (s.n_layers, s.d_model, s.blocks_path) == (30, 576, "model.layers")
    assert smol.tokenizer.convert_ids_to_tokens(s.start_token_id) == "<|endoftext|>"
    assert (g.n_layers, g.d_model, g.blocks_path) == (4, 64, "transformer.h")
    assert g.start_token_id == 50256 and gpt2_random.tokenizer.decode([g.space_token_id]) == " "


# --- Steering inside your own trace, several vectors together


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
        n = len(_ids(model, prompt))
        ref = _reference_logits(model, prompt, [(1, v.vector, 0)])
        torch.testing.assert_close(logits[i, width - n :], ref, atol=1e-4, rtol=0)
    assert (late[0] if isinstance(late, tuple) else late).shape[:2] == (len(PROMPTS), width)


def test_apply_reads_right_padding_too(gpt2_random):
    model = gpt2_random
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=3.0)
    seqs = [_ids(model, p) for p in PROMPTS]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad(), model.trace({"input_ids": ids, "attention_mask": mask}):
        actadd.apply(model, row_vectors=[v, None, v])
        logits = model.output.logits.save()
    for i, prompt in enumerate(PROMPTS):
        hooks = [(2, v.vector, 0)] if i != 1 else []
        torch.testing.assert_close(
            logits[i, : len(seqs[i])], _reference_logits(model, prompt, hooks), atol=1e-4, rtol=0
        )


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
    assert out[0, inputs["input_ids"].shape[1] :].tolist() == _reference_greedy(model, PROMPTS[0], 2, v.vector, 6)


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_two_vectors_at_one_layer_add_up(fixture, request):
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " Love", " Hate", layer=2, coeff=2.0)
    seqs = [_ids(model, p) for p in PROMPTS]
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
    seqs = [_ids(model, p) for p in PROMPTS]
    logits = forward_logits(model, seqs, [short + long + other] * 3)
    for i, prompt in enumerate(PROMPTS):
        ref = _reference_logits(model, prompt, [(1, short.vector, 0), (1, long.vector, 0), (3, other.vector, 0)])
        torch.testing.assert_close(logits[i, : len(seqs[i])], ref, atol=1e-4, rtol=0)


# --- Rough edges: a clear ValueError at once


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


def test_generate_and_score_refuse_none_and_prompts_beyond_the_context(gpt2_random):
    model = gpt2_random  # n_positions 256
    for bad in (None, 3, [None]):
        with pytest.raises(ValueError, match="prompts must be"):
            actadd.generate(model, bad)
    long = " word" * 300
    with pytest.raises(ValueError, match=r"prompt 1 has 301 tokens.*context of 256 positions"):
        actadd.generate(model, ["Hello", long], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"251 tokens plus 10 new tokens.*context of 256"):
        actadd.generate(model, " word" * 250, max_new_tokens=10)
    with pytest.raises(ValueError, match="context of 256"):
        actadd.logprobs(model, [long])
    with pytest.raises(ValueError, match="context of 256"):
        actadd.next_token_logprobs(model, [long])


def test_numpy_integers_are_integers(gpt2_random):
    v = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=np.int64(1), coeff=np.float32(2.0))
    assert v.layer == 1 and isinstance(v.layer, int)
    texts = actadd.generate(gpt2_random, "Hello there", v, max_new_tokens=np.int64(2), seed=np.int64(3), progress=False)
    assert len(texts) == 1


def test_a_hub_id_offline_fails_at_once_without_download_retries(monkeypatch):
    from actadd import models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    asked = []

    def from_pretrained(name, **kwargs):
        asked.append(kwargs)
        if kwargs.get("local_files_only"):
            raise OSError(f"{name} is not in the local cache")
        raise AssertionError("a download was attempted while the hub is unreachable")

    monkeypatch.setattr(models.AutoConfig, "from_pretrained", from_pretrained)
    with pytest.raises(ValueError, match=r"'gpt2'.*cannot be downloaded \(the hub \(127\.0\.0\.1\) is unreachable"):
        actadd.load_model("gpt2")
    assert asked == [{"local_files_only": True}]


def test_wrap_model_keeps_what_it_knows_off_the_transformers_config(gpt2_tokenizer, tmp_path):
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(gpt2_tokenizer))
    hf_model = GPT2LMHeadModel(config)
    model = actadd.wrap_model(hf_model, gpt2_tokenizer, name="mine", start_token="!", blocks_path="transformer.h")
    info = actadd.model_info(model)
    assert (info.name, info.blocks_path, info.max_positions) == ("mine", "transformer.h", 64)
    assert gpt2_tokenizer.convert_ids_to_tokens(info.start_token_id) == "!"
    assert actadd.encode(model, "Hi")[0] == info.start_token_id
    hf_model.save_pretrained(tmp_path)
    assert "actadd" not in (tmp_path / "config.json").read_text()
    assert not [k for k in vars(hf_model.config) if "actadd" in k]
    with pytest.raises(ValueError, match="blocks_path 'transformer.wte' is not a ModuleList"):
        actadd.wrap_model(hf_model, gpt2_tokenizer, blocks_path="transformer.wte")
    with pytest.raises(ValueError, match="start token '<nope>' is not a token"):
        actadd.wrap_model(hf_model, gpt2_tokenizer, start_token="<nope>")


# --- Strengths and layers in units that transfer between models


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
        ref = _reference_vector(model, " weddings", "", info.n_layers // 2, v.coeff)
        resid = _resid_pre(model, [list(v.tokens_plus), list(v.tokens_minus)], info.n_layers // 2)
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
            v.vector, _reference_vector(model, " Love", " Hate", block, 2.0), atol=1e-4, rtol=1e-4
        )


def test_generation_stops_at_the_document_separator(gpt2_tokenizer):
    """SmolLM2's start token <|endoftext|> separates its pretraining documents: a completion
    ends there. A random GPT-2 whose logits always favour the separator stops at once."""
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64, vocab_size=len(gpt2_tokenizer))
    hf_model = GPT2LMHeadModel(config)
    with torch.no_grad():  # the final hidden state is all ones and only the separator's logit is not 0
        hf_model.transformer.ln_f.weight.zero_()
        hf_model.transformer.ln_f.bias.fill_(1.0)
        hf_model.lm_head.weight.zero_()
        hf_model.lm_head.weight[gpt2_tokenizer.eos_token_id] = 1.0
    model = actadd.wrap_model(hf_model, gpt2_tokenizer, name="stops")
    info = actadd.model_info(model)
    assert info.start_token_id in info.stop_token_ids
    assert actadd.generate(model, ["Hello there", "Hi"], max_new_tokens=5, temperature=0, progress=False) == ["", ""]


@pytest.mark.slow
def test_smollm2_stops_at_its_separator_and_its_end_token(smol):
    info = actadd.model_info(smol)
    tokens = smol.tokenizer.convert_ids_to_tokens(list(info.stop_token_ids))
    assert set(tokens) == {"<|im_end|>", "<|endoftext|>"} and info.start_token_id in info.stop_token_ids
