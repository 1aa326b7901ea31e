"""The run report: each study's figure, table, numbers and the paper's claim; failures shown, not fatal."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from actadd.studies.lifecycle.record import NotebookRun, RunLog, StudyRecord
from actadd.studies.pipeline import runner
from actadd.studies.pipeline.cli import main
from actadd.studies.pipeline.report import MAX_TABLE_ROWS, write_report

PAPER = "GPT-2-XL (48 layers): > 90% of completions mention weddings at the best layer"


def _png(path: Path, slope: float) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, slope])
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.read_bytes()


def _fake_run(run_dir: Path) -> dict[str, bytes]:
    """A run folder as run_notebooks leaves it: 01 ok (20-row table, two PNGs, named figure), 03 failed."""
    ok = run_dir / "01_wedding_layers"
    ok.mkdir(parents=True)
    pngs = {"a_first": _png(ok / "a_first.png", 1.0), "wedding_by_layer": _png(ok / "wedding_by_layer.png", -1.0)}
    pd.DataFrame({"layer": range(20), "success": [i / 20 for i in range(20)]}).to_csv(ok / "by_layer.csv", index=False)
    pd.DataFrame({"x": [1]}).to_csv(ok / "samples.csv", index=False)
    parameters = {"model_name": "smollm2-135m", "judge_name": "gemma3-270m", "data_source": "offline", "seed": 7}
    StudyRecord(
        "01_wedding_layers",
        [],
        paper=PAPER,
        headline={"best_layer": 14, "best_success": 0.71875, "figure": "wedding_by_layer"},
        parameters={**parameters, "profile": "smoke"},
        wall_time_s=12.5,
        versions={"python": "3.11.7", "nnsight": "0.8.1"},
    ).save(ok)
    RunLog(
        "smoke",
        False,
        [
            NotebookRun("01_wedding_layers", "ok", 13.0, "01.ipynb", "01_wedding_layers", {"profile": "smoke", "seed": 7}),
            NotebookRun("03_factual_recall", "failed", 2.0, "03.ipynb", "03_factual_recall",
                        {"profile": "smoke", "model_name": "nope"}, "cell 4: ValueError: no such <model>"),
        ],
    ).save(run_dir)  # fmt: skip
    return pngs


def test_report_shows_each_study_and_the_failure(tmp_path):
    pngs = _fake_run(tmp_path)
    md_path, html_path = write_report(tmp_path)
    assert (md_path, html_path) == (tmp_path / "report.md", tmp_path / "report.html")
    md, page = md_path.read_text(), html_path.read_text()

    # The named headline figure, not the alphabetically first PNG: linked in Markdown, embedded in HTML.
    assert "](01_wedding_layers/wedding_by_layer.png)" in md and "a_first" not in md
    assert base64.b64encode(pngs["wedding_by_layer"]).decode() in page
    assert base64.b64encode(pngs["a_first"]).decode() not in page
    assert "<img" in page and 'src="01_wedding' not in page  # self-contained

    # The first CSV, cut to MAX_TABLE_ROWS rows, with the cut stated.
    assert f"first {MAX_TABLE_ROWS} of 20 rows" in md
    assert f"| {MAX_TABLE_ROWS - 1} | 0.7 |" in md and f"| {MAX_TABLE_ROWS} | 0.75 |" not in md

    # Headline numbers beside the paper's claim; model, data, seed, versions, wall time.
    assert "- best_success: 0.7188" in md
    claim = PAPER
    assert claim in md and html.escape(claim, quote=False) in page
    assert "model_name = smollm2-135m; judge_name = gemma3-270m" in md
    assert "data_source = offline" in md and "Seed: 7" in md and "Wall time: 13 s" in md
    assert md.count("nnsight = 0.8.1") == 1 and "Profile: smoke" in md  # versions once, at the top

    # The failed study is reported as failed with its error (escaped in HTML); the ok one still reports.
    assert "## 03_factual_recall: failed" in md and "cell 4: ValueError: no such <model>" in md
    assert "no such &lt;model&gt;" in page and "no such <model>" not in page
    assert "1 of 2 studies ok" in md


def test_ok_study_without_headline_is_incomplete(tmp_path):
    _fake_run(tmp_path)
    (tmp_path / "01_wedding_layers" / "headline.json").unlink()
    md = write_report(tmp_path)[0].read_text()
    assert "## 01_wedding_layers: incomplete" in md and "no headline.json" in md
    assert "0 of 2 studies ok" in md


def test_bad_run_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no run.json"):
        write_report(tmp_path)
    (tmp_path / "run.json").write_text("[]")
    with pytest.raises(ValueError, match="'notebooks' list"):
        write_report(tmp_path)


def test_cli_report(tmp_path, capsys):
    _fake_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert str(tmp_path / "report.html") in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "missing")])


def test_runner_writes_the_report_and_survives_a_report_failure(tmp_path, monkeypatch, capsys):
    """run_notebooks ends with the report; if the report breaks, the runs are still returned."""
    notebook = tmp_path / "01_wedding_layers.ipynb"
    kernelspec = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    cells = [new_code_cell("profile = 'default'", metadata={"tags": ["parameters"]})]
    nbformat.write(new_notebook(cells=cells, metadata=kernelspec), notebook)

    def fake_execute(src, dst, parameters, **kwargs):
        StudyRecord("01_x", [], headline={"best_layer": 3}, parameters=parameters).save(parameters["results_dir"])

    monkeypatch.setattr(runner.papermill, "execute_notebook", fake_execute)
    runs = runner.run_notebooks([notebook], profile="smoke", out=tmp_path / "run")
    assert [r.status for r in runs] == ["ok"]
    assert "- best_layer: 3" in (tmp_path / "run" / "report.md").read_text()
    assert f"report: {tmp_path / 'run' / 'report.html'}" in capsys.readouterr().out

    def broken(run_dir):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "write_report", broken)
    runs = runner.run_notebooks([notebook], profile="smoke", out=tmp_path / "run2")
    assert [r.status for r in runs] == ["ok"] and (tmp_path / "run2" / "run.json").exists()
    assert "report not written (RuntimeError: boom)" in capsys.readouterr().err


def _claims_run(run_dir: Path, models: dict[str, int]) -> Path:
    """A run of 01 once per model, each with one claim measured as ``hits`` of 100."""
    from actadd.studies.evaluation.stats import proportion
    from actadd.studies.lifecycle.claims import Claim, ClaimsRecord, above

    entries = []
    for model, hits in models.items():
        study = run_dir / model / "01_wedding_layers"
        record = ClaimsRecord.declare(
            "01_wedding_layers", study, [Claim("01.a", "It works", "> 90%", "share", above(0.9))]
        )
        record.record("01.a", proportion(hits, 100))
        StudyRecord("01_wedding_layers", list(record.results.values()), parameters={"model_name": model}).save(study)
        entries.append(NotebookRun("01_wedding_layers", "ok", 1.0, f"{model}/01_wedding_layers.ipynb",
                                   f"{model}/01_wedding_layers", {"model_name": model}))  # fmt: skip
    RunLog("smoke", False, entries).save(run_dir)
    return run_dir


def test_a_run_over_two_models_names_the_model_of_each_claim(tmp_path):
    md = write_report(_claims_run(tmp_path / "two", {"model-a": 95, "model-b": 40}))[0].read_text()
    assert "| model | study | claim |" in md
    assert "| model-a | 01_wedding_layers | It works |" in md and "| model-b | 01_wedding_layers | It works |" in md
    one = write_report(_claims_run(tmp_path / "one", {"model-a": 95}))[0].read_text()
    assert "| study | claim |" in one and "| model-a | 01_wedding_layers |" not in one
