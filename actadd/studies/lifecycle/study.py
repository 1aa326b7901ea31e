"""A study is an object: a notebook opens one after its ``parameters`` cell and does the rest through it.

    study = Study.open(wedding_layers.SECTION)       # every parameter; the section's claims, declared before any number
    with study.timed("generation"):                  # where the time goes, by phase
        texts = actadd.generate_sweep(...)
    study.table(by_layer, "by_layer")                # CSV in the run folder
    study.figure(fig, "wedding_by_layer")            # PNG in the run folder
    study.record("01.paper_best", estimate)          # a declared claim's estimate, and its verdict
    study.finish({"best_layer": 6}, setting)         # claims table, headline.json, wall time, peak memory
    study.prose(TEMPLATE, best=estimate, ...)        # "What it shows", rendered from the numbers

A :class:`Section` is what a study module (:mod:`actadd.studies.sections`) tells the lifecycle
about its study: its name, the paper's result and its claims. Everything a study writes goes into
its ``results_dir`` (the runner gives each study its own), and is read back as one
:class:`~.record.StudyRecord`. The committed ``figures/`` is written only when a run is published
(``python -m actadd run --publish``, ``make study``), beside the README and the ``results/``
snapshot it goes with, so a run that stops half-way leaves all three as they were.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from nnsight.modeling.transformers import TransformersModel

from actadd import load_model
from actadd.io import atomic_write
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle.claims import Claim, ClaimsRecord, Verdict
from actadd.studies.lifecycle.colab import COLAB_PARAMETERS, on_colab
from actadd.studies.lifecycle.parameters import parameter_names
from actadd.studies.lifecycle.record import PROSE, JudgeSummary, Keyed, StudyRecord, Withdrawn
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import render

# Set (to anything) to make a figure with overlapping tick labels an error rather than a warning.
STRICT_FIGURES = "ACTADD_STRICT_FIGURES"
# IPython's own names in a notebook's namespace: never parameters.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


@dataclass(frozen=True)
class Section:
    """What a study is, for its lifecycle: its notebook's name (``"01_wedding_layers"``), what the
    paper reports for it (shown beside its results in the report), its claims, a function of the
    study's parameters (margins, batch sizes) declared when the study opens, and the claims it
    once declared and has withdrawn, each with the reason (an erratum, never a quiet change)."""

    name: str
    paper: str
    claims: Callable[[Mapping[str, Any]], list[Claim]]
    withdrawn: Mapping[str, str] = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, and the CPU it ran on (:func:`cpu`): a
    timing moves with either."""
    out = {"python": platform.python_version(), "cpu": cpu()}
    for package in ("actadd", "torch", "nnsight", "transformers", "datasets"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and what multiplies bfloat16 on it ("AMD EPYC, bfloat16 by AVX512-BF16"):
    on these machines Intel's AMX tiles run a bfloat16 matmul several times as fast as AVX512-BF16,
    so a timing means little without it. From ``/proc/cpuinfo`` on Linux, ``platform.processor()``
    elsewhere."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    fields = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in text.splitlines()) if value
    )
    flags = set(fields.get("flags", "").split())
    units = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no bfloat16 units"
    return f"{fields.get('model name', platform.machine() or 'unknown')}, bfloat16 by {units}"


def peak_memory_gb(status: Path = Path("/proc/self/status")) -> float:
    """This process's peak resident memory so far, in GB (a notebook's kernel is its own process).

    On Linux, the high-water mark of this process's own memory (``VmHWM``): ``ru_maxrss`` keeps
    the largest of the process that started it across ``exec``, so a kernel started by a
    large process (a test session that has loaded models) would report that process's peak."""
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e9, 3)  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak * (1 if sys.platform == "darwin" else 1024) / 1e9, 3)


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV (no index), atomically. Lines end in CRLF as RFC 4180 has it,
    which makes the csv writer quote a text holding a bare carriage return (tweets do): with
    "\\n" endings it would not, and a reader would split that row in two."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\r\n"))


class Study:
    """One study notebook's run: its parameters, its pre-stated claims and everything it writes."""

    def __init__(self, name: str, parameters: Mapping[str, Any], section: Section | None = None) -> None:
        if "results_dir" not in parameters or "seed" not in parameters:
            raise ValueError(
                f"study {name!r} needs the parameters results_dir and seed, got {sorted(parameters)}: every study's "
                "parameters cell sets both"
            )
        self.name = name
        self.section = section
        self.parameters = dict(parameters)
        self.dir = Path(parameters["results_dir"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.claims: ClaimsRecord | None = None
        self.phases: dict[str, float] = {}
        self.start = time.perf_counter()
        sns.set_theme(context="notebook", style="whitegrid")
        pd.set_option("display.max_colwidth", 200)

    @classmethod
    def open(cls, section: Section, namespace: dict[str, Any] | None = None) -> Study:
        """The study of ``section``, with every parameter read from the notebook's namespace (the
        caller's globals by default): the ``parameters`` cell's values after papermill's
        injected ones. The names are the parameters cell's when the notebook ``<name>.ipynb`` is
        in the working folder (where papermill and JupyterLab run it), else every plain value of
        the namespace (a notebook opened from GitHub on Colab).

        On Colab (:func:`on_colab`) the parameters cell's ``colab_parameters`` (the paper's models
        and datasets by hub id) are applied to the namespace first, so a Colab user runs the
        paper's setting without editing a cell; ``colab_branch`` records whether they were.

        The section's claims are declared here, before any number is measured, and shown."""
        if not isinstance(section, Section):
            raise ValueError(f"Study.open takes a study's Section (e.g. wedding_layers.SECTION), got {section!r}")
        name = section.name
        ns = sys._getframe(1).f_globals if namespace is None else namespace
        names = parameter_names(Path.cwd() / f"{name}.ipynb")
        if names is None:
            names = [k for k, v in ns.items() if not k.startswith("_") and k not in _IPYTHON_NAMES and _plain(v)]
        missing = [n for n in names if n not in ns]
        if missing:
            raise ValueError(f"run the parameters cell of {name} first: {missing} are not defined")
        overrides = ns.get(COLAB_PARAMETERS) or {}
        if unknown := sorted(set(overrides) - set(names)):
            raise ValueError(f"{COLAB_PARAMETERS} of {name} names {unknown}, which are not parameters of the notebook")
        colab = on_colab()
        if colab:
            ns.update(overrides)
        study = cls(name, {**{n: ns[n] for n in names}, "colab_branch": colab}, section)
        study.declare()
        return study

    def __getitem__(self, name: str) -> Any:
        return self.parameters[name]

    def load_model(self) -> TransformersModel:
        """The steered model (``model_name``, on NDIF when ``remote``) in the study's ``dtype``."""
        return load_model(self["model_name"], dtype=self.parameters.get("dtype"),
                          remote=self.parameters.get("remote", False))  # fmt: skip

    def load_models(self) -> tuple[TransformersModel, TransformersModel]:
        """The steered model (:meth:`load_model`) and the judge (``judge_name``, in the same
        ``dtype``): another model than the steered one, since a model judging its own text is no
        independent measure."""
        model_name, judge_name = self["model_name"], self["judge_name"]
        if judge_name == model_name:
            raise ValueError(f"judge_name is the steered model ({model_name!r}): judge with another model")
        return self.load_model(), load_model(judge_name, dtype=self.parameters.get("dtype"))

    # --- claims ----------------------------------------------------------------------------

    def declare(self, claims: Iterable[Claim] | None = None) -> ClaimsRecord:
        """State the claims before any number is measured (``claims.json`` is written at once):
        the section's claims unless ``claims`` are given. Shows them: claim, the paper's value,
        the metric and the criterion."""
        if claims is None and self.section is None:
            raise ValueError(f"{self.name} has no section to take its claims from: pass the claims")
        chosen = list(self.section.claims(self.parameters) if claims is None else claims)  # type: ignore[union-attr]
        paper = "" if self.section is None else self.section.paper
        withdrawn = {} if self.section is None else dict(self.section.withdrawn)
        self.claims = ClaimsRecord.declare(self.name, self.dir, chosen, paper=paper, withdrawn=withdrawn)
        _show(self.claims.table()[["claim", "the paper", "criterion"]])
        return self.claims

    def record(self, claim_id: str, estimate: Estimate, note: str = "") -> Verdict:
        """Record a declared claim's estimate; returns its verdict."""
        return self._claims().record(claim_id, estimate, note)

    def verdict(self, claim_id: str) -> Verdict:
        return self._claims().verdict(claim_id)

    def estimate(self, claim_id: str) -> Estimate:
        """A recorded claim's estimate (a claim not yet measured is an error)."""
        estimate = self._claims().results[claim_id].estimate
        if estimate is None:
            raise ValueError(f"claim {claim_id!r} of {self.name} has not been measured yet")
        return estimate

    def measured(self) -> dict[str, Any]:
        """For a prose template: each measured claim's estimate by its short name ("01.layer1" ->
        ``layer1``) and its verdict as ``v_<short name>``."""
        out: dict[str, Any] = {}
        for claim_id, result in self._claims().results.items():
            if result.estimate is not None:
                short = claim_id.split(".", 1)[1].replace(".", "_")
                out[short], out[f"v_{short}"] = result.estimate, result.verdict
        return out

    def note(self, claim_id: str) -> str:
        """The note recorded with a claim's estimate ("" when it has none)."""
        return self._claims().results[claim_id].note

    def _claims(self) -> ClaimsRecord:
        if self.claims is None:
            raise ValueError(f"{self.name} declares its claims first: call study.declare() before recording")
        return self.claims

    # --- outputs ---------------------------------------------------------------------------

    def table(self, table: pd.DataFrame, name: str) -> pd.DataFrame:
        """Save a results table as ``<name>.csv`` in the run folder; returns it, for display."""
        save_table(table, self.dir / f"{name}.csv")
        return table

    def figure(self, fig: plt.Figure, name: str) -> Path:
        """Save a figure as ``<name>.png`` in the run folder (publishing copies it to ``figures/``).
        Tick labels drawn over one another are reported (a warning; an error when the environment
        sets ``ACTADD_STRICT_FIGURES``, as the notebook tests do)."""
        if fig.get_layout_engine() is None:  # figures from plots.panels lay themselves out
            fig.tight_layout()
        if overlaps := plots.overlapping_tick_labels(fig):
            message = f"figure {name!r} of {self.name} has tick labels drawn over one another: {overlaps[:3]}"
            if os.environ.get(STRICT_FIGURES):
                raise ValueError(message + "; wrap, rotate or turn the panel horizontal")
            warnings.warn(message, stacklevel=2)
        return atomic_write(self.dir / f"{name}.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png"))

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the block's wall time to ``phase`` ("generation", "scoring", "judging", ...)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

    @property
    def wall_time_s(self) -> float:
        return time.perf_counter() - self.start

    def finish(
        self, headline: Mapping[str, Any], *records: Keyed, judged_by: JudgeSummary | None = None
    ) -> StudyRecord:
        """Close the run: the claims table (``claims.csv``, shown) and the study's record
        (``headline.json``: the headline numbers, the typed ``records``, who judged the verdicts,
        every parameter, the wall time by phase, the peak memory and the package versions), and
        one line with the wall time."""
        claims = self._claims()
        table = self.table(claims.table(), "claims")
        _show(table[["claim", "the paper", "measured [95% CI]", "criterion", "verdict", "note"]])
        wall = self.wall_time_s
        record = StudyRecord(
            study=self.name,
            claims=list(claims.results.values()),
            declared_at=claims.declared_at,
            paper=claims.paper,
            withdrawn=[Withdrawn(claim_id, reason) for claim_id, reason in claims.withdrawn.items()],
            headline={**headline, "verdicts": {cid: claims.verdict(cid) for cid in claims.results}},
            records={r.KEY: asdict(r) for r in records},  # type: ignore[call-overload]
            judged_by=judged_by,
            parameters=self.parameters,
            wall_time_s=round(wall, 1),
            phases_s={k: round(v, 1) for k, v in self.phases.items()},
            peak_memory_gb=peak_memory_gb(),
            versions=versions(),
        )
        record.save(self.dir)
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items())
        print(f"{self.name}: wall time {wall:.0f} s" + (f" ({spent})" if spent else "") +
              f", peak memory {record.peak_memory_gb:.2f} GB")  # fmt: skip
        return record

    def prose(self, template: str, **values: Any) -> str:
        """ "What it shows": ``template`` rendered from this run's numbers (:func:`.prose.render`),
        saved as ``what_it_shows.md`` and shown."""
        text = render(template, **values)
        atomic_write(self.dir / PROSE, lambda tmp: tmp.write_text(text))
        _show_markdown(text)
        return text


def _plain(value: Any) -> bool:
    """A value a parameters cell can hold: None, a bool, number or string, or lists, tuples and
    dicts of those."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _show(table: pd.DataFrame) -> None:
    """Display a table in a notebook (as its HTML), print it elsewhere."""
    try:
        from IPython.display import display

        display(table)
    except ImportError:
        print(table.to_string(index=False))


def _show_markdown(text: str) -> None:
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:
        print(text)
