"""Metrics: pure functions of numbers and texts (topic success, log-prob and perplexity,
P@K, diversity). Anything that loads a model or trains a scorer is in :mod:`.scorers`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from actadd.checks import integer, is_int
from actadd.studies.evaluation.text import WEDDING_WORDS, topic_word_count


def topic_success(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS) -> float:
    """The fraction of ``texts`` with at least one of ``words`` (the paper's success rate)."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    return float(np.mean([topic_word_count(text, words) > 0 for text in texts]))


def mean_token_logprob(token_logprobs: Sequence[torch.Tensor]) -> float:
    """Mean log-probability over all tokens of several 1D tensors (one per sentence), token-weighted."""
    flat = torch.cat([lp.reshape(-1).double() for lp in token_logprobs]) if len(token_logprobs) else torch.empty(0)
    if flat.numel() == 0:
        raise ValueError("no tokens to average: pass at least one non-empty log-prob tensor")
    return float(flat.mean())


def perplexity(mean_logprob: float | np.ndarray) -> float | np.ndarray:
    """exp(-mean token log-prob)."""
    return np.exp(-np.asarray(mean_logprob)) if np.ndim(mean_logprob) else float(np.exp(-mean_logprob))


# ---------------------------------------------------------------------------------------
# P@K and diversity

# The paper's 20 log-spaced K from 1 to 100 (rounded; duplicates among small K dropped).
PAPER_KS: tuple[int, ...] = tuple(int(k) for k in np.unique(np.round(np.logspace(0, 2, 20))))


def check_ks(ks: Sequence[int]) -> None:
    """K values for P@K: a non-empty list of positive integers."""
    if len(ks) == 0 or not all(is_int(k) and k >= 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks!r}")


def answer_ranks(logits: torch.Tensor | np.ndarray, answer_ids: Sequence[int]) -> np.ndarray:
    """0-based rank of each answer among the next-token logits, shape [N] from logits [N, vocab].

    Rank = how many tokens have a strictly higher logit (ties favour the answer).
    """
    logits = torch.as_tensor(logits)
    answers = torch.as_tensor(answer_ids, dtype=torch.long)
    if logits.ndim != 2 or logits.shape[0] != answers.shape[0]:
        raise ValueError(
            f"logits must be [N, vocab] with N = len(answer_ids) = {answers.shape[0]}, got {tuple(logits.shape)}"
        )
    answer_logits = logits.gather(1, answers[:, None])
    return (logits > answer_logits).sum(dim=1).cpu().numpy()


def precision_at_k(
    logits_or_ranks: torch.Tensor | np.ndarray, answer_ids: Sequence[int] | None = None, ks: Sequence[int] = PAPER_KS
) -> pd.Series:
    """P@K: the fraction of prompts whose answer is among the top K next tokens, indexed by K.

    Give next-token logits [N, vocab] with ``answer_ids`` [N], or 0-based ranks [N] alone.
    """
    check_ks(ks)
    values = torch.as_tensor(logits_or_ranks)
    if values.ndim == 2:
        if answer_ids is None:
            raise ValueError("logits [N, vocab] need answer_ids; pass 0-based ranks [N] to go without")
        ranks = answer_ranks(values, answer_ids)
    elif values.ndim == 1:
        ranks = values.cpu().numpy()
    else:
        raise ValueError(f"expected logits [N, vocab] or ranks [N], got shape {tuple(values.shape)}")
    if len(ranks) == 0:
        raise ValueError("no prompts to score")
    return pd.Series({int(k): float(np.mean(ranks < k)) for k in ks}, name="precision_at_k").rename_axis("k")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the set, whitespace words."""
    integer(n, "n", minimum=1)
    grams = [tuple(words[i : i + n]) for text in texts for words in [text.split()] for i in range(len(words) - n + 1)]
    if not grams:
        raise ValueError(f"texts hold no {n}-grams; pass longer texts")
    return len(set(grams)) / len(grams)
