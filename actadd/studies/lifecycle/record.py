"""What a study leaves behind, and what a run of notebooks leaves behind, each read back
through one type; nothing else reads a run's JSON.

A study's folder (``<run>/<study>/`` while it runs, ``results/<profile>/<model>/<study>/`` once
published) holds, besides its figures (PNG) and tables (CSV):

- ``claims.json``: the claims as declared before any number was measured, then each estimate
  and note as it is recorded (written by :class:`~.claims.ClaimsRecord`);
- ``headline.json``: the headline numbers, the typed records other studies and the README read
  (:class:`WeddingSetting`-like dataclasses with a ``KEY``), who judged the verdicts, every
  parameter, the wall time by phase, the peak resident memory and the package versions;
- ``what_it_shows.md``: the prose rendered from the numbers;
- once published, ``run.json`` (:class:`Provenance`: which run it came from) and the executed
  notebook, ``<study>.ipynb``.

:class:`StudyRecord` is all of it (:meth:`StudyRecord.load`, :meth:`StudyRecord.save`);
:class:`RunLog` is a run folder's ``run.json``, the runner's account of each notebook
(:class:`NotebookRun`). Paths are stored relative to the folder that holds them, so a record
reads the same on any machine.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import pandas as pd

from actadd.io import atomic_write, save_json
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle.claims import Claim, ClaimResult, Criterion, claims_table

CLAIMS = "claims.json"
HEADLINE = "headline.json"
PROSE = "what_it_shows.md"
PROVENANCE = "run.json"
RUN_LOG = "run.json"


class Keyed(Protocol):
    """A typed record a study saves in its headline: a dataclass with a class-level ``KEY``."""

    KEY: ClassVar[str]


R = TypeVar("R", bound=Keyed)


@dataclass(frozen=True)
class JudgeSummary:
    """Who judged a comparison study's verdicts, as the README's table shows it: the scorer, its
    measured accuracy in words (with intervals), the second scorer and their agreement in words."""

    scorer: str
    accuracy: str
    second: str
    agreement: str


@dataclass(frozen=True)
class Withdrawn:
    """A claim the study declared once and has withdrawn: why, and, once published, its last
    published measurement and the run it came from (an erratum keeps the old value in view)."""

    id: str
    reason: str
    last: ClaimResult | None = None
    run: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Which run a published study came from: the run folder's name, the profile and the
    notebook's wall time as the runner measured it (papermill's, loading included)."""

    run: str
    profile: str
    notebook_wall_time_s: float | None


@dataclass
class StudyRecord:
    """Everything one study left in its folder (see the module's docstring)."""

    study: str
    claims: list[ClaimResult]
    declared_at: str = ""
    paper: str = ""  # what the paper reports for this study ("" where it has no such experiment)
    withdrawn: list[Withdrawn] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    judged_by: JudgeSummary | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    phases_s: dict[str, float] = field(default_factory=dict)
    peak_memory_gb: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    prose: str | None = None
    figures: list[str] = field(default_factory=list)  # PNG names in the folder
    tables: list[str] = field(default_factory=list)  # CSV names in the folder
    provenance: Provenance | None = None
    finished: bool = True  # False: the study declared its claims but never wrote its headline

    @classmethod
    def load(cls, folder: str | Path) -> StudyRecord:
        """The record in ``folder``; a folder with claims but no headline loads as unfinished."""
        folder = Path(folder)
        claims_file = folder / CLAIMS
        if not claims_file.is_file():
            raise ValueError(
                f"{folder} has no {CLAIMS}: not a study's results folder (a study writes it when it opens)"
            )
        declared = _read_json(claims_file)
        if not isinstance(declared, dict) or not isinstance(declared.get("claims"), list):
            raise ValueError(f"{claims_file} is not a {CLAIMS} written by actadd.studies.lifecycle.claims")
        record = cls(
            study=str(declared.get("study", folder.name)),
            claims=[_claim_result(c) for c in declared["claims"]],
            declared_at=str(declared.get("declared_at", "")),
            paper=str(declared.get("paper", "")),
            withdrawn=[
                Withdrawn(
                    w["id"], w["reason"], None if w.get("last") is None else _claim_result(w["last"]), w.get("run")
                )
                for w in declared.get("withdrawn", [])
            ],
            figures=sorted(p.name for p in folder.glob("*.png")),
            tables=sorted(p.name for p in folder.glob("*.csv")),
            finished=(folder / HEADLINE).is_file(),
        )
        if record.finished:
            stored = _read_json(folder / HEADLINE)
            judged = stored.get("judged_by")
            record.headline = dict(stored.get("headline") or {})
            record.records = dict(stored.get("records") or {})
            record.judged_by = None if judged is None else JudgeSummary(**judged)
            record.parameters = dict(stored.get("parameters") or {})
            record.wall_time_s = stored.get("wall_time_s")
            record.phases_s = dict(stored.get("phases_s") or {})
            record.peak_memory_gb = stored.get("peak_memory_gb")
            record.versions = dict(stored.get("versions") or {})
        if (folder / PROSE).is_file():
            record.prose = (folder / PROSE).read_text()
        if (folder / PROVENANCE).is_file():
            record.provenance = Provenance(**_read_json(folder / PROVENANCE))
        return record

    def save(self, folder: str | Path) -> Path:
        """Write the record's files into ``folder`` (claims, headline, prose, provenance); figures,
        tables and the executed notebook are files of their own (:meth:`copy_files`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_json(self.claims_dict(), folder / CLAIMS)
        if self.finished:
            save_json(self.headline_dict(), folder / HEADLINE)
        if self.prose is not None:
            prose = self.prose
            atomic_write(folder / PROSE, lambda tmp: tmp.write_text(prose))
        if self.provenance is not None:
            save_json(asdict(self.provenance), folder / PROVENANCE)
        return folder

    def copy_files(self, source: str | Path, dest: str | Path, *, notebook: str | Path | None = None) -> None:
        """Copy the record's figures and tables from ``source`` into ``dest``, and the executed
        ``notebook`` as ``<study>.ipynb``."""
        for name in self.figures + self.tables:
            _copy(Path(source) / name, Path(dest) / name)
        if notebook is not None:
            _copy(Path(notebook), Path(dest) / f"{self.study}.ipynb")

    def claims_dict(self) -> dict[str, Any]:
        """``claims.json``'s content."""
        withdrawn = [{"id": w.id, "reason": w.reason, "last": None if w.last is None else w.last.as_dict(), "run": w.run}
                     for w in self.withdrawn]  # fmt: skip
        return {"study": self.study, "declared_at": self.declared_at, "paper": self.paper,
                "claims": [r.as_dict() for r in self.claims], "withdrawn": withdrawn}  # fmt: skip

    def headline_dict(self) -> dict[str, Any]:
        """``headline.json``'s content."""
        return {
            "study": self.study,
            "headline": self.headline,
            "records": self.records,
            "judged_by": None if self.judged_by is None else asdict(self.judged_by),
            "parameters": self.parameters,
            "wall_time_s": self.wall_time_s,
            "phases_s": self.phases_s,
            "peak_memory_gb": self.peak_memory_gb,
            "versions": self.versions,
        }

    def record(self, kind: type[R]) -> R | None:
        """The typed record of ``kind`` (a dataclass with a ``KEY``) this study saved, or None."""
        stored = self.records.get(kind.KEY)
        if stored is None:
            return None
        return kind(**{f.name: stored[f.name] for f in fields(kind)})  # type: ignore[arg-type]

    def table(self) -> pd.DataFrame:
        """The claims table (verdicts recomputed from the estimates)."""
        return claims_table([self.claims_dict()])

    def verdicts(self) -> dict[str, str]:
        """Each claim's verdict, by claim id."""
        return {r.claim.id: r.verdict for r in self.claims}

    def published(self, provenance: Provenance, previous: StudyRecord | None = None) -> StudyRecord:
        """This record as a published snapshot: its provenance set, parameters that name this
        machine's folders dropped, and each withdrawn claim with its last published value (from
        the ``previous`` snapshot of the study, where that one measured or carried it)."""
        parameters = {k: v for k, v in self.parameters.items() if k != "results_dir"}
        earlier: dict[str, Withdrawn] = {}
        if previous is not None:
            earlier = {w.id: w for w in previous.withdrawn if w.last is not None}
            run = previous.provenance.run if previous.provenance else None
            earlier |= {
                r.claim.id: Withdrawn(r.claim.id, "", r, run) for r in previous.claims if r.estimate is not None
            }
        withdrawn = [replace(w, last=earlier[w.id].last, run=earlier[w.id].run) if w.id in earlier else w
                     for w in self.withdrawn]  # fmt: skip
        return replace(self, provenance=provenance, parameters=parameters, withdrawn=withdrawn)


@dataclass
class NotebookRun:
    """What happened to one notebook in a run."""

    notebook: str
    status: str  # "ok", "failed" or "interrupted"
    wall_time_s: float
    executed: str  # the executed copy, relative to the run folder
    results_dir: str  # the study's folder, relative to the run folder
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # "cell N: ExceptionName: message" when failed; "interrupted at cell N/M"


@dataclass
class RunLog:
    """A run folder's ``run.json``: the profile, whether it took the Colab branch, and each
    notebook's :class:`NotebookRun` in run order."""

    profile: str
    colab: bool
    notebooks: list[NotebookRun]

    @classmethod
    def load(cls, run_dir: str | Path) -> RunLog:
        run_file = Path(run_dir) / RUN_LOG
        if not run_file.is_file():
            raise ValueError(f"{run_dir} has no {RUN_LOG}: give a run folder made by `python -m actadd run`")
        stored = _read_json(run_file)
        if not isinstance(stored, dict) or not isinstance(stored.get("notebooks"), list):
            raise ValueError(f"{run_file} has no 'notebooks' list: not a {RUN_LOG} from actadd's runner")
        runs = [NotebookRun(**{f.name: entry.get(f.name) for f in fields(NotebookRun) if f.name in entry})
                for entry in stored["notebooks"]]  # fmt: skip
        return cls(str(stored.get("profile", "default")), bool(stored.get("colab", False)), runs)

    def save(self, run_dir: str | Path) -> Path:
        return save_json(asdict(self), Path(run_dir) / RUN_LOG)

    def folder(self, run_dir: str | Path, entry: NotebookRun) -> Path:
        """Where ``entry``'s study wrote its results (a run folder that was moved still resolves)."""
        folder = Path(entry.results_dir)
        return folder if folder.is_absolute() else Path(run_dir) / folder

    def executed(self, run_dir: str | Path, entry: NotebookRun) -> Path:
        """``entry``'s executed notebook."""
        path = Path(entry.executed)
        return path if path.is_absolute() else Path(run_dir) / path


def study_folders(root: str | Path) -> list[Path]:
    """The study folders directly under ``root`` (those with a ``claims.json``), sorted."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / CLAIMS).is_file()) if root.is_dir() else []


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): rerun the study that wrote it") from err


def _claim_result(stored: Mapping[str, Any]) -> ClaimResult:
    claim = Claim(
        id=stored["id"],
        statement=stored["statement"],
        paper=stored["paper"],
        metric=stored["metric"],
        criterion=Criterion(**stored["criterion"]),
        unit=stored.get("unit", "number"),
        arm=stored.get("arm", "paper"),
    )
    estimate = None if stored.get("estimate") is None else Estimate.from_dict(stored["estimate"])
    return ClaimResult(claim, estimate, stored.get("note", ""))


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: shutil.copyfile(source, tmp))
