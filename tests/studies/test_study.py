"""The study object: parameters read from the notebook's namespace, the Colab branch, claims
declared at open, outputs, phases, typed records, and the paper registry against the committed runs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from actadd.studies.evaluation.stats import Estimate
from actadd.studies.harness import paper
from actadd.studies.harness.colab import COLAB_ENV
from actadd.studies.harness.study import (
    Agreement,
    JudgeReport,
    Study,
    WeddingSetting,
    load_record,
    parameter_names,
    wedding_grid,
    wedding_setting,
)
from actadd.studies.pipeline.publish import RESULTS
from actadd.studies.pipeline.runner import NOTEBOOKS

PARAMETERS = (
    'profile = "default"\nresults_dir = "r"\nlayer, norm = 14, 3.6\nseed = 0\ncolab_parameters = {"layer": 16}\n'
)


def _notebook(folder: Path, name: str, parameters: str = PARAMETERS) -> Path:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# a study"]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": [parameters], "outputs": [],
         "execution_count": None},
    ]  # fmt: skip
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_parameters_are_the_cells_names_with_the_injected_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(COLAB_ENV, raising=False)
    _notebook(tmp_path, "07_mine")
    assert parameter_names(tmp_path / "07_mine.ipynb") == ["profile", "results_dir", "layer", "norm", "seed",
                                                            "colab_parameters"]  # fmt: skip
    # papermill's injected cell has overridden seed; `helper` was assigned later and is no parameter
    namespace = {"profile": "smoke", "results_dir": str(tmp_path / "out"), "layer": 14, "norm": 3.6, "seed": 7,
                 "colab_parameters": {"layer": 16}, "helper": [1, 2]}  # fmt: skip
    study = Study.open("07_mine", namespace)
    assert study.parameters == {**{k: v for k, v in namespace.items() if k != "helper"}, "colab_branch": False}
    assert namespace["layer"] == 14 and (tmp_path / "out").is_dir()


def test_the_colab_branch_applies_colab_parameters_only_on_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path, "07_mine")
    namespace = {"profile": "smoke", "results_dir": str(tmp_path / "out"), "layer": 14, "norm": 3.6, "seed": 0,
                 "colab_parameters": {"layer": 16}}  # fmt: skip
    monkeypatch.setenv(COLAB_ENV, "1")
    study = Study.open("07_mine", namespace)
    assert namespace["layer"] == 16 and study["layer"] == 16 and study["colab_branch"] is True
    bad = {**namespace, "colab_parameters": {"no_such": 1}}
    with pytest.raises(ValueError, match="no_such"):
        Study.open("07_mine", bad)


def test_without_the_notebook_file_the_plain_values_are_the_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as on Colab, where the notebook came from GitHub
    monkeypatch.delenv(COLAB_ENV, raising=False)
    namespace = {"results_dir": str(tmp_path / "out"), "seed": 0, "model": None, "In": ["x"], "_": 3, "plt": plt}
    assert set(Study.open("07_mine", namespace).parameters) == {"results_dir", "seed", "model", "colab_branch"}
    with pytest.raises(ValueError, match="results_dir and seed"):
        Study("07_mine", {"seed": 0})


def test_a_registered_study_declares_its_claims_when_it_opens(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"results_dir": str(tmp_path / "out"), "seed": 0, "negligible": 0.05}
    study = Study.open("03_factual_recall", namespace)
    declared = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert [c["id"] for c in declared["claims"]] == [c.id for c in paper.claims("03_factual_recall", namespace)]
    assert all(c["estimate"] is None for c in declared["claims"])
    with pytest.raises(ValueError, match="not been measured"):
        study.estimate("03.negligible")
    study.record("03.negligible", Estimate(0.01, -0.02, 0.03, 100, "bootstrap"))
    assert study.measured() == {"negligible": study.estimate("03.negligible"), "v_negligible": "holds"}


def test_finish_writes_the_headline_with_records_phases_and_the_claims_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = Study("07_mine", {"results_dir": str(tmp_path / "out"), "seed": 0})
    study.declare([paper.claims("00_quickstart", {})[0]])
    study.record("00.wedding_gain", Estimate(0.2, 0.1, 0.3, 32, "Newcombe"))
    with study.timed("generation"):
        pass
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert study.figure(fig, "line").is_file()
    judged = JudgeReport("a", "b", Agreement(0.5, 0.8, 0.6, 40), [{"scorer": "a"}])
    record = study.finish({"layer": 3}, WeddingSetting(14, 3.6), judged)
    written = json.loads((tmp_path / "out" / "headline.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert written["headline"] == {"layer": 3, "verdicts": {"00.wedding_gain": "holds"}}
    assert set(written["phases_s"]) == {"generation"} and written["wall_time_s"] >= written["phases_s"]["generation"]
    assert pd.read_csv(tmp_path / "out" / "claims.csv")["verdict"].tolist() == ["holds"]
    assert load_record(WeddingSetting, tmp_path / "out" / "headline.json") == WeddingSetting(14, 3.6)
    assert load_record(JudgeReport, tmp_path / "out" / "headline.json") == judged
    assert study.prose("{x:pct} of {n:int}", x=0.25, n=8) == (tmp_path / "out" / "what_it_shows.md").read_text()


def test_a_later_study_reads_the_setting_01_chose_in_its_run(tmp_path):
    default = WeddingSetting(14, 3.6)
    setting, source = wedding_setting(tmp_path / "02_perplexity_relevance", default)
    assert setting == default and source.startswith("this notebook's parameters")
    chosen = Study("01_wedding_layers", {"results_dir": str(tmp_path / "01_wedding_layers"), "seed": 0})
    chosen.declare([paper.claims("00_quickstart", {})[0]])
    chosen.finish({}, WeddingSetting(10, 2.0))
    setting, source = wedding_setting(tmp_path / "02_perplexity_relevance", default)
    assert setting == WeddingSetting(10, 2.0) and source == "chosen by notebook 01 in this run"


def test_the_topic_studies_grid_steers_at_the_setting_01_chose_with_its_relative_norm(tmp_path, gpt2_random):
    chosen = Study("01_wedding_layers", {"results_dir": str(tmp_path / "01_wedding_layers"), "seed": 0})
    chosen.declare([paper.claims("00_quickstart", {})[0]])
    chosen.finish({}, WeddingSetting(2, 1.5))
    grid = wedding_grid(
        gpt2_random, " weddings", "", [0.5, 1.0], tmp_path / "03_factual_recall", WeddingSetting(3, 4.0)
    )
    assert grid.setting == WeddingSetting(2, 1.5) and grid.source == "chosen by notebook 01 in this run"
    assert list(grid.vectors) == sorted({0.5, 1.0, grid.tuned_coeff})
    assert all(v.layer == 2 and v.coeff == c for c, v in grid.vectors.items())
    assert grid.vectors[grid.tuned_coeff].relative_norm == pytest.approx(1.5, rel=1e-4)
    assert grid.vectors[1.0].relative_norm == pytest.approx(grid.vectors[0.5].relative_norm * 2, rel=1e-4)


def _defaults(study: str) -> dict:
    cell = next(c for c in nbformat.read(NOTEBOOKS / f"{study}.ipynb", as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))  # fmt: skip
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            for target, value in zip(node.targets[0].elts, node.value.elts) if isinstance(node.targets[0], ast.Tuple) \
                    else [(node.targets[0], node.value)]:  # fmt: skip
                values[target.id] = ast.literal_eval(value)
    return values


@pytest.mark.parametrize("claims_file", sorted(RESULTS.glob("*/*/*/claims.json")), ids=lambda p: str(p.parent))
def test_the_registry_declares_exactly_what_the_committed_runs_declared(claims_file):
    """A claim's statement and criterion, once declared and run, stay as they are: the registry
    gives every committed claim back, word for word, from that run's parameters. (The metric's
    wording says how the interval is made, and may name a better method than the run used.)"""
    committed = json.loads(claims_file.read_text())
    # the run's parameters, and the notebook's defaults for parameters added since (a new claim's margin)
    parameters = {
        **_defaults(committed["study"]),
        **json.loads((claims_file.parent / "headline.json").read_text())["parameters"],
    }
    registered = {c.id: c for c in paper.claims(committed["study"], parameters)}
    for claim in committed["claims"]:
        ours = registered[claim["id"]]
        assert (ours.statement, ours.paper, ours.unit, ours.arm) == (
            claim["statement"], claim["paper"], claim["unit"], claim["arm"])  # fmt: skip
        assert {"kind": ours.criterion.kind, "low": ours.criterion.low, "high": ours.criterion.high} == claim[
            "criterion"
        ]


def test_an_unregistered_study_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="no claims are registered for study '09_x'.*00_quickstart"):
        paper.claims("09_x", {})
