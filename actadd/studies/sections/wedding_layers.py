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
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

import actadd
from actadd.studies.data import topic_pairs
from actadd.studies.evaluation.stats import BestSet, best_confidence_set, paired_proportion_difference, proportion_of
from actadd.studies.evaluation.text_gate import TextGate, held_out
from actadd.studies.evaluation.topic import best_setting, gentlest_passing, topic_hits, topic_sweep
from actadd.studies.lifecycle.claims import Claim, above, below
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.streams import CONFIRM, SELECT
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import model_description
from actadd.studies.protocol import figures
from actadd.studies.protocol.strength import Scale
from actadd.studies.protocol.tasks import MEAN_DIFFERENCE_METRIC, MEAN_DIFFERENCE_PAPER, NOT_COMPARED, PROMPTING_PAPER

CONFIRMED = "(confirmation stream)"


def claims(p: Mapping[str, Any]) -> list[Claim]:
    n = p["paper_samples"]
    return [
        Claim("01.paper_best", "At the best layer with c = 1, more than 90% of completions mention a wedding word",
              "> 90% (GPT-2-XL, layer 6)", f"share of {n} fresh completions {CONFIRMED} that are text and mention a "
              "wedding word, at the layer chosen on the selection stream; Wilson", above(0.9), "percent"),
        Claim("01.unsteered", "Unsteered, about 2% of completions mention a wedding word", "about 2%",
              f"share of {n} fresh unsteered completions {CONFIRMED}; Wilson", below(0.05), "percent"),
        Claim("01.paper_gain", "Steering with c = 1 at the best layer raises that share", "+88 points (90% vs 2%)",
              f"steered minus unsteered on the same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.layer1", "Steering is effective from layer 1 (c = 1)", "effective from layer 1",
              f"steered at layer 1 minus unsteered, same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.early_peak", "The best layer lies in the first quarter of the depth (c = 1)",
              "layer 6 of 48 (0.125)", f"the confidence set for the best layer on {n} draws per layer {CONFIRMED}, "
              "shared seeds: the layers not significantly worse than the empirical best (one-sided exact McNemar, "
              "Holm, 5%); the interval spans the set's depths (layer / number of layers)", below(0.25), "ratio"),
        Claim("01.tuned_best", "At a tuned strength, more than 90% of completions mention a wedding word",
              "> 90% (at c = 1)", f"share of {n} fresh completions {CONFIRMED} at the tuned setting: the gentlest "
              "probe strength whose selection Wilson lower bound passes 90%, among settings within the text gate and "
              "the fluency limit; Wilson", above(0.9), "percent", arm="tuned arm"),
        Claim("01.vs_meandiff", "ActAdd's vector mentions weddings about as often as the mean-difference vector or "
              f"more (at most {100 * p['margin']:g} points less), each at its own choice under the same text gate "
              "and fluency rule", MEAN_DIFFERENCE_PAPER, f"share with a wedding word, ActAdd minus "
              f"{MEAN_DIFFERENCE_METRIC}; same seeds {CONFIRMED}; Newcombe paired interval", above(-p["margin"]),
              "points", arm="successors"),
        Claim("01.better_vs_prompting", "The better steering vector mentions weddings about as often as prompting or "
              f"more (at most {100 * p['margin']:g} points less)", PROMPTING_PAPER,
              "share with a wedding word, the better tuned arm (ActAdd or the mean difference, whichever did better on "
              f"the selection probe) minus prompting; same seeds {CONFIRMED}; Newcombe paired interval",
              above(-p["margin"]), "points", arm="successors"),
    ]  # fmt: skip


WITHDRAWN = {
    "01.meandiff": (
        "it compared ActAdd with the mean-difference vector at the tuned arm's layer and relative norm, which is not "
        "the same strength (each kind's relative norm divides by other texts' norm, and the mean difference is added "
        "at every position), and that arm was neither gated for text nor held to a fluency limit: repeated wedding "
        "words counted as hits. Replaced by 01.vs_meandiff, each method at its own choice under the same text gate "
        "and fluency rule"
    )
}


SECTION = Section(
    "01_wedding_layers",
    "GPT-2-XL (48 layers), p+ = ' weddings', p- = '', c = 1, 200 completions per layer: > 90% of completions "
    "mention weddings at the best layer vs about 2% unsteered; effective from layer 1, rising to about layer 6, "
    "then declining.",
    claims,
    WITHDRAWN,
)

FINDINGS = """- **The paper's arm (c = 1).** On the selection stream the best of {n_layers:int} layers was layer
  {paper_layer:int} (relative norm {paper_norm:num}). On {n:int} fresh draws there, {paper_best:pct} of completions are
  text and mention a wedding word, against {unsteered:pct} unsteered: the paper's "> 90%" claim
  **{v_paper_best:verdict}**, its "about 2% unsteered" claim **{v_unsteered:verdict}**. The paired gain is
  {paper_gain:pts} (**{v_paper_gain:verdict}**); at layer 1 it is {layer1:pts} (**{v_layer1:verdict}**).
- **Where the best layer lies.** On {n:int} fresh draws of every layer (the paper's size), the best was layer
  {best_layer:int}, and the layers not significantly worse than it (a confidence set, Holm-corrected) span depths
  {early_peak:num}; the paper's peak sits at 6 of 48 (0.125); the claim that the best layer lies in the first
  quarter **{v_early_peak:verdict}**.
- **The tuned arm.** {tuned_rule}. On fresh draws {tuned_best:pct} of its completions are text and mention a wedding
  word (**{v_tuned_best:verdict}**), at a judge perplexity of {tuned_ppl:num} under {judge} on the selection stream,
  against {base_ppl:num} unsteered.
- **The methods that followed.** The mean-difference vector of {n_pairs:int} contrast pairs (wedding and other
  sentences), probed on its own grid by the same rule: {md_rule}. ActAdd minus the mean difference, each at its own
  choice, is {vs_meandiff:pts} (the claim that ActAdd does about as well or better **{v_vs_meandiff:verdict}**). The
  better of the two on the selection probe, {better}, minus prompting is {better_vs_prompting:pts} (the claim that it
  does about as well as prompting or better **{v_better_vs_prompting:verdict}**).
- **Only text counts.** Every completion goes through the text gate (its accuracy on held-out labelled
  continuations: {gate_accuracy:pct}); a completion that is not text is no hit, and no setting whose completions fail
  the gate can be chosen.
- **What differs from the paper.** The model ({model}, {n_layers:int} layers, for GPT-2-XL's 48), the sampler's
  frequency penalty counted as the original code counted it (prompt and completion), and the judge of fluency
  ({judge}, which the paper did not use for this experiment).
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
class WeddingArms:
    """The vectors a topic study (02, 03) steers with: the paper's arm, ``p_plus - p_minus`` at the
    paper's depth (a third, as its layer 16 of 48) at each coefficient of its grid, and the tuned
    arm at the setting 01 chose (its layer, and the coefficient that gives its relative norm on
    this model), with where that setting came from (a phrase for the prose)."""

    setting: WeddingSetting
    source: str
    paper: dict[float, actadd.SteeringVector]  # {coeff: vector} at the paper's depth, coefficients increasing
    tuned: actadd.SteeringVector

    def __str__(self) -> str:
        return (
            f"paper arm at layer {self.paper_layer} (c = {', '.join(f'{c:g}' for c in self.paper)}); tuned arm at "
            f"layer {self.tuned.layer}, relative norm {self.setting.relative_norm:.3g} (c = {self.tuned.coeff:.3g} on "
            f"this model): {self.source}"
        )

    @property
    def paper_layer(self) -> int:
        return next(iter(self.paper.values())).layer

    def vectors(self) -> dict[str, actadd.SteeringVector]:
        """Every arm's vector by its label: the paper's coefficients, then the tuned arm."""
        return {paper_label(c): v for c, v in self.paper.items()} | {TUNED: self.tuned}

    def norms(self) -> pd.DataFrame:
        """Each arm with its layer, coefficient and relative norm."""
        return pd.DataFrame([{"arm": arm, "layer": v.layer, "coeff": v.coeff, "relative_norm": v.relative_norm}
                             for arm, v in self.vectors().items()])  # fmt: skip


TUNED = "tuned arm"


def paper_label(coeff: float) -> str:
    """The paper arm's label at ``coeff``."""
    return f"paper arm, c = {coeff:g}"


def wedding_setting(results_dir: str | Path, default: WeddingSetting) -> tuple[WeddingSetting, str]:
    """The setting 01 chose in this run (its results folder beside ``results_dir``), or
    ``default`` when the run has none; with a phrase saying which, for the prose."""
    folder = Path(results_dir).parent / SECTION.name
    chosen = StudyRecord.load(folder).record(WeddingSetting) if (folder / "claims.json").is_file() else None
    if chosen is not None:
        return chosen, "chosen by notebook 01 in this run"
    return default, "this notebook's parameters (no setting chosen by 01_wedding_layers in this run folder)"


def wedding_arms(study: Study, model: TransformersModel) -> WeddingArms:
    """The :class:`WeddingArms` of a topic study: its ``paper_coeffs`` at ``paper_depth``, and the
    tuned arm at the setting :func:`wedding_setting` gives for this run (the study's own ``layer``
    and ``tuned_norm`` when 01 did not run)."""
    setting, source = wedding_setting(study["results_dir"], WeddingSetting(study["layer"], study["tuned_norm"]))
    pair = (study["p_plus"], study["p_minus"])
    paper = {c: actadd.steering_vector(model, *pair, layer=study["paper_depth"], coeff=c)
             for c in sorted(study["paper_coeffs"])}  # fmt: skip
    tuned = actadd.steering_vector(model, *pair, layer=setting.layer, relative_norm=setting.relative_norm)
    return WeddingArms(setting, source, paper, tuned)


# --- the arms -------------------------------------------------------------------------------


class Wedding:
    """The study's model and judge, with its sweeps: every call samples ``prompt`` with the
    study's sampling parameters (the original code's frequency-penalty counting) and seed, every
    completion judged text or not, the time going to the study's phases; and the scale every
    strength is measured in (:class:`~actadd.studies.protocol.strength.Scale`)."""

    def __init__(self, study: Study, model: TransformersModel, judge: TransformersModel) -> None:
        self.study, self.model, self.judge = study, model, judge
        self.info = actadd.model_info(model)
        self.gate = TextGate()
        with study.timed("vectors"):
            self.scale = Scale.measure(model)
        self.vector = partial(actadd.steering_vector, model, study["p_plus"], study["p_minus"])
        self.sweep = partial(topic_sweep, model, study["prompt"], seed=study["seed"], timed=study.timed,
                             gate=self.gate, max_new_tokens=study["max_new_tokens"], batch_size=study["batch_size"],
                             freq_penalty_counts=study["freq_penalty_counts"])  # fmt: skip

    def strengths(
        self, table: pd.DataFrame, settings: Sequence[actadd.Vector | None], texts: Sequence[Sequence[str]]
    ) -> pd.DataFrame:
        """``table`` with each setting's strength in the shared unit: per steered position
        (``position_norm``) and added to a completion in all, averaged over its ``texts``
        (``completion_norm``; a direction, added at every position, adds more to a longer one)."""
        prompt_tokens = len(actadd.encode(self.model, self.study["prompt"])) - 1
        return table.assign(
            position_norm=[0.0 if v is None else self.scale.position_norm(v) for v in settings],
            completion_norm=[
                float(np.mean(self.scale.completion_norms(self.model, v, [prompt_tokens] * len(t), t)))
                for v, t in zip(settings, texts, strict=True)
            ],
        )


@dataclass(frozen=True)
class PaperArm:
    """Every layer at the paper's coefficient: the selection sweep (first row unsteered) and its
    best layer (None when no layer's completions pass the text gate); the confirmation sweep at the paper's size (first row unsteered), each row's
    completions' hits (text with a wedding word), and the confidence set for the best layer."""

    selection: pd.DataFrame
    pick: pd.Series | None
    confirmation: pd.DataFrame
    hits: np.ndarray  # [n_layers + 1, paper_samples]: unsteered first
    best: BestSet
    unsteered: list[str]  # the unsteered completions of the confirmation: every comparison's pair

    @property
    def layer(self) -> int | None:
        return None if self.pick is None else int(self.pick.layer)


def paper_arm(w: Wedding) -> PaperArm:
    """Every layer at c = 1: ``select_samples`` draws each on the selection stream choose the best
    layer (among those whose completions pass the gate); ``paper_samples`` fresh draws each on the
    confirmation stream (the paper's size, shared seeds) give the claims and the confidence set
    for the best layer. Saved as ``by_layer_paper_arm.csv`` and ``by_layer_confirmation.csv``."""
    study, c = w.study, w.study["paper_coeff"]
    settings = [None] + [w.vector(layer=i, coeff=c) for i in range(w.info.n_layers)]
    selection, selected = w.sweep(settings, study["select_samples"], stream=SELECT)
    confirmation, texts = w.sweep(settings, study["paper_samples"], stream=CONFIRM)
    hits = np.stack([topic_hits(t) & w.gate.check(t, references=texts[0])["is_text"].to_numpy(dtype=bool)
                     for t in texts])  # fmt: skip
    best = best_confidence_set(hits[1:])
    confirmation = w.strengths(confirmation, settings, texts).assign(
        in_best_set=[False, *best.members_mask(len(settings) - 1)]
    )
    study.table(w.strengths(selection, settings, selected).assign(arm=f"paper (c = {c:g})"), "by_layer_paper_arm")
    study.table(confirmation, "by_layer_confirmation")
    return PaperArm(selection, best_setting(selection), confirmation, hits, best, texts[0])


@dataclass(frozen=True)
class Probe:
    """A layer x strength probe on the selection stream (first row unsteered), judged and gated;
    the rule's pick (None: no setting passed the gate and the fluency limit), whether the pick
    reached the target, and the vector it picked."""

    table: pd.DataFrame
    pick: pd.Series | None
    reached: bool
    chosen: actadd.Vector | None
    layers: list[int]

    def success_grid(self) -> pd.DataFrame:
        """Success by layer (rows) and strength per position (columns)."""
        steered = self.table[self.table.layer.notna()]
        return steered.assign(strength=steered.position_norm.round(3)).pivot(index="layer", columns="strength",
                                                                              values="success")  # fmt: skip

    def rule(self, label: str) -> str:
        """The rule's outcome in words, for the prose."""
        if self.chosen is None:
            return f"no {label} setting passed both the text gate and the fluency limit, so none was chosen"
        how = ("the gentlest strength whose selection Wilson lower bound passes the target" if self.reached else
               "no setting's lower bound passed the target, so the best within the gate and fluency limit")  # fmt: skip
        return f"{how}: layer {self.chosen.layer} at {self.table.position_norm[self.table.chosen].iloc[0]:.3g} of the residual norm per position"


def _probe(w: Wedding, settings: list[actadd.Vector | None], layers: list[int], name: str, **sampling: Any) -> Probe:
    """Sweep ``settings`` (unsteered first) on the selection stream with the judge and the gate,
    and choose by the tuned rule (:func:`~actadd.studies.evaluation.topic.gentlest_passing`)."""
    study = w.study
    table, texts = w.sweep(settings, study["probe_samples"], stream=SELECT, judge=w.judge, **sampling)
    table = w.strengths(table, settings, texts)
    limit = study["fluency_tolerance"] * float(table.perplexity.iloc[0])
    table["within_limit"] = table.perplexity <= limit
    pick, reached = gentlest_passing(table, study["success_target"])
    table["chosen"] = False
    if pick is not None:
        table.loc[pick.name, "chosen"] = True
    study.table(table, name)
    chosen = None if pick is None else settings[int(pick.name)]
    return Probe(table, pick, reached, chosen, layers)


def tuned_arm(w: Wedding) -> Probe:
    """ActAdd's probe over ``probe_depths`` x ``probe_strengths`` (strength per position, the shared
    unit). Saved as ``coefficient_probe.csv``."""
    study = w.study
    layers = sorted({actadd.resolve_layer(d, w.info) for d in study["probe_depths"]})
    units = {i: w.vector(layer=i) for i in layers}
    settings: list[actadd.Vector | None] = [None]
    settings += [w.scale.at(units[i], r) for i in layers for r in study["probe_strengths"]]
    return _probe(w, settings, layers, "coefficient_probe")


def mean_difference_arm(w: Wedding, tuned: Probe) -> Probe:
    """The mean difference of ``n_pairs`` contrast pairs (wedding and other sentences of the web
    text), read over each text's tokens and added at every position, probed on its own grid
    (``md_strengths``) at ActAdd's probe layers and chosen by the same rule. Saved as
    ``mean_difference_probe.csv``."""
    study = w.study
    pairs = topic_pairs(study["n_pairs"], seed=study["seed"])
    with study.timed("vectors"):
        units = {i: actadd.mean_difference(w.model, pairs, layer=i, reduce="mean") for i in tuned.layers}
    settings: list[actadd.Vector | None] = [None]
    settings += [w.scale.at(units[i], r) for i in tuned.layers for r in study["md_strengths"]]
    return _probe(w, settings, tuned.layers, "mean_difference_probe", positions="all")


def better_steering(tuned: Probe, md: Probe) -> str | None:
    """Which tuned arm did better on the selection probe (``"ActAdd"`` on a tie): the higher
    success of the chosen settings; None when neither was chosen."""
    if tuned.pick is None and md.pick is None:
        return None
    if md.pick is None:
        return "ActAdd"
    if tuned.pick is None:
        return "mean difference"
    return "ActAdd" if tuned.pick.success >= md.pick.success else "mean difference"


@dataclass(frozen=True)
class Confirmation:
    """Fresh draws (confirmation stream) of every setting a claim reads, row ``i`` of each on the
    same seed: the table (one row per setting) and each setting's hits and completions, by role."""

    table: pd.DataFrame
    hits: dict[str, np.ndarray]  # by role: unsteered, paper, layer1, tuned, meandiff, prompting
    texts: dict[str, list[str]]
    labels: dict[str, str]  # each role's setting in words

    def samples(self, n: int) -> pd.DataFrame:
        """The first ``n`` completions of every setting side by side."""
        return pd.DataFrame({self.labels[role]: texts[:n] for role, texts in self.texts.items()})


def confirm(w: Wedding, paper: PaperArm, tuned: Probe, md: Probe) -> Confirmation:
    """``paper_samples`` fresh completions of the tuned settings and of prompting, on the seeds of
    the paper arm's confirmation (so every comparison is paired with its unsteered draws), and
    every claim of the study recorded. Saved as ``confirmation.csv``."""
    study, c, n = w.study, w.study["paper_coeff"], w.study["paper_samples"]
    layers = list(range(w.info.n_layers))
    # Each role's setting in words, its hits and its confirmation row (the paper's pick, when a layer passed the gate).
    rows_of = {"unsteered": 0, "paper": None if paper.layer is None else 1 + layers.index(paper.layer), "layer1": 2}
    labels = {
        "unsteered": "unsteered",
        "paper": f"paper arm: layer {paper.layer}, c = {c:g}",
        "layer1": f"layer 1, c = {c:g}",
    }
    labels = {role: label for role, label in labels.items() if rows_of[role] is not None}
    hits = {role: paper.hits[rows_of[role]] for role in labels}
    rows = [paper.confirmation.iloc[rows_of[role]] for role in labels]
    texts: dict[str, list[str]] = {"unsteered": paper.unsteered}

    def confirmed(table: pd.DataFrame, out: list[list[str]], role: str, label: str) -> None:
        texts[role], labels[role] = out[0], label
        hits[role] = topic_hits(out[0]) & w.gate.check(out[0], references=paper.unsteered)["is_text"].to_numpy(
            dtype=bool
        )
        rows.append(table.iloc[0])

    for role, probe, label, positions in (
        ("tuned", tuned, "tuned arm", "front"),
        ("meandiff", md, "mean difference", "all"),
    ):
        if probe.chosen is not None:
            table, out = w.sweep([probe.chosen], n, stream=CONFIRM, positions=positions, references=paper.unsteered)
            table = w.strengths(table, [probe.chosen], out)
            confirmed(table, out, role, f"{label}: layer {probe.chosen.layer}, "
                      f"{w.scale.position_norm(probe.chosen):.3g} per position")  # fmt: skip
    prompted, out = topic_sweep(w.model, study["instruction"] + study["prompt"], [None], n, stream=CONFIRM,
                                seed=study["seed"], timed=study.timed, gate=w.gate, references=paper.unsteered,
                                max_new_tokens=study["max_new_tokens"], batch_size=study["batch_size"],
                                freq_penalty_counts=study["freq_penalty_counts"])  # fmt: skip
    confirmed(w.strengths(prompted, [None], out), out, "prompting", "prompting")
    table = pd.DataFrame(rows).reset_index(drop=True)
    table.insert(0, "setting", [labels[r] for r in hits])
    note = {role: f"no {name} setting passed the text gate and the fluency limit on the selection probe"
            for role, name, probe in (("tuned", "ActAdd", tuned), ("meandiff", "mean-difference", md))
            if probe.chosen is None}  # fmt: skip
    depth = paper.best.depth_estimate(w.info.n_layers)
    better = {"ActAdd": "tuned", "mean difference": "meandiff"}.get(better_steering(tuned, md) or "")
    tuned_note = (
        ""
        if tuned.reached or tuned.chosen is None
        else (
            "no probe setting's selection lower bound passed 90%: the best within the gate and fluency limit was confirmed"
        )
    )
    no_layer = "no layer's completions at the paper's coefficient passed the text gate on the selection stream"
    study.record("01.paper_best", proportion_of(hits["paper"]) if "paper" in hits else NOT_COMPARED,
                 note="" if "paper" in hits else no_layer)  # fmt: skip
    study.record("01.unsteered", proportion_of(hits["unsteered"]))
    study.record("01.paper_gain", paired_proportion_difference(hits["paper"], hits["unsteered"])
                 if "paper" in hits else NOT_COMPARED, note="" if "paper" in hits else no_layer)  # fmt: skip
    study.record("01.layer1", paired_proportion_difference(hits["layer1"], hits["unsteered"]))
    study.record("01.early_peak", depth)
    study.record("01.tuned_best", proportion_of(hits["tuned"]) if "tuned" in hits else NOT_COMPARED,
                 note=note.get("tuned", tuned_note))  # fmt: skip
    study.record("01.vs_meandiff", paired_proportion_difference(hits["tuned"], hits["meandiff"])
                 if {"tuned", "meandiff"} <= set(hits) else NOT_COMPARED, note="; ".join(note.values()))  # fmt: skip
    study.record("01.better_vs_prompting", NOT_COMPARED if better is None else
                 paired_proportion_difference(hits[better], hits["prompting"]), note="; ".join(note.values()) if better is None else "")  # fmt: skip
    study.table(table, "confirmation")
    return Confirmation(table, hits, texts, labels)


# --- figures --------------------------------------------------------------------------------


def layers_figure(w: Wedding, paper: PaperArm, confirmation: Confirmation) -> None:
    """The paper's arm by layer on fresh draws at the paper's size (the confidence set for the best
    layer shaded), and the confirmation of every setting (settings on the y axis, so that their
    names never run into each other)."""
    study = w.study
    rows, base = paper.confirmation.iloc[1:], paper.confirmation.iloc[0]
    fig, axes = plots.panels(2, title=f"{study['p_plus']!r} - {study['p_minus']!r} on {study['model_name']} "
                             f"({study['paper_samples']} fresh draws per setting, Wilson 95% CIs)", panel=(7.0, 4.8))  # fmt: skip
    plots.by_setting(axes[0, 0], rows, "layer", "success", fmt="o-", label=f"paper arm, c = {study['paper_coeff']:g}")
    plots.reference(axes[0, 0], base.success, base.success_low, base.success_high)
    for layer in rows.layer[rows.in_best_set]:
        axes[0, 0].axvspan(int(layer) - 0.5, int(layer) + 0.5, color="C2", alpha=0.15, lw=0)
    if paper.layer is not None:
        axes[0, 0].axvline(paper.layer, color="grey", ls=":", label=f"chosen on selection: layer {paper.layer}")
    axes[0, 0].set(xlabel="layer (input of block); shaded: not significantly worse than the best",
                   ylabel="share of text with a wedding word", ylim=plots.SHARE_LIMITS,
                   title="Paper arm: every layer (confirmation stream)")  # fmt: skip
    plots.by_setting(axes[0, 1], confirmation.table, "setting", "success", horizontal=True)
    axes[0, 1].axvline(0.9, color="grey", ls=":", label="the paper: > 90%")
    axes[0, 1].set(xlabel="share of text with a wedding word", xlim=plots.SHARE_LIMITS,
                   title="Confirmation: every claim's setting")  # fmt: skip
    for ax in axes[0]:
        ax.legend(fontsize=8)
    study.figure(fig, "wedding_by_layer")


def frontier_figure(w: Wedding, tuned: Probe, md: Probe) -> None:
    """Each steering method's success against its fluency cost over its whole probe (the
    frontier), gated settings hollow, the choices ringed, the fluency limit as a line."""
    study = w.study
    table = pd.concat([tuned.table.assign(kind=np.where(tuned.table.layer.isna(), "unsteered", "actadd")),
                       md.table.iloc[1:].assign(kind="meandiff")], ignore_index=True)  # fmt: skip
    fig, axes = plots.panels(1, title=f"{study['p_plus']!r} - {study['p_minus']!r} on {study['model_name']}: each "
                             f"method's probe ({study['probe_samples']} draws per setting, selection stream)",
                             panel=(8.0, 5.6))  # fmt: skip
    limit = study["fluency_tolerance"] * float(tuned.table.perplexity.iloc[0])
    figures.frontier(axes[0, 0], table.assign(strength=np.nan), "success", objective_label="share of text with a "
                     "wedding word", title="Success against fluency over each method's grid", fluency_limit=limit)  # fmt: skip
    study.figure(fig, "wedding_frontier")


# --- the record -----------------------------------------------------------------------------


def finish(w: Wedding, paper: PaperArm, tuned: Probe, md: Probe, confirmation: Confirmation) -> StudyRecord:
    """The study's record (with the :class:`WeddingSetting` 02 and 03 read) and "What it shows"."""
    study = w.study
    chosen = tuned.chosen if isinstance(tuned.chosen, actadd.SteeringVector) else None
    setting = None if chosen is None else WeddingSetting(chosen.layer, chosen.relative_norm)
    pick = tuned.pick
    record = study.finish({
        "paper_arm_layer": paper.layer,
        "paper_arm_relative_norm": None if paper.pick is None else float(paper.pick.relative_norm),
        "best_layer": int(paper.best.best), "best_layer_set": [int(i) for i in paper.best.members],
        "tuned_layer": None if chosen is None else chosen.layer,
        "tuned_relative_norm": None if chosen is None else chosen.relative_norm,
        "tuned_position_norm": None if chosen is None else w.scale.position_norm(chosen),
        "tuned_target_reached_on_selection": tuned.reached,
        "unsteered_perplexity": float(tuned.table.perplexity.iloc[0]),
        "tuned_perplexity": None if pick is None else float(pick.perplexity),
        "paper_samples": study["paper_samples"],
    }, *([] if setting is None else [setting]))  # fmt: skip
    gate = held_out()
    study.prose(FINDINGS, n_layers=w.info.n_layers, n=study["paper_samples"],
                paper_layer=float("nan") if paper.pick is None else paper.layer,
                paper_norm=float("nan") if paper.pick is None else float(paper.pick.relative_norm), best_layer=paper.best.best, tuned_rule=tuned.rule("ActAdd"),
                md_rule=md.rule("mean-difference"), tuned_ppl=float("nan") if pick is None else float(pick.perplexity),
                base_ppl=float(tuned.table.perplexity.iloc[0]), judge=study["judge_name"],
                model=model_description(study["model_name"]), better=better_steering(tuned, md) or "neither",
                n_pairs=study["n_pairs"], gate_accuracy=gate.accuracy, **study.measured())  # fmt: skip
    return record
