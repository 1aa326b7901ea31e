"""The comparison studies' protocol end to end on a tiny random GPT-2: selection on its own prompts
and seeds, the chosen methods evaluated on others, every difference recorded as its claim."""

from __future__ import annotations

import pandas as pd
import pytest

from actadd.studies.harness import tasks
from actadd.studies.harness.claims import Claim, above
from actadd.studies.harness.study import Study

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
    assert set(study.phases) == {"generation", "scoring", "judging"}
    differences = tasks.compare(study, run, "success", claims="x.t")
    assert set(differences) == {"unsteered", "prompting", "PREADD"}
    assert study.estimate("x.t.unsteered") == differences["unsteered"]
    assert tasks.comparison_sentence(study, "x.t", differences).startswith("ActAdd minus unsteered ")
    table = tasks.save_runs(study, [run], objective_label="success", figure="selection")
    assert (tmp_path / "selection.png").is_file() and (tmp_path / "completions.csv").is_file()
    assert table.chosen.sum() == 2 and set(table.direction) == {"towards kind"}
    prompts = tasks.prompts_table([run.task], pd.DataFrame({"prompt": ["Our trip"], "source": ["s"]}))
    assert prompts.part.tolist() == ["select", "select", "eval", "eval"] and prompts.source.notna().sum() == 1
