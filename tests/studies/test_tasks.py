"""The comparison studies' protocol end to end on a tiny random GPT-2: selection on its own prompts
and seeds, the chosen methods evaluated on others, every difference recorded as its claim."""

from __future__ import annotations

import pandas as pd
import pytest

from actadd.studies.lifecycle.claims import Claim, above
from actadd.studies.lifecycle.study import Study
from actadd.studies.protocol import tasks

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


def test_run_task_selects_then_evaluates_and_records_each_comparison(gpt2_random, tmp_path):
    study = Study("x", {"results_dir": str(tmp_path), "seed": 3, "model_name": "gpt2-random"})
    study.declare([Claim(f"x.t.{b}", f"ActAdd against {b}", "-", "-", above(-1.0), "points")
                   for b in ("unsteered", "prompting", "PREADD")])  # fmt: skip

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(success=frame.completion.str.len().gt(5).astype(float))

    search = tasks.SearchSpace([[0.5, 1.0], [0.25, 2.0]], [1.0, 2.0], 1, 2, fluency_tolerance=100.0)
    run = tasks.run_task(study, gpt2_random, gpt2_random, _task(), score, search, objective="success", maximize=True,
                         max_new_tokens=3, progress=False)  # fmt: skip
    chosen_on, evaluated = run.selection_frame, run.completions
    assert set(chosen_on.prompt) == {"The day was", "My friend"} and set(evaluated.prompt) == {
        "The food was",
        "Our trip",
    }
    assert not set(chosen_on.seed) & set(evaluated.seed)
    assert evaluated.method.unique().tolist() == ["unsteered", "prompting", "PREADD", "ActAdd"]
    assert evaluated.groupby("method").seed.apply(tuple).nunique() == 1  # the same seeds for every method
    assert (evaluated.groupby(["method", "prompt_id"]).size() == 2).all()
    assert evaluated.perplexity.notna().sum() == 4 * 2  # each prompt's first sample is judged
    assert set(study.phases) == {"vectors", "generation", "scoring", "judging"}
    differences = tasks.compare(study, run, "success", claims="x.t")
    assert set(differences) == {"unsteered", "prompting", "PREADD"}
    assert study.estimate("x.t.unsteered") == differences["unsteered"]
    assert tasks.comparison_sentence(study, "x.t", differences).startswith("ActAdd minus unsteered ")
    table = tasks.save_runs(study, [run], objective_label="success", figure="selection")
    assert (tmp_path / "selection.png").is_file() and (tmp_path / "completions.csv").is_file()
    assert table.chosen.sum() == 2 and set(table.direction) == {"towards kind"}
    prompts = tasks.prompts_table([run.task], pd.DataFrame({"prompt": ["Our trip"], "source": ["s"]}))
    assert prompts.part.tolist() == ["select", "select", "eval", "eval"] and prompts.source.notna().sum() == 1


def test_with_contrast_pairs_the_mean_difference_is_searched_and_evaluated_twice(gpt2_random, tmp_path):
    """The mean difference gets ActAdd's settings, its own choice, and a reading at ActAdd's
    chosen layer and relative norm; the better steering method is compared with prompting."""
    study = Study("x", {"results_dir": str(tmp_path), "seed": 1})
    study.declare([Claim(f"x.t.{c}", c, "-", "-", above(-1.0), "points") for c in ("meandiff", "better_vs_prompting")])
    pairs = [(" I am kind and warm", " I am rude and cold"), (" what a lovely day", " what an awful day")]
    task = tasks.SteeringTask("t", "towards kind", ["The day was", "My friend"], ["The food was", "Our trip"],
                              **TASK, pairs=pairs)  # fmt: skip
    search = tasks.SearchSpace([[0.5, 1.0], [0.25, 2.0]], [1.0, 2.0], 1, 1, fluency_tolerance=100.0)
    run = tasks.run_task(study, gpt2_random, gpt2_random, task, lambda f: f.assign(success=1.0), search,
                         objective="success", maximize=True, max_new_tokens=3, progress=False)  # fmt: skip
    tried = run.selection.table.set_index("method")
    assert (tried.kind == "meandiff").sum() == (tried.kind == "actadd").sum() == 2
    assert sorted(tried[tried.kind == "meandiff"].relative_norm.round(6)) == [1.0, 2.0]
    evaluated = run.completions
    assert evaluated.method.unique().tolist()[-2:] == ["mean difference", "mean difference at ActAdd's setting"]
    twin = evaluated[evaluated.method == "mean difference at ActAdd's setting"].iloc[0]
    chosen = evaluated[evaluated.method == "ActAdd"].iloc[0]
    assert (twin.layer, round(twin.relative_norm, 6)) == (chosen.layer, round(chosen.relative_norm, 6))
    compared = tasks.successor_comparisons(study, run, "success", claims="x.t")
    assert compared["meandiff"].value == 0.0 and study.verdict("x.t.better_vs_prompting") == "holds"
