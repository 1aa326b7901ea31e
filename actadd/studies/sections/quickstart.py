"""00 · Quickstart: a steering vector, a layer x strength grid of ' weddings' - '' chosen on the
selection stream, and unsteered and steered completions side by side on the confirmation stream.

The notebook's parameters are read through the study (``study["prompt"]``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

import actadd
from actadd.studies.evaluation.stats import Estimate, paired_proportion_difference, proportion_of
from actadd.studies.evaluation.text_gate import TextGate
from actadd.studies.evaluation.topic import best_setting, topic_hits, topic_sweep
from actadd.studies.lifecycle.claims import Claim, above
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.streams import CONFIRM, SELECT
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import model_description
from actadd.studies.protocol.strength import Scale
from actadd.studies.protocol.tasks import NOT_COMPARED


def claims(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("00.wedding_gain", "' weddings' - '' makes completions mention a wedding word more often",
              "> 90% vs about 2% (GPT-2-XL, c = 1)", "steered minus unsteered share at the grid's chosen setting, "
              "fresh draws with the same seeds (confirmation stream); Newcombe paired interval", above(0.0), "points",
              arm="quickstart setting"),
    ]  # fmt: skip


SECTION = Section("00_quickstart", "", claims)

FINDINGS = """On {model}, the grid (selection stream) chose layer {layer:int} at c = {coeff:num}, a vector of {norm:num} times
the residual norm there. On {n:int} fresh draws, {steered:pct} of the steered completions mention a wedding word,
against {unsteered:pct} unsteered (paired difference {wedding_gain:pts}: the claim that the vector raises the share
**{v_wedding_gain:verdict}**; a completion counts only when the text gate finds it is text). In the grid, the unsteered completions have a geometric-mean perplexity of {base_ppl:num}
under {judge}, and the chosen cell {chosen_ppl:num}: the fluency a push of this size costs. Notebook 01 sweeps every
layer at the paper's c = 1 and with a tuned strength."""

NO_CHOICE_FINDINGS = """On {model}, no setting of the grid (selection stream) gave completions that pass the text gate, so
no setting was chosen and the claim is not measured: on this model, a wedding vector of these strengths turns its
completions into something that is not text. Try gentler strengths (`grid_norms`) or other layers (`grid_layers`)."""


def text_hits(texts: list[str], unsteered: list[str]) -> np.ndarray:
    """Whether each completion mentions a wedding word and is text (the gate, against the
    unsteered completions on the same seeds): only text counts."""
    return topic_hits(texts) & TextGate().check(texts, references=unsteered)["is_text"].to_numpy(dtype=bool)


@dataclass(frozen=True)
class Grid:
    """The layer x strength grid on the selection stream: one row per setting (the first
    unsteered), the chosen row, and the vector at the chosen setting (both None when no steered
    setting's completions passed the text gate)."""

    table: pd.DataFrame
    chosen: pd.Series | None
    vector: actadd.SteeringVector | None

    @property
    def unsteered(self) -> pd.Series:
        return self.table[self.table.layer.isna()].iloc[0]

    def choice(self) -> str:
        """The choice in words."""
        if self.vector is None:
            return "none: no steered setting's completions passed the text gate"
        return str(self.vector)


def strength_grid(study: Study, model: TransformersModel, judge: TransformersModel) -> Grid:
    """Every (layer, relative norm) of the grid, ``grid_samples`` completions each on the
    selection stream, with the judge's fluency and the text gate's verdict (a completion that is
    not text is no success); the most successful cell whose completions pass the gate is chosen
    (ties: more wedding words, then the smaller coefficient); none when no cell passes. Each cell's strength is also given
    in the unit every kind of vector shares (``position_norm``, :mod:`~actadd.studies.protocol.strength`).
    Saved as ``layer_coeff_grid.csv``."""
    pair = study["wedding_pair"]
    settings = [None] + [actadd.steering_vector(model, *pair, layer=layer, relative_norm=norm)
                         for layer in study["grid_layers"] for norm in study["grid_norms"]]  # fmt: skip
    table, _ = topic_sweep(model, study["prompt"], settings, study["grid_samples"], stream=SELECT, judge=judge,
                           gate=TextGate(), timed=study.timed, max_new_tokens=study["max_new_tokens"],
                           seed=study["seed"])  # fmt: skip
    scale = Scale.measure(model)
    table.insert(3, "position_norm", [0.0 if v is None else scale.position_norm(v) for v in settings])
    chosen = best_setting(table)
    vector = (None if chosen is None else
              actadd.steering_vector(model, *pair, layer=int(chosen.layer), coeff=float(chosen.coeff)))  # fmt: skip
    study.table(table, "layer_coeff_grid")
    return Grid(table, chosen, vector)


def grid_figure(study: Study, grid: Grid) -> None:
    """Success and fluency over the grid, as two heatmaps."""
    pair, steered = study["wedding_pair"], grid.table[grid.table.layer.notna()]
    fig, axes = plots.panels(2, title=f"{pair[0]!r} - {pair[1]!r} on {study['model_name']}, {study['grid_samples']} "
                             "completions per cell (selection stream)")  # fmt: skip
    for ax, values, label, title, style in (
        (axes[0, 0], "success", "share with a wedding word", "Steering strength", dict(share=True)),
        (axes[0, 1], "perplexity", f"perplexity under {study['judge_name']}", "Fluency cost",
         dict(fmt=".0f", cmap="rocket_r")),
    ):  # fmt: skip
        plots.grid_heatmap(ax, steered, index="layer", columns="relative_norm", values=values, label=label, **style)
        ax.set(title=f"{title} (unsteered: {grid.unsteered[values]:.3g})", xlabel="relative norm", ylabel="layer")
    study.figure(fig, "quickstart_layer_coeff_grid")


@dataclass(frozen=True)
class SideBySide:
    """Fresh completions (confirmation stream) unsteered, under 'Love' - 'Hate' and under the
    chosen wedding vector (None when the grid chose none), row ``i`` of each on the same seed;
    the first ``n_samples`` as a table."""

    unsteered: list[str]
    love: list[str]
    wedding: list[str] | None
    table: pd.DataFrame


NO_CHOICE = "no steered setting of the grid passed the text gate on the selection stream"


def side_by_side(
    study: Study, model: TransformersModel, wedding: actadd.SteeringVector | None, love: actadd.SteeringVector
) -> SideBySide:
    """``confirm_samples`` completions per column on the confirmation stream; records the claim
    that the wedding vector raises the share with a wedding word (paired by seed), or that it was
    not compared when the grid chose no setting."""
    settings = [None, love] + ([] if wedding is None else [wedding])
    with study.timed("generation"):
        texts = actadd.generate_sweep(model, study["prompt"], settings, study["confirm_samples"], stream=CONFIRM,
                                      max_new_tokens=study["max_new_tokens"], seed=study["seed"])  # fmt: skip
    unsteered, loved, wedded = texts[0], texts[1], None
    n = study["n_samples"]
    columns = {"unsteered": unsteered[:n], "Love - Hate": loved[:n]}
    if wedding is None:
        study.record("00.wedding_gain", NOT_COMPARED, note=NO_CHOICE)
    else:
        wedded = texts[2]
        study.record("00.wedding_gain", paired_proportion_difference(text_hits(wedded, unsteered),
                                                                     text_hits(unsteered, unsteered)))  # fmt: skip
        columns[f"weddings (layer {wedding.layer}, c = {wedding.coeff:.3g})"] = wedded[:n]
    return SideBySide(unsteered, loved, wedded, study.table(pd.DataFrame(columns), "completions"))


def finish(study: Study, grid: Grid, side: SideBySide) -> StudyRecord:
    """The study's record and "What it shows"."""
    unsteered: Estimate = proportion_of(text_hits(side.unsteered, side.unsteered))
    wedding = grid.vector
    if wedding is None or side.wedding is None or grid.chosen is None:
        record = study.finish({"wedding_layer": None, "unsteered_success": unsteered.as_dict(),
                               "confirm_samples": study["confirm_samples"]})  # fmt: skip
        study.prose(NO_CHOICE_FINDINGS, model=model_description(study["model_name"]))
        return record
    steered: Estimate = proportion_of(text_hits(side.wedding, side.unsteered))
    record = study.finish({
        "wedding_layer": wedding.layer, "wedding_coeff": wedding.coeff, "wedding_relative_norm": wedding.relative_norm,
        "wedding_success": steered.as_dict(), "unsteered_success": unsteered.as_dict(),
        "confirm_samples": study["confirm_samples"],
    })  # fmt: skip
    study.prose(FINDINGS, model=model_description(study["model_name"]), layer=wedding.layer, coeff=wedding.coeff,
                norm=wedding.relative_norm, n=study["confirm_samples"], steered=steered, unsteered=unsteered,
                base_ppl=float(grid.unsteered.perplexity), chosen_ppl=float(grid.chosen.perplexity),
                judge=study["judge_name"], **study.measured())  # fmt: skip
    return record
