"""The papermill runner: failures, parameters, progress in a log, Ctrl-C, and where figures go."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import actadd
from actadd.studies.lifecycle.colab import COLAB_ENV, on_colab
from actadd.studies.pipeline import PROFILES, runner
from actadd.studies.pipeline.cli import INTERRUPTED, main
from actadd.studies.pipeline.runner import (
    REPO,
    Interrupted,
    Watch,
    check_parameters,
    duration,
    find_notebooks,
    parse_value,
    profile_parameters,
    run_notebooks,
)

SOURCE_ROOT = Path(actadd.__file__).resolve().parents[1]  # the actadd under test, for subprocesses


def _notebook(path: Path, *bodies: str) -> Path:
    nb = new_notebook(
        cells=[
            new_code_cell(
                'profile = "default"\nresults_dir = "x"\nvalue = 1',
                metadata={"tags": ["parameters"]},
            ),
            *(new_code_cell(body) for body in bodies),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, path)
    return path


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "actadd", *args]


def _environment() -> dict[str, str]:
    """The subprocess's: this actadd first on the path, one thread (the CPU is shared)."""
    path = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


@pytest.mark.slow
def test_failing_notebook_is_reported_and_the_others_kept(tmp_path, capsys):
    good = _notebook(
        tmp_path / "01_good.ipynb",
        (
            "from pathlib import Path\n"
            "Path(results_dir).mkdir(parents=True, exist_ok=True)\n"
            "Path(results_dir, 'out.txt').write_text(str(value * 2))"
        ),
    )
    bad = _notebook(tmp_path / "02_bad.ipynb", "raise ValueError('boom: bad value 7')")
    later = _notebook(tmp_path / "03_later.ipynb", "value + 1")
    runs = run_notebooks([good, bad, later], profile="smoke", parameters={"value": 21}, out=tmp_path / "run")
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    assert "ValueError: boom: bad value 7" in runs[1].error and runs[1].error.startswith("cell ")
    assert (tmp_path / "run" / "01_good" / "out.txt").read_text() == "42"  # -p reached the notebook
    assert (tmp_path / "run" / "02_bad.ipynb").exists()  # the failed executed copy is kept
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [n["status"] for n in record["notebooks"]] == ["ok", "failed", "ok"]
    assert "FAILED 02_bad.ipynb at cell" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_exit_status_and_bad_names(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        main(["run", "99_missing", "--out", str(tmp_path)])
    assert exc.value.code == 2
    bad = _notebook(tmp_path / "01_bad.ipynb", "1/0")
    assert main(["run", str(bad), "--profile", "smoke", "--out", str(tmp_path / "r")]) == 1


def test_parameters_and_profiles(tmp_path):
    assert parse_value("8") == 8 and parse_value("8.0") == 8.0 and parse_value("[1, 2]") == [1, 2]
    assert parse_value("gpt2-xl") == "gpt2-xl"
    notebooks = find_notebooks()
    assert notebooks and notebooks[0].name == "00_quickstart.ipynb"
    assert notebooks == sorted(notebooks)
    assert find_notebooks(["00"]) == [REPO / "notebooks" / "00_quickstart.ipynb"]
    assert profile_parameters(notebooks[0], "smoke")["n_samples"] == 2
    with pytest.raises(ValueError, match="profile must be one of"):
        profile_parameters(notebooks[0], "huge")


def test_every_notebook_has_a_parameters_cell():
    for path in find_notebooks():
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("profile", "results_dir", "seed"):
            assert f"{name} =" in tagged[0].source, (path.name, name)


@pytest.mark.slow
def test_the_model_axis_writes_one_result_set_per_model(tmp_path):
    body = (
        "from pathlib import Path\n"
        "Path(results_dir).mkdir(parents=True, exist_ok=True)\n"
        "Path(results_dir, 'model.txt').write_text(f'{model_name} judged by {judge_name}')"
    )
    notebook = _notebook(tmp_path / "01_axis.ipynb", body)
    runs = run_notebooks([notebook], profile="smoke", out=tmp_path / "run", models=["smollm2-135m", "gemma3-270m"])
    assert [r.status for r in runs] == ["ok", "ok"]
    assert (
        tmp_path / "run" / "smollm2-135m" / "01_axis" / "model.txt"
    ).read_text() == "smollm2-135m judged by gemma3-270m"
    assert (
        tmp_path / "run" / "gemma3-270m" / "01_axis" / "model.txt"
    ).read_text() == "gemma3-270m judged by smollm2-135m"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [n["parameters"]["model_name"] for n in record["notebooks"]] == ["smollm2-135m", "gemma3-270m"]


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_on_colab_follows_the_environment_switch(monkeypatch, value, expected):
    monkeypatch.setenv(COLAB_ENV, value)
    assert on_colab() is expected


@pytest.mark.slow
def test_colab_run_sets_the_switch_for_the_kernels_and_records_it(tmp_path, monkeypatch):
    monkeypatch.delenv(COLAB_ENV, raising=False)
    body = (
        "from pathlib import Path\n"
        "from actadd.studies import on_colab\n"
        "Path(results_dir).mkdir(parents=True, exist_ok=True)\n"
        "Path(results_dir, 'colab.txt').write_text(str(on_colab()))"
    )
    notebook = _notebook(tmp_path / "01_branch.ipynb", body)
    for colab in (True, False):
        out = tmp_path / f"run-{colab}"
        assert [r.status for r in run_notebooks([notebook], profile="smoke", out=out, colab=colab)] == ["ok"]
        assert (out / "01_branch" / "colab.txt").read_text() == str(colab)
        assert json.loads((out / "run.json").read_text())["colab"] is colab
    assert COLAB_ENV not in os.environ, "the switch must not outlive the run"


def test_cli_colab_flag_reaches_the_runner(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        runner, "run_notebooks", lambda notebooks, **kwargs: calls.append(kwargs) or [SimpleNamespace(status="ok")]
    )
    assert main(["run", "00", "--colab", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert main(["run", "00", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert [c["colab"] for c in calls] == [True, False]


@pytest.mark.parametrize("models", [[], ["--models", "smollm2-135m", "gemma3-270m"]])
def test_cli_publishes_the_run_folder_it_ran_into(monkeypatch, tmp_path, models):
    from actadd.studies.pipeline import cli as cli_module

    ran, published = [], []
    monkeypatch.setattr(runner, "run_notebooks", lambda notebooks, **kwargs: ran.append(kwargs["out"]) or [
        SimpleNamespace(status="ok", executed="00_quickstart.ipynb")] * len(kwargs["models"] or [1]))  # fmt: skip
    monkeypatch.setattr(cli_module, "_publish", lambda run_dir: published.append(run_dir) or run_dir)
    monkeypatch.chdir(tmp_path)  # --out relative to where the command runs
    assert main(["run", "00", "--profile", "smoke", "--out", "runs/x", "--publish", *models]) == 0
    assert ran == published == [(tmp_path / "runs" / "x").resolve()]
    # Without --out, the folder the runner would choose, created once for both.
    monkeypatch.setattr(runner, "default_run_folder", lambda profile: tmp_path / f"runs/default-{profile}")
    assert main(["run", "00", "--profile", "smoke", "--publish", *models]) == 0
    assert ran[-1] == published[-1] == (tmp_path / "runs" / "default-smoke").resolve()


def test_a_parameter_the_notebook_does_not_define_is_refused_before_anything_runs(tmp_path, capsys):
    notebook = _notebook(tmp_path / "01_toy.ipynb", "value + 1")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(notebook), "-p", "no_such_param", "3", "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "01_toy.ipynb has no parameter 'no_such_param'" in err
    assert "its parameters cell defines: profile, results_dir, value" in err
    assert not out.exists()  # refused before the run folder, let alone a kernel

    # The README's old example: 01 has no `layer` (02 has one, from `layer, tuned_norm = 14, 3.6`).
    with pytest.raises(SystemExit):
        main(["run", "01", "02", "-p", "layer", "abc", "-p", "seed", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert "01_wedding_layers.ipynb has no parameter 'layer'" in err
    assert "02_perplexity_relevance.ipynb" not in err and "'seed'" not in err
    with pytest.raises(ValueError, match="has no parameter 'vaule'"):
        run_notebooks([notebook], parameters={"vaule": 2}, out=out)
    assert not out.exists()

    # The runner's own names, and the model axis's, need no line in the parameters cell.
    check_parameters([notebook], {"value": 2, "model_name": "m", "judge_name": "j", "results_dir": "r"}, "smoke")
    bare = tmp_path / "02_bare.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1")], metadata=nbformat.read(notebook, 4).metadata), bare)
    with pytest.raises(ValueError, match="02_bare.ipynb has no parameter 'value'.*no cell tagged 'parameters'"):
        check_parameters([bare], {"value": 2}, "smoke")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_name_in_profiles_yaml_is_a_parameter_of_its_notebook(profile):
    check_parameters(find_notebooks(), {}, profile)


def test_ctrl_c_between_cells_refuses_the_next_and_a_second_one_raises():
    """The kernel ignores a SIGINT that reaches it between cells, so the runner's own hook stops
    the next cell from starting; and a second Ctrl-C is the default one again."""
    # A terminal's handler, whatever started pytest: a shell's background job ignores SIGINT.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Watch("1/1 01_toy", every_s=60) as watch:
            watch.on_notebook_start(notebook=SimpleNamespace(cells=[0, 1, 2]))
            watch.on_cell_start(cell=None, cell_index=0)
            signal.raise_signal(signal.SIGINT)  # Watch's handler: no KeyboardInterrupt here
            assert watch.interrupted and watch.where() == "cell 1/3"
            with pytest.raises(Interrupted):
                watch.on_cell_start(cell=None, cell_index=1)
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_durations_read_as_a_log_line_gives_them():
    assert [duration(s) for s in (0.4, 59.9, 60, 192.4, 3725)] == ["0s", "59s", "1m00s", "3m12s", "1h02m"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_run_logged_to_files_says_which_cell_it_is_on(tmp_path):
    """stdout and stderr to files, as under CI or nohup: papermill draws no bar there, so the
    heartbeat lines are all the log has of a long cell. The kernel's TCP warning is dropped,
    and only that warning: another one the kernel logs still reaches stderr."""
    notebook = _notebook(
        tmp_path / "01_slow.ipynb",
        "from ipykernel.kernelapp import IPKernelApp\nIPKernelApp.instance().log.warning('another kernel warning')",
        "import time\ntime.sleep(4)",
    )
    log, errors = tmp_path / "log.txt", tmp_path / "stderr.txt"
    with log.open("w") as stdout, errors.open("w") as stderr:
        command = _command("run", str(notebook), "--out", str(tmp_path / "run"), "--heartbeat", "0.5")
        result = subprocess.run(command, stdout=stdout, stderr=stderr, env=_environment(), timeout=500)
    text, err = log.read_text(), errors.read_text()
    assert result.returncode == 0, text + err
    slow = [line for line in text.splitlines() if line.startswith("[1/1 01_slow] cell 4/4, ")]
    assert len(slow) >= 2, text  # the sleeping cell (after papermill's injected parameters cell) is named
    assert "another kernel warning" in err
    assert "without encryption" not in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_figures_stay_in_the_run_folder(tmp_path):
    """Even in the default profile (which used to copy them into figures/ at once), a study's
    figures go to its own folder: the committed figures change only when a run is published."""
    before = _digest(REPO / "figures")
    body = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "from actadd.studies import Study\n"
        "study = Study('01_plot', {'results_dir': results_dir, 'seed': 0})\n"
        "fig, ax = plt.subplots()\nax.plot([0, 1])\nstudy.figure(fig, 'wedding_by_layer')"
    )
    notebook = _notebook(tmp_path / "01_plot.ipynb", f"import sys\nsys.path.insert(0, {str(SOURCE_ROOT)!r})", body)
    runs = run_notebooks([notebook], profile="default", out=tmp_path / "run")
    assert [r.status for r in runs] == ["ok"], runs[0].error
    assert (tmp_path / "run" / "01_plot" / "wedding_by_layer.png").is_file()
    assert _digest(REPO / "figures") == before


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ctrl_c_stops_the_run_and_keeps_what_finished(tmp_path):
    """A real SIGINT to `python -m actadd run 00 01 --profile smoke` once 01 is running a cell:
    one line names it, run.json records it as interrupted beside 00, the report covers both,
    the exit status is 130, and the committed figures are as they were."""
    before = _digest(REPO / "figures")
    out = tmp_path / "run"
    command = _command("run", "00", "01", "--profile", "smoke", "--out", str(out), "--heartbeat", "1")
    errors = tmp_path / "stderr.txt"
    lines = []
    with errors.open("w") as stderr:  # a file, not a pipe nobody reads while stdout is followed
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=_environment())
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if line.startswith("[2/2 01_wedding_layers] cell "):  # its kernel is up and running a cell
                    process.send_signal(signal.SIGINT)
                    break
            rest, _ = process.communicate(timeout=300)
        finally:
            process.kill()  # a no-op once it has exited
    text, err = "".join(lines) + rest, errors.read_text()
    assert process.returncode == INTERRUPTED, text + err
    stopped = [line for line in text.splitlines() if line.startswith("INTERRUPTED")]
    assert len(stopped) == 1 and stopped[0].startswith("INTERRUPTED 01_wedding_layers.ipynb at cell "), text
    assert "1 finished study kept in" in stopped[0]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    record = json.loads((out / "run.json").read_text())
    assert [(n["notebook"], n["status"]) for n in record["notebooks"]] == [
        ("00_quickstart", "ok"),
        ("01_wedding_layers", "interrupted"),
    ]
    assert record["notebooks"][1]["error"].startswith("interrupted at cell ")
    report = (out / "report.md").read_text()
    assert "## 00_quickstart: ok" in report and "## 01_wedding_layers: interrupted" in report
    assert (out / "00_quickstart" / "headline.json").is_file()
    assert _digest(REPO / "figures") == before


def test_every_name_a_parameters_cell_assigns_can_be_set(tmp_path):
    """papermill's own reading skips `a, b = 1, 2` and a line whose comment holds an '=': -p
    must still accept those names, and refuse a name the cell does not assign."""
    notebook = _notebook(tmp_path / "01_pairs.ipynb", "p_plus + p_minus")
    cell = 'profile = "default"\nresults_dir = "x"\np_plus, p_minus = "a", "b"\ncoeffs = []  # beside c = 1'
    nb = nbformat.read(notebook, 4)
    nb.cells[0].source = cell
    nbformat.write(nb, notebook)
    check_parameters([notebook], {"p_plus": "c", "p_minus": "d", "coeffs": [2.0]}, "smoke")
    with pytest.raises(ValueError, match="has no parameter 'p_plu'"):
        check_parameters([notebook], {"p_plu": "c"}, "smoke")
