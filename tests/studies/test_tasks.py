"""The comparison studies' protocol (04, 05): selection on its own prompts and seeds, the chosen
methods evaluated on others, every difference recorded as its claim.

End to end on the tiny random GPT-2 with greedy decoding, so that every method's completions can
be written again independently (from vectors built here with ``actadd``) and scored by their
text: a method that is not what its name says, or a claim that compares the wrong methods, moves
a number. The hand-built runs check which methods each recorded claim compares."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

import actadd
from actadd.studies.lifecycle.claims import Claim, above
from actadd.studies.lifecycle.study import Study
from actadd.studies.protocol import methods, tasks
from actadd.studies.protocol.baselines import PrefixContrast
from actadd.studies.protocol.methods import MEAN_DIFFERENCE, MEAN_DIFFERENCE_AT_ACTADD
from actadd.studies.protocol.selection import Choice, Selection, select

PREFIX = "Be kind:\n"
TASK = dict(p_plus=" kind", p_minus=" rude", instruction=PREFIX, preadd_prefix=PREFIX)


def _task(select=("The day was", "My friend"), evaluate=("The food was", "Our trip")) -> tasks.SteeringTask:
    return tasks.SteeringTask("t", "towards kind", list(select), list(evaluate), **TASK)


def test_a_task_refuses_prompts_shared_by_selection_and_evaluation():
    with pytest.raises(ValueError, match="share 1 prompts"):
        _task(select=("The day was", "Our trip"))


@pytest.mark.parametrize("field, value", [("n_select_samples", 0), ("n_eval_samples", 1.5), ("fluency_tolerance", 0.5)])
def test_a_search_space_refuses_bad_sizes(field, value):
    sizes = {"n_select_samples": 1, "n_eval_samples": 2, "fluency_tolerance": 1.5, field: value}
    with pytest.raises(ValueError, match=field):
        tasks.SearchSpace([[0.5, 1.0]], [1.0], **sizes)


# ---------------------------------------------------------------------------------------
# Which methods each recorded claim compares, on hand-built evaluation values

BASELINE_CLAIMS = ("unsteered", "prompting", "PREADD")
SUCCESSOR_CLAIMS = ("meandiff", "better_vs_prompting")
# Per method, each evaluation prompt's two samples: every method has its own mean.
VALUES = {
    "unsteered": [[0.1, 0.1], [0.2, 0.2], [0.1, 0.1], [0.2, 0.2]],  # mean 0.15
    "prompting": [[0.5, 0.5], [0.4, 0.4], [0.6, 0.6], [0.5, 0.5]],  # 0.5
    "PREADD": [[0.3, 0.3], [0.3, 0.3], [0.4, 0.4], [0.2, 0.2]],  # 0.3
    "ActAdd": [[0.9, 0.9], [0.8, 0.8], [0.7, 0.6], [0.6, 0.6]],  # 0.7375
    MEAN_DIFFERENCE: [[0.8, 0.8], [0.9, 0.9], [0.9, 0.9], [0.7, 0.7]],  # 0.825
    MEAN_DIFFERENCE_AT_ACTADD: [[0.6, 0.6], [0.5, 0.5], [0.6, 0.6], [0.5, 0.5]],  # 0.55
}


def _mean(method: str) -> float:
    return float(np.mean(VALUES[method]))


def _steered(name: str, kind: str, layer: int, norm: float) -> methods.Method:
    return methods.Method(name, kind, layer=layer, coeff=2 * norm, relative_norm=norm, steering=f"vector-{name}")


def _hand_run(actadd_within: bool, meandiff_within: bool) -> tasks.TaskRun:
    """A task run with VALUES as its evaluation and a selection whose ActAdd choice (objective
    0.6) and mean-difference choice (objective 0.7) met the fluency limit or not as asked;
    PREADD's choice did not."""
    completions = pd.DataFrame(
        [{"method": m, "kind": "x", "prompt_id": p, "sample": s, "success": v}
         for m, prompts in VALUES.items() for p, samples in enumerate(prompts) for s, v in enumerate(samples)]
    )  # fmt: skip
    choices = {
        "actadd": Choice(_steered("ActAdd layer 2", "actadd", 2, 4.0), actadd_within, 10.0, 0.6, 9.0),
        "preadd": Choice(methods.preadd(PREFIX, 2.0), False, 10.0, 0.4, 12.0),
        "meandiff": Choice(_steered("md layer 3", "meandiff", 3, 8.0), meandiff_within, 10.0, 0.7, 9.5),
    }
    selection = Selection(pd.DataFrame(), choices, 10.0, "success", True)
    task = tasks.SteeringTask("t", "towards kind", ["The day was", "My friend"], ["a", "b", "c", "d"], **TASK)
    return tasks.TaskRun(task, selection, pd.DataFrame(), completions)


def _study(tmp_path, claim_ids) -> Study:
    """A study to record claims in (call it under ``plot_settings_restored``)."""
    study = Study("x", {"results_dir": str(tmp_path), "seed": 0, "model_name": "gpt2-random"})
    study.declare([Claim(f"x.t.{c}", c, "-", "-", above(0.0), "points") for c in claim_ids])
    return study


@pytest.mark.usefixtures("plot_settings_restored")
def test_compare_records_actadd_minus_each_baseline_with_the_selections_notes(tmp_path):
    study = _study(tmp_path, BASELINE_CLAIMS)
    run = _hand_run(actadd_within=False, meandiff_within=True)
    differences = tasks.compare(study, run, "success", claims="x.t")
    for baseline in BASELINE_CLAIMS:
        assert differences[baseline].value == pytest.approx(_mean("ActAdd") - _mean(baseline))
        assert study.estimate(f"x.t.{baseline}") == differences[baseline]
    actadd_note, preadd_note = run.selection.choices["actadd"].note, run.selection.choices["preadd"].note
    notes = {c["id"]: c["note"] for c in study.claims.as_dict()["claims"]}
    assert notes == {"x.t.unsteered": actadd_note, "x.t.prompting": actadd_note,
                     "x.t.PREADD": f"{actadd_note}; {preadd_note}"}  # fmt: skip


@pytest.mark.usefixtures("plot_settings_restored")
@pytest.mark.parametrize(
    "actadd_within, meandiff_within, better",
    [(True, True, MEAN_DIFFERENCE), (False, True, MEAN_DIFFERENCE), (True, False, "ActAdd")],
)
def test_successor_comparisons_compare_with_the_mean_difference_at_actadds_setting_and_the_better_method(
    tmp_path, actadd_within, meandiff_within, better
):
    study = _study(tmp_path, SUCCESSOR_CLAIMS)
    run = _hand_run(actadd_within, meandiff_within)
    compared = tasks.successor_comparisons(study, run, "success", claims="x.t")
    # ActAdd against the mean difference at ActAdd's own setting: not unsteered, not the mean
    # difference's own choice.
    assert compared["meandiff"].value == pytest.approx(_mean("ActAdd") - _mean(MEAN_DIFFERENCE_AT_ACTADD))
    assert compared["better_vs_prompting"].value == pytest.approx(_mean(better) - _mean("prompting"))
    assert study.estimate("x.t.meandiff") == compared["meandiff"]
    assert study.estimate("x.t.better_vs_prompting") == compared["better_vs_prompting"]
    notes = {c["id"]: c["note"] for c in study.claims.as_dict()["claims"]}
    better_kind = "meandiff" if better == MEAN_DIFFERENCE else "actadd"
    assert notes == {"x.t.meandiff": run.selection.choices["actadd"].note,
                     "x.t.better_vs_prompting": run.selection.choices[better_kind].note}  # fmt: skip


# ---------------------------------------------------------------------------------------
# End to end on the random GPT-2

# ActAdd's pair (every method's rows are padded by its k - 1 = 3 spaces), and contrast pairs of
# other words, so that ActAdd and the mean difference write different texts.
P_PLUS, P_MINUS = " kind and warm", " rude and cold"
PAIRS = [(" what a lovely day", " what an awful day"), (" so happy", " so sad")]
SELECT_PROMPTS = ["The day was", "My friend"]
EVAL_PROMPTS = ["The food was", "Our trip", "She wrote"]
# Greedy: every completion is a function of its method and prompt alone.
SAMPLING = dict(max_new_tokens=3, temperature=0, freq_penalty=0)
# Chosen by the texts' fingerprints: ActAdd's best-scoring setting (layer 1, norm 1) costs the
# judge a little more perplexity than unsteered decoding; at tolerance 1 the limit excludes it.
SEARCH = tasks.SearchSpace([[0.25, 1.0], [0.25, 8.0], [0.5, 64.0]], [0.25, 0.5, 2.0], n_select_samples=1,
                           n_eval_samples=2, fluency_tolerance=1.0)  # fmt: skip


def _fingerprint(text: str) -> float:
    """A number in [0, 1) that tells two texts apart."""
    return zlib.crc32(text.encode()) % 1000 / 1000


def _score(frame: pd.DataFrame) -> pd.DataFrame:
    """The objective: a fixed, arbitrary score of each completion's text, so that any two methods
    that write different texts score differently."""
    return frame.assign(fingerprint=[_fingerprint(c) for c in frame.completion])


@pytest.fixture(scope="module")
def run(gpt2_random, tmp_path_factory) -> Iterator[tuple[Study, tasks.TaskRun]]:
    task = tasks.SteeringTask("t", "towards kind", SELECT_PROMPTS, EVAL_PROMPTS, P_PLUS, P_MINUS, PREFIX, PREFIX,
                              pairs=PAIRS)  # fmt: skip
    with matplotlib.rc_context():  # the Study's theme, for this module's tests only
        study = Study("x", {"results_dir": str(tmp_path_factory.mktemp("run")), "seed": 3, "model_name": "gpt2-random"})
        yield study, tasks.run_task(study, gpt2_random, gpt2_random, task, _score, SEARCH, objective="fingerprint",
                                    maximize=True, progress=False, **SAMPLING)  # fmt: skip


def test_run_task_selects_on_its_prompts_and_evaluates_the_chosen_methods_on_others(run):
    study, task_run = run
    chosen_on, evaluated = task_run.selection_frame, task_run.completions
    assert set(chosen_on.prompt) == set(SELECT_PROMPTS) and set(evaluated.prompt) == set(EVAL_PROMPTS)
    assert not set(chosen_on.seed) & set(evaluated.seed)
    assert evaluated.method.unique().tolist() == ["unsteered", "prompting", "PREADD", "ActAdd", MEAN_DIFFERENCE,
                                                  MEAN_DIFFERENCE_AT_ACTADD]  # fmt: skip
    assert evaluated.groupby("method").seed.apply(tuple).nunique() == 1  # the same seeds for every method
    assert (evaluated.groupby(["method", "prompt_id"]).size() == 2).all()
    assert evaluated.perplexity.notna().sum() == 6 * 3  # each prompt's first sample is judged
    assert set(study.phases) == {"vectors", "generation", "scoring", "judging"}
    # The mean difference is searched at ActAdd's (layer, relative norm) settings.
    tried = task_run.selection.table
    settings = {kind: sorted(zip(rows.layer, rows.relative_norm.round(6))) for kind, rows in tried.groupby("kind")
                if kind in ("actadd", "meandiff")}  # fmt: skip
    assert settings["actadd"] == settings["meandiff"] == [(1, 1.0), (1, 8.0), (2, 64.0)]
    table = tasks.save_runs(study, [task_run], objective_label="fingerprint", figure="selection")
    results = Path(study["results_dir"])
    assert (results / "selection.png").is_file() and (results / "completions.csv").is_file()
    assert table.chosen.sum() == 3 and set(table.direction) == {"towards kind"}
    prompts = tasks.prompts_table([task_run.task], pd.DataFrame({"prompt": ["Our trip"], "source": ["s"]}))
    assert prompts.part.tolist() == ["select"] * 2 + ["eval"] * 3 and prompts.source.notna().sum() == 1


@pytest.fixture(scope="module")
def expected(run, gpt2_random) -> dict[str, list[str]]:
    """Each evaluated method's completions of the evaluation prompts, written again with
    ``actadd.generate`` from vectors built here at the chosen settings (the claims' "ActAdd's
    layer and relative norm"), every row padded by the ActAdd vector's k - 1 spaces as the
    original's experiments; one call per way of adding (``row_vectors``)."""
    model, choices, n = gpt2_random, run[1].selection.choices, len(EVAL_PROMPTS)
    layer, norm = choices["actadd"].method.layer, choices["actadd"].method.relative_norm
    chosen_md = choices["meandiff"].method
    # How the harness reads each text (its last token or all of them) is checked on its own below.
    reduce = chosen_md.steering.source.reduce
    vector = actadd.steering_vector(model, P_PLUS, P_MINUS, layer=layer, relative_norm=norm)
    directions = [actadd.mean_difference(model, PAIRS, layer=at, relative_norm=r, reduce=reduce)
                  for at, r in ((chosen_md.layer, chosen_md.relative_norm), (layer, norm))]  # fmt: skip

    def written(prompts: list[str], rows: list, **kwargs) -> list[list[str]]:
        texts = actadd.generate(model, prompts, row_vectors=rows, pad_prompts=vector.k - 1, progress=False,
                                **SAMPLING, **kwargs)  # fmt: skip
        return [texts[i : i + n] for i in range(0, len(texts), n)]

    unsteered, prompting, steered = written(EVAL_PROMPTS + [PREFIX + p for p in EVAL_PROMPTS] + EVAL_PROMPTS,
                                            [None] * 2 * n + [vector] * n)  # fmt: skip
    md_own, md_at_actadd = written(EVAL_PROMPTS * 2, [d for d in directions for _ in range(n)], positions="all")
    (preadd,) = written(EVAL_PROMPTS, [None] * n,
                        logits_processors=[PrefixContrast(model, PREFIX, choices["preadd"].method.strength)])  # fmt: skip
    return {"unsteered": unsteered, "prompting": prompting, "PREADD": preadd, "ActAdd": steered,
            MEAN_DIFFERENCE: md_own, MEAN_DIFFERENCE_AT_ACTADD: md_at_actadd}  # fmt: skip


def test_each_evaluated_method_writes_what_its_setting_writes(run, expected, gpt2_random):
    _, task_run = run
    first = task_run.completions[task_run.completions["sample"] == 0].sort_values("prompt_id")
    for method, texts in expected.items():
        assert first[first.method == method].completion.tolist() == texts, method
    # The methods write different texts, so a method swapped for another would show (the mean
    # difference's own choice may be the setting of ActAdd's, and then writes the same).
    distinct = [texts for method, texts in expected.items() if method != MEAN_DIFFERENCE]
    assert len({tuple(texts) for texts in distinct}) == len(distinct)
    # The vectors themselves: ActAdd's pair and the mean difference of the pairs at ActAdd's chosen
    # layer and relative norm.
    evaluated = {m.name: m for m in task_run.selection.evaluation_methods(PREFIX)}
    chosen = task_run.selection.choices["actadd"].method
    at_actadd = evaluated[MEAN_DIFFERENCE_AT_ACTADD].steering
    assert (at_actadd.layer, at_actadd.relative_norm) == pytest.approx((chosen.layer, chosen.relative_norm))
    reference = actadd.mean_difference(gpt2_random, PAIRS, layer=chosen.layer, relative_norm=chosen.relative_norm,
                                       reduce=at_actadd.source.reduce)  # fmt: skip
    torch.testing.assert_close(at_actadd.vector, reference.vector)
    steering = evaluated["ActAdd"].steering
    reference_actadd = actadd.steering_vector(gpt2_random, P_PLUS, P_MINUS, layer=chosen.layer,
                                              relative_norm=chosen.relative_norm)  # fmt: skip
    torch.testing.assert_close(steering.vector, reference_actadd.vector)


def test_the_fluency_limit_binds_the_choice(run):
    _, task_run = run
    picked = task_run.selection
    tried = picked.table.set_index("method")
    assert picked.fluency_limit == pytest.approx(SEARCH.fluency_tolerance * tried.loc["unsteered", "perplexity"])
    # ActAdd's best-scoring setting is beyond the limit; the best one within it is taken.
    actadd_rows = tried[tried.kind == "actadd"]
    allowed = actadd_rows[actadd_rows.perplexity <= picked.fluency_limit]
    assert 0 < len(allowed) < len(actadd_rows)
    assert actadd_rows.fingerprint.max() > allowed.fingerprint.max()
    choice = picked.choices["actadd"]
    assert choice.within_limit and choice.method.name == allowed.fingerprint.idxmax()
    unlimited = select(task_run.selection_frame, "fingerprint", maximize=True, fluency_tolerance=100,
                       methods=list(picked.candidates))  # fmt: skip
    assert unlimited.choices["actadd"].method != picked.choices["actadd"].method
    # The evaluation's ActAdd is the choice made within the limit.
    evaluated = task_run.completions[task_run.completions.method == "ActAdd"].iloc[0]
    assert evaluated.relative_norm == pytest.approx(picked.choices["actadd"].method.relative_norm)


@pytest.mark.usefixtures("plot_settings_restored")
def test_recorded_comparisons_are_differences_of_the_methods_texts(run, expected, tmp_path):
    _, task_run = run
    study = _study(tmp_path, BASELINE_CLAIMS + SUCCESSOR_CLAIMS)
    score = {method: np.mean([_fingerprint(t) for t in texts]) for method, texts in expected.items()}
    differences = tasks.compare(study, task_run, "fingerprint", claims="x.t")
    for baseline in BASELINE_CLAIMS:
        assert differences[baseline].value == pytest.approx(score["ActAdd"] - score[baseline])
    compared = tasks.successor_comparisons(study, task_run, "fingerprint", claims="x.t")
    assert compared["meandiff"].value == pytest.approx(score["ActAdd"] - score[MEAN_DIFFERENCE_AT_ACTADD])
    better = "ActAdd" if task_run.selection.better_steering() == "actadd" else MEAN_DIFFERENCE
    assert compared["better_vs_prompting"].value == pytest.approx(score[better] - score["prompting"])
    # Against unsteered instead the number would differ: the comparison can tell them apart.
    assert abs(score[MEAN_DIFFERENCE_AT_ACTADD] - score["unsteered"]) > 0.01
    assert study.estimate("x.t.meandiff") == compared["meandiff"]


@pytest.mark.xfail(
    strict=True,
    reason="04 and 05 state the mean difference is averaged over each text's tokens (MEAN_DIFFERENCE_METRIC), "
    "but methods.search_space and methods.mean_difference build it with actadd.mean_difference's default "
    "reduce='last' (each text's last token)",
)
def test_the_mean_difference_is_averaged_over_each_texts_tokens(run, gpt2_random):
    _, task_run = run
    evaluated = {m.name: m for m in task_run.selection.evaluation_methods(PREFIX)}
    for name in (MEAN_DIFFERENCE, MEAN_DIFFERENCE_AT_ACTADD):
        vector = evaluated[name].steering
        assert vector.source.reduce == "mean", name
        reference = actadd.mean_difference(gpt2_random, PAIRS, layer=vector.layer,
                                           relative_norm=vector.relative_norm, reduce="mean")  # fmt: skip
        torch.testing.assert_close(vector.vector, reference.vector)
