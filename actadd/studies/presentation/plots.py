"""The studies' figures, in the few shapes they use; every interval drawn is the one in the
table beside it (its ``<y>_low`` and ``<y>_high`` columns, or the columns named).

- :func:`panels`: a figure of titled panels whose labels fit (constrained layout);
- :func:`by_setting`: an estimate with its interval per setting (a number or a category),
  optionally one series per value of a ``hue`` column;
- :func:`curves`: one line per series with its interval as a band (P@K over K);
- :func:`reference`: a baseline as a line with its interval as a band;
- :func:`grid_heatmap`: a layer x strength grid of one value;
- :func:`paired_differences`: comparisons against a line at 0;
- :func:`plain_log_axis`, :func:`setting_ticks`: tick labels a reader can read (never
  ``6 x 10^0`` or ``3.33848``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullLocator

SHARE_LIMITS = (-0.03, 1.03)  # a share's axis, with room for the interval's caps


def panels(
    ncols: int, *, title: str, nrows: int = 1, panel: tuple[float, float] = (5.6, 4.4)
) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels (always a 2D array of axes) with ``title`` above
    them, laid out so that titles, tick labels and the title never overlap."""
    width = panel[0] * ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel[1] * nrows), squeeze=False, layout="constrained")
    fig.suptitle("\n".join(textwrap.wrap(title, int(width * 9))))  # about 9 characters an inch at the title's size
    return fig, axes


def spread(table: pd.DataFrame, y: str, low: str, high: str) -> np.ndarray:
    """The distances below and above each ``y`` to its interval, ``[2, n]`` (an errorbar's shape;
    0 where an end is NaN)."""
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
    horizontal: bool = False,
    **style: Any,
) -> list[Any]:
    """``y`` with its interval (``low``/``high`` columns, default ``<y>_low``/``<y>_high``) at each
    ``x``: numeric x as they are, any other x as evenly spaced categories in table order (their
    labels set as ticks). With ``hue``, one series per value of that column, side by side,
    labelled ``hue_format.format(value)`` ("layer {}"). ``horizontal`` puts the settings on the
    y axis (top to bottom) and the values on the x axis: long setting names then never overlap.
    ``scale`` multiplies the values (100 for percentage points). Returns the categories used."""
    low, high = low or f"{y}_low", high or f"{y}_high"
    numeric = pd.api.types.is_numeric_dtype(table[x])
    categories = [] if numeric else list(dict.fromkeys(table[x]))
    at = category_positions(table, x, hue=hue)
    for group in [None] if hue is None else _series(table, hue):
        chosen = np.ones(len(table), dtype=bool) if hue is None else (table[hue] == group).to_numpy()
        rows, where = table[chosen], at[chosen]
        scaled = rows.assign(**{c: rows[c] * scale for c in (y, low, high)})
        label = style.pop("label", None) if hue is None else hue_format.format(group)
        error = spread(scaled, y, low, high)
        if horizontal:
            ax.errorbar(scaled[y], where, xerr=error, fmt=fmt, capsize=3, label=label, **style)
        else:
            ax.errorbar(where, scaled[y], yerr=error, fmt=fmt, capsize=3, label=label, **style)
    if not numeric:
        setting_ticks(ax, [str(c) for c in categories], axis="y" if horizontal else "x")
        if horizontal:
            ax.invert_yaxis()  # the table's first setting on top
    return categories


def category_positions(table: pd.DataFrame, x: str, *, hue: str | None = None) -> np.ndarray:
    """Where :func:`by_setting` draws each row on its ``x`` axis, ``[len(table)]``: numeric ``x``
    as it is, any other ``x`` at its category's index in table order, each ``hue`` series shifted
    beside the others. For marks drawn over the same settings (a second estimate beside the interval)."""
    if pd.api.types.is_numeric_dtype(table[x]):
        return table[x].to_numpy(dtype=float)
    categories = list(dict.fromkeys(table[x]))
    index = np.array([categories.index(c) for c in table[x]], dtype=float)
    if hue is None:
        return index
    series = _series(table, hue)
    offsets = dict(zip(series, np.linspace(-0.12, 0.12, len(series)) if len(series) > 1 else [0.0]))
    return index + np.array([offsets.get(h, np.nan) for h in table[hue]])


def _series(table: pd.DataFrame, hue: str) -> list[Any]:
    """The values of ``hue`` in table order, one series each."""
    return list(dict.fromkeys(table[hue].dropna()))


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
    ``group`` when the table has that column) beside a line at 0, the comparisons on the y axis."""
    by_setting(ax, table, "comparison", "value", low="low", high="high",
               hue="group" if "group" in table.columns else None, scale=scale, horizontal=True)  # fmt: skip
    ax.axvline(0, color="grey", lw=1)
    ax.set(xlabel=label, title=title)
    if "group" in table.columns:
        ax.legend(fontsize=8)


def methods(
    ax: plt.Axes, table: pd.DataFrame, metric: str, *, label: str, title: str, horizontal: bool = False
) -> None:
    """``metric`` of every method of a method table with the table's intervals, one series per
    ``direction`` when the table has that column (``horizontal``: methods on the y axis)."""
    hue = "direction" if "direction" in table.columns else None
    by_setting(ax, table, "method", metric, hue=hue, horizontal=horizontal)
    if horizontal:
        ax.set(ylabel="method", xlabel=label, title=title)
    else:
        ax.set(xlabel="method", ylabel=label, title=title)
    if hue:
        ax.legend(fontsize=8)


def overlapping_tick_labels(fig: plt.Figure) -> list[tuple[str, str]]:
    """Every pair of tick labels ``fig`` draws (on every axes, inside its view limits) whose boxes
    intersect by more than a pixel each way: what a reader cannot read. Draws the figure to
    measure the text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = []
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = min(limits), max(limits)
            for tick in axis.get_major_ticks():
                label = tick.label1
                if low <= tick.get_loc() <= high and label.get_visible() and label.get_text().strip():
                    boxes.append((label.get_text(), label.get_window_extent(renderer)))
    overlaps = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > 1 and height > 1:
                overlaps.append((a, b))
    return overlaps
