"""Choosing each method's setting on held-out prompts, by a rule fixed before the run.

Settings are chosen on prompts and seeds of the selection stream (:func:`select`) and reported
on other prompts of the evaluation stream (:func:`split_prompts`): no prompt and no seed is
shared. The rule, the same for every method: among the settings whose completions pass the text
gate (at least :func:`~actadd.studies.evaluation.text_gate.required_share` of them are text:
80%, or 10 points below the unsteered completions' share where that is lower) and whose
selection fluency (geometric-mean judge perplexity) is within ``fluency_tolerance`` times the
unsteered one, the best objective. A method none of whose settings passes both is not chosen:
its comparisons say so (a note, and no number computed on text that is not text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from actadd.checks import integer, real, strings
from actadd.studies.evaluation.stats import proportion_of
from actadd.studies.evaluation.text_gate import MIN_SHARE, required_share
from actadd.studies.protocol.comparison import method_table
from actadd.studies.protocol.methods import (
    KIND_LABELS,
    MEAN_DIFFERENCE,
    TREATMENT,
    Method,
    prompting,
    unsteered,
)

# The kinds a selection chooses a setting for, and each one's name in an evaluation.
CHOSEN = {"actadd": TREATMENT, "preadd": "PREADD", "meandiff": MEAN_DIFFERENCE}


@dataclass(frozen=True)
class Choice:
    """The setting a selection chose for one kind of method (it passed the gate and the fluency limit)."""

    method: Method
    objective: float
    perplexity: float
    text_share: float


@dataclass(frozen=True)
class Selection:
    """The selection's table (one row per method tried, with ``passes_gate``, ``within_limit``
    and ``chosen``), the choice per kind (``"actadd"``, ``"preadd"``, ``"meandiff"``), and why a
    kind has none."""

    table: pd.DataFrame
    choices: dict[str, Choice]
    unchosen: dict[str, str]
    fluency_limit: float
    objective: str
    maximize: bool

    def report(self) -> str:
        """One line per kind: its choice, or why it has none."""
        lines = [
            f"{KIND_LABELS[kind]}: {c.method.describe()}; selection {self.objective} {c.objective:.3g}, perplexity "
            f"{c.perplexity:.3g} (limit {self.fluency_limit:.3g}), {100 * c.text_share:.0f}% text"
            for kind, c in self.choices.items()
        ]
        return "\n".join(lines + [f"{KIND_LABELS[kind]}: {why}" for kind, why in self.unchosen.items()])

    def evaluation_methods(self, instruction: str) -> list[Method]:
        """What the evaluation compares, by the names of :data:`CHOSEN`: unsteered, prompting with
        ``instruction``, and each kind's chosen setting."""
        return [unsteered(), prompting(instruction),
                *(replace(c.method, name=CHOSEN[kind]) for kind, c in self.choices.items())]  # fmt: skip

    def better_steering(self) -> str | None:
        """The kind, ``"actadd"`` or ``"meandiff"``, whose choice did better on the selection
        (ActAdd on a tie); None when neither was chosen."""
        steered = [kind for kind in ("actadd", "meandiff") if kind in self.choices]
        if not steered:
            return None
        sign = -1.0 if self.maximize else 1.0
        return min(steered, key=lambda k: sign * self.choices[k].objective)

    def note(self, *kinds: str) -> str:
        """Why a comparison that involves ``kinds`` has no number: each unchosen kind's reason."""
        return "; ".join(self.unchosen[kind] for kind in kinds if kind in self.unchosen)

    def comparison_note(self, baseline: str) -> str:
        """The note for ActAdd against the evaluation method named ``baseline``."""
        kinds = ["actadd", *(kind for kind, name in CHOSEN.items() if name == baseline and kind != "actadd")]
        return self.note(*kinds)

    def chosen_settings(self) -> dict[str, dict[str, object]]:
        """Per kind, the chosen setting's columns (for a headline); an unchosen kind as its reason."""
        out: dict[str, dict[str, object]] = {kind: c.method.settings() for kind, c in self.choices.items()}
        return out | {kind: {"not chosen": why} for kind, why in self.unchosen.items()}

    def describe(self) -> str:
        """The choices in words: "ActAdd at layer 10, c = 3.2 (...); PREADD at s = 2"."""
        chosen = [f"{KIND_LABELS[kind]} at {c.method.describe()}" for kind, c in self.choices.items()]
        return "; ".join(chosen + [f"{KIND_LABELS[kind]}: {why}" for kind, why in self.unchosen.items()])


def select(
    frame: pd.DataFrame,
    objective: str,
    *,
    maximize: bool,
    fluency_tolerance: float,
    methods: Sequence[Method],
    seed: int = 0,
    min_text_share: float = MIN_SHARE,
) -> Selection:
    """Choose one setting per kind of :data:`CHOSEN` from a selection sample.

    ``frame`` is a :func:`~.methods.sample` table of ``methods`` (unsteered, and the settings of
    :func:`~.methods.search_space`) with a per-completion ``objective`` column, ``is_text``
    (:func:`~.methods.text_check`) and a ``perplexity`` column (:func:`~.methods.judge_perplexity`).
    Per kind: among the settings with at least ``required_share(unsteered share, min_text_share)``
    of their completions text (:func:`~actadd.studies.evaluation.text_gate.required_share`) and a
    geometric-mean perplexity of at most ``fluency_tolerance`` times the unsteered one, the best
    mean ``objective`` (highest with ``maximize``; ties to the earlier setting). A kind with no such
    setting is not chosen, with the reason.
    """
    tolerance = real(fluency_tolerance, "fluency_tolerance (a multiple of the unsteered perplexity)", minimum=1)
    for column in (objective, "perplexity", "is_text"):
        if column not in frame.columns:
            raise ValueError(f"the selection table needs a {column!r} column; columns: {list(frame.columns)}")
    by_name = {m.name: m for m in methods}
    if missing := set(frame["method"]) - set(by_name):
        raise ValueError(f"methods {sorted(missing)} of the table are not among the methods given")
    table = method_table(frame, {objective: (objective, "mean")}, seed=seed)
    shares = {name: proportion_of(group["is_text"].to_numpy(dtype=bool))
              for name, group in frame.groupby("method", sort=False)}  # fmt: skip
    table = table.assign(**pd.DataFrame([shares[m].columns("text_share") for m in table["method"]], index=table.index))
    base = table[table["kind"] == "unsteered"]
    if len(base) != 1:
        raise ValueError(f"the selection needs exactly one unsteered method, got {len(base)}")
    limit = tolerance * float(base["perplexity"].iloc[0])
    required = required_share(float(base["text_share"].iloc[0]), min_text_share)
    table["passes_gate"] = table["text_share"] >= required
    table["within_limit"] = table["perplexity"] <= limit
    choices, unchosen = {}, {}
    for kind in CHOSEN:
        rows = table[table["kind"] == kind]
        if rows.empty:
            continue
        allowed = rows[rows["passes_gate"] & rows["within_limit"]]
        if allowed.empty:
            unchosen[kind] = _why_none(rows, limit, required)
            continue
        best = allowed[objective].idxmax() if maximize else allowed[objective].idxmin()
        row = table.loc[best]
        choices[kind] = Choice(by_name[row["method"]], float(row[objective]), float(row["perplexity"]),
                               float(row["text_share"]))  # fmt: skip
    table["chosen"] = table["method"].isin([c.method.name for c in choices.values()])
    return Selection(table, choices, unchosen, limit, objective, maximize)


def _why_none(rows: pd.DataFrame, limit: float, min_share: float) -> str:
    label = KIND_LABELS[str(rows["kind"].iloc[0])]
    gate, fluent = int(rows["passes_gate"].sum()), int(rows["within_limit"].sum())
    return (f"no {label} setting passed both the text gate (at least {100 * min_share:.0f}% text; {gate} of "
            f"{len(rows)} did) and the fluency limit (perplexity {limit:.3g}; {fluent} of {len(rows)} did), so "
            f"{label} was not chosen and is not compared")  # fmt: skip


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
