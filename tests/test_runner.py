"""The papermill runner and the quickstart notebook, executed for real."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from actadd.studies.pipeline import PROFILES
from actadd.studies.pipeline.cli import main
from actadd.studies.pipeline.runner import (
    REPO,
    check_parameters,
    figures_folder,
    find_notebooks,
    parse_value,
    profile_parameters,
    run_notebooks,
)


def _notebook(path: Path, *bodies: str) -> Path:
    nb = new_notebook(
        cells=[
            new_code_cell(
                'profile = "default"\nresults_dir = "x"\nfigures_dir = "y"\nvalue = 1',
                metadata={"tags": ["parameters"]},
            ),
            *(new_code_cell(body) for body in bodies),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, path)
    return path


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
        for name in ("profile", "results_dir", "figures_dir", "seed"):
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


def test_only_the_main_models_figures_reach_the_committed_folder(tmp_path):
    committed = REPO / "figures"
    assert figures_folder("default", None, tmp_path) == committed
    assert figures_folder("default", "smollm2-135m", tmp_path / "smollm2-135m") == committed
    assert figures_folder("default", "gemma3-270m", tmp_path / "gemma3-270m") == tmp_path / "gemma3-270m" / "figures"
    assert figures_folder("smoke", None, tmp_path) == tmp_path / "figures"


def test_a_parameter_the_notebook_does_not_define_is_refused_before_anything_runs(tmp_path, capsys):
    notebook = _notebook(tmp_path / "01_toy.ipynb", "value + 1")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(notebook), "-p", "no_such_param", "3", "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "01_toy.ipynb has no parameter 'no_such_param'" in err
    assert "its parameters cell defines: figures_dir, profile, results_dir, value" in err
    assert not out.exists()  # refused before the run folder, let alone a kernel

    # The README's old example: neither 01 nor 02 has a `layer`, so the value would have been ignored.
    with pytest.raises(SystemExit):
        main(["run", "01", "02", "-p", "layer", "abc", "-p", "seed", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert "01_wedding_layers.ipynb has no parameter 'layer'" in err
    assert "02_perplexity_relevance.ipynb has no parameter 'layer'" in err and "'seed'" not in err
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
