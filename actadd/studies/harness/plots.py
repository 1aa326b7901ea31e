"""The studies' figures: every interval drawn is the one in the table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from actadd.studies.harness.methods import KIND_COLOURS, KIND_LABELS
from actadd.studies.harness.selection import Selection

# ---------------------------------------------------------------------------------------
# Figures: every interval drawn is the one in the table beside it


def _errorbar(ax: plt.Axes, x: Any, y: pd.Series, low: pd.Series, high: pd.Series, **kwargs: Any) -> None:
    spread = np.array([(y - low).to_numpy(dtype=float), (high - y).to_numpy(dtype=float)])
    ax.errorbar(x, y, yerr=np.nan_to_num(spread), capsize=3, **kwargs)


def plot_selection(ax: plt.Axes, selection: Selection, *, objective_label: str, title: str) -> None:
    """Every setting of a selection: mean objective against selection perplexity, both with the
    table's intervals; the fluency limit as a line, the choices ringed."""
    table = selection.table
    for kind, rows in table.groupby("kind", sort=False):
        spread_x = np.nan_to_num(
            [rows["perplexity"] - rows["perplexity_low"], rows["perplexity_high"] - rows["perplexity"]]
        )
        spread_y = np.nan_to_num(
            [
                rows[selection.objective] - rows[f"{selection.objective}_low"],
                rows[f"{selection.objective}_high"] - rows[selection.objective],
            ]
        )
        ax.errorbar(
            rows["perplexity"], rows[selection.objective], xerr=spread_x, yerr=spread_y, fmt="o", capsize=2,
            color=KIND_COLOURS[str(kind)], label=KIND_LABELS[str(kind)], alpha=0.85,
        )  # fmt: skip
        for row in rows.itertuples():
            ax.annotate(_short(row), (row.perplexity, getattr(row, selection.objective)),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")  # fmt: skip
    chosen = table[table["chosen"]]
    ax.scatter(
        chosen["perplexity"], chosen[selection.objective], s=220, facecolors="none", edgecolors="red", label="chosen"
    )
    ax.axvline(selection.fluency_limit, color="red", ls=":", label="fluency limit")
    ax.set(xlabel="judge perplexity on the selection prompts (geometric mean)", ylabel=objective_label, title=title)
    ax.legend(fontsize=7)


def _short(row: Any) -> str:
    if row.kind == "actadd":
        return f"L{int(row.layer)} n{row.relative_norm:.2g}"
    if row.kind == "preadd":
        return f"s {row.strength:g}"
    return ""


def plot_methods(ax: plt.Axes, table: pd.DataFrame, metric: str, *, label: str, title: str) -> None:
    """``metric`` of every method of a :func:`method_table` with the table's intervals, one
    series per ``direction`` when the table has that column."""
    groups = list(dict.fromkeys(table["direction"])) if "direction" in table.columns else [None]
    offsets = np.linspace(-0.12, 0.12, len(groups)) if len(groups) > 1 else [0.0]
    methods = list(dict.fromkeys(table["method"]))
    for offset, group in zip(offsets, groups):
        rows = table if group is None else table[table["direction"] == group]
        x = np.array([methods.index(m) for m in rows["method"]]) + offset
        _errorbar(ax, x, rows[metric], rows[f"{metric}_low"], rows[f"{metric}_high"], fmt="o", label=group)
    ax.set_xticks(range(len(methods)), methods)
    ax.set(xlabel="method", ylabel=label, title=title)
    if groups != [None]:
        ax.legend(fontsize=8)


def plot_differences(ax: plt.Axes, table: pd.DataFrame, *, label: str, title: str, scale: float = 1.0) -> None:
    """Paired differences (an :func:`estimates_table` with a ``comparison`` column, grouped by
    ``group`` when present) as points with their intervals, beside a line at 0."""
    groups = table["group"].unique().tolist() if "group" in table.columns else [None]
    offsets = np.linspace(-0.15, 0.15, len(groups)) if len(groups) > 1 else [0.0]
    comparisons = list(dict.fromkeys(table["comparison"]))
    for offset, group in zip(offsets, groups):
        rows = table if group is None else table[table["group"] == group]
        x = np.array([comparisons.index(c) for c in rows["comparison"]]) + offset
        _errorbar(ax, x, rows["value"] * scale, rows["low"] * scale, rows["high"] * scale, fmt="o", label=group)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(range(len(comparisons)), comparisons)
    ax.set(ylabel=label, title=title)
    if groups != [None]:
        ax.legend(fontsize=8)


def plot_steerability(
    axes: Sequence[plt.Axes], changes: pd.DataFrame, summary: pd.DataFrame, *, label: str, title: str
) -> None:
    """Left: every prompt's change against unsteered, per method; right: the share of prompts
    moved the wrong way with its Wilson interval (the summary's)."""
    sns.stripplot(data=changes, x="method", y="change", ax=axes[0], alpha=0.5, size=4, jitter=0.25)
    axes[0].axhline(0, color="grey", lw=1)
    axes[0].set(xlabel="method", ylabel=label, title=f"{title}: per-prompt change")
    _errorbar(
        axes[1], range(len(summary)), summary["wrong_way"], summary["wrong_way_low"], summary["wrong_way_high"], fmt="o"
    )
    axes[1].set_xticks(range(len(summary)), summary["method"])
    axes[1].set(
        xlabel="method",
        ylabel="share of prompts moved the wrong way",
        ylim=(-0.03, 1.03),
        title=f"{title}: wrong way (Wilson 95% CI)",
    )
