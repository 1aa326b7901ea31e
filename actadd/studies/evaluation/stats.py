"""Estimates with confidence intervals, from scipy.stats.

- a proportion of independent draws: Wilson (or Clopper-Pearson) via ``scipy.stats.binomtest``;
- a mean with several samples per prompt: a bootstrap that resamples prompts, not samples;
- a comparison of two methods on the same prompts and seeds: the paired per-prompt
  difference, bootstrapped over prompts;
- a single-level continuous statistic: ``scipy.stats.bootstrap`` (BCa);
- a median of a handful of independent values (timings): the distribution-free interval of
  order statistics (a sign test, ``scipy.stats.quantile_test``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from actadd.checks import integer, real

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A measured value with its confidence interval: ``value [low, high]`` over ``n`` units."""

    value: float
    low: float
    high: float
    n: int
    method: str  # how the interval was made, e.g. "wilson", "bootstrap over 64 prompts"

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "method": self.method}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Estimate:
        return cls(
            float(record["value"]), float(record["low"]), float(record["high"]), int(record["n"]), str(record["method"])
        )

    def columns(self, name: str) -> dict[str, float]:
        """The estimate as a table's columns: ``name``, ``name_low``, ``name_high``."""
        return {name: self.value, f"{name}_low": self.low, f"{name}_high": self.high}

    def map(self, f: Callable[[float], float], *, increasing: bool = True) -> Estimate:
        """The estimate through a monotone function (an interval of X gives one of f(X))."""
        low, high = (f(self.low), f(self.high)) if increasing else (f(self.high), f(self.low))
        return Estimate(f(self.value), low, high, self.n, self.method)


def proportion(successes: int, n: int, *, method: str = "wilson", confidence: float = CONFIDENCE) -> Estimate:
    """``successes`` of ``n`` independent draws with a Wilson (or ``"exact"``: Clopper-Pearson)
    interval; 0 of 32 has an upper bound near 0.11, never a zero-width interval."""
    n = integer(n, "n", minimum=1)
    successes = integer(successes, "successes", minimum=0)
    if successes > n:
        raise ValueError(f"successes ({successes}) cannot exceed n ({n})")
    if method not in ("wilson", "exact"):
        raise ValueError(f"method must be 'wilson' or 'exact' (Clopper-Pearson), got {method!r}")
    interval = scipy_stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method=method)
    return Estimate(successes / n, float(interval.low), float(interval.high), n, method)


def proportion_of(hits: Sequence[bool] | np.ndarray, **kwargs: Any) -> Estimate:
    """:func:`proportion` of a 0/1 array of independent draws."""
    x = np.asarray(hits, dtype=bool)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"hits must be a non-empty 1D array of 0/1, got shape {x.shape}")
    return proportion(int(x.sum()), len(x), **kwargs)


def paired_proportion_difference(
    x: Sequence[bool] | np.ndarray, y: Sequence[bool] | np.ndarray, *, confidence: float = CONFIDENCE
) -> Estimate:
    """Share of ``x`` minus share of ``y`` where row i of both is one pair of draws (same prompt,
    same seed), with Newcombe's hybrid-score interval for paired proportions (his method 10,
    built on the two Wilson intervals and the pairs' correlation). Unlike a bootstrap it does
    not collapse to a point when every pair agrees: 0 of 128 against 0 of 128 is not [0, 0]."""
    a_hits, b_hits = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
    if a_hits.shape != b_hits.shape or a_hits.ndim != 1 or len(a_hits) == 0:
        raise ValueError(f"x and y must be non-empty 1D 0/1 arrays that pair up, got {a_hits.shape} and {b_hits.shape}")
    n = len(a_hits)
    both, only_x = int(np.sum(a_hits & b_hits)), int(np.sum(a_hits & ~b_hits))
    only_y, neither = int(np.sum(~a_hits & b_hits)), int(np.sum(~a_hits & ~b_hits))
    px, py = proportion(both + only_x, n, confidence=confidence), proportion(both + only_y, n, confidence=confidence)
    denominator = (both + only_x) * (only_y + neither) * (both + only_y) * (only_x + neither)
    phi = (both * neither - only_x * only_y) / np.sqrt(denominator) if denominator else 0.0
    delta = px.value - py.value
    down = np.sqrt(
        (px.value - px.low) ** 2 - 2 * phi * (px.value - px.low) * (py.high - py.value) + (py.high - py.value) ** 2
    )
    up = np.sqrt(
        (px.high - px.value) ** 2 - 2 * phi * (px.high - px.value) * (py.value - py.low) + (py.value - py.low) ** 2
    )
    return Estimate(
        delta, float(max(-1.0, delta - down)), float(min(1.0, delta + up)), n, "Newcombe paired (method 10)"
    )


def proportion_difference(
    x: Sequence[bool] | np.ndarray, y: Sequence[bool] | np.ndarray, *, confidence: float = CONFIDENCE
) -> Estimate:
    """Share of ``x`` minus share of ``y`` for two independent samples of 0/1 draws, with
    Newcombe's hybrid-score interval (his method 10 for independent proportions, by
    statsmodels), which does not collapse to a point when both shares are 0 or 1."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    a_hits, b_hits = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
    if a_hits.ndim != 1 or b_hits.ndim != 1 or len(a_hits) == 0 or len(b_hits) == 0:
        raise ValueError(f"x and y must be non-empty 1D 0/1 arrays, got shapes {a_hits.shape} and {b_hits.shape}")
    alpha = 1 - real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    counts = int(a_hits.sum()), len(a_hits), int(b_hits.sum()), len(b_hits)
    low, high = confint_proportions_2indep(*counts, method="newcomb", compare="diff", alpha=alpha)
    delta = counts[0] / counts[1] - counts[2] / counts[3]
    return Estimate(delta, float(low), float(high), counts[1] + counts[3], "Newcombe, two samples (method 10)")


def cluster_mean(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """The mean of ``values`` with a percentile bootstrap that resamples whole ``groups``
    (prompts), so several samples of one prompt count as one unit of evidence. NaN values
    (an unscorable completion) are left out."""
    x, g = np.asarray(values, dtype=float), np.asarray(groups)
    if x.shape != g.shape or x.ndim != 1:
        raise ValueError(f"values and groups must be 1D of one length, got {x.shape} and {g.shape}")
    keep = ~np.isnan(x)
    x, g = x[keep], g[keep]
    _, group_index = np.unique(g, return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(x) else 0
    if n_groups < 2:
        raise ValueError(f"need at least 2 groups with values to resample, got {n_groups}")
    sums = np.bincount(group_index, weights=x, minlength=n_groups)
    counts = np.bincount(group_index, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_groups, size=(integer(n_resamples, "n_resamples", minimum=100), n_groups))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = 1 - real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    method = "bootstrap over prompts" if n_groups < len(x) else "bootstrap"
    return Estimate(float(x.mean()), float(low), float(high), n_groups, f"{method} ({n_groups})")


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    **kwargs: Any,
) -> Estimate:
    """Mean of ``a - b`` where row i of both was measured on the same prompt and seed, with a
    bootstrap over ``groups`` (prompts; default: every row its own group)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"a and b must pair up row by row, got shapes {x.shape} and {y.shape}")
    return cluster_mean(x - y, np.arange(len(x)) if groups is None else np.asarray(groups), **kwargs)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable = np.mean,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): ``stat`` of ``values`` with a BCa bootstrap interval (scipy.stats.bootstrap).

    For a continuous statistic of independent values (a median time, a mean log-prob).
    Constant values have no spread to resample and give the point: use :func:`proportion`
    for 0/1 outcomes.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"values must be 1D with at least 2 entries, got shape {x.shape}")
    real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    estimate = float(stat(x))
    if np.all(x == x[0]):
        return estimate, estimate, estimate
    result = scipy_stats.bootstrap(
        (x,), stat, n_resamples=n_resamples, confidence_level=confidence, rng=np.random.default_rng(seed)
    )
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)


def median_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high): the median of independent ``values`` with its distribution-free
    interval, the order statistics a sign test puts around it (``scipy.stats.quantile_test``).

    Exact for any continuous distribution, where a bootstrap of a few values is not: resampling
    4 values cannot show how far their median may be from the truth. Too few values for
    ``confidence`` give NaN bounds (unresolved): fewer than :func:`fewest_for_median_ci`, 6 at
    95%, since [min, max] of 5 values covers the median only 94% of the time.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < 1:
        raise ValueError(f"values must be 1D with at least 1 entry, got shape {x.shape}")
    real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    interval = scipy_stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(confidence)
    return float(np.median(x)), float(interval.low), float(interval.high)


def fewest_for_median_ci(confidence: float = CONFIDENCE) -> int:
    """The fewest independent values whose median :func:`median_ci` gives both bounds at
    ``confidence``: 6 at 95%. [min, max] of n values misses the median with probability
    2 / 2^n, so the count is about log2(2 / (1 - confidence)); it is read off ``median_ci``
    itself, so that the two never disagree at a boundary."""
    real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    if confidence == 1:
        raise ValueError("confidence must be below 1: no finite number of values gives a 100% interval")
    n = max(1, int(np.log2(2 / (1 - confidence))))
    while np.isnan(median_ci(np.arange(float(n)), confidence)[1:]).any():
        n += 1
    return n


def median_estimate(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """:func:`median_ci` as an :class:`Estimate`."""
    median, low, high = median_ci(values, confidence)
    return Estimate(median, low, high, len(values), "order statistics (sign test)")


def bootstrap_estimate(values: Sequence[float] | np.ndarray, stat: Callable = np.mean, **kwargs: Any) -> Estimate:
    """:func:`bootstrap_ci` as an :class:`Estimate`."""
    value, low, high = bootstrap_ci(values, stat, **kwargs)
    return Estimate(value, low, high, len(values), "bootstrap (BCa)")


def bootstrap_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.median,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """``stat(a) - stat(b)`` for two independent samples, with a percentile bootstrap that
    resamples each sample on its own."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"each sample needs at least 2 values, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    draws = [
        stat(rng.choice(x, len(x))) - stat(rng.choice(y, len(y)))
        for _ in range(integer(n_resamples, "n_resamples", minimum=100))
    ]
    alpha = 1 - real(confidence, "confidence", minimum=0, maximum=1, open_minimum=True)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(stat(x) - stat(y)), float(low), float(high), len(x) + len(y), "bootstrap, two samples")


@dataclass(frozen=True)
class BestSet:
    """A confidence set for the best of ``K`` settings measured on the same draws: the empirical
    best (``best``, ties to the earlier setting), the settings not significantly worse than it
    (``members``, the best included) and each other setting's Holm-adjusted p-value."""

    best: int
    members: tuple[int, ...]
    adjusted: dict[int, float]

    def members_mask(self, k: int) -> list[bool]:
        """For each of ``k`` settings, whether it is in the set."""
        return [i in self.members for i in range(k)]

    def depth_estimate(self, n_layers: int) -> Estimate:
        """Where the best layer lies, as ``layer / n_layers``: the empirical best's depth, and the
        set's shallowest and deepest depths as the interval (settings are layers 0..K-1)."""
        depths = [m / n_layers for m in self.members]
        return Estimate(self.best / n_layers, min(depths), max(depths), len(self.adjusted) + 1,
                        "confidence set for the best: one-sided exact McNemar against the empirical best, Holm, 95%")  # fmt: skip


def best_confidence_set(hits: Sequence[Sequence[bool]] | np.ndarray, *, alpha: float = 1 - CONFIDENCE) -> BestSet:
    """The settings not significantly worse than the best, from 0/1 outcomes ``[K, n]`` on shared
    draws (row ``i`` of every setting drawn with the same seed).

    Each other setting is compared with the empirical best by a one-sided exact McNemar test on the
    discordant draws (the best hit and it missed, or the reverse: under "as good", the best wins
    each discordant draw with probability 1/2), and the p-values are Holm-corrected at family-wise
    ``alpha``; a setting stays unless rejected: a multiple comparison with the best, in the spirit
    of Hsu's MCB. The best is picked from the same draws, so the coverage is near, not exactly,
    1 - ``alpha``: simulated with 30 settings of 200 draws and the true best within 0.0001 of one
    to three others, the set missed it in 3.6-5.0% of 2,000 runs."""
    outcomes = np.asarray(hits, dtype=bool)
    if outcomes.ndim != 2 or outcomes.shape[1] == 0:
        raise ValueError(f"hits must be [settings, draws] with at least one draw, got shape {outcomes.shape}")
    best = int(np.argmax(outcomes.mean(axis=1)))  # the first of the highest
    others = [i for i in range(len(outcomes)) if i != best]
    p_values = []
    for i in others:
        wins = int((outcomes[best] & ~outcomes[i]).sum())
        losses = int((~outcomes[best] & outcomes[i]).sum())
        tested = scipy_stats.binomtest(wins, wins + losses, 0.5, alternative="greater") if wins + losses else None
        p_values.append(1.0 if tested is None else float(tested.pvalue))
    adjusted = multipletests(p_values, method="holm")[1].tolist() if p_values else []
    members = sorted([best, *(i for i, p in zip(others, adjusted) if p > alpha)])
    return BestSet(best, tuple(members), dict(zip(others, adjusted)))
