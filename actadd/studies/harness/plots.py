"""The studies' figures, in the few shapes they use; every interval drawn is the one in the
table beside it (its ``<y>_low`` and ``<y>_high`` columns, or the columns named).

- :func:`panels`: a figure of titled panels whose labels fit (constrained layout);
- :func:`by_setting`: an estimate with its interval per setting (a number or a category),
  optionally one series per value of a ``hue`` column;
- :func:`curves`: one line per series with its interval as a band (P@K over K);
- :func:`reference`: a baseline as a line with its interval as a band;
- :func:`grid_heatmap`: a layer x strength grid of one value;
- :func:`paired_differences`: comparisons against a line at 0;
- :func:`selection_scatter`, :func:`steerability` (and a figure of each over a study's tasks):
  the comparison studies' selection and per-prompt changes;
- :func:`plain_log_axis`, :func:`setting_ticks`: tick labels a reader can read (never
  ``6 x 10^0`` or ``3.33848``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullLocator

from actadd.studies.harness.methods import KIND_COLOURS, KIND_LABELS
from actadd.studies.harness.selection import Selection

SHARE_LIMITS = (-0.03, 1.03)  # a share's axis, with room for the interval's caps


def panels(
    ncols: int, *, title: str, nrows: int = 1, panel: tuple[float, float] = (5.6, 4.4)
) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels (always a 2D array of axes) with ``title`` above
    them, laid out so that titles, tick labels and the title never overlap."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False, layout="constrained"
    )
    fig.suptitle(title)
    return fig, axes


def _spread(table: pd.DataFrame, y: str, low: str, high: str) -> np.ndarray:
    values = table[y].to_numpy(dtype=float)
    return np.nan_to_num([values - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - values])


def by_setting(
    ax: plt.Axes,
    table: pd.DataFrame,
    x: str,
    y: str,
    *,
    low: str | None = None,
    high: str | None = None,
    hue: str | None = None,
    hue_format: str = "{}",
    scale: float = 1.0,
    fmt: str = "o",
    **style: Any,
) -> list[Any]:
    """``y`` with its interval (``low``/``high`` columns, default ``<y>_low``/``<y>_high``) at each
    ``x``: numeric x as they are, any other x as evenly spaced categories in table order (their
    labels set as ticks). With ``hue``, one series per value of that column, side by side,
    labelled ``hue_format.format(value)`` ("layer {}").
    ``scale`` multiplies the values (100 for percentage points). Returns the x positions used."""
    low, high = low or f"{y}_low", high or f"{y}_high"
    numeric = pd.api.types.is_numeric_dtype(table[x])
    categories = [] if numeric else list(dict.fromkeys(table[x]))
    groups = [(None, table)] if hue is None else list(table.groupby(hue, sort=False))
    offsets = np.linspace(-0.12, 0.12, len(groups)) if len(groups) > 1 and not numeric else np.zeros(len(groups))
    for offset, (group, rows) in zip(offsets, groups):
        where = rows[x].to_numpy(dtype=float) if numeric else np.array([categories.index(c) for c in rows[x]]) + offset
        scaled = rows.assign(**{c: rows[c] * scale for c in (y, low, high)})
        label = style.pop("label", None) if hue is None else hue_format.format(group)
        ax.errorbar(where, scaled[y], yerr=_spread(scaled, y, low, high), fmt=fmt, capsize=3, label=label, **style)
    if not numeric:
        setting_ticks(ax, [str(c) for c in categories])
    return categories


def curves(
    ax: plt.Axes, table: pd.DataFrame, x: str, y: str, *, low: str, high: str, hue: str, cmap: str = "viridis"
) -> None:
    """One line per value of ``hue`` over ``x``, its interval as a band of the same colour."""
    groups = list(table.groupby(hue, sort=False))
    for color, (name, rows) in zip(sns.color_palette(cmap, len(groups)), groups):
        ax.plot(rows[x], rows[y], marker="o", ms=3, color=color, label=str(name))
        ax.fill_between(rows[x], rows[low], rows[high], color=color, alpha=0.15)


def reference(ax: plt.Axes, value: float, low: float, high: float, *, label: str = "unsteered") -> None:
    """A baseline as a dashed line, its interval as a grey band."""
    ax.axhline(value, color="black", ls="--", lw=1, label=label)
    if np.isfinite(low) and np.isfinite(high):
        ax.axhspan(low, high, color="black", alpha=0.1)


def setting_ticks(ax: plt.Axes, labels: Sequence[str], *, axis: str = "x", wrap: int = 22) -> None:
    """Category tick labels, wrapped so that long setting names do not run into each other."""
    wrapped = ["\n".join(textwrap.wrap(label, wrap)) or label for label in labels]
    if axis == "x":
        ax.set_xticks(range(len(labels)), wrapped, fontsize=8)
    else:
        ax.set_yticks(range(len(labels)), wrapped, fontsize=8)


def plain_log_axis(
    ax: plt.Axes, values: Sequence[float], labels: Sequence[str] | None = None, *, axis: str = "x"
) -> None:
    """A log axis with ticks at ``values`` only, labelled plainly (``labels`` or 3 significant
    figures): no ``6 x 10^0`` minor labels, no ``3.33848``."""
    texts = list(labels) if labels is not None else [f"{v:.3g}" for v in values]
    if axis == "x":
        ax.set_xscale("log")
        ax.set_xticks(list(values), texts)
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_yscale("log")
        ax.set_yticks(list(values), texts)
        ax.yaxis.set_minor_locator(NullLocator())


def grid_heatmap(
    ax: plt.Axes,
    table: pd.DataFrame,
    *,
    index: str,
    columns: str,
    values: str,
    label: str,
    fmt: str = ".2f",
    share: bool = False,
    cmap: str = "viridis",
) -> None:
    """One value over a grid of two settings (rows ``index``, columns ``columns``), each cell
    annotated; ``share`` fixes the colour scale to [0, 1]."""
    grid = table.pivot(index=index, columns=columns, values=values)
    limits = {"vmin": 0.0, "vmax": 1.0} if share else {}
    sns.heatmap(grid, annot=True, fmt=fmt, cmap=cmap, ax=ax, cbar_kws={"label": label}, **limits)
    ax.set_xticks(np.arange(grid.shape[1]) + 0.5, [f"{c:.3g}" for c in grid.columns])
    ax.set_yticks(np.arange(grid.shape[0]) + 0.5, [f"{r:.3g}" for r in grid.index], rotation=0)


def paired_differences(ax: plt.Axes, table: pd.DataFrame, *, label: str, title: str, scale: float = 1.0) -> None:
    """Paired differences (rows with ``comparison``, ``value``, ``low``, ``high``; one series per
    ``group`` when the table has that column) beside a line at 0."""
    by_setting(ax, table, "comparison", "value", low="low", high="high",
               hue="group" if "group" in table.columns else None, scale=scale)  # fmt: skip
    ax.axhline(0, color="grey", lw=1)
    ax.set(ylabel=label, title=title)
    if "group" in table.columns:
        ax.legend(fontsize=8)


def methods(ax: plt.Axes, table: pd.DataFrame, metric: str, *, label: str, title: str) -> None:
    """``metric`` of every method of a method table with the table's intervals, one series per
    ``direction`` when the table has that column."""
    hue = "direction" if "direction" in table.columns else None
    by_setting(ax, table, "method", metric, hue=hue)
    ax.set(xlabel="method", ylabel=label, title=title)
    if hue:
        ax.legend(fontsize=8)


def selection_scatter(ax: plt.Axes, selection: Selection, *, objective_label: str, title: str) -> None:
    """Every setting of a selection: mean objective against selection perplexity, both with the
    table's intervals; the fluency limit as a line, the choices ringed."""
    table, objective = selection.table, selection.objective
    for kind, rows in table.groupby("kind", sort=False):
        ax.errorbar(
            rows["perplexity"], rows[objective], xerr=_spread(rows, "perplexity", "perplexity_low", "perplexity_high"),
            yerr=_spread(rows, objective, f"{objective}_low", f"{objective}_high"), fmt="o", capsize=2,
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
