"""Scoring (actadd.scoring) from the last hidden state, a slice of the vocabulary at a time: against
the full logits' log-softmax, batched against alone, and never holding batch x positions x vocabulary.

Tolerances, measured on this CPU (SmolLM2-135M and Gemma-3-270M, the six texts below, steered):
- against the full-logits path on the same batch, both dtypes: at most 6e-5 (the logits are the
  same matmul; only the float32 log-sum-exp is summed in another order). Allowed: 2e-4.
- a next-token distribution against the full logits: 3e-5 in float32; in bfloat16 one rounding of
  a logit (0.03 and 0.06: the unembedding of one position per row is another matmul shape, and a
  bfloat16 ulp is 0.0625 for logits in [8, 16)). Allowed: 1e-4 and 0.13 (an ulp below 32).
- a text alone against inside a batch of others: 1.3e-5 in float32; in bfloat16 up to 0.20
  (SmolLM2) and 0.13 (Gemma), 0.045 and 0.040 on average over the tokens, exactly what the
  full-logits path gave (the whole forward runs at another shape). Allowed: 1e-4 in float32;
  0.25 for any token and 0.06 on average in bfloat16.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import actadd
from actadd.models import ARCHITECTURES
from actadd.scoring import SLICE_VALUES, forward_logits, length_batches

TEXTS = [
    " and then she said it was fine",
    " the bride wore white at the wedding, and the groom wore a dark blue suit",
    " a",
    " I do, said the groom.",
    " Paris is the capital of France and its largest city.",
    "",
]
CONTEXTS = [
    "I went up to my friend and said",
    "Hello there, my old friend",
    "Hi there, how are you",
    "The weather today is",
    "Geography: a quiz about",
    "Count to ten:",
]
# Allowed differences (see the module's docstring for what was measured).
SAME_BATCH = 2e-4
NEXT_TOKEN = {torch.float32: 1e-4, torch.bfloat16: 0.13}
ALONE = {torch.float32: (1e-4, 1e-4), torch.bfloat16: (0.25, 0.06)}  # (any token, mean over tokens)


def full_logits_reference(model, texts, contexts, vector) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The path scoring replaced: one forward with all the logits (the same right-padded batch),
    a float32 log-softmax over the whole vocabulary, each text token's value read from it; and
    the distribution after each context."""
    contexts_ids = [actadd.encode(model, c) for c in contexts]
    seqs = [c + actadd.encode(model, t, start=False) for c, t in zip(contexts_ids, texts)]
    logits = forward_logits(model, seqs, vector)
    scores = []
    for i, (c, s) in enumerate(zip(contexts_ids, seqs)):
        lp = logits[i, len(c) - 1 : len(s) - 1].float().log_softmax(-1)
        scores.append(lp.gather(1, torch.tensor(s[len(c) :], dtype=torch.long)[:, None]).squeeze(1))
    last = forward_logits(model, contexts_ids, vector)
    after = torch.stack([last[i, len(c) - 1].float().log_softmax(-1) for i, c in enumerate(contexts_ids)])
    return scores, after


@pytest.mark.parametrize(
    "fixture", ["gpt2_random", "smol", "smol_bf16", "gemma", "gemma_bf16"], ids=lambda f: f.replace("_", "-")
)
def test_scores_equal_the_full_logits_log_softmax(fixture, request):
    model = request.getfixturevalue(fixture)
    vector = actadd.steering_vector(model, " Love", " Hate", layer=3, coeff=4.0)
    expected, after = full_logits_reference(model, TEXTS, CONTEXTS, vector)
    scored = actadd.logprobs(model, TEXTS, vector, contexts=CONTEXTS, batch_size=len(TEXTS))
    for got, want in zip(scored, expected, strict=True):
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=SAME_BATCH, rtol=0)
    distributions = actadd.next_token_logprobs(model, CONTEXTS, vector, batch_size=len(CONTEXTS))
    assert distributions.shape == after.shape == (len(CONTEXTS), actadd.model_info(model).vocab_size)
    torch.testing.assert_close(distributions, after, atol=NEXT_TOKEN[model.dtype], rtol=0)
    # the steering reached the scores: unsteered they differ by far more than the tolerance
    unsteered = actadd.logprobs(model, TEXTS, contexts=CONTEXTS, batch_size=len(TEXTS))
    assert max((a - b).abs().max() for a, b in zip(scored, unsteered) if len(a)) > 10 * SAME_BATCH


@pytest.mark.parametrize(
    "fixture", ["gpt2_random", "smol", "smol_bf16", "gemma_bf16"], ids=lambda f: f.replace("_", "-")
)
def test_a_texts_scores_do_not_depend_on_its_batch(fixture, request):
    model = request.getfixturevalue(fixture)
    vector = actadd.steering_vector(model, " weddings", "", layer=2, coeff=3.0)
    together = actadd.logprobs(model, TEXTS, vector, contexts=CONTEXTS, batch_size=len(TEXTS))
    most, mean = ALONE[model.dtype]
    gaps = []
    for text, context, batched in zip(TEXTS, CONTEXTS, together, strict=True):
        alone = actadd.logprobs(model, [text], vector, contexts=[context])[0]
        torch.testing.assert_close(batched, alone, atol=most, rtol=0)
        gaps.append((batched - alone).abs())
    assert torch.cat(gaps).mean() <= mean


def _tiny(model_type: str, tokenizer, **extra):
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64, ffn_dim=64, word_embed_proj_dim=32, head_dim=16,
                 vocab_size=len(tokenizer), max_position_embeddings=96)  # fmt: skip
    torch.manual_seed(0)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **{**sizes, **extra}))
    return actadd.wrap_model(hf_model, tokenizer, name=f"tiny-{model_type}")


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_known_architectures_head_is_reproduced(model_type, gpt2_tokenizer):
    """Each family in the table, tiny and random (Gemma 2 and 3 with a logit cap of 3, so that the
    cap bends logits of this size): scores equal its own logits' log-softmax."""
    capped = {"final_logit_softcapping": 3.0} if ARCHITECTURES[model_type].logit_softcap else {}
    model = _tiny(model_type, gpt2_tokenizer, **capped)
    info = actadd.model_info(model)
    assert info.head_path is not None and info.logit_softcap == capped.get("final_logit_softcapping")
    expected, after = full_logits_reference(model, TEXTS, CONTEXTS, None)
    for got, want in zip(actadd.logprobs(model, TEXTS, contexts=CONTEXTS), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(actadd.next_token_logprobs(model, CONTEXTS), after, atol=1e-5, rtol=0)


def test_an_untied_head_with_a_bias(gpt2_tokenizer):
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=96, vocab_size=len(gpt2_tokenizer))
    torch.manual_seed(1)
    hf_model = GPT2LMHeadModel(config)
    hf_model.lm_head = torch.nn.Linear(32, len(gpt2_tokenizer), bias=True)  # GPT2LMHeadModel calls whatever it holds
    with torch.no_grad():
        hf_model.lm_head.bias.normal_(0.0, 2.0)
    model = actadd.wrap_model(hf_model, gpt2_tokenizer, name="untied")
    assert actadd.model_info(model).head_path == "lm_head"
    expected, after = full_logits_reference(model, TEXTS, CONTEXTS, None)
    for got, want in zip(actadd.logprobs(model, TEXTS, contexts=CONTEXTS), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(actadd.next_token_logprobs(model, CONTEXTS), after, atol=1e-5, rtol=0)


def test_an_unknown_head_is_scored_from_its_full_logits_and_says_so(gpt2_tokenizer):
    """Granite divides its logits by logits_scaling after the unembedding: a family outside the
    table is scored from the model's own logits, with a warning saying what that costs."""
    model = _tiny("granite", gpt2_tokenizer, logits_scaling=4.0)
    assert actadd.model_info(model).head_path is None
    expected, after = full_logits_reference(model, TEXTS, CONTEXTS, None)
    with pytest.warns(UserWarning, match=r"'granite'.*batch x positions x vocabulary"):
        scored = actadd.logprobs(model, TEXTS, contexts=CONTEXTS)
    for got, want in zip(scored, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.warns(UserWarning, match="granite"):
        torch.testing.assert_close(actadd.next_token_logprobs(model, CONTEXTS), after, atol=1e-5, rtol=0)


def test_a_scoring_pass_holds_no_batch_x_positions_x_vocabulary_tensor(gpt2_tokenizer):
    """A one-block GPT-2 of width 16 with GPT-2's 50,257-token vocabulary, 8 texts of 60 tokens:
    their logits would be 92 MiB in float32. The unembedding never runs on the pass's positions,
    and no operation allocates more than one slice of the log-sum-exp (16 MiB)."""
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=128, vocab_size=len(gpt2_tokenizer))
    torch.manual_seed(0)
    model = actadd.wrap_model(GPT2LMHeadModel(config), gpt2_tokenizer, name="wide-vocabulary")
    texts = [" word" * 60] * 8
    full_logits = 8 * 60 * len(gpt2_tokenizer) * 4
    head_calls = []
    handle = model._module.lm_head.register_forward_hook(lambda *args: head_calls.append(args[2].shape))
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            scores = actadd.logprobs(model, texts, batch_size=8)
        largest = max(event.cpu_memory_usage for event in prof.events())
        assert head_calls == [] and len(scores) == 8 and all(len(s) == 60 for s in scores)
        assert largest <= SLICE_VALUES * 4 < full_logits / 5
        # The profiler sees the full path's logits: the same count on forward_logits exceeds them.
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            forward_logits(model, [actadd.encode(model, t) for t in texts])
        assert max(event.cpu_memory_usage for event in prof.events()) >= full_logits
    finally:
        handle.remove()


def test_length_batches_sort_by_length_and_keep_the_batch_size():
    assert length_batches([9, 3, 5, 7, 4], 2) == [[1, 4], [2, 3], [0]]
    assert length_batches([2, 2, 1], 5) == [[2, 0, 1]]
