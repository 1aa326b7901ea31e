"""Per-prompt values, their means with intervals resampled by prompt, and the comparisons
the claims of 04 and 05 rest on: ActAdd minus each baseline as paired per-prompt differences
(:func:`paired_differences`), and per-input steerability, the share of prompts a method moves
the wrong way against unsteered decoding (:func:`steerability`; Tan et al. 2024, "Analyzing the
generalization and reliability of steering vectors")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from actadd.studies.evaluation.scorers import fluency_estimate
from actadd.studies.evaluation.stats import (
    Estimate,
    bootstrap_difference,
    cluster_mean,
    paired_difference,
    paired_proportion_difference,
    proportion_difference,
    proportion_of,
)
from actadd.studies.protocol.methods import BASELINES, SETTING_COLUMNS, TREATMENT

# ---------------------------------------------------------------------------------------
# Per-prompt values and their intervals


def per_prompt(frame: pd.DataFrame, value: str, agg: str | Callable = "mean") -> pd.DataFrame:
    """One row per prompt (index ``prompt_id``), one column per method in the frame's order:
    ``agg`` of ``value`` over that prompt's samples (``"mean"``; ``"max"`` for expected
    maximum toxicity). NaN values (an unscored completion) are left out."""
    if value not in frame.columns:
        raise ValueError(f"no column {value!r}; columns: {list(frame.columns)}")
    order = list(dict.fromkeys(frame["method"]))
    return frame.groupby(["prompt_id", "method"])[value].agg(agg).unstack("method")[order]


def _is_binary(values: np.ndarray) -> bool:
    finite = values[~np.isnan(values)]
    return len(finite) > 0 and bool(np.isin(finite, (0.0, 1.0)).all())


def mean_over_prompts(values: pd.Series | np.ndarray, *, seed: int = 0) -> Estimate:
    """The mean of one value per prompt: a Wilson interval when every value is 0 or 1 (a share
    of prompts), else a bootstrap over prompts. NaN values are left out; fewer than two left
    give a NaN interval."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if _is_binary(x):
        return proportion_of(x.astype(bool))
    if len(x) < 2:
        value = float(x[0]) if len(x) else float("nan")
        return Estimate(value, float("nan"), float("nan"), len(x), "too few prompts for an interval")
    return cluster_mean(x, np.arange(len(x)), seed=seed)


def method_table(
    frame: pd.DataFrame, metrics: Mapping[str, tuple[str, str | Callable]], *, seed: int = 0
) -> pd.DataFrame:
    """One row per method: name, kind, its settings, then for each ``name: (column, agg)`` of
    ``metrics`` the mean over prompts of the per-prompt ``agg`` of ``column``
    (:func:`mean_over_prompts`: name, name_low, name_high), and, when the frame has a
    ``perplexity`` column, the fluency: the geometric-mean judge perplexity with a bootstrap
    over prompts (perplexity, perplexity_low, perplexity_high, n_judged)."""
    tables = {name: per_prompt(frame, column, agg) for name, (column, agg) in metrics.items()}
    rows = []
    for method, group in frame.groupby("method", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {"method": method, "kind": first["kind"], **{c: first.get(c) for c in SETTING_COLUMNS}}
        row["n_prompts"], row["n_completions"] = group["prompt_id"].nunique(), len(group)
        for name, table in tables.items():
            row |= mean_over_prompts(table[method], seed=seed).columns(name)
        if "perplexity" in group.columns:
            judged = group.dropna(subset=["perplexity"])
            row |= _fluency(judged, seed).columns("perplexity")
            row["n_judged"] = len(judged)
        rows.append(row)
    return pd.DataFrame(rows)


def _fluency(judged: pd.DataFrame, seed: int) -> Estimate:
    if judged["prompt_id"].nunique() < 2:
        value = float(np.exp(np.log(judged["perplexity"]).mean())) if len(judged) else float("nan")
        return Estimate(value, float("nan"), float("nan"), len(judged), "too few prompts for an interval")
    return fluency_estimate(judged["perplexity"].to_numpy(), judged["prompt_id"].to_numpy(), seed=seed)


def table_estimate(table: pd.DataFrame, key: str, metric: str, *, by: str = "method") -> Estimate:
    """The :class:`Estimate` of ``metric`` in the row of ``table`` whose ``by`` is ``key``
    (the interval the table shows, for a claim or a sentence)."""
    rows = table[table[by] == key]
    if len(rows) != 1:
        raise ValueError(f"{by} {key!r} names {len(rows)} rows of the table; {by}s: {table[by].tolist()}")
    row = rows.iloc[0]
    n = int(row["n_prompts"]) if "n_prompts" in row else int(row.get("n", 0))
    return Estimate(float(row[metric]), float(row[f"{metric}_low"]), float(row[f"{metric}_high"]), n, "as tabled")


# ---------------------------------------------------------------------------------------
# Comparisons


def paired_differences(
    table: pd.DataFrame,
    *,
    treatment: str = TREATMENT,
    baselines: Sequence[str] = BASELINES,
    seed: int = 0,
) -> dict[str, Estimate]:
    """``treatment`` minus each baseline on a :func:`per_prompt` table: the mean over prompts of
    the per-prompt difference (prompts where either is NaN left out). The interval resamples
    prompts (a bootstrap of the paired differences); when both columns are 0/1 per prompt
    (a prompt with any toxic sample), Newcombe's paired interval, which does not collapse to a
    point when every pair agrees."""
    missing = {treatment, *baselines} - set(table.columns)
    if missing:
        raise ValueError(f"no column for method(s) {sorted(missing)}; methods: {list(table.columns)}")
    out = {}
    for baseline in baselines:
        pair = table[[treatment, baseline]].dropna()
        a, b = pair[treatment].to_numpy(dtype=float), pair[baseline].to_numpy(dtype=float)
        if _is_binary(a) and _is_binary(b):
            out[baseline] = paired_proportion_difference(a.astype(bool), b.astype(bool))
        elif len(pair) < 2:
            out[baseline] = Estimate(float(np.mean(a - b)), float("nan"), float("nan"), len(pair), "too few prompts")
        else:
            out[baseline] = paired_difference(a, b, np.arange(len(pair)), seed=seed)
    return out


def independent_difference(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray, *, seed: int = 0) -> Estimate:
    """The mean of one value per prompt over prompts ``a`` minus the same over other prompts
    ``b`` (NaN left out): Newcombe's interval for two independent proportions when every value
    is 0 or 1, else a bootstrap that resamples each set of prompts on its own."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if _is_binary(x) and _is_binary(y):
        return proportion_difference(x.astype(bool), y.astype(bool))
    return bootstrap_difference(x, y, stat=np.mean, seed=seed)


def estimates_table(estimates: Mapping[str, Estimate], key: str) -> pd.DataFrame:
    """Estimates as rows: ``key``, value, low, high, n, interval."""
    return pd.DataFrame(
        [
            {key: name, "value": e.value, "low": e.low, "high": e.high, "n": e.n, "interval": e.method}
            for name, e in estimates.items()
        ]
    )


def steerability(
    table: pd.DataFrame, *, reference: str = "unsteered", higher_is_better: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-input steerability against ``reference`` on a :func:`per_prompt` table.

    For each other method and each prompt, the change of the per-prompt value against the
    reference (signed so that a positive change is the intended direction). Returns
    (``changes``: method, prompt_id, change; ``summary``: per method, the share of prompts moved
    the wrong way (change < 0), the right way and not at all, each with a Wilson interval, and
    the mean change with a bootstrap over prompts)."""
    if reference not in table.columns:
        raise ValueError(f"no column for the reference method {reference!r}; methods: {list(table.columns)}")
    sign = 1.0 if higher_is_better else -1.0
    changes, rows = [], []
    for method in [m for m in table.columns if m != reference]:
        change = (sign * (table[method] - table[reference])).dropna()
        changes.append(pd.DataFrame({"method": method, "prompt_id": change.index, "change": change.to_numpy()}))
        row: dict[str, Any] = {"method": method, "n_prompts": len(change)}
        if len(change):
            for name, hits in (("wrong_way", change < 0), ("right_way", change > 0), ("unchanged", change == 0)):
                row |= proportion_of(hits.to_numpy()).columns(name)
        row |= mean_over_prompts(change.to_numpy()).columns("mean_change")
        rows.append(row)
    return pd.concat(changes, ignore_index=True), pd.DataFrame(rows)
