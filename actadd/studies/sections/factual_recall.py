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
from actadd.studies.sections.wedding_layers import TUNED, WeddingArms, paper_label


def claims(p: Mapping[str, Any]) -> list[Claim]:
    negligible = p["negligible"]
    return [
        Claim("03.negligible", "With c = 1, steering changes P@K negligibly", "negligible change",
              "mean over K of P@K steered - unsteered, at a third of the depth (the paper's layer 16 of 48), paired "
              "per prompt; bootstrap over prompts", within(-negligible, negligible), "points"),
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

FINDINGS = """The paper's arm at layer {layer:int}, a third of the depth as the paper's layer 16 of 48; the tuned arm
at layer {tuned_layer:int} ({source}); {n:int} cloze prompts from Google's analogy relations (not LAMA ConceptNet).

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
    is (``unsteered``, ``wedding``, ``random direction``, ``other topic``) and the wedding arm it
    stands beside (its label)."""

    vector: SteeringVector | None
    kind: str
    arm: str


def conditions(
    model: TransformersModel,
    wedding: Mapping[str, SteeringVector],
    *,
    controls_at: Sequence[str],
    n_random: int,
    other_topics: Sequence[str],
    seed: int = 0,
) -> dict[str, Condition]:
    """Unsteered, the wedding vector of each arm (``wedding``: its label -> its vector), and beside
    each arm of ``controls_at`` two controls of the same size: ``n_random`` random directions with
    the wedding vector's per-position norm, and each of ``other_topics`` built like the wedding
    vector (``topic - ''`` at its layer) at its relative norm."""
    out = {"unsteered": Condition(None, "unsteered", "")}
    out |= {f"wedding, {arm}": Condition(v, "wedding", arm) for arm, v in wedding.items()}
    for arm in controls_at:
        target = wedding[arm]
        for i in range(n_random):
            out[f"random {i} beside {arm}"] = Condition(
                random_direction_like(target, seed=seed + i), "random direction", arm
            )
        for topic in other_topics:
            unit = steering_vector(model, topic, "", layer=target.layer, coeff=1.0)
            out[f"{topic.strip()} beside {arm}"] = Condition(unit.at_relative_norm(target.relative_norm),
                                                              "other topic", arm)  # fmt: skip
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


def recall(study: Study, model: TransformersModel, arms: WeddingArms, cloze: pd.DataFrame) -> Recall:
    """Score every prompt under every condition and record the claims. Saved as
    ``mean_change.csv``, ``precision_at_k.csv`` and ``top1_predictions.csv``."""
    seed, paper = study["seed"], paper_label(study["paper_coeff"])
    wedding = arms.vectors()
    scored = conditions(model, wedding, controls_at=(paper, TUNED), n_random=study["n_random"],
                        other_topics=study["other_topics"], seed=seed)  # fmt: skip
    ranks, top1 = {}, {}
    with study.timed("scoring"):
        for name, condition in scored.items():
            logprobs = next_token_logprobs(model, list(cloze.prompt), condition.vector, batch_size=study["batch_size"])
            ranks[name] = answer_ranks(logprobs, cloze.answer_id.tolist())
            if condition.kind != "random direction":
                top1[name] = model.tokenizer.batch_decode(logprobs.argmax(dim=-1)[:, None])
    meta = pd.DataFrame([{"condition": name, "kind": c.kind, "arm": c.arm,
                          "layer": None if c.vector is None else c.vector.layer,
                          "relative_norm": 0.0 if c.vector is None else c.vector.relative_norm}
                         for name, c in scored.items()])  # fmt: skip
    hits = {name: np.stack([r < k for k in PAPER_KS], axis=1).astype(float) for name, r in ranks.items()}
    change = {name: (h - hits["unsteered"]).mean(axis=1) for name, h in hits.items()}
    prompt_ids = np.arange(len(cloze))

    def mean_change(values: np.ndarray) -> Estimate:
        return cluster_mean(values, prompt_ids, seed=seed)

    def versus(arm: str, kind: str) -> Estimate:
        """Per prompt, the wedding change minus the mean change of the controls of ``kind`` beside ``arm``."""
        names = meta[(meta.kind == kind) & (meta.arm == arm)].condition
        return mean_change(change[f"wedding, {arm}"] - np.mean([change[n] for n in names], axis=0))

    summary = meta.assign(**pd.DataFrame([mean_change(change[n]).as_dict() for n in meta.condition]))
    curves = precision_curves({n: ranks[n] for n in ["unsteered", *(f"wedding, {arm}" for arm in wedding)]},
                              reference="unsteered", ks=PAPER_KS)  # fmt: skip
    study.record("03.negligible", mean_change(change[f"wedding, {paper}"]))
    study.record("03.tuned_negligible", mean_change(change[f"wedding, {TUNED}"]))
    study.record("03.vs_random", versus(TUNED, "random direction"))
    study.record("03.vs_topics", versus(TUNED, "other topic"))
    predictions = pd.DataFrame({"prompt": cloze.prompt, "answer": cloze.answer,
                                **{f"top-1 {n}": t for n, t in top1.items()}})  # fmt: skip
    study.table(summary, "mean_change")
    study.table(curves, "precision_at_k")
    study.table(predictions, "top1_predictions")
    return Recall(summary, curves, change, predictions)


def figure(study: Study, arms: WeddingArms, cloze: pd.DataFrame, result: Recall) -> None:
    """P@K over K per arm, and the mean change of the wedding vector beside its controls, per arm."""
    negligible = study["negligible"]
    fig, axes = plots.panels(2, title=f"{study['p_plus']!r} - {study['p_minus']!r} on {study['model_name']}",
                             panel=(6.8, 4.8))  # fmt: skip
    plots.curves(axes[0, 0], result.curves, "k", "p_at_k", low="p_low", high="p_high", hue="condition")
    plots.plain_log_axis(axes[0, 0], [1, 3, 10, 30, 100])
    axes[0, 0].set(xlabel="K", ylabel="P@K", ylim=(0, 1.02), title=f"P@K on {len(cloze)} cloze prompts (Wilson 95% CI)")
    axes[0, 0].legend(fontsize=8)
    labels = {arm: f"{arm} (layer {v.layer}, rel. norm {v.relative_norm:.2f})" for arm, v in arms.vectors().items()}
    shown = result.summary[result.summary.kind != "unsteered"].assign(setting=lambda t: t.arm.map(labels))
    plots.by_setting(axes[0, 1], shown[shown.kind == "wedding"], "setting", "value", low="low", high="high",
                     fmt="D", color="C3", label="wedding", horizontal=True)  # fmt: skip
    for kind, marker, dy in (("random direction", "o", -0.2), ("other topic", "s", 0.2)):
        rows = shown[shown.kind == kind]
        axes[0, 1].scatter(rows.value, [list(labels).index(a) + dy for a in rows.arm], marker=marker, alpha=0.6,
                           s=14, label=kind)  # fmt: skip
    axes[0, 1].axvspan(-negligible, negligible, color="green", alpha=0.1, label="negligible margin")
    axes[0, 1].axvline(0, color="black", lw=1)
    axes[0, 1].set(xlabel="mean over K of P@K change from unsteered",
                   title="Wedding vector (bootstrap 95% CI) and controls")  # fmt: skip
    axes[0, 1].legend(fontsize=8)
    study.figure(fig, "factual_recall_pk")


def finish(study: Study, arms: WeddingArms, cloze: pd.DataFrame, result: Recall) -> StudyRecord:
    """The study's record and "What it shows"."""
    paper, curves = arms.paper[study["paper_coeff"]], result.curves
    record = study.finish({
        "paper_layer": arms.paper_layer, "tuned_layer": arms.tuned.layer, "tuned_coeff": arms.tuned.coeff,
        "arms.source": arms.source, "n_prompts": len(cloze),
        "relative_norms": {arm: v.relative_norm for arm, v in arms.vectors().items()},
    })  # fmt: skip
    study.prose(FINDINGS, layer=arms.paper_layer, tuned_layer=arms.tuned.layer, source=arms.source, n=len(cloze),
                margin=100 * study["negligible"], paper_rel=paper.relative_norm, tuned=arms.tuned.coeff,
                tuned_rel=arms.tuned.relative_norm,
                p1=float(curves[(curves.condition == "unsteered") & (curves.k == 1)].p_at_k.iloc[0]),
                n_random=study["n_random"], **study.measured())  # fmt: skip
    return record
