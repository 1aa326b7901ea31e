"""Claims a reviewer can check: stated before a study runs, judged by a rule fixed in advance.

A :class:`Claim` names what the paper says (its value), what is measured here (the metric)
and a :class:`Criterion` on the measured 95% interval. :meth:`Criterion.verdict` turns an
:class:`~actadd.studies.evaluation.stats.Estimate` into ``holds``, ``does not hold`` or ``unresolved``:

- ``above(t)``: holds when the whole interval is above ``t``, does not hold when it is at or
  below ``t``, unresolved when it straddles ``t``;
- ``below(t)``: the mirror image;
- ``within(a, b)``: holds when the interval lies inside ``[a, b]`` (an equivalence margin, for
  "about 1" or "negligible"), does not hold when it lies wholly outside, else unresolved.

A study declares its claims with :class:`ClaimsRecord` before it runs (``claims.json`` is
written at once, so the declaration predates the numbers) and records each estimate after.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from actadd.io import save_json
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.presentation.formatting import Unit, half_width, interval, value

Verdict = Literal["holds", "does not hold", "unresolved", "not measured"]


@dataclass(frozen=True)
class Criterion:
    """A rule on the 95% interval, fixed before the run."""

    kind: Literal["above", "below", "within"]
    low: float | None = None
    high: float | None = None

    def verdict(self, estimate: Estimate) -> Verdict:
        lo, hi = estimate.low, estimate.high
        if math.isnan(lo) or math.isnan(hi):
            return "unresolved"
        if self.kind == "above":
            assert self.low is not None
            return "holds" if lo > self.low else "does not hold" if hi <= self.low else "unresolved"
        if self.kind == "below":
            assert self.high is not None
            return "holds" if hi < self.high else "does not hold" if lo >= self.high else "unresolved"
        assert self.low is not None and self.high is not None
        if self.low <= lo and hi <= self.high:
            return "holds"
        return "does not hold" if hi < self.low or lo > self.high else "unresolved"

    def describe(self, unit: Unit = "number") -> str:
        if self.kind == "above":
            return f"95% CI above {value(self.low, unit)}"
        if self.kind == "below":
            return f"95% CI below {value(self.high, unit)}"
        return f"95% CI within [{value(self.low, unit)}, {value(self.high, unit)}]"


def above(threshold: float) -> Criterion:
    return Criterion("above", low=float(threshold))


def below(threshold: float) -> Criterion:
    return Criterion("below", high=float(threshold))


def within(low: float, high: float) -> Criterion:
    if not low < high:
        raise ValueError(f"within needs low < high, got {low!r} and {high!r}")
    return Criterion("within", low=float(low), high=float(high))


@dataclass(frozen=True)
class Claim:
    """One checkable claim: ``statement`` (what is claimed), ``paper`` (the paper's value, as
    text), ``metric`` (what is measured here, and how) and the ``criterion``."""

    id: str
    statement: str
    paper: str
    metric: str
    criterion: Criterion
    unit: Unit = "number"
    arm: str = "paper"  # "paper": the paper's own setting; otherwise a named extension


@dataclass
class ClaimResult:
    claim: Claim
    estimate: Estimate | None = None
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        return "not measured" if self.estimate is None else self.claim.criterion.verdict(self.estimate)

    def as_dict(self) -> dict[str, Any]:
        """As ``claims.json`` holds it: the claim's fields, the estimate, the verdict and the note."""
        return {
            **asdict(self.claim),
            "estimate": None if self.estimate is None else self.estimate.as_dict(),
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass
class ClaimsRecord:
    """A study's claims, written to ``<results_dir>/claims.json`` when declared and again as
    each is measured."""

    study: str
    path: Path
    results: dict[str, ClaimResult] = field(default_factory=dict)
    declared_at: str = ""
    paper: str = ""  # what the paper reports for the study, shown beside its results
    withdrawn: dict[str, str] = field(default_factory=dict)  # claim id -> why it was withdrawn

    @classmethod
    def declare(
        cls,
        study: str,
        results_dir: str | Path,
        claims: Iterable[Claim],
        *,
        paper: str = "",
        withdrawn: dict[str, str] | None = None,
    ) -> ClaimsRecord:
        now = f"{dt.datetime.now():%Y-%m-%dT%H:%M:%S}"
        record = cls(study, Path(results_dir) / "claims.json", declared_at=now, paper=paper, withdrawn=withdrawn or {})
        for claim in claims:
            if claim.id in record.results:
                raise ValueError(f"claim id {claim.id!r} is declared twice")
            if claim.id in record.withdrawn:
                raise ValueError(f"claim {claim.id!r} was withdrawn ({record.withdrawn[claim.id]}): declare a new id")
            record.results[claim.id] = ClaimResult(claim)
        if not record.results:
            raise ValueError("declare at least one claim")
        record.save()
        return record

    def record(self, claim_id: str, estimate: Estimate, note: str = "") -> Verdict:
        """Record the measured estimate of a declared claim; returns its verdict."""
        if claim_id not in self.results:
            raise ValueError(f"claim {claim_id!r} was not declared; declared: {sorted(self.results)}")
        if not isinstance(estimate, Estimate):
            raise ValueError(f"record an actadd.studies.evaluation.stats.Estimate, got {type(estimate).__name__}")
        self.results[claim_id].estimate = estimate
        self.results[claim_id].note = note
        self.save()
        return self.results[claim_id].verdict

    def verdict(self, claim_id: str) -> Verdict:
        return self.results[claim_id].verdict

    def table(self) -> pd.DataFrame:
        """claim | the paper | measured [95% CI] | verdict, one row per claim, in declared order."""
        return claims_table([self.as_dict()])

    def save(self) -> None:
        save_json(self.as_dict(), self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "declared_at": self.declared_at,
            "paper": self.paper,
            "claims": [r.as_dict() for r in self.results.values()],
            "withdrawn": [
                {"id": claim_id, "reason": reason, "last": None} for claim_id, reason in self.withdrawn.items()
            ],
        }


def _row(claim: dict[str, Any]) -> dict[str, str]:
    estimate = None if claim.get("estimate") is None else Estimate.from_dict(claim["estimate"])
    criterion = Criterion(**claim["criterion"])
    unit = claim.get("unit", "number")
    label = claim["statement"] + ("" if claim.get("arm", "paper") == "paper" else f" ({claim['arm']})")
    return {
        "claim": label,
        "the paper": claim["paper"],
        "measured [95% CI]": interval(estimate, unit),
        "half-width": "-" if estimate is None else half_width(estimate, unit),
        "criterion": criterion.describe(unit),
        "verdict": "not measured" if estimate is None else criterion.verdict(estimate),
        "note": claim.get("note", ""),
    }


def claims_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per claim of the given ``claims.json`` records; verdicts recomputed from the
    estimates, so a table can never disagree with its numbers. ``note`` says how a measurement
    was qualified (a comparison made outside the fluency limit), else is empty."""
    rows = [{"study": r["study"], **_row(c)} for r in records for c in r["claims"]]
    columns = ["study", "claim", "the paper", "measured [95% CI]", "half-width", "criterion", "verdict", "note"]
    return pd.DataFrame(rows, columns=columns)
