"""The figures that show a comparison study's protocol: every method's success against its
fluency cost over its grid (the frontier, :func:`frontier_figure`), and per-input steerability
(:func:`steerability_figure`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, NullFormatter

from actadd.studies.presentation.plots import SHARE_LIMITS, by_setting, panels, spread
from actadd.studies.protocol.methods import KIND_COLOURS, KIND_LABELS
from actadd.studies.protocol.selection import Selection

JITTER_SEED = 0


def frontier(ax: plt.Axes, table: pd.DataFrame, objective: str, *, objective_label: str, title: str,
             fluency_limit: float | None = None) -> None:  # fmt: skip
    """Each method's ``objective`` against its fluency cost over its grid, both with the table's
    intervals: a line per steered kind through its settings from the gentlest, a point for
    unsteered and prompting; a setting whose completions fail the text gate hollow, the choices
    ringed, the fluency limit as a line. ``table`` has kind, the setting columns, ``objective``,
    ``perplexity`` (each with ``_low``/``_high``) and, from a selection, ``passes_gate`` and ``chosen``."""
    for kind, rows in table.groupby("kind", sort=False):
        kind = str(kind)
        rows = rows.assign(_order=rows["position_norm"].fillna(rows["strength"].abs())).sort_values("_order")
        colour = KIND_COLOURS[kind]
        ax.errorbar(rows["perplexity"], rows[objective], xerr=spread(rows, "perplexity", "perplexity_low",
                    "perplexity_high"), yerr=spread(rows, objective, f"{objective}_low", f"{objective}_high"),
                    fmt="-" if len(rows) > 1 else "none", color=colour, alpha=0.6, capsize=2, lw=1)  # fmt: skip
        text = rows["passes_gate"] if "passes_gate" in rows else pd.Series(True, index=rows.index)
        ax.scatter(
            rows["perplexity"][text], rows[objective][text], color=colour, s=28, zorder=3, label=KIND_LABELS[kind]
        )
        ax.scatter(rows["perplexity"][~text], rows[objective][~text], facecolors="white", edgecolors=colour, s=28,
                   zorder=3, label=f"{KIND_LABELS[kind]}: fails the text gate" if (~text).any() else None)  # fmt: skip
        for row in rows.itertuples():
            if kind in ("actadd", "meandiff", "preadd"):
                ax.annotate(_short(row), (row.perplexity, getattr(row, objective)), fontsize=6, xytext=(3, 3),
                            textcoords="offset points", color=colour)  # fmt: skip
    if "chosen" in table:
        chosen = table[table["chosen"]]
        ax.scatter(chosen["perplexity"], chosen[objective], s=160, facecolors="none", edgecolors="red", lw=1.5,
                   zorder=4, label="chosen")  # fmt: skip
    if fluency_limit is not None:
        ax.axvline(fluency_limit, color="red", ls=":", label="fluency limit")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="judge perplexity (geometric mean, log scale)", ylabel=objective_label, title=title)
    ax.legend(fontsize=7)


def _short(row: Any) -> str:
    """A setting's label on the frontier: layer and strength per position, or PREADD's strength."""
    if row.kind in ("actadd", "meandiff"):
        return f"L{int(row.layer)} {row.position_norm:.2g}"
    return f"s {row.strength:g}"


def frontier_figure(selections: Mapping[str, Selection], *, objective_label: str, title: str) -> plt.Figure:
    """One panel per task (``selections``: its label -> its selection): every method's frontier
    over its grid on the selection prompts (:func:`frontier`)."""
    fig, axes = panels(len(selections), title=title, panel=(7.0, 5.2))
    for ax, (label, selection) in zip(axes[0], selections.items()):
        n = int(selection.table["n_prompts"].max())
        frontier(ax, selection.table, selection.objective, objective_label=objective_label,
                 title=f"{label}: {n} selection prompts", fluency_limit=selection.fluency_limit)  # fmt: skip
    return fig


def steerability(
    axes: Sequence[plt.Axes], changes: pd.DataFrame, summary: pd.DataFrame, *, label: str, title: str
) -> None:
    """Left: every prompt's change against unsteered, per method; right: the share of prompts
    moved the wrong way with its Wilson interval (the summary's). The points' jitter is drawn from
    a fixed seed, so a run draws the same figure each time."""
    # seaborn jitters with numpy's global generator: seed it for this plot only, then restore it.
    state = np.random.get_state()
    np.random.seed(JITTER_SEED)
    try:
        sns.stripplot(data=changes, x="method", y="change", ax=axes[0], alpha=0.5, size=4, jitter=0.25)
    finally:
        np.random.set_state(state)
    axes[0].axhline(0, color="grey", lw=1)
    axes[0].set(xlabel="method", ylabel=label, title=f"{title}: per-prompt change")
    by_setting(axes[1], summary, "method", "wrong_way")
    axes[1].set(xlabel="method", ylabel="share of prompts moved the wrong way", ylim=SHARE_LIMITS,
                title=f"{title}: wrong way (Wilson 95% CI)")  # fmt: skip


def steerability_figure(
    results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], *, label: str, title: str
) -> plt.Figure:
    """One row per task (``results``: label -> (changes, summary) of
    :func:`~.comparison.steerability`): per-prompt changes and the share moved the wrong way."""
    fig, axes = panels(2, nrows=len(results), title=title, panel=(7.0, 4.4))
    for row, (name, (changes, summary)) in zip(axes, results.items()):
        steerability(row, changes, summary, label=label, title=name)
    return fig
