"""Every study notebook end to end in the smoke profile: claims declared and measured, prose
rendered from the numbers, figures and the run report written."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

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
# The comparison studies' own tables, beside the claims every study writes.
COMPARISON_TABLES = {
    "04_sentiment": ["selection", "comparison", "paired_differences", "steerability", "scorer_accuracy",
                     "scorer_agreement", "prompts"],
    "05_detox": ["selection", "comparison", "paired_differences", "steerability", "toxicity_agreement", "prompts"],
}  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, run_notebooks(find_notebooks(), profile="smoke", out=out)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("study", STUDIES)
def test_study_runs_and_judges_its_claims(smoke_run, study):
    out, runs = smoke_run
    run = next(r for r in runs if r.notebook == study)
    assert run.status == "ok", run.error
    results = out / study
    claims = json.loads((results / "claims.json").read_text())["claims"]
    measured = [c for c in claims if c["estimate"] is not None]
    assert measured, "no claim was measured"
    assert all(c["verdict"] in ("holds", "does not hold", "unresolved") for c in measured)
    assert all(c["estimate"]["low"] <= c["estimate"]["value"] <= c["estimate"]["high"] for c in measured)
    prose = (results / "what_it_shows.md").read_text()
    assert prose.strip() and "{" not in prose
    assert (results / FIGURES[study]).is_file()  # in the study's folder only: figures/ is for publish
    report = (out / "report.md").read_text()
    assert "## Claims" in report and claims[0]["statement"] in report
    assert (results / "claims.csv").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("study", list(COMPARISON_TABLES))
def test_comparison_studies_write_selection_evaluation_and_judges(smoke_run, study):
    out, _ = smoke_run
    results = out / study
    for name in COMPARISON_TABLES[study]:
        assert (results / f"{name}.csv").stat().st_size > 0, name
    assert len(list(results.glob("*.png"))) == 3  # selection, comparison, steerability
    headline = json.loads((results / "headline.json").read_text())
    record = json.loads((results / "claims.json").read_text())
    assert all(claim["verdict"] != "not measured" for claim in record["claims"])
    assert set(headline["headline"]["verdicts"]) == {claim["id"] for claim in record["claims"]}
    assert headline["records"]["judges"]["agreement"]["n"] > 0
    assert (results / "what_it_shows.md").read_text().startswith("Steered model:")


@pytest.mark.parametrize("path", find_notebooks(), ids=lambda p: p.stem)
def test_notebooks_read_as_paper_sections_with_prose_from_the_numbers(path):
    """The question, parameters, claims declared before the model loads, and a closing
    'What it shows' rendered in code: no measured number typed into its markdown."""
    cells = nbformat.read(path, as_version=4).cells
    sources = [c.source for c in cells]
    assert "**Question.**" in cells[0].source
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    declare = next(i for i, s in enumerate(sources) if "Study.open(" in s)
    loads = [i for i, s in enumerate(sources) if "load_model" in s or "load_bench_model(" in s]
    assert loads and declare <= min(loads), "claims must be declared before the model runs"
    heading = next(
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## What it shows")
    )
    assert not re.search(r"\d", cells[heading].source)
    closing = cells[heading + 1].source
    assert "study.prose(" in closing
