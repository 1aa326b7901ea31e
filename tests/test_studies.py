"""Every study notebook end to end in the smoke profile: claims declared and measured, prose
rendered from the numbers, figures and the run report written."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from actadd.studies.pipeline.runner import NOTEBOOKS, find_notebooks, run_notebooks

STUDIES = ["00_quickstart", "01_wedding_layers", "02_perplexity_relevance", "03_factual_recall", "06_overhead"]
FIGURES = {
    "00_quickstart": "quickstart_layer_coeff_grid.png",
    "01_wedding_layers": "wedding_by_layer.png",
    "02_perplexity_relevance": "perplexity_by_relevance.png",
    "03_factual_recall": "factual_recall_pk.png",
    "06_overhead": "06_overhead_premium.png",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, run_notebooks([NOTEBOOKS / f"{name}.ipynb" for name in STUDIES], profile="smoke", out=out)


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


@pytest.mark.parametrize("path", find_notebooks(), ids=lambda p: p.stem)
def test_notebooks_read_as_paper_sections_with_prose_from_the_numbers(path):
    """The question, parameters, claims declared before the model loads, and a closing
    'What it shows' rendered in code: no measured number typed into its markdown."""
    cells = nbformat.read(path, as_version=4).cells
    sources = [c.source for c in cells]
    assert "**Question.**" in cells[0].source
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    declare = next(i for i, s in enumerate(sources) if "ClaimsRecord.declare(" in s)
    loads = [i for i, s in enumerate(sources) if "load_model(" in s or "load_bench_model(" in s]
    assert loads and declare <= min(loads), "claims must be declared before the model runs"
    heading = next(
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## What it shows")
    )
    assert not re.search(r"\d", cells[heading].source)
    closing = cells[heading + 1].source
    assert "render(" in closing and "results.prose(" in closing
