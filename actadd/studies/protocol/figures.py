"""The figures that show a comparison study's protocol: every setting a selection tried
against its fluency (:func:`selection_figure`), and per-input steerability (:func:`steerability_figure`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from actadd.studies.presentation.plots import SHARE_LIMITS, by_setting, panels, spread
from actadd.studies.protocol.methods import KIND_COLOURS, KIND_LABELS
from actadd.studies.protocol.selection import Selection


def selection_scatter(ax: plt.Axes, selection: Selection, *, objective_label: str, title: str) -> None:
    """Every setting of a selection: mean objective against selection perplexity, both with the
    table's intervals; the fluency limit as a line, the choices ringed."""
    table, objective = selection.table, selection.objective
    for kind, rows in table.groupby("kind", sort=False):
        ax.errorbar(
            rows["perplexity"], rows[objective], xerr=spread(rows, "perplexity", "perplexity_low", "perplexity_high"),
            yerr=spread(rows, objective, f"{objective}_low", f"{objective}_high"), fmt="o", capsize=2,
            color=KIND_COLOURS[str(kind)], label=KIND_LABELS[str(kind)], alpha=0.85,
        )  # fmt: skip
        for row in rows.itertuples():
            ax.annotate(_short(row), (row.perplexity, getattr(row, objective)),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")  # fmt: skip
    chosen = table[table["chosen"]]
    ax.scatter(chosen["perplexity"], chosen[objective], s=220, facecolors="none", edgecolors="red", label="chosen")
    ax.axvline(selection.fluency_limit, color="red", ls=":", label="fluency limit")
    ax.set(xlabel="judge perplexity on the selection prompts (geometric mean)", ylabel=objective_label, title=title)
    ax.legend(fontsize=7)


def _short(row: Any) -> str:
    if row.kind in ("actadd", "meandiff"):
        return f"L{int(row.layer)} n{row.relative_norm:.2g}"
    if row.kind == "preadd":
        return f"s {row.strength:g}"
    return ""


def steerability(
    axes: Sequence[plt.Axes], changes: pd.DataFrame, summary: pd.DataFrame, *, label: str, title: str
) -> None:
    """Left: every prompt's change against unsteered, per method; right: the share of prompts
    moved the wrong way with its Wilson interval (the summary's)."""
    sns.stripplot(data=changes, x="method", y="change", ax=axes[0], alpha=0.5, size=4, jitter=0.25)
    axes[0].axhline(0, color="grey", lw=1)
    axes[0].set(xlabel="method", ylabel=label, title=f"{title}: per-prompt change")
    by_setting(axes[1], summary, "method", "wrong_way")
    axes[1].set(xlabel="method", ylabel="share of prompts moved the wrong way", ylim=SHARE_LIMITS,
                title=f"{title}: wrong way (Wilson 95% CI)")  # fmt: skip


def selection_figure(selections: Mapping[str, Selection], *, objective_label: str, title: str) -> plt.Figure:
    """One panel per task (``selections``: its label -> its selection): every setting tried
    (:func:`selection_scatter`)."""
    fig, axes = panels(len(selections), title=title, panel=(7.0, 5.0))
    for ax, (label, selection) in zip(axes[0], selections.items()):
        n = int(selection.table["n_prompts"].max())
        selection_scatter(ax, selection, objective_label=objective_label, title=f"{label}: {n} selection prompts")
    return fig


def steerability_figure(
    results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], *, label: str, title: str
) -> plt.Figure:
    """One row per task (``results``: label -> (changes, summary) of
    :func:`~.comparison.steerability`): per-prompt changes and the share moved the wrong way."""
    fig, axes = panels(2, nrows=len(results), title=title, panel=(7.0, 4.4))
    for row, (name, (changes, summary)) in zip(axes, results.items()):
        steerability(row, changes, summary, label=label, title=name)
    return fig
