"""03 · Factual recall under steering: the answer's rank on one-token cloze prompts unsteered,
under the wedding vector at each strength, and under controls of the same size (random
directions, other topics' vectors); P@K and its mean change over K.

The notebook's parameters are read through the study (``study["n_random"]``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd import SteeringVector, next_token_logprobs, steering_vector
from actadd.studies.data import factual_cloze
from actadd.studies.evaluation.metrics import PAPER_KS, answer_ranks
from actadd.studies.evaluation.recall import precision_curves, random_direction_like
from actadd.studies.evaluation.stats import Estimate, cluster_mean
from actadd.studies.lifecycle.claims import Claim, below, within
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.sections.wedding_layers import WeddingGrid


def claims(p: Mapping[str, Any]) -> list[Claim]:
    negligible = p["negligible"]
    return [
        Claim("03.negligible", "With c = 1, steering changes P@K negligibly", "negligible change",
              "mean over K of P@K steered - unsteered, paired per prompt; bootstrap over prompts",
              within(-negligible, negligible), "points"),
        Claim("03.tuned_negligible", "At the tuned strength, steering changes P@K negligibly",
              "negligible (at c = 1)", "as 03.negligible, at 01's tuned coefficient", within(-negligible, negligible),
              "points", arm="tuned arm"),
        Claim("03.vs_random", "At the tuned strength, the wedding direction costs more recall than random "
              "directions of the same norm", "(not in the paper)", "wedding minus mean random-direction change, per "
              "prompt; bootstrap over prompts", below(0.0), "points", arm="control"),
        Claim("03.vs_topics", "At the tuned strength, the wedding vector costs recall like other topics' vectors "
              "of the same relative norm", "(not in the paper)", "wedding minus mean other-topic change, per "
              "prompt; bootstrap over prompts", within(-negligible, negligible), "points", arm="control"),
    ]  # fmt: skip


SECTION = Section(
    "03_factual_recall",
    "GPT-2-XL on LAMA ConceptNet, P@K for K from 1 to 100 with and without the layer-16 wedding vector: "
    "negligible change.",
    claims,
)

FINDINGS = """Layer {layer:int} ({source}); {n:int} cloze prompts from Google's analogy relations (not LAMA
ConceptNet).

- **At the paper's c = 1** (relative norm {paper_rel:num}) the mean change in P@K is {negligible:pts}: the claim of a
  negligible change (within ±{margin:num} points) **{v_negligible:verdict}**. Unsteered, P@1 is {p1:num}.
- **At the tuned strength** (c = {tuned:num}, relative norm {tuned_rel:num}) it is {tuned_negligible:pts}
  (**{v_tuned_negligible:verdict}**).
- **Controls at the tuned strength.** Against {n_random:int} random directions of the same per-position norm, the
  wedding vector's change differs by {vs_random:pts} (the claim that the wedding direction costs more
  **{v_vs_random:verdict}**); against other topics' vectors of the same relative norm by {vs_topics:pts} (the claim that
  it costs like them **{v_vs_topics:verdict}**).
"""


def cloze_prompts(study: Study, model: TransformersModel) -> pd.DataFrame:
    """The cloze prompts with one-token answers (offline: Google's analogy relations). Saved as ``prompts.csv``."""
    cloze = factual_cloze(model.tokenizer, study["data_source"], n=study["n_prompts"] or None, seed=study["seed"])
    return study.table(cloze.to_pandas(), "prompts")


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
    vector (``topic - ''`` at its layer) at its relative norm."""
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
            out[f"{topic.strip()} at c = {c:.3g}"] = Condition(unit.at_relative_norm(target.relative_norm),
                                                                "other topic", c)  # fmt: skip
    return out


@dataclass(frozen=True)
class Recall:
    """Every condition's answer ranks and P@K: the conditions (one row each, with its mean change
    over K against unsteered and its interval), the P@K curves of unsteered and the wedding
    vectors, each prompt's change per condition, and the top-1 predictions."""

    summary: pd.DataFrame
    curves: pd.DataFrame
    change: dict[str, np.ndarray]  # per condition, per prompt: mean over K of the hit change
    top1: pd.DataFrame

    def p_at_k(self) -> pd.DataFrame:
        """P@K by condition (rows) and K (columns)."""
        return self.curves.pivot(index="k", columns="condition", values="p_at_k").T


def recall(study: Study, model: TransformersModel, grid: WeddingGrid, cloze: pd.DataFrame) -> Recall:
    """Score every prompt under every condition and record the claims. Saved as
    ``mean_change.csv``, ``precision_at_k.csv`` and ``top1_predictions.csv``."""
    seed, paper, tuned = study["seed"], study["paper_coeff"], grid.tuned_coeff
    scored = conditions(model, grid.vectors, controls_at=(paper, tuned), n_random=study["n_random"],
                        other_topics=study["other_topics"], seed=seed)  # fmt: skip
    ranks, top1 = {}, {}
    with study.timed("scoring"):
        for name, condition in scored.items():
            logprobs = next_token_logprobs(model, list(cloze.prompt), condition.vector, batch_size=study["batch_size"])
            ranks[name] = answer_ranks(logprobs, cloze.answer_id.tolist())
            if condition.kind != "random direction":
                top1[name] = model.tokenizer.batch_decode(logprobs.argmax(dim=-1)[:, None])
    meta = pd.DataFrame([{"condition": name, "kind": c.kind, "coeff": c.coeff,
                          "relative_norm": 0.0 if c.vector is None else c.vector.relative_norm}
                         for name, c in scored.items()])  # fmt: skip
    hits = {name: np.stack([r < k for k in PAPER_KS], axis=1).astype(float) for name, r in ranks.items()}
    change = {name: (h - hits["unsteered"]).mean(axis=1) for name, h in hits.items()}
    prompt_ids = np.arange(len(cloze))

    def mean_change(values: np.ndarray) -> Estimate:
        return cluster_mean(values, prompt_ids, seed=seed)

    def versus(c: float, kind: str) -> Estimate:
        """Per prompt, the wedding change minus the mean change of the controls of ``kind`` at ``c``."""
        names = meta[(meta.kind == kind) & (meta.coeff == c)].condition
        return mean_change(change[f"wedding c = {c:.3g}"] - np.mean([change[n] for n in names], axis=0))

    summary = meta.assign(**pd.DataFrame([mean_change(change[n]).as_dict() for n in meta.condition]))
    curves = precision_curves({n: ranks[n] for n in ["unsteered", *(f"wedding c = {c:.3g}" for c in grid.vectors)]},
                              reference="unsteered", ks=PAPER_KS)  # fmt: skip
    study.record("03.negligible", mean_change(change[f"wedding c = {paper:.3g}"]))
    study.record("03.tuned_negligible", mean_change(change[f"wedding c = {tuned:.3g}"]))
    study.record("03.vs_random", versus(tuned, "random direction"))
    study.record("03.vs_topics", versus(tuned, "other topic"))
    predictions = pd.DataFrame({"prompt": cloze.prompt, "answer": cloze.answer,
                                **{f"top-1 {n}": t for n, t in top1.items()}})  # fmt: skip
    study.table(summary, "mean_change")
    study.table(curves, "precision_at_k")
    study.table(predictions, "top1_predictions")
    return Recall(summary, curves, change, predictions)


def figure(study: Study, grid: WeddingGrid, cloze: pd.DataFrame, result: Recall) -> None:
    """P@K over K per strength, and the mean change of the wedding vector beside its controls."""
    negligible = study["negligible"]
    fig, axes = plots.panels(2, title=f"{study['p_plus']!r} - {study['p_minus']!r} at layer {grid.setting.layer} on "
                             f"{study['model_name']}", panel=(6.6, 4.6))  # fmt: skip
    plots.curves(axes[0, 0], result.curves, "k", "p_at_k", low="p_low", high="p_high", hue="condition")
    plots.plain_log_axis(axes[0, 0], [1, 3, 10, 30, 100])
    axes[0, 0].set(xlabel="K", ylabel="P@K", ylim=(0, 1.02), title=f"P@K on {len(cloze)} cloze prompts (Wilson 95% CI)")
    axes[0, 0].legend(fontsize=8)
    strengths = {c: f"c = {c:.3g} (rel. norm {v.relative_norm:.2f})" for c, v in grid.vectors.items()}
    shown = result.summary[result.summary.kind != "unsteered"].assign(strength=lambda t: t.coeff.map(strengths))
    plots.by_setting(axes[0, 1], shown[shown.kind == "wedding"], "strength", "value", low="low", high="high",
                     fmt="D", color="C3", label="wedding")  # fmt: skip
    for kind, marker, dx in (("random direction", "o", -0.2), ("other topic", "s", 0.2)):
        rows = shown[shown.kind == kind]
        axes[0, 1].scatter([list(strengths).index(c) + dx for c in rows.coeff], rows.value, marker=marker, alpha=0.6,
                           s=14, label=kind)  # fmt: skip
    axes[0, 1].axhspan(-negligible, negligible, color="green", alpha=0.1, label="negligible margin")
    axes[0, 1].axhline(0, color="black", lw=1)
    axes[0, 1].set(ylabel="mean over K of P@K change from unsteered",
                   title="Wedding vector (bootstrap 95% CI) and controls")  # fmt: skip
    axes[0, 1].legend(fontsize=8)
    study.figure(fig, "factual_recall_pk")


def finish(study: Study, grid: WeddingGrid, cloze: pd.DataFrame, result: Recall) -> StudyRecord:
    """The study's record and "What it shows"."""
    paper, tuned, curves = study["paper_coeff"], grid.tuned_coeff, result.curves
    record = study.finish({
        "layer": grid.setting.layer, "coeffs": list(grid.vectors), "tuned_coeff": tuned, "grid.source": grid.source,
        "n_prompts": len(cloze), "relative_norms": {str(c): v.relative_norm for c, v in grid.vectors.items()},
    })  # fmt: skip
    study.prose(FINDINGS, layer=grid.setting.layer, source=grid.source, n=len(cloze), margin=100 * study["negligible"],
                paper_rel=grid.vectors[paper].relative_norm, tuned=tuned, tuned_rel=grid.vectors[tuned].relative_norm,
                p1=float(curves[(curves.condition == "unsteered") & (curves.k == 1)].p_at_k.iloc[0]),
                n_random=study["n_random"], **study.measured())  # fmt: skip
    return record
