"""Factual recall: P@K curves with their paired differences, and a control vector of the same
size as a steering vector in a random direction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from actadd import SteeringVector
from actadd.studies.evaluation.metrics import PAPER_KS, check_ks
from actadd.studies.evaluation.stats import paired_proportion_difference, proportion_of


def precision_curves(
    ranks: Mapping[str, Sequence[int] | np.ndarray], *, reference: str, ks: Sequence[int] = PAPER_KS, seed: int = 0
) -> pd.DataFrame:
    """P@K of each condition and its paired difference from ``reference``, with 95% CIs.

    ``ranks[name]`` holds each prompt's 0-based answer rank under that condition (same prompts,
    same order, in every condition). P@K is a share of prompts (Wilson interval); the difference
    pairs each prompt's hit under the condition with its hit under the reference (Newcombe's
    paired interval, which does not collapse to a point when every pair agrees). Columns: condition, k,
    p_at_k, p_low, p_high, diff, diff_low, diff_high (the reference's diff is 0).
    """
    if reference not in ranks:
        raise ValueError(f"reference {reference!r} is not one of the conditions {list(ranks)}")
    arrays = {name: np.asarray(r) for name, r in ranks.items()}
    sizes = {name: len(r) for name, r in arrays.items()}
    if len(set(sizes.values())) != 1 or min(sizes.values()) < 2:
        raise ValueError(f"every condition needs the same prompts (at least 2), got sizes {sizes}")
    check_ks(ks)
    rows = []
    for name, r in arrays.items():
        for k in ks:
            hits = r < k
            share = proportion_of(hits)
            diff = paired_proportion_difference(hits, arrays[reference] < k)
            rows.append({"condition": name, "k": int(k), "p_at_k": share.value, "p_low": share.low,
                         "p_high": share.high, "diff": diff.value, "diff_low": diff.low,
                         "diff_high": diff.high})  # fmt: skip
    return pd.DataFrame(rows)


def random_direction_like(vector: SteeringVector, seed: int = 0) -> SteeringVector:
    """A control: at every position the same norm as ``vector``, in a seeded random direction.

    Positions where ``vector`` is zero (the start token, which cancels) stay zero, and the
    relative norm is unchanged by construction.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(vector.vector.shape, generator=generator, dtype=torch.float32)
    norms = vector.vector.float().norm(dim=-1, keepdim=True).cpu()
    random = noise / noise.norm(dim=-1, keepdim=True) * norms
    return replace(
        vector,
        vector=random.to(vector.vector.device, vector.vector.dtype),
        p_plus=f"random direction (seed {seed}) with the norms of {vector.p_plus!r} - {vector.p_minus!r}",
    )
