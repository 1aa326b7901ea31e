"""A study is an object: a notebook opens one after its ``parameters`` cell and does the rest through it.

    study = Study.open("01_wedding_layers")        # every parameter; the paper's claims, declared before any number
    with study.timed("generation"):                  # where the time goes, by phase
        texts = actadd.generate_sweep(...)
    study.table(by_layer, "by_layer")                # CSV in the run folder
    study.figure(fig, "wedding_by_layer")            # PNG in the run folder
    study.record("01.paper_best", estimate)          # a declared claim's estimate, and its verdict
    study.finish({"best_layer": 6}, setting)         # claims table, headline.json, wall time
    study.prose(TEMPLATE, best=estimate, ...)        # "What it shows", rendered from the numbers

Everything a study writes goes into its ``results_dir`` (the runner gives each study its own).
The committed ``figures/`` is written only when a run is published (``python -m actadd run
--publish``, ``make study``), beside the README and the ``results/`` snapshot it goes with, so a
run that stops half-way leaves all three as they were. Values another study or the README reads are typed records (:class:`WeddingSetting`,
:class:`JudgeReport`), saved in ``headline.json`` and read back with :func:`load_record`.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from nnsight.modeling.transformers import TransformersModel

from actadd import SteeringVector, load_model
from actadd.io import atomic_write, save_json
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.evaluation.topic import coefficient_grid
from actadd.studies.harness import paper
from actadd.studies.harness.claims import Claim, ClaimsRecord, Verdict
from actadd.studies.harness.colab import COLAB_PARAMETERS, on_colab
from actadd.studies.harness.parameters import parameter_names
from actadd.studies.harness.prose import render

# IPython's own names in a notebook's namespace: never parameters.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for package in ("actadd", "torch", "nnsight", "transformers", "datasets"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV (no index), atomically. Lines end in CRLF as RFC 4180 has it,
    which makes the csv writer quote a text holding a bare carriage return (tweets do): with
    "\\n" endings it would not, and a reader would split that row in two."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\r\n"))


class Study:
    """One study notebook's run: its parameters, its pre-stated claims and everything it writes."""

    def __init__(self, name: str, parameters: Mapping[str, Any]) -> None:
        if "results_dir" not in parameters or "seed" not in parameters:
            raise ValueError(
                f"study {name!r} needs the parameters results_dir and seed, got {sorted(parameters)}: every study's "
                "parameters cell sets both"
            )
        self.name = name
        self.parameters = dict(parameters)
        self.dir = Path(parameters["results_dir"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.claims: ClaimsRecord | None = None
        self.phases: dict[str, float] = {}
        self.start = time.perf_counter()
        sns.set_theme(context="notebook", style="whitegrid")
        pd.set_option("display.max_colwidth", 200)

    @classmethod
    def open(cls, name: str, namespace: dict[str, Any] | None = None) -> Study:
        """The study ``name``, with every parameter read from the notebook's namespace (the
        caller's globals by default): the ``parameters`` cell's values after papermill's
        injected ones. The names are the parameters cell's when the notebook ``<name>.ipynb`` is
        in the working folder (where papermill and JupyterLab run it), else every plain value of
        the namespace (a notebook opened from GitHub on Colab).

        On Colab (:func:`on_colab`) the parameters cell's ``colab_parameters`` (the paper's models
        and datasets by hub id) are applied to the namespace first, so a Colab user runs the
        paper's setting without editing a cell; ``colab_branch`` records whether they were.

        A study the paper registry knows (:mod:`.paper`) declares its claims here, before any
        number is measured, and shows them."""
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
        study = cls(name, {**{n: ns[n] for n in names}, "colab_branch": colab})
        if name in paper.CLAIMS:
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
        the paper registry's claims for this study (:mod:`.paper`) unless ``claims`` are given.
        Shows them: claim, the paper's value, the metric and the criterion."""
        chosen = list(paper.claims(self.name, self.parameters) if claims is None else claims)
        self.claims = ClaimsRecord.declare(self.name, self.dir, chosen)
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
        """Save a figure as ``<name>.png`` in the run folder (publishing copies it to ``figures/``)."""
        if fig.get_layout_engine() is None:  # figures from plots.panels lay themselves out
            fig.tight_layout()
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

    def finish(self, headline: Mapping[str, Any], *records: Any) -> dict[str, Any]:
        """Close the run: the claims table (``claims.csv``, shown), ``headline.json`` (the
        headline numbers, the typed ``records``, every parameter, the wall time by phase and the
        package versions), and one line with the wall time."""
        claims = self._claims()
        table = self.table(claims.table(), "claims")
        _show(table[["claim", "the paper", "measured [95% CI]", "criterion", "verdict", "note"]])
        wall = self.wall_time_s
        record = {
            "study": self.name,
            "headline": {**headline, "verdicts": {cid: claims.verdict(cid) for cid in claims.results}},
            "records": {r.KEY: asdict(r) for r in records},
            "parameters": self.parameters,
            "wall_time_s": round(wall, 1),
            "phases_s": {k: round(v, 1) for k, v in self.phases.items()},
            "versions": versions(),
        }
        save_json(record, self.dir / "headline.json")
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items())
        print(f"{self.name}: wall time {wall:.0f} s" + (f" ({spent})" if spent else ""))
        return record

    def prose(self, template: str, **values: Any) -> str:
        """ "What it shows": ``template`` rendered from this run's numbers (:func:`.prose.render`),
        saved as ``what_it_shows.md`` and shown."""
        text = render(template, **values)
        atomic_write(self.dir / "what_it_shows.md", lambda tmp: tmp.write_text(text))
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


# --- typed records: what other code reads of a study ---------------------------------------

R = TypeVar("R")


@dataclass(frozen=True)
class WeddingSetting:
    """The tuned arm's setting that 01 chose for ' weddings' - '', which 02 and 03 steer with: a
    block index and the strength as a relative norm (it transfers between models; each study
    computes the coefficient that gives it on its own model)."""

    KEY: ClassVar[str] = "wedding_setting"
    layer: int
    relative_norm: float


@dataclass(frozen=True)
class Agreement:
    """How far two scorers agree on the same texts (:func:`actadd.studies.harness.judges.agreement`)."""

    kappa: float
    agreement: float
    spearman: float
    n: int


@dataclass(frozen=True)
class JudgeReport:
    """Who judged a comparison study's verdicts: the scorer, its measured accuracy rows (one
    per candidate, as :func:`actadd.studies.harness.judges.sentiment_accuracy_table` gives them;
    empty for a packaged classifier not measured here), the second scorer and their agreement
    on the judged continuations."""

    KEY: ClassVar[str] = "judges"
    scorer: str
    second: str
    agreement: Agreement
    accuracy: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The agreement as a one-row table: scorer, second, kappa, agreement, spearman, n."""
        return pd.DataFrame([{"scorer": self.scorer, "second": self.second, **asdict(self.agreement)}])

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> JudgeReport:
        return cls(
            scorer=record["scorer"],
            second=record["second"],
            agreement=Agreement(**record["agreement"]),
            accuracy=list(record.get("accuracy", [])),
        )


def load_record(kind: type[R], headline_file: str | Path) -> R | None:
    """The record of type ``kind`` saved in a study's ``headline.json``, or None when the file
    or the record is absent."""
    path = Path(headline_file)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text()).get("records", {}).get(kind.KEY)  # type: ignore[attr-defined]
    if stored is None:
        return None
    if hasattr(kind, "from_dict"):
        return kind.from_dict(stored)  # type: ignore[attr-defined]
    return kind(**{f.name: stored[f.name] for f in fields(kind)})  # type: ignore[arg-type]


def wedding_setting(results_dir: str | Path, default: WeddingSetting) -> tuple[WeddingSetting, str]:
    """The setting 01 chose in this run (its results folder beside ``results_dir``), or
    ``default`` when the run has none; with a phrase saying which, for the prose."""
    chosen = load_record(WeddingSetting, Path(results_dir).parent / "01_wedding_layers" / "headline.json")
    if chosen is not None:
        return chosen, "chosen by notebook 01 in this run"
    return default, "this notebook's parameters (no 01_wedding_layers result in this run folder)"


@dataclass(frozen=True)
class WeddingGrid:
    """The vectors a topic study (02, 03) steers with: ``p_plus - p_minus`` at the setting's
    layer for each coefficient of its grid and for the tuned strength, and where the setting
    came from (a phrase for the prose)."""

    setting: WeddingSetting
    source: str
    vectors: dict[float, SteeringVector]  # {coeff: vector}, coefficients increasing
    tuned_coeff: float

    def __str__(self) -> str:
        return (
            f"layer {self.setting.layer}, tuned relative norm {self.setting.relative_norm:.3g} "
            f"(c = {self.tuned_coeff:.3g} on this model): {self.source}"
        )


def wedding_grid(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    coeffs: Sequence[float],
    results_dir: str | Path,
    default: WeddingSetting,
) -> WeddingGrid:
    """The :class:`WeddingGrid` at the setting :func:`wedding_setting` gives for this run: the
    vectors for each of ``coeffs`` and for the coefficient that gives the setting's relative norm
    on ``model``."""
    setting, source = wedding_setting(results_dir, default)
    vectors, tuned = coefficient_grid(
        model, p_plus, p_minus, layer=setting.layer, coeffs=coeffs, relative_norm=setting.relative_norm
    )
    return WeddingGrid(setting, source, vectors, tuned)
