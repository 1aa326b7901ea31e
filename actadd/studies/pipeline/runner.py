"""Run the study notebooks with papermill into a run folder.

``python -m actadd run [NOTEBOOK ...] [-p NAME VALUE ...] [--profile smoke|default|paper] [--out DIR]``

Each notebook is executed into ``DIR/<notebook>.ipynb`` with its results (tables, figures,
headline numbers) in ``DIR/<notebook>/``; nothing outside ``DIR`` is written, the committed
``figures/`` included (``publish`` copies figures there). Sizes come from
``notebooks/profiles.yaml`` (per notebook, per profile); ``-p`` overrides them, and a name
that a notebook's ``parameters`` cell does not define is refused before anything runs. While
a notebook runs, a line says which cell it is on at least every ``heartbeat_s`` seconds. A
failing notebook is reported with its cell, its executed copy is kept, and the other notebooks
still run; the exit status is non-zero if any failed. Ctrl-C stops the run at the notebook
it is in: that notebook is recorded as interrupted, and ``run.json`` and the report keep what
finished. ``--colab`` takes each notebook's Colab branch (the paper's models and data by hub
id) outside Colab.
"""

from __future__ import annotations

import _thread
import ast
import datetime as dt
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, ClassVar

import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from tqdm.auto import tqdm

from actadd.studies.lifecycle.colab import COLAB_ENV, colab_requested
from actadd.studies.lifecycle.parameters import parameter_names
from actadd.studies.lifecycle.record import NotebookRun, RunLog
from actadd.studies.pipeline import PROFILES, REPO
from actadd.studies.pipeline.report import write_report

NOTEBOOKS = REPO / "notebooks"
# Set by the runner itself, so a notebook need not define them: where its outputs go, its
# profile, and on the model axis which model it runs and which judges it.
RUNNER_PARAMETERS = ("profile", "results_dir")
PER_MODEL_PARAMETERS = ("model_name", "judge_name")
# Every kernel the runner starts reads this config: it drops ipykernel's warning about TCP
# without encryption, which each notebook would otherwise print to the run's stderr.
KERNEL_CONFIG = Path(__file__).with_name("kernel_config.py")
# How long a Ctrl-C passed on to the kernel may take to end the cell before the runner stops
# waiting for it: ipykernel drops a SIGINT that lands outside the cell's own code (in IPython's
# handling around it) without an execute_reply, and nbclient would wait for that reply forever.
INTERRUPT_GRACE_S = 15.0


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
    """The names the notebook's ``parameters`` cell defines, sorted."""
    return sorted(parameter_names(notebook) or [])


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
    from actadd.embedded import EMBEDDED_MODELS  # here, not at the top: the runner itself never needs torch

    others = [name for name in EMBEDDED_MODELS if name != model_name]
    if not others:
        raise ValueError(f"no embedded model other than {model_name!r} to judge it; pass judge_name explicitly")
    return others[0]


def duration(seconds: float) -> str:
    """``192.4`` -> ``"3m12s"``: a running time as a log line gives it."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class InterruptibleKernel(AsyncKernelManager):
    """nbclient's kernel manager, keeping a list of the kernels it has up.

    jupyter_client starts every kernel in a session of its own, out of the terminal's reach:
    a Ctrl-C reaches only the runner, which finds here the kernel to interrupt (:class:`Watch`).
    """

    live: ClassVar[weakref.WeakSet[InterruptibleKernel]] = weakref.WeakSet()

    # The ignores: jupyter_client types these as KernelManager's sync methods, and
    # AsyncKernelManager itself overrides them with coroutines under the same ignores.
    async def start_kernel(self, **kwargs: Any) -> None:  # type: ignore[override]
        await super().start_kernel(**kwargs)
        self.live.add(self)

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        self.live.discard(self)  # nbclient calls this last, whether the kernel shut down or died
        await super().cleanup_resources(restart=restart)


class Interrupted(Exception):
    """Raised by :meth:`Watch.on_cell_start`: Ctrl-C came between two cells, so no more start."""


class Watch:
    """Where a running notebook is, and what Ctrl-C does to it.

    nbclient's hooks (papermill hands them to its client) note the cell, and a thread prints
    ``[label] cell 7/25, 3m12s`` every ``every_s`` seconds to stdout, whatever stderr is:
    papermill's own progress bar draws only on a terminal, so a run logged to a file (CI,
    nohup) would otherwise say nothing for the whole of a long notebook.

    While the notebook runs, Ctrl-C interrupts its kernel, as Jupyter's stop button does,
    instead of raising KeyboardInterrupt in the runner, which would tear nbclient down in the
    middle of a cell (a task left pending and the kernel shut down while busy, each printing a
    traceback). The cell stops with KeyboardInterrupt, papermill saves the executed copy with
    it and raises PapermillExecutionError, and nbclient shuts the idle kernel down. A kernel
    ignores a SIGINT that reaches it between two cells, so the next cell is refused instead
    (:class:`Interrupted`). A second Ctrl-C, or a cell still running ``INTERRUPT_GRACE_S``
    after the first, raises KeyboardInterrupt in the runner after all.
    """

    def __init__(self, label: str, every_s: float) -> None:
        self.label, self.every_s = label, every_s
        self.start = time.monotonic()
        self.cells = 0
        self.cell: int | None = None  # 1-based: the cell running now
        self.interrupted = False  # Ctrl-C came while this notebook ran
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"progress {label}", daemon=True)
        self._previous: Any = None  # the SIGINT handler to give back; None while none is taken
        self._grace: threading.Timer | None = None

    def on_notebook_start(self, notebook: Any, **_: Any) -> None:
        self.cells = len(notebook.cells)  # after papermill injected its parameters cell

    def on_cell_start(self, cell: Any, cell_index: int, **_: Any) -> None:
        if self.interrupted:
            raise Interrupted(f"Ctrl-C before cell {cell_index + 1}")
        self.cell = cell_index + 1

    def where(self) -> str:
        return "starting the kernel" if self.cell is None else f"cell {self.cell}/{self.cells}"

    def line(self) -> str:
        return f"[{self.label}] {self.where()}, {duration(time.monotonic() - self.start)}"

    def _beat(self) -> None:
        while not self._stopped.wait(self.every_s):
            tqdm.write(self.line(), file=sys.stdout)  # clears and redraws papermill's bar, if one is drawn
            sys.stdout.flush()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._give_back()  # so that a second Ctrl-C raises KeyboardInterrupt
        self.interrupted = True
        for kernel in list(InterruptibleKernel.live):
            if kernel.has_kernel:
                run_sync(kernel.interrupt_kernel)()
        self._grace = threading.Timer(INTERRUPT_GRACE_S, _thread.interrupt_main)
        self._grace.daemon = True
        self._grace.start()

    def _give_back(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __enter__(self) -> Watch:
        self._thread.start()
        if threading.current_thread() is threading.main_thread():  # only there can a handler be set
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._give_back()
        if self._grace is not None:
            self._grace.cancel()
        self._stopped.set()
        self._thread.join()


@contextmanager
def _colab_branch(colab: bool) -> Iterator[None]:
    """Set :data:`~actadd.studies.lifecycle.study.COLAB_ENV` while the kernels start (they inherit
    the environment), and put the old value back afterwards."""
    previous = os.environ.get(COLAB_ENV)
    if colab:
        os.environ[COLAB_ENV] = "1"
    try:
        yield
    finally:
        if colab and previous is None:
            del os.environ[COLAB_ENV]
        elif colab and previous is not None:
            os.environ[COLAB_ENV] = previous


def default_run_folder(profile: str) -> Path:
    """Where a run goes when no folder is given: ``runs/<time>-<profile>``."""
    return REPO / "runs" / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{profile}"


def run_notebooks(
    notebooks: list[Path],
    *,
    profile: str = "default",
    parameters: dict[str, Any] | None = None,
    out: Path | None = None,
    models: Sequence[str] | None = None,
    kernel: str = "python3",
    heartbeat_s: float = 60.0,
    colab: bool = False,
) -> list[NotebookRun]:
    """Execute ``notebooks`` in order into ``out``; returns one record per notebook (and model).

    With ``models``, every notebook runs once per model into ``out/<model>/``, each with that
    model as ``model_name`` and another embedded model as ``judge_name``, so each model
    chooses its own settings by the same rule and no result set overwrites another. A name
    a notebook does not define, or a model with no other to judge it, is refused
    (``ValueError``) before the first notebook starts. After Ctrl-C no further notebook starts.
    With ``colab``, every notebook takes its Colab branch (``on_colab()`` is true in its kernel):
    the paper's models and datasets by hub id, from the Hugging Face cache or the hub.
    """
    if not notebooks:
        raise ValueError("no notebooks to run")
    check_parameters(notebooks, parameters or {}, profile)
    colab = colab or colab_requested()
    out = Path(out or default_run_folder(profile)).resolve()
    axis: list[tuple[str | None, Path]] = [(None, out)] if not models else [(m, out / m) for m in models]
    judges = {model: independent_judge(model) for model, _ in axis if model is not None}
    out.mkdir(parents=True, exist_ok=True)
    runs: list[NotebookRun] = []
    jobs = [(model, folder, notebook) for model, folder in axis for notebook in notebooks]
    for i, (model, folder, notebook) in enumerate(jobs, 1):
        results_dir = folder / notebook.stem
        per_model = {} if model is None else {"model_name": model, "judge_name": judges[model]}
        params = {
            **profile_parameters(notebook, profile),
            **(parameters or {}),
            **per_model,
            "profile": profile,
            "results_dir": str(results_dir),
        }
        executed = folder / notebook.name
        label = f"{notebook.name}" + (f" on {model}" if model else "")
        print(f"[{i}/{len(jobs)}] {label} ({profile}{', Colab branch' if colab else ''}) -> {executed}", flush=True)
        start = time.perf_counter()
        status, error = "ok", None
        watch = Watch(f"{i}/{len(jobs)} {notebook.stem}" + (f" on {model}" if model else ""), heartbeat_s)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with watch, _colab_branch(colab):
                papermill.execute_notebook(
                    str(notebook),
                    str(executed),
                    parameters=params,
                    kernel_name=kernel,
                    cwd=str(notebook.parent),
                    progress_bar=sys.stderr.isatty(),
                    log_output=False,
                    # Passed on to papermill's nbclient NotebookClient.
                    kernel_manager_class=InterruptibleKernel,
                    extra_arguments=[f"--config={KERNEL_CONFIG}"],
                    on_notebook_start=watch.on_notebook_start,
                    on_cell_start=watch.on_cell_start,
                )
        except papermill.PapermillExecutionError as err:
            if watch.interrupted and err.ename == "KeyboardInterrupt":  # the cell Ctrl-C stopped
                status, error = "interrupted", f"interrupted at {watch.where()}"
            else:
                status, error = "failed", f"cell {err.exec_count}: {err.ename}: {err.evalue}"
        except (Interrupted, KeyboardInterrupt):  # between cells; or a second Ctrl-C, or a cell past the grace
            status, error = "interrupted", f"interrupted at {watch.where()}"
        except Exception as err:  # a kernel that died, a missing notebook: report, go on
            status, error = "failed", f"{type(err).__name__}: {err}"
            traceback.print_exc()
        wall = time.perf_counter() - start
        record = NotebookRun(
            notebook=notebook.stem,
            status=status,
            wall_time_s=round(wall, 1),
            executed=executed.relative_to(out).as_posix(),
            results_dir=results_dir.relative_to(out).as_posix(),
            parameters=params,
            error=error,
        )
        runs.append(record)
        RunLog(profile, colab, runs).save(out)
        if status == "interrupted" or watch.interrupted:  # a Ctrl-C as the last cell ended stops the run too
            done = sum(r.status == "ok" for r in runs)
            where = f"at {watch.where()}" if status == "interrupted" else "as it ended"
            print(
                f"INTERRUPTED {label} {where} after {duration(wall)}; "
                f"{done} finished {'study' if done == 1 else 'studies'} kept in {out}",
                flush=True,
            )
            break
        print(f"    {record.status} in {wall:.0f} s" + (f": {error}" if error else ""), flush=True)
    failed = [r for r in runs if r.status == "failed"]
    interrupted = sum(r.status == "interrupted" for r in runs)
    print(
        f"run folder: {out}  ({len(runs) - len(failed) - interrupted} ok, {len(failed)} failed"
        + (f", {interrupted} interrupted)" if interrupted else ")")
    )
    for r in failed:
        print(f"FAILED {r.notebook}.ipynb at {r.error}  (executed copy kept: {out / r.executed})")
    try:
        _, html_path = write_report(out)
        print(f"report: {html_path}")
    except Exception as err:  # the results are on disk already: a report bug must not lose them
        print(f"report not written ({type(err).__name__}: {err}); results are in {out}", file=sys.stderr)
    return runs
