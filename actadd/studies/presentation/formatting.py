"""How numbers are written, once: units, values, intervals and Markdown tables.

The claims tables, the rendered prose, the run report and the README all format through
here, so a share, a difference of shares or an interval reads the same everywhere. A unit
says what a number is:

- ``percent``: a share (0.93 -> "93%"), never rounded to 0% or 100% unless it is exactly that;
- ``points``: a difference of shares in percentage points (0.052 -> "+5.2 pts", or
  "+5.2 points" in prose);
- ``ratio`` and ``number``: 3 significant figures.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pandas as pd

from actadd.studies.evaluation.stats import Estimate

Unit = Literal["percent", "points", "ratio", "number"]
UNITS: tuple[str, ...] = ("percent", "points", "ratio", "number")
# What a missing number (not measured, or NaN) reads as in a table, and in a sentence.
MISSING = "-"
MISSING_WORDS = "n/a"


def percent(x: float) -> str:
    """A share as a percent: whole percents from 10% on (or when whole), else one decimal; never
    rounded to 0% or 100% unless it is exactly that (99.7% of prompts is not all of them)."""
    p = 100 * x
    if p in (0.0, 100.0) or ((abs(p) >= 10 or abs(p - round(p)) < 0.05) and round(p) not in (0, 100)):
        return f"{p:.0f}%"
    text = f"{p:.1f}"
    return f"{p:.2f}%" if float(text) in (0.0, 100.0) else f"{text}%"


def value(x: float | None, unit: Unit = "number", *, words: bool = False) -> str:
    """``x`` in ``unit``; ``words`` spells points out ("points", for prose) instead of "pts"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING_WORDS if words else MISSING
    if unit == "percent":
        return percent(x)
    if unit == "points":
        return f"{100 * x:+.1f} {'points' if words else 'pts'}"
    return f"{x:.3g}"


def interval(estimate: Estimate | None, unit: Unit = "number", *, words: bool = False) -> str:
    """``value [low, high]`` in ``unit``. Tables write the unit once, after the interval
    ("+5.2 [+1.0, +9.4] pts"); prose (``words``) after the value ("+5.2 points [+1.0, +9.4]",
    "93% [88, 96]")."""
    if estimate is None:
        return MISSING
    if unit == "points" and not words:
        return f"{100 * estimate.value:+.1f} [{100 * estimate.low:+.1f}, {100 * estimate.high:+.1f}] pts"
    if unit in ("points", "percent") and words:
        bare = [
            value(x, unit, words=True).removesuffix("%").removesuffix(" points") for x in (estimate.low, estimate.high)
        ]
        return f"{value(estimate.value, unit, words=True)} [{bare[0]}, {bare[1]}]"
    return f"{value(estimate.value, unit)} [{value(estimate.low, unit)}, {value(estimate.high, unit)}]"


def half_width(estimate: Estimate, unit: Unit = "number") -> str:
    """Half the interval's width in ``unit`` ("±4.1 pts"): what a measurement's precision bought."""
    half = (estimate.high - estimate.low) / 2
    if math.isnan(half):
        return MISSING
    if unit == "points":
        return f"±{100 * half:.1f} pts"
    if unit == "percent":
        return f"±{100 * half:.1f}%"
    return f"±{half:.3g}"


def plain(x: Any) -> str:
    """Any value of a results table or a headline: 4 significant figures for reals, lists of
    numbers in brackets, anything else as JSON."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, numbers.Integral):
        return str(x)
    if isinstance(x, numbers.Real):
        return MISSING if math.isnan(x) else f"{x:.4g}"
    if isinstance(x, str):
        return x
    if isinstance(x, list | tuple) and all(isinstance(v, numbers.Real) for v in x):
        return "[" + ", ".join(plain(v) for v in x) + "]"
    return json.dumps(x, default=str)


def pairs(mapping: dict[str, Any]) -> str:
    """``key = value; ...`` of a small mapping (a study's model or data parameters)."""
    return "; ".join(f"{k} = {plain(v)}" for k, v in mapping.items()) or MISSING


def markdown_table(rows: pd.DataFrame | Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of a DataFrame (or of ``rows`` under ``header``); each cell is
    :func:`plain`, with pipes escaped and line breaks folded."""
    if isinstance(rows, pd.DataFrame):
        header, rows = [str(c) for c in rows.columns], list(rows.itertuples(index=False))
    if header is None:
        raise ValueError("markdown_table needs a header for rows that are not a DataFrame")

    def cell(x: Any) -> str:
        return plain(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
