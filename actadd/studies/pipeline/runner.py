"""Run the study notebooks with papermill into a run folder.

``python -m actadd run [NOTEBOOK ...] [-p NAME VALUE ...] [--profile smoke|default|paper] [--out DIR]``

Each notebook is executed into ``DIR/<notebook>.ipynb`` with its results in ``DIR/<notebook>/``.
Sizes come from ``notebooks/profiles.yaml`` (per notebook, per profile); ``-p`` overrides
them, and a name that a notebook's ``parameters`` cell does not define is refused before
anything runs. A failing notebook is reported with its cell, its executed copy is kept, and the
other notebooks still run; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import ast
import datetime as dt
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import papermill
import yaml

from actadd.io import save_json
from actadd.models import DEFAULT_MODEL
from actadd.studies.pipeline import PROFILES, REPO
from actadd.studies.pipeline.report import write_report

NOTEBOOKS = REPO / "notebooks"
# Set by the runner itself, so a notebook need not define them: where its outputs go, its
# profile, and on the model axis which model it runs and which judges it.
RUNNER_PARAMETERS = ("profile", "results_dir", "figures_dir")
PER_MODEL_PARAMETERS = ("model_name", "judge_name")


@dataclass
class NotebookRun:
    """What happened to one notebook in a run."""

    notebook: str
    status: str  # "ok" or "failed"
    wall_time_s: float
    executed: str  # path of the executed copy
    results_dir: str
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # "cell N: ExceptionName: message" when failed


def find_notebooks(names: list[str] | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """Numbered notebooks in ``folder`` (all, in order), or those named by path, stem or number prefix."""
    numbered = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return numbered
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path)
            continue
        matches = [p for p in numbered if p.stem == name or p.stem.startswith(f"{name}_") or p.stem == Path(name).stem]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in numbered)
            raise ValueError(f"no single notebook matches {name!r}; known: {known}")
        chosen.append(matches[0])
    return chosen


def profile_parameters(notebook: Path, profile: str, profiles_file: Path | None = None) -> dict[str, Any]:
    """The sizes ``profiles.yaml`` sets for this notebook under ``profile``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    profiles_file = profiles_file or notebook.parent / "profiles.yaml"
    table = yaml.safe_load(profiles_file.read_text()) if profiles_file.exists() else {}
    return dict((table or {}).get(notebook.stem, {}).get(profile, {}) or {})


def notebook_parameters(notebook: Path) -> list[str]:
    """The names the notebook's ``parameters`` cell defines (papermill's reading of it), sorted."""
    return sorted(papermill.inspect_notebook(notebook))


def check_parameters(notebooks: Sequence[Path], parameters: dict[str, Any], profile: str) -> None:
    """Refuse a ``-p`` name (or a ``profiles.yaml`` one) that a notebook's ``parameters`` cell
    does not define: papermill would inject it, the notebook would never read it, and the run
    would look like it used the value. The runner's own names are always allowed."""
    problems = []
    for notebook in notebooks:
        defined = notebook_parameters(notebook)
        allowed = {*defined, *RUNNER_PARAMETERS, *PER_MODEL_PARAMETERS}
        unknown = sorted({*profile_parameters(notebook, profile), *parameters} - allowed)
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            valid = ", ".join(defined) if defined else "nothing (it has no cell tagged 'parameters')"
            problems.append(f"{notebook.name} has no parameter {names}; its parameters cell defines: {valid}")
    if problems:
        raise ValueError("\n".join(problems))


def parse_value(text: str) -> Any:
    """A ``-p`` value as a Python literal when it is one ('8' -> 8, '[1, 2]' -> list), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def independent_judge(model_name: str) -> str:
    """The embedded model that judges ``model_name``'s text: never the steered model itself."""
    from actadd.models import EMBEDDED_MODELS

    others = [name for name in EMBEDDED_MODELS if name != model_name]
    if not others:
        raise ValueError(f"no embedded model other than {model_name!r} to judge it; pass judge_name explicitly")
    return others[0]


def figures_folder(profile: str, model: str | None, folder: Path) -> Path:
    """Where a notebook's figures go: the committed ``figures/`` for the main model (``model``
    None or :data:`~actadd.models.DEFAULT_MODEL`) outside the smoke profile; else
    ``folder/figures``, so a smoke run or another model's run leaves the committed figures alone."""
    if profile == "smoke" or model not in (None, DEFAULT_MODEL):
        return folder / "figures"
    return REPO / "figures"


def run_notebooks(
    notebooks: list[Path],
    *,
    profile: str = "default",
    parameters: dict[str, Any] | None = None,
    out: Path | None = None,
    models: Sequence[str] | None = None,
    kernel: str = "python3",
) -> list[NotebookRun]:
    """Execute ``notebooks`` in order into ``out``; returns one record per notebook (and model).

    With ``models``, every notebook runs once per model into ``out/<model>/``, each with that
    model as ``model_name`` and another embedded model as ``judge_name``, so each model
    chooses its own settings by the same rule and no result set overwrites another. Only the
    main model's figures go to ``figures/`` (:func:`figures_folder`). A name that a notebook
    does not define is refused (``ValueError``) before the first notebook starts.
    """
    if not notebooks:
        raise ValueError("no notebooks to run")
    check_parameters(notebooks, parameters or {}, profile)
    out = Path(out or REPO / "runs" / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{profile}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    axis: list[tuple[str | None, Path]] = [(None, out)] if not models else [(m, out / m) for m in models]
    runs: list[NotebookRun] = []
    jobs = [(model, folder, notebook) for model, folder in axis for notebook in notebooks]
    for i, (model, folder, notebook) in enumerate(jobs, 1):
        figures_dir = figures_folder(profile, model, folder)
        results_dir = folder / notebook.stem
        per_model = {} if model is None else {"model_name": model, "judge_name": independent_judge(model)}
        params = {
            **profile_parameters(notebook, profile),
            **(parameters or {}),
            **per_model,
            "profile": profile,
            "results_dir": str(results_dir),
            "figures_dir": str(figures_dir),
        }
        executed = folder / notebook.name
        label = f"{notebook.name}" + (f" on {model}" if model else "")
        print(f"[{i}/{len(jobs)}] {label} ({profile}) -> {executed}", flush=True)
        start = time.perf_counter()
        error = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=params,
                kernel_name=kernel,
                cwd=str(notebook.parent),
                progress_bar=sys.stderr.isatty(),
                log_output=False,
            )
        except papermill.PapermillExecutionError as err:
            error = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
        except Exception as err:  # a kernel that died, a missing notebook: report, go on
            error = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        wall = time.perf_counter() - start
        record = NotebookRun(
            notebook=notebook.stem,
            status="failed" if error else "ok",
            wall_time_s=round(wall, 1),
            executed=str(executed),
            results_dir=str(results_dir),
            parameters=params,
            error=error,
        )
        runs.append(record)
        print(f"    {record.status} in {wall:.0f} s" + (f": {error}" if error else ""), flush=True)
        save_json({"profile": profile, "notebooks": [asdict(r) for r in runs]}, out / "run.json")
    failed = [r for r in runs if r.status == "failed"]
    print(f"run folder: {out}  ({len(runs) - len(failed)} ok, {len(failed)} failed)")
    for r in failed:
        print(f"FAILED {r.notebook}.ipynb at {r.error}  (executed copy kept: {r.executed})")
    try:
        _, html_path = write_report(out)
        print(f"report: {html_path}")
    except Exception as err:  # the results are on disk already: a report bug must not lose them
        print(f"report not written ({type(err).__name__}: {err}); results are in {out}", file=sys.stderr)
    return runs
