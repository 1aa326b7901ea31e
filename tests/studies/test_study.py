"""The study object: parameters read from the notebook's namespace, the Colab branch, claims
declared at open, outputs, phases, the record it leaves (read back through one type), the hand-off
from 01 to 02 and 03, and each section's claims against the committed runs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle.claims import Claim, Criterion, above
from actadd.studies.lifecycle.colab import COLAB_ENV
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study, parameter_names
from actadd.studies.pipeline.publish import RESULTS
from actadd.studies.pipeline.runner import NOTEBOOKS
from actadd.studies.presentation import plots
from actadd.studies.protocol.judges import Agreement, JudgeReport
from actadd.studies.sections import MODULES, factual_recall, overhead, section
from actadd.studies.sections.wedding_layers import TUNED, WeddingSetting, paper_label, wedding_arms, wedding_setting

CLAIM = Claim("07.works", "It works", "> 90%", "share", above(0.9), "percent")
MINE = Section("07_mine", "the paper's value", lambda p: [CLAIM])

pytestmark = pytest.mark.usefixtures("plot_settings_restored")  # a Study sets seaborn's theme

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
    study = Study.open(MINE, namespace)
    assert study.parameters == {**{k: v for k, v in namespace.items() if k != "helper"}, "colab_branch": False}
    assert namespace["layer"] == 14 and (tmp_path / "out").is_dir()


def test_the_colab_branch_applies_colab_parameters_only_on_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path, "07_mine")
    namespace = {"profile": "smoke", "results_dir": str(tmp_path / "out"), "layer": 14, "norm": 3.6, "seed": 0,
                 "colab_parameters": {"layer": 16}}  # fmt: skip
    monkeypatch.setenv(COLAB_ENV, "1")
    study = Study.open(MINE, namespace)
    assert namespace["layer"] == 16 and study["layer"] == 16 and study["colab_branch"] is True
    bad = {**namespace, "colab_parameters": {"no_such": 1}}
    with pytest.raises(ValueError, match="no_such"):
        Study.open(MINE, bad)


def test_without_the_notebook_file_the_plain_values_are_the_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as on Colab, where the notebook came from GitHub
    monkeypatch.delenv(COLAB_ENV, raising=False)
    namespace = {"results_dir": str(tmp_path / "out"), "seed": 0, "model": None, "In": ["x"], "_": 3, "plt": plt}
    assert set(Study.open(MINE, namespace).parameters) == {"results_dir", "seed", "model", "colab_branch"}
    with pytest.raises(ValueError, match="results_dir and seed"):
        Study("07_mine", {"seed": 0})


def test_a_median_premium_of_too_few_pairs_stays_unresolved_and_says_why(tmp_path, monkeypatch):
    """06's premiums, all 4 outside the 1% margin: a bootstrap of 4 values called that "does not
    hold"; a median of 4 has no 95% interval, so the claim is unresolved, and its note says why.
    12 such pairs do decide it."""
    monkeypatch.chdir(tmp_path)
    study = Study.open(overhead.SECTION, {**_defaults("06_overhead"), "results_dir": str(tmp_path / "out")})
    few = np.array([0.012, 0.031, 0.052, 0.102])
    overhead.record_median(study, "06.paper_batch", few)
    assert study.verdict("06.paper_batch") == "unresolved"
    recorded = {r.claim.id: r.note for r in StudyRecord.load(tmp_path / "out").claims}
    assert recorded["06.paper_batch"] == study.note("06.paper_batch")
    assert study.note("06.paper_batch") == "a median of 4 pairs has no 95% interval, which takes at least 6"
    overhead.record_median(study, "06.batch1_largest", np.tile(few, 3))
    assert study.verdict("06.batch1_largest") == "does not hold"
    assert study.estimate("06.batch1_largest").low == 0.012  # the 3rd smallest of 12


def test_06s_figure_names_each_model_once_smallest_first_with_the_ratio_of_means_beside_its_median(
    tmp_path, monkeypatch
):
    """Two models of about the same size crowded their name labels together on a log axis of
    parameters: each model is now a category of its own, and each ratio of means is drawn at
    its own series' median."""
    monkeypatch.chdir(tmp_path)
    study = Study.open(overhead.SECTION, {**_defaults("06_overhead"), "results_dir": str(tmp_path / "out")})
    rows = [("gpt2-small", 1, 124e6), ("gpt2-large", 1, 774e6), ("smollm2-135m", 1, 135e6), ("gpt2-small", 32, 124e6)]
    table = pd.DataFrame([
        {"model": m, "batch": b, "parameters": p, "premium": 0.01 * i, "premium_low": np.nan if b == 32 else -0.05,
         "premium_high": np.nan if b == 32 else 0.05, "premium_of_means": 0.01 * i + 0.002,
         "vector_over_pair_forward": 0.3, "vector_low": 0.28, "vector_high": 0.33}
        for i, (m, b, p) in enumerate(rows)
    ])  # fmt: skip
    captured = {}
    monkeypatch.setattr(study, "figure", lambda fig, name: captured.setdefault(name, fig))
    overhead.premium_figure(study, table)
    premium, vector = captured["06_overhead_premium"].axes
    names = ["gpt2-small (124M)", "smollm2-135m (135M)", "gpt2-large (774M)"]
    for ax in (premium, vector):
        assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert not premium.texts  # no name labels drawn beside the points
    marks = next(c for c in premium.collections if c.get_label() == "ratio of means").get_offsets()
    medians = sorted((x, y) for c in premium.containers for x, y in c.lines[0].get_xydata())
    np.testing.assert_allclose(sorted(marks[:, 0]), [x for x, _ in medians])
    np.testing.assert_allclose(sorted(np.asarray(marks)[:, 1] - 0.2), sorted(y for _, y in medians), atol=1e-9)
    assert not plots.overlapping_tick_labels(captured["06_overhead_premium"])


def test_a_registered_study_declares_its_claims_when_it_opens(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"results_dir": str(tmp_path / "out"), "seed": 0, "negligible": 0.05}
    study = Study.open(factual_recall.SECTION, namespace)
    declared = StudyRecord.load(tmp_path / "out")
    assert [r.claim.id for r in declared.claims] == [c.id for c in factual_recall.claims(namespace)]
    assert all(r.estimate is None for r in declared.claims) and not declared.finished
    assert declared.paper == factual_recall.SECTION.paper
    with pytest.raises(ValueError, match="not been measured"):
        study.estimate("03.negligible")
    study.record("03.negligible", Estimate(0.01, -0.02, 0.03, 100, "bootstrap"))
    assert study.measured() == {"negligible": study.estimate("03.negligible"), "v_negligible": "holds"}


def test_finish_writes_the_record_with_typed_records_phases_memory_and_the_claims_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = Study("07_mine", {"results_dir": str(tmp_path / "out"), "seed": 0}, MINE)
    study.declare()
    study.record("07.works", Estimate(0.95, 0.92, 0.97, 300, "wilson"))
    with study.timed("generation"):
        pass
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert study.figure(fig, "line").is_file()
    judged = JudgeReport("a", "b", Agreement(0.5, 0.8, 0.6, 40))
    finished = study.finish({"layer": 3}, WeddingSetting(14, 3.6), judged_by=judged.summary())
    loaded = StudyRecord.load(tmp_path / "out")
    assert loaded.headline == {"layer": 3, "verdicts": {"07.works": "holds"}} == finished.headline
    assert set(loaded.phases_s) == {"generation"} and loaded.wall_time_s >= loaded.phases_s["generation"]
    assert loaded.peak_memory_gb is not None and loaded.peak_memory_gb > 0.01
    assert loaded.record(WeddingSetting) == WeddingSetting(14, 3.6) and loaded.judged_by == judged.summary()
    assert loaded.figures == ["line.png"] and loaded.tables == ["claims.csv"] and loaded.paper == "the paper's value"
    assert pd.read_csv(tmp_path / "out" / "claims.csv")["verdict"].tolist() == ["holds"]
    assert loaded.verdicts() == {"07.works": "holds"}
    assert study.prose("{x:pct} of {n:int}", x=0.25, n=8) == (tmp_path / "out" / "what_it_shows.md").read_text()
    assert StudyRecord.load(tmp_path / "out").prose == "25% of 8"


def test_a_record_saves_and_loads_to_the_same_record(tmp_path):
    study = Study("07_mine", {"results_dir": str(tmp_path / "a"), "seed": 0}, MINE)
    study.declare()
    study.record("07.works", Estimate(0.5, 0.4, 0.6, 100, "wilson"), note="a note")
    first = study.finish({"x": [1, 2]}, WeddingSetting(2, 1.0))
    first.save(tmp_path / "b")
    again = StudyRecord.load(tmp_path / "b")
    assert again.claims_dict() == first.claims_dict() and again.headline_dict() == first.headline_dict()
    with pytest.raises(ValueError, match="no claims.json"):
        StudyRecord.load(tmp_path / "nothing")
    (tmp_path / "b" / "headline.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        StudyRecord.load(tmp_path / "b")


def _finished_01(folder: Path, setting: WeddingSetting) -> None:
    chosen = Study("01_wedding_layers", {"results_dir": str(folder), "seed": 0}, MINE)
    chosen.declare()
    chosen.finish({}, setting)


def test_a_later_study_reads_the_setting_01_chose_in_its_run(tmp_path):
    default = WeddingSetting(14, 3.6)
    setting, source = wedding_setting(tmp_path / "02_perplexity_relevance", default)
    assert setting == default and source.startswith("this notebook's parameters")
    _finished_01(tmp_path / "01_wedding_layers", WeddingSetting(10, 2.0))
    setting, source = wedding_setting(tmp_path / "02_perplexity_relevance", default)
    assert setting == WeddingSetting(10, 2.0) and source == "chosen by notebook 01 in this run"


def test_the_topic_studies_arms_are_the_papers_depth_and_the_setting_01_chose(tmp_path, gpt2_random):
    _finished_01(tmp_path / "01_wedding_layers", WeddingSetting(2, 1.5))
    later = Study("03_factual_recall", {"results_dir": str(tmp_path / "03_factual_recall"), "seed": 0, "layer": 3,
                                        "tuned_norm": 4.0, "p_plus": " weddings", "p_minus": "",
                                        "paper_depth": 0.333, "paper_coeffs": [1.0, 0.5]})  # fmt: skip
    arms = wedding_arms(later, gpt2_random)
    assert arms.setting == WeddingSetting(2, 1.5) and arms.source == "chosen by notebook 01 in this run"
    assert arms.paper_layer == 1 and list(arms.paper) == [0.5, 1.0]  # a third of 4 blocks, coefficients sorted
    assert all(v.layer == 1 and v.coeff == c for c, v in arms.paper.items())
    assert arms.tuned.layer == 2 and arms.tuned.relative_norm == pytest.approx(1.5, rel=1e-4)
    assert list(arms.vectors()) == [paper_label(0.5), paper_label(1.0), TUNED]
    assert arms.paper[1.0].relative_norm == pytest.approx(arms.paper[0.5].relative_norm * 2, rel=1e-4)


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


@pytest.mark.parametrize("folder", sorted(p.parent for p in RESULTS.glob("*/*/*/claims.json")), ids=str)
def test_the_sections_declare_exactly_what_the_committed_runs_declared(folder):
    """A claim's statement and criterion, once declared and run, stay as they are: each section
    gives every committed claim back, word for word, from that run's parameters, or lists it as
    withdrawn with a reason. (The metric's wording says how the interval is made, and may name a
    better method than the run used.)"""
    committed = StudyRecord.load(folder)
    # the run's parameters, and the notebook's defaults for parameters added since (a new claim's margin)
    parameters = {**_defaults(committed.study), **committed.parameters}
    declared = section(committed.study)
    registered = {c.id: c for c in declared.claims(parameters)}
    for result in committed.claims:
        claim = result.claim
        if claim.id in declared.withdrawn:
            assert claim.id not in registered and declared.withdrawn[claim.id]
            continue
        ours = registered[claim.id]
        assert (ours.statement, ours.paper, ours.unit, ours.arm, ours.criterion) == (
            claim.statement, claim.paper, claim.unit, claim.arm, claim.criterion)  # fmt: skip


DECLARED = Path(__file__).parents[2] / "docs" / "claims-as-declared-2026-12-01.json"


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_the_claims_as_declared_on_2026_12_01_stand_or_are_withdrawn(model):
    """The claims as they were declared on 2026-12-01 (docs/), on the notebooks' default parameters:
    each keeps its statement and criterion in its section, or is listed there as withdrawn."""
    declared = json.loads(DECLARED.read_text())[model]
    for claim_id, stated in declared.items():
        study = next(name for name in MODULES if name.startswith(claim_id.split(".")[0] + "_"))
        found = section(study)
        if claim_id in found.withdrawn:
            continue
        ours = {c.id: c for c in found.claims(_defaults(study))}[claim_id]
        assert ours.statement == stated["statement"], claim_id
        assert ours.criterion == Criterion(**stated["criterion"]), claim_id


def test_an_unknown_study_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="no study is named '09_x'.*00_quickstart"):
        section("09_x")
    assert all(section(name).name == name for name in MODULES)
    with pytest.raises(ValueError, match="Study.open takes a study's Section"):
        Study.open("07_mine", {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "units"),
    [
        ("avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
        ("avx512f avx512_bf16", "AVX512-BF16"),
        ("sse2 avx2", "no bfloat16 units"),
    ],
)
def test_the_cpu_is_named_with_what_multiplies_bfloat16_on_it(tmp_path, flags, units):
    from actadd.studies.lifecycle.study import cpu, versions

    info = tmp_path / "cpuinfo"
    block = f"processor\t: {{}}\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n\n"
    info.write_text(block.format(0) + block.format(1))
    assert cpu(info) == f"Some CPU 9000, bfloat16 by {units}"
    assert cpu(tmp_path / "missing")  # no /proc/cpuinfo: the platform's name, never an error
    assert "cpu" in versions()


def test_peak_memory_reads_this_process_high_water_mark(tmp_path):
    from actadd.studies.lifecycle.study import peak_memory_gb

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9000000 kB\nVmHWM:\t 2000000 kB\nVmRSS:\t 100 kB\n")
    assert peak_memory_gb(status) == 2.048


def test_a_kernel_started_by_a_large_process_reports_its_own_peak_not_its_parents():
    import subprocess
    import sys

    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc: the fallback (ru_maxrss) is the only measure")
    ballast = bytearray(1_500_000_000)  # the parent's resident memory rises by 1.5 GB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from actadd.studies.lifecycle.study import peak_memory_gb; print(peak_memory_gb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    # The child imports the studies (torch, transformers: about half a GB), far below the parent.
    assert child < 1.2, f"the child reported {child} GB: its parent's peak, not its own"
    del ballast
