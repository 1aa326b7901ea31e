"""Factual recall (03): the conditions the cloze prompts are scored under (the wedding vector and
controls of the same size: random directions, other topics), the answer's rank under each, and
P@K curves with their paired differences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from nnsight.modeling.transformers import TransformersModel

from actadd import SteeringVector, next_token_logprobs, steering_vector
from actadd.studies.evaluation.metrics import PAPER_KS, answer_ranks, check_ks
from actadd.studies.evaluation.stats import paired_proportion_difference, proportion_of


def precision_curves(
    ranks: Mapping[str, Sequence[int]], *, reference: str, ks: Sequence[int] = PAPER_KS, seed: int = 0
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


@dataclass(frozen=True)
class Condition:
    """One way the cloze prompts are scored: a vector (None: unsteered), what kind of vector it
    is (``unsteered``, ``wedding``, ``random direction``, ``other topic``) and the wedding
    coefficient it stands beside."""

    vector: SteeringVector | None
    kind: str
    coeff: float


def conditions(
    model: TransformersModel,
    wedding: Mapping[float, SteeringVector],
    *,
    controls_at: Sequence[float],
    n_random: int,
    other_topics: Sequence[str],
    seed: int = 0,
) -> dict[str, Condition]:
    """Unsteered, the wedding vector at each of its coefficients, and at each coefficient of
    ``controls_at`` two controls of the same size: ``n_random`` random directions with the
    wedding vector's per-position norm, and each of ``other_topics`` built like the wedding
    vector (``topic - ''`` at its layer) scaled to its relative norm."""
    out = {"unsteered": Condition(None, "unsteered", 0.0)}
    out |= {f"wedding c = {c:.3g}": Condition(v, "wedding", c) for c, v in wedding.items()}
    for c in controls_at:
        target = wedding[c]
        for i in range(n_random):
            out[f"random {i} at c = {c:.3g}"] = Condition(
                random_direction_like(target, seed=seed + i), "random direction", c
            )
        for topic in other_topics:
            unit = steering_vector(model, topic, "", layer=target.layer, coeff=1.0)
            out[f"{topic.strip()} at c = {c:.3g}"] = Condition(unit * (target.relative_norm / unit.relative_norm),
                                                                "other topic", c)  # fmt: skip
    return out


def condition_ranks(
    model: TransformersModel,
    prompts: Sequence[str],
    answer_ids: Sequence[int],
    conditions: Mapping[str, Condition],
    *,
    batch_size: int = 64,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Under each condition, every prompt's answer rank (:func:`~.metrics.answer_ranks`), and the
    top-1 next token of each condition that is not a random direction."""
    ranks, top1 = {}, {}
    for name, condition in conditions.items():
        logprobs = next_token_logprobs(model, list(prompts), condition.vector, batch_size=batch_size)
        ranks[name] = answer_ranks(logprobs, answer_ids)
        if condition.kind != "random direction":
            top1[name] = model.tokenizer.batch_decode(logprobs.argmax(dim=-1)[:, None])
    return ranks, top1
