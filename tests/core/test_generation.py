"""Steered generation and scoring (actadd.generation) against the plain-torch reference, batched
against unbatched and c = 0 against unsteered."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor

import actadd
import actadd.generation as generation
from actadd.models import model_info
from actadd.scoring import forward_logits
from actadd.steer import encode_prompt, pad_to_vectors
from tests.core.reference import PAIRS, PROMPTS, AddHook, DirectionHook, block, greedy, reference_greedy, token_ids


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_greedy_generation_matches_reference_and_steers_prompt_pass_only(fixture, request):
    """Left-padded batched greedy generation equals the reference that steers only the prompt pass."""
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=4.0)
    texts = actadd.generate(model, PROMPTS, v, temperature=0, freq_penalty=0, max_new_tokens=8, progress=False)
    for prompt, text in zip(PROMPTS, texts):
        ref = reference_greedy(model, prompt, 2, v.vector, 8)
        assert text == model.tokenizer.decode(ref, skip_special_tokens=True)


def block_inputs(model, index: int, run) -> list[torch.Tensor]:
    """What block ``index`` is given, one tensor per forward pass, while ``run()`` runs."""
    seen: list[torch.Tensor] = []
    handle = block(model, index).register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_decode_steps_are_not_steered(gpt2_random):
    """Block inputs seen during a steered generate equal those of the prompt-pass-only reference
    at every step; an addition on decode steps would shift them by the vector."""
    model = gpt2_random
    v = actadd.steering_vector(model, " weddings", "", layer=2, coeff=50.0)

    ours = block_inputs(
        model,
        3,
        lambda: actadd.generate(model, PROMPTS[0], v, temperature=0, freq_penalty=0, max_new_tokens=4, progress=False),
    )
    ref = block_inputs(model, 3, lambda: reference_greedy(model, PROMPTS[0], 2, v.vector, 4))
    unsteered = block_inputs(model, 3, lambda: reference_greedy(model, PROMPTS[0], 2, 0 * v.vector, 4))
    assert [s.shape[1] for s in ours] == [len(token_ids(model, PROMPTS[0])), 1, 1, 1]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert not torch.allclose(ours[0], unsteered[0])  # and the prompt pass was steered


def test_coefficient_zero_equals_unsteered_exactly(smol):
    v = actadd.steering_vector(smol, " Love", " Hate", layer=5, coeff=0.0)
    seqs = [token_ids(smol, p) for p in PROMPTS]
    assert torch.equal(
        forward_logits(smol, seqs, row_vectors=[actadd.as_steering(v)] * 3),
        forward_logits(smol, seqs, row_vectors=[None] * 3),
    )
    steered = actadd.generate(smol, PROMPTS, v, max_new_tokens=10, seed=3, progress=False)
    assert steered == actadd.generate(smol, PROMPTS, None, max_new_tokens=10, seed=3, progress=False)


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


def test_pad_prompts_inserts_spaces_after_start(gpt2_random):
    """The original code's pad mode: k - 1 spaces after the start token, always, so that no row
    of the vector lands on the prompt's text ('Hello there' under an 8-token vector, GPT-2's ids)."""
    model = gpt2_random
    v = actadd.steering_vector(model, " one two three four five six seven", "", layer=1, coeff=2.0)
    assert v.k == 8
    with pytest.raises(ValueError, match="shorter than the 8-token vector"):
        actadd.generate(model, "Hi", v, max_new_tokens=2, progress=False)
    padded = actadd.generate(
        model, "Hello there", v, pad_prompts=True, temperature=0, freq_penalty=0, max_new_tokens=3, progress=False
    )
    ids = torch.tensor([[50256, *[220] * 7, 15496, 612]])
    hook = AddHook(model, 1, v.vector)
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
    # A prompt longer than the vector is padded all the same (the original pads every prompt).
    long_prompt = model.tokenizer("Hello there my friend, how are you today?").input_ids
    padded_ids = pad_to_vectors(encode_prompt(model, model.tokenizer.decode(long_prompt)), actadd.as_steering(v), 220)
    assert padded_ids.ids == [50256, *[220] * 7, *long_prompt]


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
    # Steering every step, a batch that stops before max_new_tokens ends its step loop early, silently.
    direction = actadd.mean_difference(model, PAIRS, layer=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = actadd.generate(
            model, ["Hello there", "Hi"], direction, positions="all", max_new_tokens=5, progress=False
        )
    assert texts == ["", ""]


# --- Bad input: a clear ValueError naming the value


def test_bad_generate_inputs(smol):
    v = actadd.steering_vector(smol, " Love", " Hate", layer=2)
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


# --- positions="all": every prompt position after the start token and every decoded token


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_all_positions_greedy_generation_matches_the_mask_hook_reference(fixture, request):
    """Greedy with the KV cache, left-padded batch: the text of transformers' own greedy loop
    under the reference hook, which steers each forward's new real tokens but the start token."""
    model = request.getfixturevalue(fixture)
    d = actadd.mean_difference(model, PAIRS, layer=2, relative_norm=4.0)
    greedy_args = dict(temperature=0, freq_penalty=0, max_new_tokens=8, progress=False)
    texts = actadd.generate(model, PROMPTS, d, positions="all", **greedy_args)
    for prompt, text in zip(PROMPTS, texts):
        with DirectionHook(model, 2, d.vector):
            ref = greedy(model, token_ids(model, prompt), 8)
        assert text == model.tokenizer.decode(ref, skip_special_tokens=True)
    assert texts != actadd.generate(model, PROMPTS, **greedy_args)


def test_all_positions_steer_each_decoded_token_exactly_once(gpt2_random):
    """Block inputs downstream of the addition, step by step, equal the reference's: a decode
    step steered twice or not at all would move them by the direction."""
    model = gpt2_random
    d = actadd.mean_difference(model, PAIRS, layer=2, relative_norm=4.0)

    greedy_args = dict(temperature=0, freq_penalty=0, max_new_tokens=5, progress=False)
    ours = block_inputs(model, 3, lambda: actadd.generate(model, PROMPTS[0], d, positions="all", **greedy_args))
    with DirectionHook(model, 2, d.vector) as hook:
        ref = block_inputs(model, 3, lambda: greedy(model, token_ids(model, PROMPTS[0]), 5))
    assert hook.seen == [len(token_ids(model, PROMPTS[0])) - 1, 1, 1, 1, 1]
    assert [s.shape[1] for s in ours] == [s.shape[1] for s in ref] == [len(token_ids(model, PROMPTS[0])), 1, 1, 1, 1]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    front_only = block_inputs(model, 3, lambda: actadd.generate(model, PROMPTS[0], **greedy_args))
    assert not torch.allclose(ours[1], front_only[1], atol=1e-2)  # decode steps were steered


def test_all_positions_batched_under_left_padding_equal_unbatched(gpt2_random):
    model = gpt2_random
    d = actadd.mean_difference(model, PAIRS, layer=1, relative_norm=3.0)
    greedy_args = dict(temperature=0, freq_penalty=0, max_new_tokens=8, progress=False, positions="all")
    assert actadd.generate(model, PROMPTS, d, batch_size=3, **greedy_args) == [
        actadd.generate(model, [p], d, batch_size=1, **greedy_args)[0] for p in PROMPTS
    ]
    together = actadd.logprobs(model, PROMPTS, d, batch_size=3, positions="all")
    for p, a in zip(PROMPTS, together):
        torch.testing.assert_close(a, actadd.logprobs(model, [p], d, positions="all")[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["gpt2_random", "smol"])
def test_coefficient_zero_equals_unsteered_for_every_positions_mode(fixture, request):
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " Love", " Hate", layer=2, coeff=0.0)
    d = actadd.mean_difference(model, PAIRS, layer=2, coeff=0.0)
    seqs = [token_ids(model, p) for p in PROMPTS]
    unsteered_logits = forward_logits(model, seqs, row_vectors=[None] * 3)
    unsteered = actadd.generate(model, PROMPTS, max_new_tokens=8, seed=3, progress=False)
    for positions, vector in [("front", v), ("back", v), ("all", d)]:
        steering = actadd.as_steering(vector)
        assert torch.equal(
            forward_logits(model, seqs, row_vectors=[steering] * 3, positions=positions), unsteered_logits
        ), positions
        steered = actadd.generate(model, PROMPTS, vector, positions=positions, max_new_tokens=8, seed=3, progress=False)
        assert steered == unsteered, positions


# --- Chat prompts: the tokenizer's chat template, front positions from the user's content

# A template of the instruct kind (a fixed system turn, the user's turn, the assistant's prompt).
TINY_TEMPLATE = (
    "<|endoftext|>System: be brief.\n"
    "{% for message in messages %}{{ message['role'] | capitalize }}:\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:\n{% endif %}"
)


@pytest.fixture(scope="module")
def gpt2_chat(gpt2_tokenizer):
    """A tiny random GPT-2 whose tokenizer has a chat template."""
    tokenizer = copy.deepcopy(gpt2_tokenizer)
    tokenizer.chat_template = TINY_TEMPLATE
    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=256, vocab_size=len(tokenizer))
    return actadd.wrap_model(GPT2LMHeadModel(config), tokenizer, name="gpt2-chat")


def _chat_reference_ids(model, prompt: str) -> tuple[list[int], int]:
    """The chat-formatted prompt tokenised whole, and where the content's own tokens start in it."""
    text = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    content = model.tokenizer(prompt, add_special_tokens=False).input_ids
    starts = [j for j in range(len(ids)) if ids[j : j + len(content)] == content]
    assert len(starts) == 1, "the content's tokens appear once in the formatted prompt"
    return ids, starts[0]


@pytest.mark.parametrize("fixture", ["gpt2_chat", "smol"])
def test_chat_front_lands_on_the_content_tokens(fixture, request):
    """Row j >= 1 of the vector on the content's j-th token, row 0 on the token before it: the
    greedy text, the reply's scores and the first reply token's distribution equal the hook
    reference at those positions."""
    model = request.getfixturevalue(fixture)
    v = actadd.steering_vector(model, " weddings and brides", " the", layer=2, coeff=6.0)
    greedy_args = dict(temperature=0, freq_penalty=0, max_new_tokens=6, progress=False)
    texts = actadd.generate(model, PROMPTS, v, chat=True, **greedy_args)
    for prompt, text in zip(PROMPTS, texts):
        ids, content = _chat_reference_ids(model, prompt)
        hook = AddHook(model, 2, v.vector, offset=content - 1)
        try:
            ref = greedy(model, ids, 6)
        finally:
            hook.handle.remove()
        assert text == model.tokenizer.decode(ref, skip_special_tokens=True)
        reply = model.tokenizer(" I do.", add_special_tokens=False).input_ids
        scored = actadd.logprobs(model, [" I do."], v, contexts=[prompt], chat=True)[0]
        hook = AddHook(model, 2, v.vector, offset=content - 1)
        try:
            with torch.no_grad():
                logits = model._module(torch.tensor([ids + reply])).logits[0]
        finally:
            hook.handle.remove()
        ref_scores = logits[len(ids) - 1 : -1].log_softmax(-1).gather(1, torch.tensor(reply)[:, None]).squeeze(1)
        torch.testing.assert_close(scored, ref_scores, atol=1e-4, rtol=1e-4)
        first_reply = actadd.next_token_logprobs(model, [prompt], v, chat=True)[0]
        torch.testing.assert_close(first_reply, logits[len(ids) - 1].log_softmax(-1), atol=1e-4, rtol=1e-4)
    assert texts != actadd.generate(model, PROMPTS, chat=True, **greedy_args)  # the vector steers
    assert texts != actadd.generate(model, PROMPTS, v, **greedy_args)  # and chat formatting changes the text


def test_chat_pads_before_the_content_and_plain_prompts_stay_the_default(gpt2_chat):
    model = gpt2_chat
    v = actadd.steering_vector(model, " one two three four five six", "", layer=1, coeff=2.0)
    with pytest.raises(ValueError, match="shorter than the 7-token vector"):
        actadd.generate(model, "Hi", v, chat=True, max_new_tokens=2, progress=False)
    padded = actadd.generate(
        model, "Hi", v, chat=True, pad_prompts=True, temperature=0, freq_penalty=0, max_new_tokens=3, progress=False
    )
    ids, content = _chat_reference_ids(model, "Hi")
    space = model.tokenizer(" ").input_ids[0]
    ids = ids[:content] + [space] * 6 + ids[content:]  # the 6 rows after row 0 cover the 6 spaces
    hook = AddHook(model, 1, v.vector, offset=content - 1)
    try:
        ref = greedy(model, ids, 3)
    finally:
        hook.handle.remove()
    assert padded == [model.tokenizer.decode(ref, skip_special_tokens=True)]
    plain = actadd.generate(model, "Hello there", temperature=0, freq_penalty=0, max_new_tokens=3, progress=False)
    assert plain == [
        model.tokenizer.decode(greedy(model, token_ids(model, "Hello there"), 3), skip_special_tokens=True)
    ]


def test_chat_needs_a_chat_template_and_a_context_to_score(gpt2_random, gpt2_chat):
    with pytest.raises(ValueError, match=r"'gpt2-random' has no chat template.*chat=False"):
        actadd.generate(gpt2_random, "Hello there", chat=True, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="no chat template"):
        actadd.logprobs(gpt2_random, [" I do."], contexts=["Hello"], chat=True)
    with pytest.raises(ValueError, match="chat=True scores each text as the assistant's reply to its context"):
        actadd.logprobs(gpt2_chat, [" I do."], chat=True)


def test_pad_prompts_as_a_number_pads_every_row_alike(gpt2_random):
    """An int pads steered and unsteered rows with that many spaces, so a baseline sees the
    padded prompt its steered rows see: c = 0 with padding is the unsteered model with padding."""
    model = gpt2_random
    v = actadd.steering_vector(model, " one two three", "", layer=1, coeff=3.0)
    greedy = dict(temperature=0, freq_penalty=0, max_new_tokens=3, progress=False)
    padded = actadd.generate(model, ["Hi", "Hello"], row_vectors=[0.0 * v, None], pad_prompts=3, **greedy)
    plain = actadd.generate(model, ["Hi", "Hello"], pad_prompts=3, **greedy)
    assert padded == plain
    assert plain != actadd.generate(model, ["Hi", "Hello"], **greedy)  # the spaces change the prompt
    ids = pad_to_vectors(encode_prompt(model, "Hi"), None, 220, 3).ids
    assert ids == [50256, 220, 220, 220, *model.tokenizer("Hi").input_ids]
    with pytest.raises(ValueError, match="pad_prompts"):
        actadd.generate(model, "Hi", v, pad_prompts=-1, **greedy)


# --- The decode loop against transformers' generate


class _StopLater(LogitsProcessor):
    """Row r's stop token becomes its certain draw once r + 3 tokens are decoded (every other row
    runs on): rows stop at different steps, and a caller's processor runs before the sampler."""

    def __init__(self, prompt_len: int, stop: int):
        self.prompt_len, self.stop = prompt_len, stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        decoded = input_ids.shape[1] - self.prompt_len
        rows = torch.arange(len(scores))
        due = (rows % 2 == 0) & (rows + 3 == decoded)
        scores[due, self.stop] = scores[due].amax(dim=-1) + 1e4
        return scores


@pytest.mark.parametrize(
    "fixture, positions, counts",
    [
        ("smol", "front", "completion"),
        ("smol", "all", "prompt_and_completion"),
        ("gemma", "front", "prompt_and_completion"),
    ],
)
def test_decode_loop_draws_what_transformers_generate_draws(fixture, positions, counts, request, monkeypatch):
    """Float32, the paper's sampler on a left-padded batch whose rows stop at different steps:
    this module's decode loop gives token for token the text of transformers' ``generate`` (in one
    nnsight request, as a remote model runs) with the same seeded RowSampler as its last logits
    processor; and a batch gives each row the text it gets alone."""
    model = request.getfixturevalue(fixture)
    steering = (
        actadd.mean_difference(model, PAIRS, layer=2, relative_norm=2.0)
        if positions == "all"
        else actadd.steering_vector(model, " weddings", "", layer=2, coeff=3.0)
    )
    prompts = [*PROMPTS, "Hi"] * 2
    width = max(len(token_ids(model, p)) for p in prompts)
    stop = _StopLater(width, model_info(model).stop_token_ids[0])
    seeds = actadd.row_seeds(5, len(prompts))
    sampling = dict(max_new_tokens=16, positions=positions, freq_penalty_counts=counts, progress=False)
    ours = generation.generate(model, prompts, steering, seed=seeds, logits_processors=[stop], **sampling)
    with monkeypatch.context() as patch:
        patch.setattr(generation, "_decode", generation._decode_remotely)
        theirs = generation.generate(model, prompts, steering, seed=seeds, logits_processors=[stop], **sampling)
    assert ours == theirs
    assert len(set(ours)) == len(ours)  # rows drew apart
    lengths = [len(model.tokenizer(t, add_special_tokens=False).input_ids) for t in ours]
    assert all(n <= r + 3 for r, n in enumerate(lengths) if r % 2 == 0)  # even rows stopped early
    assert any(n > 8 for r, n in enumerate(lengths) if r % 2 == 1)  # odd rows ran on
    alone = [
        generation.generate(model, [p], steering, seed=[s], **sampling)[0]
        for r, (p, s) in enumerate(zip(prompts, seeds))
        if r % 2 == 1
    ]
    assert ours[1::2] == alone
