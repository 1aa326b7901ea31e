"""Choosing each method's setting on held-out prompts, by a rule fixed before the run.

Settings are chosen on prompts and seeds of the selection stream (:func:`select`) and reported
on other prompts of the evaluation stream (:func:`split_prompts`): no prompt and no seed is
shared. The rule: the best objective among the settings whose selection fluency (geometric-mean
judge perplexity) is within ``fluency_tolerance`` times the unsteered one; when none is, the
most fluent, flagged ``within_limit=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from actadd.checks import integer, real, strings
from actadd.studies.protocol.comparison import method_table
from actadd.studies.protocol.methods import (
    KIND_LABELS,
    MEAN_DIFFERENCE,
    MEAN_DIFFERENCE_AT_ACTADD,
    TREATMENT,
    Method,
    prompting,
    unsteered,
)

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
    candidates: tuple[Method, ...] = ()

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
        unsteered, prompting with ``instruction``, and the chosen PREADD and ActAdd settings; when
        the mean difference was searched too, its own choice (:data:`MEAN_DIFFERENCE`) and its
        setting at ActAdd's chosen layer and relative norm (:data:`MEAN_DIFFERENCE_AT_ACTADD`)."""
        methods = [
            unsteered(),
            prompting(instruction),
            replace(self.choices["preadd"].method, name="PREADD"),
            replace(self.choices["actadd"].method, name=TREATMENT),
        ]
        if "meandiff" in self.choices:
            methods += [replace(self.choices["meandiff"].method, name=MEAN_DIFFERENCE),
                        replace(self.mean_difference_at_actadd(), name=MEAN_DIFFERENCE_AT_ACTADD)]  # fmt: skip
        return methods

    def mean_difference_at_actadd(self) -> Method:
        """The mean-difference candidate at the chosen ActAdd setting's layer and relative norm
        (the search gives the mean difference ActAdd's settings)."""
        chosen = self.choices["actadd"].method
        for method in self.candidates:
            if (
                method.kind == "meandiff"
                and method.layer == chosen.layer
                and np.isclose(float(method.relative_norm or 0), float(chosen.relative_norm or 0), rtol=1e-6)
            ):
                return method
        raise ValueError(f"no mean-difference setting at ActAdd's {chosen.describe()}: build both with search_space")

    def better_steering(self) -> str:
        """The kind, ``"actadd"`` or ``"meandiff"``, whose choice did better on the selection: a
        choice within the fluency limit before one outside it, then the better objective (ActAdd
        on a tie)."""
        steered = [kind for kind in ("actadd", "meandiff") if kind in self.choices]
        sign = -1.0 if self.maximize else 1.0
        return min(steered, key=lambda k: (not self.choices[k].within_limit, sign * self.choices[k].objective))

    def note(self, *kinds: str) -> str:
        """The notes of the choices of ``kinds`` (for a comparison that involves them)."""
        return "; ".join(n for kind in kinds if (n := self.choices[kind].note))

    def comparison_note(self, baseline: str) -> str:
        """The note for ActAdd against the evaluation method named ``baseline``: ActAdd's
        choice, and the baseline's when it was chosen too (PREADD)."""
        chosen_too = [kind for kind in self.choices if kind != "actadd" and KIND_LABELS[kind] == baseline]
        return self.note("actadd", *chosen_too)

    def chosen_settings(self) -> dict[str, dict[str, Any]]:
        """Per kind, the chosen setting's columns and whether it met the fluency limit (for a headline)."""
        return {kind: {**c.method.settings(), "within_limit": c.within_limit} for kind, c in self.choices.items()}

    def describe(self) -> str:
        """The choices in words, each saying when it was made outside the fluency limit:
        "ActAdd at layer 10, c = 3.2 (relative norm 4); PREADD at s = 2"."""
        outside = " (no setting was within the fluency limit: chosen and compared outside it)"
        return "; ".join(
            f"{KIND_LABELS[kind]} at {choice.method.describe()}{'' if choice.within_limit else outside}"
            for kind, choice in self.choices.items()
        )


def select(
    frame: pd.DataFrame,
    objective: str,
    *,
    maximize: bool,
    fluency_tolerance: float,
    methods: Sequence[Method],
    seed: int = 0,
) -> Selection:
    """Choose one ActAdd, one PREADD and (when searched) one mean-difference setting from a selection sample.

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
    kinds = [kind for kind in ("actadd", "preadd", "meandiff") if kind != "meandiff" or (table["kind"] == kind).any()]
    for kind in kinds:
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
    return Selection(table, choices, limit, objective, maximize, tuple(methods))


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
