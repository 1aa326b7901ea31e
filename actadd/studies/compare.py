"""One comparison harness for the steering studies (04 sentiment, 05 detoxification): ActAdd
against unsteered decoding, prompting and PREADD-style prefix-contrastive decoding.

- A method is data (:class:`Method`): its kind, layer, coefficient, relative norm, PREADD
  strength and instruction are fields and table columns, never parsed out of its name.
- :func:`sample` draws every method on the same prompts with the same per-(prompt, sample)
  seeds, as shared batches where the sampler allows (unsteered, prompting and ActAdd rows
  together; each PREADD setting in its own call, since its logits processor runs the prefixed
  rows), and returns one tidy row per completion.
- Settings are chosen on held-out prompts drawn with :data:`SELECT_STREAM` (:func:`select`) and
  reported on other prompts drawn with :data:`EVAL_STREAM`: no prompt and no seed is shared.
- Equal search budgets: :func:`search_space` gives ActAdd as many settings as PREADD.
- The selection rule: the best objective among the settings whose selection fluency
  (geometric-mean judge perplexity) is within ``fluency_tolerance`` times the unsteered one;
  when none is, the most fluent, flagged ``within_limit=False``.
- Comparisons: ActAdd minus each baseline as paired per-prompt differences with intervals
  resampled by prompt (:func:`paired_differences`), and per-input steerability, the share of
  prompts a method moves the wrong way against unsteered decoding (:func:`steerability`; Tan et
  al. 2024, "Analyzing the generalization and reliability of steering vectors").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

from actadd import SteeringVector, generate, row_seeds, steering_vector
from actadd.checks import integer, real, strings
from actadd.studies import streams
from actadd.studies.baselines import PrefixContrast, prompted
from actadd.studies.scorers import continuation_perplexity, fluency_estimate
from actadd.studies.stats import (
    Estimate,
    bootstrap_difference,
    cluster_mean,
    paired_difference,
    paired_proportion_difference,
    proportion_difference,
    proportion_of,
)

# Settings are chosen on draws of one stream and reported on draws of another.
SELECT_STREAM = streams.SELECT
EVAL_STREAM = streams.CONFIRM

Kind = Literal["unsteered", "prompting", "preadd", "actadd"]
KINDS: tuple[str, ...] = get_args(Kind)
SETTING_COLUMNS = ["layer", "coeff", "relative_norm", "strength"]
COLUMNS = ["method", "kind", *SETTING_COLUMNS, "prompt_id", "sample", "seed", "prompt", "completion"]
# The methods an evaluation compares, by these names.
TREATMENT = "ActAdd"
BASELINES = ("unsteered", "prompting", "PREADD")
# How a kind is named in prose and figures.
KIND_LABELS = {"unsteered": "unsteered", "prompting": "prompting", "preadd": "PREADD", "actadd": "ActAdd"}
KIND_COLOURS = {"unsteered": "black", "prompting": "C2", "preadd": "C1", "actadd": "C0"}


@dataclass(frozen=True)
class Method:
    """One way of decoding, as data.

    ``kind`` is ``unsteered`` (the plain prompt), ``prompting`` (``instruction`` put before the
    prompt), ``preadd`` (plain log-probs + ``strength`` x (log-probs behind the prefix
    ``instruction`` - plain ones), :class:`~actadd.studies.baselines.PrefixContrast`) or
    ``actadd`` (``steering`` added at ``layer`` with coefficient ``coeff``; ``relative_norm`` is
    its norm over the residual norm at that layer). Fields a kind does not use are None.
    """

    name: str
    kind: Kind
    layer: int | None = None
    coeff: float | None = None
    relative_norm: float | None = None
    strength: float | None = None
    instruction: str | None = None
    steering: SteeringVector | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a method needs a non-empty name, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        needs = {
            "unsteered": (),
            "prompting": ("instruction",),
            "preadd": ("instruction", "strength"),
            "actadd": ("steering", "layer", "coeff", "relative_norm"),
        }[self.kind]
        for name in ("layer", "coeff", "relative_norm", "strength", "instruction", "steering"):
            given = getattr(self, name) is not None
            if given != (name in needs):
                what = "needs" if name in needs else "takes no"
                raise ValueError(
                    f"method {self.name!r} of kind {self.kind!r} {what} {name}, got {getattr(self, name)!r}"
                )

    def settings(self) -> dict[str, Any]:
        """The setting columns: layer, coeff, relative_norm, strength (None where unused)."""
        return {name: getattr(self, name) for name in SETTING_COLUMNS}

    def describe(self) -> str:
        """The setting in words, for tables and prose: 'layer 10, c = 4.1 (relative norm 4)'."""
        if self.kind == "actadd":
            return f"layer {self.layer}, c = {self.coeff:.3g} (relative norm {self.relative_norm:.3g})"
        if self.kind == "preadd":
            return f"s = {self.strength:g}"
        return ""


def unsteered() -> Method:
    return Method("unsteered", "unsteered")


def prompting(instruction: str) -> Method:
    """The prompt behind ``instruction`` (end it with a newline, as PREADD's prefixes)."""
    prompted(["check"], instruction)  # the baseline's own check of the instruction
    return Method("prompting", "prompting", instruction=instruction)


def preadd(prefix: str, strength: float, name: str | None = None) -> Method:
    """PREADD-style decoding with ``prefix`` at ``strength`` (> 0 towards what the prefix elicits)."""
    strength = real(strength, "strength (> 0 towards the prefix, < 0 away)")
    if not isinstance(prefix, str) or not prefix.strip() or prefix[-1] in " \t":
        raise ValueError(f"prefix must be a non-empty string ending in a newline, got {prefix!r}")
    return Method(name or f"PREADD s = {strength:g}", "preadd", strength=strength, instruction=prefix)


def actadd(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    *,
    layer: int | float,
    relative_norm: float | None = None,
    coeff: float | None = None,
    name: str | None = None,
) -> Method:
    """ActAdd with the vector ``p_plus - p_minus`` at ``layer`` (a block index or a fraction of
    the depth), its strength given as a ``relative_norm`` (which transfers between models) or a
    ``coeff``; both are recorded."""
    vector = steering_vector(model, p_plus, p_minus, layer=layer, coeff=coeff, relative_norm=relative_norm)
    return Method(
        name or f"ActAdd layer {vector.layer}, norm {vector.relative_norm:.3g}",
        "actadd",
        layer=vector.layer,
        coeff=vector.coeff,
        relative_norm=vector.relative_norm,
        steering=vector,
    )


def search_space(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    actadd_settings: Sequence[Sequence[float]],
    prefix: str,
    preadd_strengths: Sequence[float],
) -> list[Method]:
    """The methods a selection compares: unsteered, one ActAdd method per (layer, relative norm)
    of ``actadd_settings`` and one PREADD method per strength. Equal budgets: ActAdd and PREADD
    must try the same number of settings."""
    if len(actadd_settings) != len(preadd_strengths) or not preadd_strengths:
        raise ValueError(
            f"equal search budgets: give as many ActAdd settings as PREADD strengths (at least one), got "
            f"{len(actadd_settings)} ActAdd settings {list(actadd_settings)!r} and {len(preadd_strengths)} "
            f"PREADD strengths {list(preadd_strengths)!r}"
        )
    if any(len(setting) != 2 for setting in actadd_settings):
        raise ValueError(f"each ActAdd setting is (layer, relative norm), got {list(actadd_settings)!r}")
    steered = [actadd(model, p_plus, p_minus, layer=layer, relative_norm=norm) for layer, norm in actadd_settings]
    return [unsteered(), *steered, *(preadd(prefix, s) for s in preadd_strengths)]


def sample(
    model: TransformersModel,
    prompts: Sequence[str],
    methods: Sequence[Method],
    n_samples: int,
    *,
    seed: int,
    stream: int,
    batch_size: int = 64,
    progress: bool = True,
    **sampling: Any,
) -> pd.DataFrame:
    """``n_samples`` completions of every prompt under every method, one row each (:data:`COLUMNS`).

    Sample ``s`` of prompt ``i`` gets the seed ``row_seeds(seed, n, stream=stream)[i * n_samples
    + s]`` under every method, so methods differ only by what they do to the logits. Methods
    without a PREADD prefix share batches (ActAdd rows through ``row_vectors``); each PREADD
    method is its own call with its processor. ``prompt`` is always the plain prompt, also for
    prompting, whose model saw the instruction before it. ``sampling`` goes to
    :func:`actadd.generate` (``max_new_tokens``, ``top_p``, ...).
    """
    prompts = strings(prompts, "prompts")
    n_samples = integer(n_samples, "n_samples", minimum=1)
    if not methods:
        raise ValueError("methods is empty: give at least one, e.g. [unsteered()]")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    grid = pd.DataFrame(
        [(i, s, p) for i, p in enumerate(prompts) for s in range(n_samples)], columns=["prompt_id", "sample", "prompt"]
    )
    grid["seed"] = row_seeds(seed, len(grid), stream=stream)
    shared = [m for m in methods if m.kind != "preadd"]
    calls = ([shared] if shared else []) + [[m] for m in methods if m.kind == "preadd"]
    completions: dict[str, list[str]] = {}
    for call in tqdm(calls, desc="methods", disable=not progress or len(calls) < 2, leave=False):
        texts: list[str] = []
        for method in call:
            plain = grid["prompt"].tolist()
            texts += prompted(plain, method.instruction) if method.kind == "prompting" else plain
        first = call[0]
        processors = [PrefixContrast(model, first.instruction, first.strength)] if first.kind == "preadd" else []
        out = generate(
            model,
            texts,
            row_vectors=[m.steering for m in call for _ in range(len(grid))],
            seed=grid["seed"].tolist() * len(call),
            batch_size=batch_size,
            pad_prompts=True,
            logits_processors=processors,
            progress=progress,
            **sampling,
        )
        for j, method in enumerate(call):
            completions[method.name] = out[j * len(grid) : (j + 1) * len(grid)]
    frames = [grid.assign(method=m.name, kind=m.kind, **m.settings(), completion=completions[m.name]) for m in methods]
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def score_unique(score: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
    """``score`` of each text, computing each distinct text once (methods on the same seeds often
    write the same completion)."""
    unique, index = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    if len(unique) == 0:
        return np.array([])
    return np.asarray(score(unique.tolist()), dtype=float)[index]


def judge_perplexity(
    judge: TransformersModel, frame: pd.DataFrame, *, first_sample_only: bool = False, batch_size: int = 16
) -> np.ndarray:
    """The perplexity of each completion given its (plain) prompt under ``judge``
    (:func:`~actadd.studies.scorers.continuation_perplexity`), per row of a :func:`sample`
    table; NaN for a blank completion, and with ``first_sample_only`` for every row but each
    prompt's first sample (a selection judges fluency on those only). Each distinct
    (prompt, completion) is scored once."""
    rows = frame.index[frame["sample"] == 0] if first_sample_only else frame.index
    pairs = frame.loc[rows, ["prompt", "completion"]].drop_duplicates()
    scored = continuation_perplexity(
        judge, pairs["prompt"].tolist(), pairs["completion"].tolist(), batch_size=batch_size
    )
    lookup = dict(zip(zip(pairs["prompt"], pairs["completion"]), scored))
    out = np.full(len(frame), np.nan)
    positions = frame.index.get_indexer(rows)
    out[positions] = [lookup[(p, c)] for p, c in zip(frame.loc[rows, "prompt"], frame.loc[rows, "completion"])]
    return out


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
            row |= _columns(name, mean_over_prompts(table[method], seed=seed))
        if "perplexity" in group.columns:
            judged = group.dropna(subset=["perplexity"])
            row |= _columns("perplexity", _fluency(judged, seed))
            row["n_judged"] = len(judged)
        rows.append(row)
    return pd.DataFrame(rows)


def _fluency(judged: pd.DataFrame, seed: int) -> Estimate:
    if judged["prompt_id"].nunique() < 2:
        value = float(np.exp(np.log(judged["perplexity"]).mean())) if len(judged) else float("nan")
        return Estimate(value, float("nan"), float("nan"), len(judged), "too few prompts for an interval")
    return fluency_estimate(judged["perplexity"].to_numpy(), judged["prompt_id"].to_numpy(), seed=seed)


def _columns(name: str, estimate: Estimate) -> dict[str, float]:
    return {name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high}


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
# Selection


@dataclass(frozen=True)
class Choice:
    """The setting a selection chose for one kind of method."""

    method: Method
    within_limit: bool
    fluency_limit: float  # the allowed selection perplexity: tolerance x unsteered
    objective: float
    perplexity: float

    @property
    def note(self) -> str:
        """For the claims table: empty when the choice met the fluency limit."""
        if self.within_limit:
            return ""
        label = KIND_LABELS[self.method.kind]
        return (
            f"made outside the fluency limit: no {label} setting kept the selection perplexity within "
            f"{self.fluency_limit:.3g}, so the most fluent ({self.method.describe()}) was taken"
        )


@dataclass(frozen=True)
class Selection:
    """The selection's table (one row per setting, ``chosen`` marking the choices) and the choice
    per kind (``"actadd"``, ``"preadd"``)."""

    table: pd.DataFrame
    choices: dict[str, Choice]
    fluency_limit: float
    objective: str
    maximize: bool

    def report(self) -> str:
        """One line per choice, saying when it was made outside the fluency limit."""
        lines = []
        for kind, choice in self.choices.items():
            where = (
                "within the fluency limit"
                if choice.within_limit
                else "NO setting within the fluency limit: the most fluent was taken (made outside the fluency limit)"
            )
            lines.append(
                f"{KIND_LABELS[kind]}: {choice.method.describe()}; selection {self.objective} {choice.objective:.3g}, "
                f"perplexity {choice.perplexity:.3g} against the limit {self.fluency_limit:.3g}; {where}"
            )
        return "\n".join(lines)

    def evaluation_methods(self, instruction: str) -> list[Method]:
        """What the evaluation compares, by the names :data:`TREATMENT` and :data:`BASELINES`:
        unsteered, prompting with ``instruction``, and the chosen PREADD and ActAdd settings."""
        return [
            unsteered(),
            prompting(instruction),
            replace(self.choices["preadd"].method, name="PREADD"),
            replace(self.choices["actadd"].method, name=TREATMENT),
        ]

    def note(self, *kinds: str) -> str:
        """The notes of the choices of ``kinds`` (for a comparison that involves them)."""
        return "; ".join(n for kind in kinds if (n := self.choices[kind].note))


def select(
    frame: pd.DataFrame,
    objective: str,
    *,
    maximize: bool,
    fluency_tolerance: float,
    methods: Sequence[Method],
    seed: int = 0,
) -> Selection:
    """Choose one ActAdd and one PREADD setting from a selection sample.

    ``frame`` is a :func:`sample` table of ``methods`` (unsteered and the settings of
    :func:`search_space`) with a per-completion ``objective`` column and a ``perplexity``
    column (:func:`judge_perplexity`). Per kind: the best mean ``objective`` (highest with
    ``maximize``) among the settings whose geometric-mean perplexity is at most
    ``fluency_tolerance`` times the unsteered one; when none is, the most fluent setting, with
    ``within_limit=False``. Ties go to the earlier setting.
    """
    tolerance = real(fluency_tolerance, "fluency_tolerance (a multiple of the unsteered perplexity)", minimum=1)
    for column in (objective, "perplexity"):
        if column not in frame.columns:
            raise ValueError(f"the selection table needs a {column!r} column; columns: {list(frame.columns)}")
    by_name = {m.name: m for m in methods}
    if missing := set(frame["method"]) - set(by_name):
        raise ValueError(f"methods {sorted(missing)} of the table are not among the methods given")
    table = method_table(frame, {objective: (objective, "mean")}, seed=seed)
    base = table[table["kind"] == "unsteered"]
    if len(base) != 1:
        raise ValueError(f"the selection needs exactly one unsteered method, got {len(base)}")
    limit = tolerance * float(base["perplexity"].iloc[0])
    choices = {}
    for kind in ("actadd", "preadd"):
        rows = table[table["kind"] == kind]
        if rows.empty:
            raise ValueError(f"the selection has no {KIND_LABELS[kind]} setting; build it with search_space")
        allowed = rows[rows["perplexity"] <= limit]
        if len(allowed):
            best = allowed[objective].idxmax() if maximize else allowed[objective].idxmin()
        else:
            best = rows["perplexity"].idxmin() if rows["perplexity"].notna().any() else rows.index[0]
        row = table.loc[best]
        choices[kind] = Choice(
            by_name[row["method"]], bool(len(allowed)), limit, float(row[objective]), float(row["perplexity"])
        )
    table["chosen"] = table["method"].isin([c.method.name for c in choices.values()])
    return Selection(table, choices, limit, objective, maximize)


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
                row |= _columns(name, proportion_of(hits.to_numpy()))
        row |= _columns("mean_change", mean_over_prompts(change.to_numpy()))
        rows.append(row)
    return pd.concat(changes, ignore_index=True), pd.DataFrame(rows)


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


def split_prompts(pool: Sequence[str], n_select: int, n_eval: int) -> tuple[list[str], list[str]]:
    """The first ``n_select`` distinct prompts of ``pool`` for the selection and the next
    ``n_eval`` for the evaluation: the two share no prompt text."""
    n_select = integer(n_select, "n_select", minimum=2)
    n_eval = integer(n_eval, "n_eval", minimum=2)
    distinct = list(dict.fromkeys(strings(pool, "pool")))
    if n_select + n_eval > len(distinct):
        raise ValueError(
            f"{n_select} selection + {n_eval} evaluation prompts need {n_select + n_eval} distinct prompts, "
            f"the pool has {len(distinct)}: draw more or ask for fewer"
        )
    return distinct[:n_select], distinct[n_select : n_select + n_eval]
