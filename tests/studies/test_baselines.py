"""Baselines: PREADD-style prefix-contrastive decoding against an uncached reference, and prompting."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor

import actadd
from actadd.studies.protocol.baselines import PrefixContrast, prompted

PROMPTS = ["The movie was", "I think that the food here is really", "Yesterday"]
PREFIX = "The following text is very happy and positive:\n"


class UncachedPrefixContrast(LogitsProcessor):
    """The slow reference: every step rebuilds each prefixed row from the prompt text and the tokens
    generated so far, and scores it from scratch with one right-padded pass and no cache."""

    def __init__(self, model, prompts, prefix, strength, prompt_width):
        self.model, self.strength, self.prompt_width = model, strength, prompt_width
        self.prefixed_prompts = [actadd.encode(model, prefix + p) for p in prompts]
        self.info = actadd.model_info(model)

    def __call__(self, input_ids, scores):
        generated = input_ids[:, self.prompt_width :].tolist()
        rows = [p + g for p, g in zip(self.prefixed_prompts, generated)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.info.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with torch.no_grad():
            logits = self.model._module(input_ids=ids, attention_mask=mask).logits
        last = torch.tensor([len(r) - 1 for r in rows])
        prefixed = logits[torch.arange(len(rows)), last].float().log_softmax(-1)
        plain = scores.float().log_softmax(-1)
        return plain + self.strength * (prefixed - plain)


class Recorder(LogitsProcessor):
    """Keeps what the processor before it returned, step by step."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.clone())
        return scores


def _prompt_width(model, prompts):
    return max(len(actadd.encode(model, p)) for p in prompts)


def test_prefix_contrast_matches_uncached_reference(smol):
    """Same scores at every step as recomputing the prefixed rows from scratch, so same completions.

    The reference tokenises prefix + prompt as one text, the processor apart: a prefix ending in a
    newline keeps the two the same.
    """
    cached, reference = Recorder(), Recorder()
    kwargs = dict(max_new_tokens=8, seed=3, batch_size=len(PROMPTS), progress=False)
    fast = actadd.generate(smol, PROMPTS, logits_processors=[PrefixContrast(smol, PREFIX, 2.0), cached], **kwargs)
    slow_processor = UncachedPrefixContrast(smol, PROMPTS, PREFIX, 2.0, _prompt_width(smol, PROMPTS))
    slow = actadd.generate(smol, PROMPTS, logits_processors=[slow_processor, reference], **kwargs)
    assert fast == slow
    assert len(cached.steps) == len(reference.steps) == 8
    for a, b in zip(cached.steps, reference.steps):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), finite)
        torch.testing.assert_close(a[finite], b[finite], atol=2e-3, rtol=1e-4)


def test_prefix_contrast_strength_zero_is_plain_decoding(smol):
    kwargs = dict(max_new_tokens=10, seed=1, progress=False)
    plain = actadd.generate(smol, PROMPTS, **kwargs)
    assert actadd.generate(smol, PROMPTS, logits_processors=[PrefixContrast(smol, PREFIX, 0.0)], **kwargs) == plain


def test_prefix_contrast_strength_one_samples_the_prefixed_prompt(smol):
    """strength 1 leaves only the prefixed log-probs: the same draws as sampling prefix + prompt."""
    kwargs = dict(max_new_tokens=10, seed=2, progress=False)
    contrast = actadd.generate(smol, PROMPTS, logits_processors=[PrefixContrast(smol, PREFIX, 1.0)], **kwargs)
    assert contrast == actadd.generate(smol, prompted(PROMPTS, PREFIX), **kwargs)


def test_prefix_contrast_is_batch_independent(smol):
    """One instance serves several batches: batch size 1 and one batch give the same completions."""
    kwargs = dict(max_new_tokens=8, seed=5, progress=False)
    processor = PrefixContrast(smol, PREFIX, 3.0)
    one_batch = actadd.generate(smol, PROMPTS, logits_processors=[processor], batch_size=len(PROMPTS), **kwargs)
    per_row = actadd.generate(smol, PROMPTS, logits_processors=[processor], batch_size=1, **kwargs)
    assert one_batch == per_row


def test_prefix_contrast_moves_towards_the_prefix(smol):
    """Positive strength raises the log-prob of the prefix's word; negative strength lowers it."""
    prompt = ["My favourite colour is"]
    prefix = "I love the colour green. Green is the best colour.\n"
    green = smol.tokenizer(" green", add_special_tokens=False).input_ids[0]
    probes = {}
    for strength in (-1.0, 0.0, 2.0):
        recorder = Recorder()
        actadd.generate(
            smol,
            prompt,
            logits_processors=[PrefixContrast(smol, prefix, strength), recorder],
            max_new_tokens=1,
            progress=False,
        )
        probes[strength] = float(recorder.steps[0][0, green])
    assert probes[-1.0] < probes[0.0] < probes[2.0]


@pytest.mark.parametrize(
    "prefix, strength",
    [("", 1.0), ("   ", 1.0), (None, 1.0), ("Be kind: ", 1.0), ("ok\n", float("nan")), ("ok\n", True)],
)
def test_prefix_contrast_rejects_bad_input(smol, prefix, strength):
    with pytest.raises(ValueError):
        PrefixContrast(smol, prefix, strength)


def test_prompted_prepends_the_instruction():
    assert prompted(["a", "b"], "Be kind:\n") == ["Be kind:\na", "Be kind:\nb"]
    with pytest.raises(ValueError, match="instruction"):
        prompted(["a"], " ")
