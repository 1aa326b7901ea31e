"""Every study notebook end to end in the smoke profile: claims declared and measured, prose
rendered from the numbers, figures and the run report written."""

from __future__ import annotations

import ast
import math
import re

import nbformat
import pandas as pd
import pytest

from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import STRICT_FIGURES
from actadd.studies.pipeline.runner import find_notebooks, run_notebooks

STUDIES = [path.stem for path in find_notebooks()]
FIGURES = {
    "00_quickstart": "quickstart_layer_coeff_grid.png",
    "01_wedding_layers": "wedding_by_layer.png",
    "02_perplexity_relevance": "perplexity_by_relevance.png",
    "03_factual_recall": "factual_recall_pk.png",
    "04_sentiment": "04_sentiment_comparison.png",
    "05_detox": "05_detox_comparison.png",
    "06_overhead": "06_overhead_premium.png",
}
# The most resident memory a smoke-profile study may take (its kernel's peak, in its record): the
# two embedded models and their data fit well within it, and a leak or a full-vocabulary tensor
# where none belongs would not.
SMOKE_MEMORY_CEILING_GB = 4.0
# The comparison studies' own tables, beside the claims every study writes.
COMPARISON_TABLES = {
    "04_sentiment": ["selection", "comparison", "paired_differences", "steerability", "scorer_accuracy",
                     "scorer_agreement", "prompts", "samples"],
    "05_detox": ["selection", "comparison", "paired_differences", "steerability", "toxicity_agreement", "prompts",
                 "samples"],
}  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Every notebook in the smoke profile, a figure with tick labels over one another an error."""
    out = tmp_path_factory.mktemp("studies")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STRICT_FIGURES, "1")  # the kernels inherit it
        return out, run_notebooks(find_notebooks(), profile="smoke", out=out)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("study", STUDIES)
def test_study_runs_and_judges_its_claims(smoke_run, study):
    out, runs = smoke_run
    run = next(r for r in runs if r.notebook == study)
    assert run.status == "ok", run.error
    results = out / study
    record = StudyRecord.load(results)
    measured = [r for r in record.claims if r.estimate is not None]
    assert measured, "no claim was measured"
    assert all(r.verdict in ("holds", "does not hold", "unresolved") for r in measured)
    for r in measured:
        e = r.estimate
        assert e is not None
        if math.isnan(e.low) or math.isnan(e.high):
            # No interval (too few prompts, or a method not chosen and so not compared): never a verdict.
            assert r.verdict == "unresolved", (r.claim.id, e, r.verdict)
            assert not math.isnan(e.value) or r.note, f"{r.claim.id} was not compared and does not say why"
        else:
            assert e.low <= e.value <= e.high, (r.claim.id, e)
    assert record.finished and record.phases_s and record.paper is not None
    assert record.peak_memory_gb is not None and 0.1 < record.peak_memory_gb < SMOKE_MEMORY_CEILING_GB
    assert record.headline["verdicts"] == record.verdicts()
    prose = record.prose or ""
    assert prose.strip() and "{" not in prose
    assert FIGURES[study] in record.figures  # in the study's folder only: figures/ is for publish
    report = (out / "report.md").read_text()
    assert "## Claims" in report and record.claims[0].claim.statement in report
    assert (results / "claims.csv").stat().st_size > 0
    executed = nbformat.read(out / f"{study}.ipynb", as_version=4)
    shown = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in shown), "the executed notebook shows no figure"
    assert any("text/html" in o.get("data", {}) for o in shown), "the executed notebook shows no table"


@pytest.mark.slow
@pytest.mark.parametrize("study", list(COMPARISON_TABLES))
def test_comparison_studies_write_selection_evaluation_and_judges(smoke_run, study):
    out, _ = smoke_run
    results = out / study
    for name in COMPARISON_TABLES[study]:
        assert (results / f"{name}.csv").stat().st_size > 0, name
    record = StudyRecord.load(results)
    assert {f"{study}_{name}.png" for name in ("frontier", "comparison", "steerability")} == set(record.figures)
    assert all(r.verdict != "not measured" for r in record.claims)
    assert "text_gate" in record.headline and record.headline["text_gate"]["accuracy"]["n"] > 100
    assert record.judged_by is not None and "continuations" in record.judged_by.agreement
    assert (record.prose or "").startswith("Steered model:")
    samples = pd.read_csv(results / "samples.csv")
    assert {"unsteered", "prompting", "ActAdd"} <= set(samples.columns) and len(samples) > 0


@pytest.mark.slow
def test_every_setting_of_01_carries_both_strengths(smoke_run):
    """Each steered row of 01's tables has its strength per position and what it adds to a
    completion in all, and the unsteered row adds nothing; the mean difference, added at every
    position, adds more in all than per position; the tuned row of the confirmation has its own."""
    out, _ = smoke_run
    results = out / "01_wedding_layers"
    names = ["by_layer_paper_arm", "by_layer_confirmation", "coefficient_probe", "mean_difference_probe",
             "confirmation"]  # fmt: skip
    for name in names:
        table = pd.read_csv(results / f"{name}.csv")
        steered = table[table.layer.notna()]
        assert len(steered) and (steered.position_norm > 0).all() and (steered.completion_norm > 0).all(), name
        assert table.completion_norm.iloc[0] == 0, f"{name}: the unsteered row adds nothing"
    md = pd.read_csv(results / "mean_difference_probe.csv")
    md = md[md.layer.notna()]
    assert (md.completion_norm > 2 * md.position_norm).all()
    confirmed = pd.read_csv(results / "confirmation.csv").set_index("setting")
    tuned = confirmed[confirmed.index.str.startswith("tuned arm")]
    assert len(tuned) == 1 and tuned.position_norm.iloc[0] > 0


@pytest.mark.parametrize("path", find_notebooks(), ids=lambda p: p.stem)
def test_notebooks_read_as_paper_sections_with_prose_from_the_numbers(path):
    """The question, parameters, claims declared before the model loads, and a closing section
    that finishes the study through its module: its claims recorded there, never picked by hand
    in the notebook, and no measured number typed into its markdown."""
    cells = nbformat.read(path, as_version=4).cells
    sources = [c.source for c in cells]
    assert "**Question.**" in cells[0].source
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    declare = next(i for i, s in enumerate(sources) if "Study.open(" in s)
    loads = [
        i for i, s in enumerate(sources) if "load_model" in s or "study.load_models" in s or ".forward_premium(" in s
    ]
    assert loads and declare <= min(loads), "claims must be declared before the model runs"
    heading = next(
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and c.source.startswith("## Claims, and what it shows")
    )
    assert not re.search(r"\d", cells[heading].source)
    assert re.search(r"\w+\.finish\(", cells[heading + 1].source)
    assert not any("study.record(" in s or "study.prose(" in s for s in sources), "a section module records claims"


def _code(path) -> list[str]:
    """A notebook's code cells as Python: an IPython magic line (%pip) becomes a ``pass``."""
    cells = nbformat.read(path, as_version=4).cells
    return ["\n".join(re.sub(r"^(\s*)%.*", r"\1pass", line) for line in c.source.splitlines())
            for c in cells if c.cell_type == "code"]  # fmt: skip


def test_the_notebooks_narrate_and_the_package_computes():
    """All notebooks together hold at most 500 non-blank lines of code and define no function
    or class: the logic lives in their section modules, once."""
    lines = sum(1 for path in find_notebooks() for cell in _code(path) for line in cell.splitlines() if line.strip())
    assert lines <= 500, f"{lines} non-blank lines of code in the notebooks"
    for path in find_notebooks():
        for cell in _code(path):
            defined = [
                n for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)
            ]
            assert not defined, f"{path.name} defines {[getattr(n, 'name', 'a lambda') for n in defined]}"


def test_the_notebooks_are_committed_without_outputs():
    for path in find_notebooks():
        cells = nbformat.read(path, as_version=4).cells
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c.cell_type == "code"), path.name


def test_every_published_study_has_its_executed_notebook():
    from actadd.studies.lifecycle.record import study_folders
    from actadd.studies.pipeline.publish import RESULTS

    folders = [f for model in (RESULTS / "default").iterdir() for f in study_folders(model)]
    assert folders, "nothing is published"
    for folder in folders:
        notebook = folder / f"{folder.name}.ipynb"
        assert notebook.is_file(), f"{folder} has no executed notebook"
        assert notebook.stat().st_size < 1_000_000, f"{notebook} is too large for the repository page to render"
        executed = nbformat.read(notebook, as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), f"{notebook} has no outputs"
