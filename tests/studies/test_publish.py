"""The README's results come from the committed snapshot of a measured run, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from actadd.studies.evaluation.stats import proportion
from actadd.studies.lifecycle.claims import Claim, ClaimsRecord, above
from actadd.studies.lifecycle.record import NotebookRun, RunLog, StudyRecord, Withdrawn
from actadd.studies.pipeline import REPO, publish, screenshots
from actadd.studies.pipeline.report import write_report
from actadd.studies.protocol.judges import Agreement, JudgeReport

README_TEMPLATE = (
    "# x\n\n<!-- notebooks:start -->\n<!-- notebooks:end -->\n\n<!-- results:start -->\nPLACEHOLDER\n"
    "<!-- results:end -->\n\n<!-- replication:start -->\n<!-- replication:end -->\n\n<!-- errata:start -->\n"
    "<!-- errata:end -->\n"
)


def _run(
    run_dir: Path,
    success: int,
    *,
    fail: bool = False,
    model: str = "toy-model",
    note: str = "",
    name: str = "01_study",
    claim: str = "01.a",
    withdrawn: dict[str, str] | None = None,
) -> Path:
    """A run folder as the runner leaves it: one study with a claim, its record and its executed notebook."""
    study = run_dir / name
    declared = [Claim(claim, "It works", "> 90%", "share", above(0.9), "percent")]
    claims = ClaimsRecord.declare(name, study, declared, withdrawn=withdrawn)
    claims.record(claim, proportion(success, 100), note=note)
    parameters = {"model_name": model, "profile": "default", "results_dir": str(study)}
    withdrawn_claims = [Withdrawn(claim_id, reason) for claim_id, reason in (withdrawn or {}).items()]
    StudyRecord(name, list(claims.results.values()), parameters=parameters, wall_time_s=80.0, peak_memory_gb=1.25,
                phases_s={"generation": 60.0}, withdrawn=withdrawn_claims).save(study)  # fmt: skip
    # A progress bar: its widget view in the output, its state in the notebook's metadata.
    bar = nbformat.v4.new_output("display_data", data={"text/plain": "generate: 100%",
                                                       publish.WIDGET_VIEW: {"model_id": "m1"}})  # fmt: skip
    cell = nbformat.v4.new_code_cell(f"results_dir = '{REPO.resolve() / 'runs' / name}'", outputs=[bar])
    executed = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {"m1": "x" * 1000}}})
    (run_dir / f"{name}.ipynb").write_text(nbformat.writes(executed))
    entry = NotebookRun(name, "failed" if fail else "ok", 90.0, f"{name}.ipynb", name, parameters,
                        "cell 3: boom" if fail else None)  # fmt: skip
    RunLog("default", False, [entry]).save(run_dir)
    return run_dir


def test_the_readme_is_rewritten_from_the_snapshot_and_failures_keep_old_results(tmp_path):
    readme, root = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README_TEMPLATE)
    publish.publish(
        _run(tmp_path / "run1", 97), readme, root, figures=tmp_path / "figures", screenshot=None, main="toy-model"
    )
    first = publish.section(readme.read_text(), "results")
    assert "97% [92%, 99%]" in first and "holds" in first and "1.5 min" in first and "run1" in first
    assert readme.read_text().startswith("# x") and "PLACEHOLDER" not in readme.read_text()
    publish.publish(
        _run(tmp_path / "run2", 50), readme, root, figures=tmp_path / "figures", screenshot=None, main="toy-model"
    )
    second = publish.section(readme.read_text(), "results")
    assert second != first and "50% [40%, 60%]" in second and "does not hold" in second
    with pytest.raises(ValueError, match="no successful study"):
        publish.publish(
            _run(tmp_path / "run3", 10, fail=True),
            readme,
            root,
            figures=tmp_path / "figures",
            screenshot=None,
            main="toy-model",
        )
    assert publish.section(readme.read_text(), "results") == second  # the failed run erased nothing


def test_the_cost_table_names_the_cpu_once_or_per_study_when_they_differ():
    """Timings move with the CPU (AMX against AVX512-BF16): one CPU is named in the heading,
    several get a column, and records from before the CPU was recorded say so."""
    amd, intel = "AMD EPYC, bfloat16 by AVX512-BF16", "Intel Xeon, bfloat16 by AMX"

    def record(name: str, cpu: str | None) -> StudyRecord:
        return StudyRecord(name, [], wall_time_s=60.0, versions={} if cpu is None else {"cpu": cpu})

    same = [record("00_a", amd), record("01_b", amd)]
    assert "CPU" not in publish.cost_table(same).columns
    assert publish._machine(same) == f"this 2-core CPU ({amd})"
    mixed = [record("00_a", intel), record("01_b", amd), record("02_c", None)]
    assert publish.cost_table(mixed)["CPU"].tolist() == [intel, amd, "not recorded"]
    assert publish._machine(mixed) == "this 2-core CPU"


def test_replication_table_has_a_column_per_model(tmp_path):
    root = tmp_path / "results"
    publish.snapshot(_run(tmp_path / "a", 97, model="model-a"), root)
    publish.snapshot(_run(tmp_path / "b", 40, model="model-b"), root)
    section = publish.replication_section(root, profile="default", models=["model-a", "model-b"])
    header, _, row = section.splitlines()[:3]
    assert "model-a" in header and "model-b" in header
    assert "97% [92%, 99%]: holds" in row and "40% [31%, 50%]: does not hold" in row
    assert "**Opposite verdicts (1).** 01: It works (model-a: holds, model-b: does not hold)" in section
    assert "**Same verdict on every model (0).** none" in section
    assert "3 min in all" in section  # 1.5 min per model
    assert "| model-a | 01 | 2 min | 1.2 GB | a |" in section and "| model-b | 01 | 2 min | 1.2 GB | b |" in section


def test_the_replication_covers_only_the_studies_every_model_has(tmp_path):
    root = tmp_path / "results"
    publish.snapshot(_run(tmp_path / "a", 97, model="model-a"), root)
    publish.snapshot(_run(tmp_path / "b", 96, model="model-b"), root)
    publish.snapshot(_run(tmp_path / "c", 10, model="model-a", name="06_extra"), root)
    assert (root / "default" / "model-a" / "06_extra" / "claims.json").is_file()
    section = publish.replication_section(root, profile="default", models=["model-a", "model-b"])
    assert "06_extra" not in section and "01_study" in section
    with pytest.raises(ValueError, match="no study in common"):
        publish.replication_section(root, profile="default", models=["model-a", "model-c"])


def _publish(run: Path, readme: Path, root: Path, tmp_path: Path) -> Path:
    """Publish a run of the fake studies with model-a as the main model, figures and no screenshot in tmp_path."""
    return publish.publish(run, readme, root, figures=tmp_path / "figures", screenshot=None, main="model-a")


def test_another_models_run_adds_the_replication_table_and_keeps_the_main_results(tmp_path):
    readme, root = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README_TEMPLATE)
    _publish(_run(tmp_path / "a", 97, model="model-a"), readme, root, tmp_path)
    main = publish.section(readme.read_text(), "results")
    assert publish.section(readme.read_text(), "replication").startswith("No second model is published")
    _publish(_run(tmp_path / "b", 96, model="model-b"), readme, root, tmp_path)
    text = readme.read_text()
    assert publish.section(text, "results") == main  # the other model's run left the main results alone
    assert "**Same verdict on every model (1).** 01: It works (holds)" in publish.section(text, "replication")
    assert (root / "default" / "model-a" / "01_study").is_dir() and (root / "default" / "model-b" / "01_study").is_dir()
    with pytest.raises(ValueError, match="no snapshot of 'model-c'"):
        publish.write_readme(readme, root, profile="default", main="model-c")


def test_the_committed_readme_matches_the_committed_run():
    text = publish.README.read_text()
    main = publish.section(text, "results")
    assert main == publish.results_section(publish.RESULTS, profile="default", model="smollm2-135m")
    models = sorted(p.name for p in (publish.RESULTS / "default").iterdir() if p.is_dir())
    if len(models) > 1:
        ordered = ["smollm2-135m", *[m for m in models if m != "smollm2-135m"]]
        assert publish.section(text, "replication") == publish.replication_section(
            publish.RESULTS, profile="default", models=ordered
        )


def test_the_scorers_behind_the_comparisons_are_tabled_with_accuracy_and_agreement():
    accuracy = [
        {"scorer": s, "tweets_accuracy": a, "tweets_low": a - 0.03, "tweets_high": a + 0.03, "tweets_n": 1000,
         "pang_lee_accuracy": 0.7, "pang_lee_low": 0.63, "pang_lee_high": 0.76, "pang_lee_n": 200}
        for s, a in (("minilm-logreg", 0.8), ("vader", 0.6))
    ]  # fmt: skip
    agreement = Agreement(kappa=0.41, agreement=0.7, spearman=0.5, n=600)
    sentiment = StudyRecord(
        "04_sentiment", [], judged_by=JudgeReport("minilm-logreg", "vader", agreement, accuracy).summary()
    )
    detox = StudyRecord("05_detox", [], judged_by=JudgeReport("alt-profanity-check", "lm-judge", agreement).summary())
    table = publish.scorers_table([sentiment, detox, StudyRecord("01_x", [], headline={"figure": "f"})])
    assert table["study"].tolist() == ["04_sentiment", "05_detox"]
    first, second = table.to_dict("records")
    assert first["accuracy [95% CI]"].startswith("80% [77%, 83%] on 1000 held-out tweets; 70% [63%, 76%]")
    assert first["second scorer"] == "vader" and "kappa 0.41" in first["agreement"] and "600" in first["agreement"]
    assert second["scorer"] == "alt-profanity-check" and second["second scorer"] == "lm-judge"
    assert second["accuracy [95% CI]"] == "not measured here (a packaged classifier)"


def test_a_published_study_holds_its_record_and_executed_notebook_with_relative_paths(tmp_path):
    readme, root = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README_TEMPLATE)
    publish.publish(_run(tmp_path / "run1", 97), readme, root, figures=tmp_path / "figures", screenshot=None,
                    main="toy-model")  # fmt: skip
    folder = root / "default" / "toy-model" / "01_study"
    notebook = (folder / "01_study.ipynb").read_text()
    assert "runs/01_study" in notebook and str(REPO.resolve()) not in notebook
    published = nbformat.reads(notebook, as_version=4)  # no widget state: no static page renders it
    assert "widgets" not in published.metadata
    assert published.cells[0].outputs[0].data == {"text/plain": "generate: 100%"}
    record = StudyRecord.load(folder)
    assert record.provenance is not None and (record.provenance.run, record.provenance.notebook_wall_time_s) == (
        "run1",
        90.0,
    )
    assert "results_dir" not in record.parameters and record.peak_memory_gb == 1.25
    assert "1.2 GB" in publish.section(readme.read_text(), "results")  # the cost table's peak memory


def test_a_qualified_comparison_is_marked_in_both_tables(tmp_path):
    readme, root = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README_TEMPLATE)
    outside = "made outside the fluency limit: no ActAdd setting kept it; made outside the fluency limit: no PREADD"
    _publish(_run(tmp_path / "a", 97, model="model-a", note=outside), readme, root, tmp_path)
    main = publish.section(readme.read_text(), "results")
    assert "| holds [1, 2] |" in main and "- [1] made outside the fluency limit: no ActAdd setting kept it" in main
    _publish(_run(tmp_path / "b", 40, model="model-b"), readme, root, tmp_path)
    replication = publish.section(readme.read_text(), "replication")
    assert "97% [92%, 99%]: holds [1, 2] | 40% [31%, 50%]: does not hold |" in replication
    assert "- [2] model-a: made outside the fluency limit: no PREADD" in replication


def test_publish_copies_the_main_models_figures_and_nothing_else_does(tmp_path):
    readme, root, figures = tmp_path / "README.md", tmp_path / "results", tmp_path / "figures"
    readme.write_text(README_TEMPLATE)
    runs = {
        name: _run(tmp_path / name, 97, model=model) for name, model in (("main", "toy-model"), ("other", "model-b"))
    }
    runs["failed"] = _run(tmp_path / "failed", 10, fail=True)
    for name, run in runs.items():
        (run / "01_study" / "toy_by_layer.png").write_bytes(f"PNG of {name}".encode())
    publish.publish(runs["main"], readme, root, figures=figures, screenshot=None, main="toy-model")
    assert sorted(p.name for p in figures.iterdir()) == ["toy_by_layer.png"]
    assert (figures / "toy_by_layer.png").read_bytes() == b"PNG of main"
    # Another model's run adds to the replication table, not to the main model's figures.
    publish.publish(runs["other"], readme, root, figures=figures, screenshot=None, main="toy-model")
    with pytest.raises(ValueError, match="no successful study"):
        publish.publish(runs["failed"], readme, root, figures=figures, screenshot=None, main="toy-model")
    assert (figures / "toy_by_layer.png").read_bytes() == b"PNG of main"


def test_publish_renders_the_report_screenshot_where_chromium_is(tmp_path, monkeypatch, capsys):
    readme, root, shot = tmp_path / "README.md", tmp_path / "results", tmp_path / "docs" / "report-screenshot.png"
    readme.write_text(README_TEMPLATE)
    run = _run(tmp_path / "run", 97)
    write_report(run)
    kwargs = dict(figures=tmp_path / "figures", screenshot=shot, main="toy-model")
    if screenshots.missing() is None:
        publish.publish(run, readme, root, **kwargs)
        png = shot.read_bytes()
        assert png.startswith(b"\x89PNG") and (int.from_bytes(png[16:20]), int.from_bytes(png[20:24])) == (1400, 2400)
        assert f"report screenshot: {shot}" in capsys.readouterr().out
        shot.unlink()
    monkeypatch.setattr(screenshots, "missing", lambda: "chromium not found: apt-get install chromium")
    publish.publish(run, readme, root, **kwargs)
    assert "report screenshot not taken (chromium not found" in capsys.readouterr().out and not shot.exists()


def test_a_withdrawn_claim_keeps_its_last_published_value_in_the_errata(tmp_path):
    readme, root = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README_TEMPLATE)
    assert publish.section(readme.read_text(), "errata") == ""
    _publish = dict(figures=tmp_path / "figures", screenshot=None, main="toy-model")
    publish.publish(_run(tmp_path / "run1", 97), readme, root, **_publish)
    assert publish.section(readme.read_text(), "errata") == "No claim has been withdrawn."
    why = "it measured the wrong thing"
    publish.publish(_run(tmp_path / "run2", 40, claim="01.b", withdrawn={"01.a": why}), readme, root, **_publish)
    errata = publish.section(readme.read_text(), "errata")
    assert "`01.a`" in errata and "97% [92%, 99%]: holds" in errata and "run1" in errata and why in errata
    assert "01.b" not in errata and "40% [31%, 50%]" in publish.section(readme.read_text(), "results")
    publish.publish(_run(tmp_path / "run3", 41, claim="01.b", withdrawn={"01.a": why}), readme, root, **_publish)
    assert "97% [92%, 99%]: holds" in publish.section(readme.read_text(), "errata")  # carried from run1, not lost
    with pytest.raises(ValueError, match="was withdrawn"):
        ClaimsRecord.declare("x", tmp_path / "x", [Claim("01.a", "s", "p", "m", above(0.0))], withdrawn={"01.a": why})
