"""01 · The wedding topic, layer by layer: the paper's arm (every layer at c = 1), a tuned arm
(a layer x strength probe), the methods that followed (the mean-difference vector, prompting),
each chosen on the selection stream and confirmed on fresh draws; and the setting 01 hands to
02 and 03 (:class:`WeddingSetting`, read back by :func:`wedding_grid`).

The notebook's parameters are read through the study (``study["prompt"]``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

import actadd
from actadd.studies.data import topic_pairs
from actadd.studies.evaluation.stats import Estimate, paired_proportion_difference, proportion_of
from actadd.studies.evaluation.topic import (
    best_layer_depth,
    best_setting,
    coefficient_grid,
    topic_hits,
    topic_sweep,
    tuned_setting,
)
from actadd.studies.lifecycle.claims import Claim, above, below
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.streams import CONFIRM, SELECT
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import model_description

CONFIRMED = "(confirmation stream)"
MEAN_DIFFERENCE_PAPER = "(not in the paper; Im & Li 2025: the mean of differences is the best linear direction)"
PROMPTING_PAPER = "(not in the paper; AxBench, Wu et al. 2025: prompting ahead of every steering method)"
MEAN_DIFFERENCE_METRIC = "the mean difference of contrast pairs (mean over each text's tokens) added at every position"


def claims(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("01.paper_best", "At the best layer with c = 1, more than 90% of completions mention a wedding word",
              "> 90% (GPT-2-XL, layer 6)", f"share of fresh completions {CONFIRMED} at the layer chosen on the "
              "selection stream; Wilson", above(0.9), "percent"),
        Claim("01.unsteered", "Unsteered, about 2% of completions mention a wedding word", "about 2%",
              f"share of fresh unsteered completions {CONFIRMED}; Wilson", below(0.05), "percent"),
        Claim("01.paper_gain", "Steering with c = 1 at the best layer raises that share", "+88 points (90% vs 2%)",
              f"steered minus unsteered on the same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.layer1", "Steering is effective from layer 1 (c = 1)", "effective from layer 1",
              f"steered at layer 1 minus unsteered, same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.early_peak", "The best layer lies in the first quarter of the depth (c = 1)",
              "layer 6 of 48 (0.125)", "best layer / number of layers on the selection sweep; bootstrap of the argmax",
              below(0.25), "ratio"),
        Claim("01.tuned_best", "At a tuned strength, more than 90% of completions mention a wedding word",
              "> 90% (at c = 1)", f"share of fresh completions {CONFIRMED} at the tuned layer and coefficient; "
              "Wilson", above(0.9), "percent", arm="tuned arm"),
        Claim("01.meandiff", "At the tuned arm's layer and relative norm, ActAdd's vector mentions weddings about as "
              f"often as the mean-difference vector or more (at most {100 * p['margin']:g} points less)",
              MEAN_DIFFERENCE_PAPER, f"share with a wedding word, ActAdd minus {MEAN_DIFFERENCE_METRIC} (the tuned arm's "
              f"layer and relative norm); same seeds {CONFIRMED}; Newcombe paired interval", above(-p["margin"]),
              "points", arm="successors"),
        Claim("01.better_vs_prompting", "The better steering vector mentions weddings about as often as prompting or "
              f"more (at most {100 * p['margin']:g} points less)", PROMPTING_PAPER,
              "share with a wedding word, the better tuned arm (ActAdd or the mean difference, whichever did better on "
              f"the selection probe) minus prompting; same seeds {CONFIRMED}; Newcombe paired interval",
              above(-p["margin"]), "points", arm="successors"),
    ]  # fmt: skip


SECTION = Section(
    "01_wedding_layers",
    "GPT-2-XL (48 layers), p+ = ' weddings', p- = '', c = 1, 200 completions per layer: > 90% of completions "
    "mention weddings at the best layer vs about 2% unsteered; effective from layer 1, rising to about layer 6, "
    "then declining.",
    claims,
)

FINDINGS = """- **The paper's arm (c = 1).** On the selection stream the best of {n_layers:int} layers was layer
  {paper_layer:int} (relative norm {paper_norm:num}). On {n:int} fresh draws there, {paper_best:pct} of completions
  mention a wedding word, against {unsteered:pct} unsteered: the paper's "> 90%" claim **{v_paper_best:verdict}**, its
  "about 2% unsteered" claim **{v_unsteered:verdict}**. The paired gain is {paper_gain:pts} (**{v_paper_gain:verdict}**);
  at layer 1 it is {layer1:pts} (**{v_layer1:verdict}**).
- **Where the best layer lies.** Best layer / depth = {early_peak:num}; the paper's peak sits at 6 of 48 (0.125); the
  claim that the peak lies in the first quarter **{v_early_peak:verdict}**.
- **The tuned arm.** The probe chose layer {tuned_layer:int} at c = {tuned_coeff:num} (relative norm {tuned_norm:num}),
  and on fresh draws {tuned_best:pct} of completions mention a wedding word (**{v_tuned_best:verdict}**). Its fluency
  cost: a geometric-mean perplexity of {tuned_ppl:num} under {judge}, against {base_ppl:num} unsteered.
- **The methods that followed.** The mean-difference vector of {n_pairs:int} contrast pairs (wedding and other
  sentences), probed and tuned by the same rule, chose layer {md_layer:int} at relative norm {md_norm:num}. At the
  tuned arm's own layer and relative norm, ActAdd minus the mean difference is {meandiff:pts} (the claim that ActAdd
  does about as well or better **{v_meandiff:verdict}**). The better of the two on the selection stream, {better},
  minus prompting is {better_vs_prompting:pts} (the claim that it does about as well as prompting or better
  **{v_better_vs_prompting:verdict}**).
- **What differs from the paper.** The model ({model}, {n_layers:int} layers, for GPT-2-XL's 48), the sample sizes
  ({select:int} selection draws per layer and {n:int} confirmation draws instead of 200 per layer), and the judge of
  fluency ({judge}, which the paper did not use for this experiment).
"""


# --- the hand-off to 02 and 03 --------------------------------------------------------------


@dataclass(frozen=True)
class WeddingSetting:
    """The tuned arm's setting that 01 chose for ' weddings' - '', which 02 and 03 steer with: a
    block index and the strength as a relative norm (it transfers between models; each study
    computes the coefficient that gives it on its own model)."""

    KEY: ClassVar[str] = "wedding_setting"
    layer: int
    relative_norm: float


@dataclass(frozen=True)
class WeddingGrid:
    """The vectors a topic study (02, 03) steers with: ``p_plus - p_minus`` at the setting's
    layer for each coefficient of its grid and for the tuned strength, and where the setting
    came from (a phrase for the prose)."""

    setting: WeddingSetting
    source: str
    vectors: dict[float, actadd.SteeringVector]  # {coeff: vector}, coefficients increasing
    tuned_coeff: float

    def __str__(self) -> str:
        return (
            f"layer {self.setting.layer}, tuned relative norm {self.setting.relative_norm:.3g} "
            f"(c = {self.tuned_coeff:.3g} on this model): {self.source}"
        )

    def norms(self) -> pd.DataFrame:
        """Each coefficient of the grid with its relative norm."""
        return pd.DataFrame([{"coeff": c, "relative_norm": v.relative_norm} for c, v in self.vectors.items()])


def wedding_setting(results_dir: str | Path, default: WeddingSetting) -> tuple[WeddingSetting, str]:
    """The setting 01 chose in this run (its results folder beside ``results_dir``), or
    ``default`` when the run has none; with a phrase saying which, for the prose."""
    folder = Path(results_dir).parent / SECTION.name
    chosen = StudyRecord.load(folder).record(WeddingSetting) if (folder / "claims.json").is_file() else None
    if chosen is not None:
        return chosen, "chosen by notebook 01 in this run"
    return default, "this notebook's parameters (no 01_wedding_layers result in this run folder)"


def wedding_grid(study: Study, model: TransformersModel, coeffs: Sequence[float]) -> WeddingGrid:
    """The :class:`WeddingGrid` at the setting :func:`wedding_setting` gives for this run (the
    study's own ``layer`` and ``tuned_norm`` when 01 did not run): the vectors for each of
    ``coeffs`` and for the coefficient that gives the setting's relative norm on ``model``."""
    setting, source = wedding_setting(study["results_dir"], WeddingSetting(study["layer"], study["tuned_norm"]))
    vectors, tuned = coefficient_grid(model, study["p_plus"], study["p_minus"], layer=setting.layer, coeffs=coeffs,
                                      relative_norm=setting.relative_norm)  # fmt: skip
    return WeddingGrid(setting, source, vectors, tuned)


# --- the arms -------------------------------------------------------------------------------


class Wedding:
    """The study's model and judge, with its sweeps: every call samples ``prompt`` with the
    study's sampling parameters and seed, the time going to the study's phases."""

    def __init__(self, study: Study, model: TransformersModel, judge: TransformersModel) -> None:
        self.study, self.model, self.judge = study, model, judge
        self.info = actadd.model_info(model)
        self.vector = partial(actadd.steering_vector, model, study["p_plus"], study["p_minus"])
        self.sweep = partial(topic_sweep, model, study["prompt"], seed=study["seed"], timed=study.timed,
                             max_new_tokens=study["max_new_tokens"], batch_size=study["batch_size"])  # fmt: skip


@dataclass(frozen=True)
class PaperArm:
    """Every layer at the paper's coefficient on the selection stream: the table (first row
    unsteered), the best layer and where the best layer lies."""

    table: pd.DataFrame
    pick: pd.Series
    depth: Estimate

    @property
    def layer(self) -> int:
        return int(self.pick.layer)


def paper_arm(w: Wedding) -> PaperArm:
    """Saved as ``by_layer_paper_arm.csv``."""
    study, c = w.study, w.study["paper_coeff"]
    layers = list(range(w.info.n_layers))
    table, texts = w.sweep([None] + [w.vector(layer=i, coeff=c) for i in layers], study["select_samples"],
                           stream=SELECT)  # fmt: skip
    depth = best_layer_depth(dict(zip(layers, map(topic_hits, texts[1:]))), w.info.n_layers, seed=study["seed"])
    study.table(table.assign(arm=f"paper (c = {c:g})"), "by_layer_paper_arm")
    return PaperArm(table, best_setting(table), depth)


@dataclass(frozen=True)
class Probe:
    """A layer x strength probe on the selection stream, the rule's pick and the vector it picked."""

    table: pd.DataFrame
    pick: pd.Series
    chosen: actadd.Vector
    layers: list[int]

    def success_grid(self) -> pd.DataFrame:
        """Success by layer (rows) and relative norm (columns)."""
        norms = list(self.table[self.table.layer.notna()].relative_norm.round(6))
        return self.table[self.table.layer.notna()].assign(norm=norms).pivot(index="layer", columns="norm",
                                                                               values="success")  # fmt: skip


def tuned_arm(w: Wedding) -> Probe:
    """ActAdd's probe over ``probe_depths`` x ``probe_norms``; the rule: the smallest strength at
    which some layer reaches ``success_target``, at its best layer. Saved as ``coefficient_probe.csv``."""
    study, norms = w.study, w.study["probe_norms"]
    layers = sorted({w.vector(layer=d).layer for d in study["probe_depths"]})
    table, _ = w.sweep([None] + [w.vector(layer=i, relative_norm=r) for i in layers for r in norms],
                       study["probe_samples"], stream=SELECT)  # fmt: skip
    pick = tuned_setting(table, norms, study["success_target"])
    chosen = w.vector(layer=int(pick.layer), coeff=float(pick.coeff))
    study.table(table, "coefficient_probe")
    return Probe(table, pick, chosen, layers)


@dataclass(frozen=True)
class MeanDifferenceArm:
    """The mean-difference vector's probe (ActAdd's layers and strengths, the same rule), the
    unit vector at each probe layer, and which steering method did better on the selection."""

    probe: Probe
    units: dict[int, actadd.DirectionVector]
    better: str  # "ActAdd" or "mean difference"

    def at(self, setting: actadd.SteeringVector) -> actadd.DirectionVector:
        """The mean difference at ``setting``'s layer and relative norm."""
        return self.units[setting.layer].at_relative_norm(setting.relative_norm)


def mean_difference_arm(w: Wedding, tuned: Probe) -> MeanDifferenceArm:
    """The mean difference of ``n_pairs`` contrast pairs (wedding and other sentences of the web
    text), read over each text's tokens, probed like the tuned arm and chosen by its rule.
    Saved as ``mean_difference_probe.csv``."""
    study, norms = w.study, w.study["probe_norms"]
    pairs = topic_pairs(study["n_pairs"], seed=study["seed"])
    with study.timed("vectors"):
        units = {i: actadd.mean_difference(w.model, pairs, layer=i, reduce="mean") for i in tuned.layers}
    direction = {(i, r): units[i].at_relative_norm(r) for i in tuned.layers for r in norms}
    table, _ = w.sweep([None, *direction.values()], study["probe_samples"], stream=SELECT, positions="all")
    pick = tuned_setting(table, norms, study["success_target"])
    chosen = direction[(int(pick.layer), pick.norm)]
    better = "ActAdd" if tuned.pick.success >= pick.success else "mean difference"
    study.table(table, "mean_difference_probe")
    return MeanDifferenceArm(Probe(table, pick, chosen, tuned.layers), units, better)


@dataclass(frozen=True)
class Confirmation:
    """Fresh draws (confirmation stream) of every setting a claim reads, row ``i`` of each on the
    same seed: the table (one row per setting) and each setting's completions, by role."""

    table: pd.DataFrame
    texts: dict[str, list[str]]  # by role: unsteered, paper, layer1, tuned, meandiff, meandiff_at_tuned, prompting
    labels: dict[str, str]  # each role's setting in words

    def hits(self, role: str) -> np.ndarray:
        return topic_hits(self.texts[role])

    def samples(self, n: int) -> pd.DataFrame:
        """The first ``n`` completions of every setting side by side."""
        return pd.DataFrame({self.labels[role]: texts[:n] for role, texts in self.texts.items()})


def confirm(w: Wedding, paper: PaperArm, tuned: Probe, md: MeanDifferenceArm) -> Confirmation:
    """``confirm_samples`` fresh completions of each setting, and every claim of the study
    recorded from them. Saved as ``confirmation.csv``."""
    study, c, n = w.study, w.study["paper_coeff"], w.study["confirm_samples"]
    vector = cast(actadd.SteeringVector, tuned.chosen)  # the tuned arm's is ActAdd's
    front = {
        "unsteered": ("unsteered", None),
        "paper": (f"paper arm: layer {paper.layer}, c = {c:g}", w.vector(layer=paper.layer, coeff=c)),
        "layer1": (f"layer 1, c = {c:g}", w.vector(layer=1, coeff=c)),
        "tuned": (f"tuned arm: layer {vector.layer}, c = {vector.coeff:.3g} (relative norm {vector.relative_norm:.2g})",
                  vector),
    }  # fmt: skip
    everywhere = {
        "meandiff": (f"mean difference: layer {md.probe.chosen.layer}, relative norm "
                     f"{md.probe.chosen.relative_norm:.2g}", md.probe.chosen),
        "meandiff_at_tuned": ("mean difference at the tuned arm's setting", md.at(vector)),
    }  # fmt: skip
    table, texts = w.sweep([s for _, s in front.values()], n, stream=CONFIRM)
    md_table, md_texts = w.sweep([s for _, s in everywhere.values()], n, stream=CONFIRM, positions="all")
    prompted_table, prompted_texts = topic_sweep(
        w.model, study["instruction"] + study["prompt"], [None], n, stream=CONFIRM, seed=study["seed"],
        timed=study.timed, max_new_tokens=study["max_new_tokens"], batch_size=study["batch_size"])  # fmt: skip
    roles = [*front, *everywhere, "prompting"]
    labels = {role: label for role, (label, _) in {**front, **everywhere}.items()} | {"prompting": "prompting"}
    table = pd.concat([table, md_table, prompted_table], ignore_index=True)
    table.insert(0, "setting", [labels[r] for r in roles])
    confirmation = Confirmation(table, dict(zip(roles, texts + md_texts + prompted_texts)), labels)
    hits = confirmation.hits
    better = "tuned" if md.better == "ActAdd" else "meandiff"
    for claim_id, estimate in {
        "01.paper_best": proportion_of(hits("paper")), "01.unsteered": proportion_of(hits("unsteered")),
        "01.paper_gain": paired_proportion_difference(hits("paper"), hits("unsteered")),
        "01.layer1": paired_proportion_difference(hits("layer1"), hits("unsteered")), "01.early_peak": paper.depth,
        "01.tuned_best": proportion_of(hits("tuned")),
        "01.meandiff": paired_proportion_difference(hits("tuned"), hits("meandiff_at_tuned")),
        "01.better_vs_prompting": paired_proportion_difference(hits(better), hits("prompting")),
    }.items():  # fmt: skip
        study.record(claim_id, estimate)
    study.table(table, "confirmation")
    return confirmation


def tradeoff(w: Wedding, tuned: Probe) -> pd.DataFrame:
    """Strength against fluency at the tuned layer: ``tradeoff_samples`` fresh completions per
    relative norm, judged. Saved as ``tradeoff.csv``."""
    layer = tuned.chosen.layer
    table, _ = w.sweep([None] + [w.vector(layer=layer, relative_norm=r) for r in w.study["tradeoff_norms"]],
                       w.study["tradeoff_samples"], stream=CONFIRM, judge=w.judge)  # fmt: skip
    return w.study.table(table, "tradeoff")


# --- figures --------------------------------------------------------------------------------


def layers_figure(w: Wedding, paper: PaperArm, tuned: Probe, confirmation: Confirmation) -> None:
    """The paper's arm by layer, the tuned arm's probe, and the confirmation (settings on the y
    axis, so that their names never run into each other)."""
    study = w.study
    steered, base = paper.table[paper.table.layer.notna()], paper.table[paper.table.layer.isna()].iloc[0]
    fig, axes = plots.panels(3, title=f"{study['p_plus']!r} - {study['p_minus']!r} on {study['model_name']} "
                             "(Wilson 95% CIs)", panel=(6.0, 4.8))  # fmt: skip
    plots.by_setting(
        axes[0, 0], steered, "layer", "success", fmt="o-", label=f"paper arm, c = {study['paper_coeff']:g}"
    )
    plots.reference(axes[0, 0], base.success, base.success_low, base.success_high)
    axes[0, 0].axvline(paper.layer, color="grey", ls=":", label=f"chosen layer {paper.layer}")
    axes[0, 0].set(xlabel="layer (input of block)", ylabel="share with a wedding word", ylim=plots.SHARE_LIMITS,
                   title=f"Paper arm: every layer ({study['select_samples']} draws each)")  # fmt: skip
    probe = tuned.table[tuned.table.layer.notna()]
    plots.by_setting(axes[0, 1], probe, "relative_norm", "success", hue="layer", hue_format="layer {}", fmt="o-")
    axes[0, 1].axhline(study["success_target"], color="grey", ls=":", label="target")
    axes[0, 1].set(xlabel="relative norm", ylabel="share with a wedding word", ylim=plots.SHARE_LIMITS,
                   title=f"Tuned arm: probe ({study['probe_samples']} draws per cell)")  # fmt: skip
    plots.by_setting(axes[0, 2], confirmation.table, "setting", "success", horizontal=True)
    axes[0, 2].axvline(0.9, color="grey", ls=":", label="the paper: > 90%")
    axes[0, 2].set(xlabel="share with a wedding word", xlim=plots.SHARE_LIMITS,
                   title=f"Confirmation: fresh draws ({study['confirm_samples']} each)")  # fmt: skip
    for ax in axes[0]:
        ax.legend(fontsize=8)
    study.figure(fig, "wedding_by_layer")


def tradeoff_figure(w: Wedding, table: pd.DataFrame, tuned: Probe) -> None:
    """Success and fluency against strength at the tuned layer."""
    study = w.study
    steered, unsteered = table.iloc[1:], table.iloc[0]
    fig, axes = plots.panels(2, title=f"Layer {tuned.chosen.layer}: strength against fluency "
                             f"({study['tradeoff_samples']} fresh draws per strength)")  # fmt: skip
    for ax, y, label, title in (
        (axes[0, 0], "success", "share with a wedding word", "Strength (Wilson 95% CI)"),
        (axes[0, 1], "perplexity", f"perplexity under {study['judge_name']}",
         "Fluency cost, geometric mean (bootstrap 95% CI)"),
    ):  # fmt: skip
        plots.by_setting(ax, steered, "relative_norm", y, fmt="o-", label="steered")
        plots.reference(ax, unsteered[y], unsteered[f"{y}_low"], unsteered[f"{y}_high"])
        plots.plain_log_axis(ax, steered.relative_norm, [f"{r:.2g}\n(c = {c:.2g})" for r, c in
                                                         zip(steered.relative_norm, steered.coeff)])  # fmt: skip
        ax.set(xlabel="relative norm (coefficient)", ylabel=label, title=title)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylim(plots.SHARE_LIMITS)
    study.figure(fig, "wedding_tradeoff")


# --- the record -----------------------------------------------------------------------------


def finish(
    w: Wedding, paper: PaperArm, tuned: Probe, md: MeanDifferenceArm, confirmation: Confirmation, traded: pd.DataFrame
) -> StudyRecord:
    """The study's record (with the :class:`WeddingSetting` 02 and 03 read) and "What it shows"."""
    study, chosen = w.study, cast(actadd.SteeringVector, tuned.chosen)  # the tuned arm's is ActAdd's
    unsteered = traded.iloc[0]
    tuned_ppl = traded[np.isclose(traded.relative_norm, chosen.relative_norm, rtol=1e-3)].perplexity
    record = study.finish({
        "paper_arm_layer": paper.layer, "paper_arm_relative_norm": float(paper.pick.relative_norm),
        "tuned_layer": chosen.layer, "tuned_depth": chosen.layer / w.info.n_layers, "tuned_coeff": chosen.coeff,
        "tuned_relative_norm": chosen.relative_norm, "tuned_target_reached_on_selection": bool(tuned.pick.reached),
        "unsteered_perplexity": float(unsteered.perplexity),
        "tuned_perplexity": float(tuned_ppl.iloc[0]) if len(tuned_ppl) else None,
        "confirm_samples": study["confirm_samples"],
    }, WeddingSetting(chosen.layer, chosen.relative_norm))  # fmt: skip
    tuned_perplexity = record.headline["tuned_perplexity"]
    study.prose(FINDINGS, n_layers=w.info.n_layers, paper_layer=paper.layer, n=study["confirm_samples"],
                paper_norm=float(paper.pick.relative_norm), tuned_layer=chosen.layer, tuned_coeff=chosen.coeff,
                tuned_norm=chosen.relative_norm, tuned_ppl=float("nan") if tuned_perplexity is None else tuned_perplexity,
                base_ppl=float(unsteered.perplexity), judge=study["judge_name"], select=study["select_samples"],
                model=model_description(study["model_name"]), md_layer=md.probe.chosen.layer,
                md_norm=md.probe.chosen.relative_norm, better=md.better, n_pairs=study["n_pairs"],
                **study.measured())  # fmt: skip
    return record
