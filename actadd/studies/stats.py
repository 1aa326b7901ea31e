"""Confidence intervals for the studies, from scipy.stats."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): ``stat`` of ``values`` with a BCa bootstrap interval (scipy.stats.bootstrap).

    Constant values (e.g. a success rate of 0) have no spread to resample: the interval is the point.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"values must be 1D with at least 2 entries, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    estimate = float(stat(values))
    if np.all(values == values[0]):
        return estimate, estimate, estimate
    result = bootstrap(
        (values,), stat, n_resamples=n_resamples, confidence_level=confidence, rng=np.random.default_rng(seed)
    )
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)
