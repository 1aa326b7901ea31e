"""RowSampler against a full-sort reference, row by row, and its draws against the nucleus's probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from actadd.sampling import NUCLEUS_WIDTH, RowSampler, _block_maxima


def _reference_draws(scores: torch.Tensor, generators: list[torch.Generator], top_p: float) -> torch.Tensor:
    """Top-p by the textbook recipe (full stable sort, softmax, smallest prefix reaching top_p),
    then the inverse-CDF draw with one float64 uniform per row; top_p = 1 keeps vocabulary order."""
    if top_p >= 1:
        order = torch.arange(scores.shape[-1]).expand_as(scores)
    else:
        order = scores.sort(dim=-1, descending=True, stable=True).indices
    probs = scores.gather(1, order).softmax(dim=-1).double()
    if top_p < 1:
        probs = probs * ((probs.cumsum(dim=-1) - probs) < top_p)
    cumulative = probs.cumsum(dim=-1)
    picks = []
    for row, g in enumerate(generators):
        target = torch.rand(1, generator=g, dtype=torch.float64).item() * cumulative[row, -1].item()
        picks.append(int((cumulative[row] <= target).sum()))
    return order.gather(1, torch.tensor(picks)[:, None]).squeeze(1)


def _scores(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(16, 5000, generator=g) * 3
    if kind == "ties":  # coarse values: the drawn token often ties with others
        scores = (scores * 2).round() / 2
    elif kind == "flat":  # nuclei far wider than NUCLEUS_WIDTH: the full-sort branch
        scores = scores / 30
    elif kind == "signed_zeros_and_inf":
        scores[:, :100] = 0.0
        scores[:, 100:200] = -0.0
        scores[:, 200:1000] = -math.inf
    return scores


@pytest.mark.parametrize("top_p", [0.3, 0.9, 1.0])
@pytest.mark.parametrize("kind", ["distinct", "ties", "flat", "signed_zeros_and_inf"])
def test_draws_equal_full_sort_reference(kind, top_p):
    """Same draws as the reference, tied logits included (ranked in increasing token id)."""
    scores = _scores(kind)
    sampler = RowSampler(0, range(16), temperature=1.0, top_p=top_p, freq_penalty=0.0)
    generators = [torch.Generator().manual_seed(s) for s in range(16)]
    for step in range(3):  # successive steps: the generators must advance alike
        step_scores = scores.roll(step * 7, dims=1)
        drawn = sampler._sample(step_scores.clone())
        expected = _reference_draws(step_scores, generators, top_p)
        assert drawn.tolist() == expected.tolist()


def test_a_wide_nucleus_in_the_batch_leaves_other_rows_draws_alone():
    """One flat row sends the batch through the full sort; the peaked rows draw as they do alone."""
    g = torch.Generator().manual_seed(2)
    peaked = torch.randn(5, 8000, generator=g) * 4
    flat = torch.randn(1, 8000, generator=g) / 30
    batch = torch.cat([peaked[:2], flat, peaked[2:]])
    sampler = RowSampler(0, range(6), temperature=1.0, top_p=0.5, freq_penalty=0.0)
    alone = [RowSampler(0, [s], temperature=1.0, top_p=0.5, freq_penalty=0.0) for s in range(6)]
    widest = sampler._nucleus(batch, batch.logsumexp(-1, keepdim=True), _block_maxima(batch))[0].shape[1]
    assert widest > NUCLEUS_WIDTH  # the batch did take the full sort
    for _ in range(4):
        together = sampler._sample(batch.clone()).tolist()
        assert together == [alone[r]._sample(batch[r : r + 1].clone()).item() for r in range(6)]


def test_only_rows_whose_nucleus_the_top_blocks_miss_are_ranked_over_the_vocabulary(monkeypatch):
    """Rows peaked as a language model's (a few tokens far above the rest, a 49,152-token
    vocabulary) draw from the top blocks' candidates; flat rows are ranked over the vocabulary;
    every row draws what the full sort gives."""
    g = torch.Generator().manual_seed(3)
    peaked = torch.randn(6, 49152, generator=g) * 2.5
    for row in peaked:
        row[torch.randint(0, 49152, (3,), generator=g)] += torch.tensor([22.0, 21.0, 20.5])
    scores = torch.cat([peaked[:3], torch.randn(2, 49152, generator=g) / 30, peaked[3:]])
    ranked: list[int] = []
    rank_all = RowSampler._ranked

    def counting(self, rows, log_norm):
        ranked.append(rows.shape[0])
        return rank_all(self, rows, log_norm)

    monkeypatch.setattr(RowSampler, "_ranked", counting)
    sampler = RowSampler(0, range(8), temperature=1.0, top_p=0.3, freq_penalty=0.0)
    generators = [torch.Generator().manual_seed(s) for s in range(8)]
    for _ in range(3):
        assert sampler._sample(scores.clone()).tolist() == _reference_draws(scores, generators, 0.3).tolist()
    assert ranked == [2, 2, 2]  # the two flat rows, each step


@pytest.mark.parametrize("top_p, expected", [(0.7, [0.625, 0.375, 0.0, 0.0]), (1.0, [0.5, 0.3, 0.15, 0.05])])
def test_draw_frequencies_match_the_nucleus(top_p, expected):
    """4,000 seeded rows: each token's share within 4.5 standard errors of its nucleus probability."""
    n = 4000
    scores = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).expand(n, 4).contiguous()
    sampler = RowSampler(0, range(n), temperature=1.0, top_p=top_p, freq_penalty=0.0)
    counts = torch.bincount(sampler._sample(scores), minlength=4).double() / n
    for share, p in zip(counts.tolist(), expected):
        assert abs(share - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_temperature_flattens_the_draws():
    n = 4000
    scores = torch.log(torch.tensor([0.9, 0.1])).expand(n, 2).contiguous()
    hot = RowSampler(0, range(n), temperature=4.0, top_p=1.0, freq_penalty=0.0)
    share = (hot(torch.zeros(n, 0, dtype=torch.long), scores).argmax(-1) == 1).double().mean().item()
    p = 0.1**0.25 / (0.9**0.25 + 0.1**0.25)  # softmax(log p / 4)
    assert abs(share - p) <= 4.5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("broken", ["nan", "all_inf"])
def test_broken_logits_are_a_clear_error(broken):
    scores = torch.randn(3, 50)
    scores[1] = math.nan if broken == "nan" else -math.inf
    sampler = RowSampler(0, range(3), temperature=1.0, top_p=0.3, freq_penalty=0.0)
    with pytest.raises(ValueError, match="row 1's logits"):
        sampler(torch.zeros(3, 0, dtype=torch.long), scores)


def test_the_original_codes_penalty_counts_prompt_tokens_but_not_padding():
    """OpenAI's rule counts the completion only; the original ActAdd code also counted the
    prompt and its start token. Left padding (token 3 here) is never counted."""
    scores = torch.tensor([[3.0, 2.6, 0.0, 1.0]] * 2)
    # row 0: pad, pad, then prompt [0, 0]; row 1: prompt [3, 0, 0, 0]; no completion yet
    input_ids = torch.tensor([[3, 3, 0, 0], [3, 0, 0, 0]])
    openai = RowSampler(4, [0, 1], temperature=0, top_p=1.0, freq_penalty=1.0)
    assert openai(input_ids, scores.clone()).argmax(-1).tolist() == [0, 0]
    original = RowSampler(4, [0, 1], temperature=0, top_p=1.0, freq_penalty=1.0, prompt_starts=[2, 0])
    picks = original(input_ids, scores.clone()).argmax(-1).tolist()
    # row 0: token 0 twice in its prompt: 3.0 - 2 < 2.6; row 1: token 0 three times and token 3 once
    assert picks == [1, 1]
    # counted from position 0, its two pad tokens (3) would be penalised too: 1.5 - 2 < 0
    counted_pad = RowSampler(4, [0], temperature=0, top_p=1.0, freq_penalty=1.0, prompt_starts=[0])
    assert counted_pad(input_ids[:1], torch.tensor([[0.0, 0.0, 0.0, 1.5]])).argmax(-1).item() != 3
    skipped_pad = RowSampler(4, [0], temperature=0, top_p=1.0, freq_penalty=1.0, prompt_starts=[2])
    assert skipped_pad(input_ids[:1], torch.tensor([[0.0, 0.0, 0.0, 1.5]])).argmax(-1).item() == 3


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
