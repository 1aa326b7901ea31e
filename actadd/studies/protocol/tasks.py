"""A comparison study's protocol, once for 04 and 05: for one steering task, choose each
method's setting on the selection prompts and seed stream, then sample the chosen methods and
the baselines on other prompts with the evaluation stream, every method on the same prompts
and seeds, each completion scored and its fluency judged by another model.

    task = SteeringTask("neg_to_pos", "negative→positive", select, evaluate, "Love", "Hate",
                        instruction=prefix, preadd_prefix=prefix)
    run = run_task(study, model, judge, task, score, search, objective="success", maximize=True)
    run.per_prompt("success")                  # one row per evaluation prompt, one column per method
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd.checks import integer, real
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.evaluation.text_gate import TextGate
from actadd.studies.lifecycle import streams
from actadd.studies.lifecycle.study import Study
from actadd.studies.presentation.prose import render
from actadd.studies.protocol import figures
from actadd.studies.protocol.comparison import (
    estimates_table,
    method_table,
    paired_differences,
    per_prompt,
    table_estimate,
)
from actadd.studies.protocol.methods import (
    BASELINES,
    MEAN_DIFFERENCE,
    TREATMENT,
    Grids,
    judge_perplexity,
    sample,
    search_space,
    text_check,
)
from actadd.studies.protocol.selection import Selection, select
from actadd.studies.protocol.strength import Scale

# What the field says of the methods that followed ActAdd, for the claims that put them beside it.
MEAN_DIFFERENCE_PAPER = "(not in the paper; Im & Li 2025: the mean of differences is the best linear direction)"
PROMPTING_PAPER = "(not in the paper; AxBench, Wu et al. 2025: prompting ahead of every steering method)"
MEAN_DIFFERENCE_METRIC = (
    "the mean difference of contrast pairs (mean over each text's tokens) added at every position, each method at "
    "its own choice under the same text gate and fluency rule"
)
BETTER_STEERING = "ActAdd or the mean difference, whichever did better on the selection"


@dataclass(frozen=True)
class SteeringTask:
    """One direction of a comparison study: its prompts (selection and evaluation share none),
    ActAdd's pair, the prompting baseline's instruction and PREADD's prefix (both end in a
    newline; PREADD's strength sign says towards or away from its prefix)."""

    key: str  # as in the claim ids: "neg_to_pos"
    label: str  # as in prose and figures: "negative→positive"
    select_prompts: Sequence[str]
    eval_prompts: Sequence[str]
    p_plus: str
    p_minus: str
    instruction: str
    preadd_prefix: str
    # Contrast pairs (towards, away) for the mean-difference method; None leaves it out.
    pairs: Sequence[tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        if shared := set(self.select_prompts) & set(self.eval_prompts):
            raise ValueError(f"task {self.key!r}: selection and evaluation share {len(shared)} prompts, e.g. "
                             f"{next(iter(shared))!r}; draw them with selection.split_prompts")  # fmt: skip


@dataclass(frozen=True)
class SearchSpace:
    """What a selection tries (:class:`~.methods.Grids`: each method's own grid, of one size), the
    samples per prompt, and the rule's fluency limit (a setting may cost at most
    ``fluency_tolerance`` times the unsteered selection perplexity) beside the text gate."""

    grids: Grids
    n_select_samples: int
    n_eval_samples: int
    fluency_tolerance: float
    # How many evaluation prompts the judge scores (None: all); the selection's are all judged.
    n_judged_prompts: int | None = None
    gate: TextGate = field(default_factory=TextGate)

    def __post_init__(self) -> None:
        integer(self.n_select_samples, "n_select_samples", minimum=1)
        integer(self.n_eval_samples, "n_eval_samples", minimum=1)
        real(self.fluency_tolerance, "fluency_tolerance (a multiple of the unsteered perplexity)", minimum=1)


@dataclass(frozen=True)
class TaskRun:
    """What :func:`run_task` measured: the selection (its table and choices), the selection
    sample, and the evaluation's completions, one row per (method, prompt, sample), scored and
    with the judge's ``perplexity`` on each prompt's first sample."""

    task: SteeringTask
    selection: Selection
    selection_frame: pd.DataFrame
    completions: pd.DataFrame

    def per_prompt(self, column: str, agg: str | Callable = "mean") -> pd.DataFrame:
        """``agg`` of ``column`` over each evaluation prompt's samples: one column per method."""
        return per_prompt(self.completions, column, agg)


def run_task(
    study: Study,
    model: TransformersModel,
    judge: TransformersModel,
    task: SteeringTask,
    score: Callable[[pd.DataFrame], pd.DataFrame],
    search: SearchSpace,
    scale: Scale,
    *,
    objective: str,
    maximize: bool,
    **sampling: Any,
) -> TaskRun:
    """Select on ``task``'s selection prompts, evaluate on its evaluation prompts.

    Every completion goes through the text gate first (``is_text``, :func:`~.methods.text_check`),
    then ``score`` adds the per-completion columns (``objective`` among them; a completion that is
    not text must never score as a success). Each method's setting is chosen by
    :func:`~actadd.studies.protocol.selection.select`; the evaluation compares unsteered, prompting
    and each kind's chosen setting. Strengths are in ``scale``'s unit (:mod:`.strength`).
    Time goes to the study's phases: generation, scoring, judging. ``sampling`` goes to
    :func:`actadd.generate` (``max_new_tokens``, ``batch_size``, ...), ``seed`` from the study.
    """
    seed = study["seed"]
    with study.timed("vectors"):
        candidates = search_space(model, task.p_plus, task.p_minus, task.preadd_prefix, search.grids, scale,
                                  task.pairs, task.instruction)  # fmt: skip

    def measured(
        prompts: Sequence[str], methods: list, n_samples: int, stream: int, judged: int | None
    ) -> pd.DataFrame:
        with study.timed("generation"):
            frame = sample(model, prompts, methods, n_samples, seed=seed, stream=stream, scale=scale, **sampling)
        with study.timed("scoring"):
            frame = score(text_check(frame, search.gate))
        with study.timed("judging"):
            frame["perplexity"] = judge_perplexity(judge, frame, first_sample_only=True, n_prompts=judged)
        return frame.assign(direction=task.label)

    chosen_on = measured(task.select_prompts, candidates, search.n_select_samples, streams.SELECT, None)
    selection = select(chosen_on, objective, maximize=maximize, fluency_tolerance=search.fluency_tolerance,
                       methods=candidates, seed=seed)  # fmt: skip
    print(f"{task.label}:\n{selection.report()}")
    evaluated = measured(task.eval_prompts, selection.evaluation_methods(task.instruction), search.n_eval_samples,
                         streams.CONFIRM, search.n_judged_prompts)  # fmt: skip
    return TaskRun(task, selection, chosen_on, evaluated)


def method_summary(
    runs: Sequence[TaskRun], metrics: Mapping[str, tuple[str, str | Callable]], *, seed: int
) -> pd.DataFrame:
    """Every method of every run with its metrics (:func:`~.comparison.method_table`), one block
    of rows per run, each row naming its ``direction``."""
    return pd.concat(
        [method_table(run.completions, metrics, seed=seed).assign(direction=run.task.label) for run in runs],
        ignore_index=True,
    )


def compare(
    study: Study, run: TaskRun, column: str, agg: str | Callable = "mean", *, claims: str | None = None,
    baselines: Sequence[str] = BASELINES, treatment: str = TREATMENT,
) -> dict[str, Estimate]:  # fmt: skip
    """``treatment`` minus each baseline on the per-prompt ``agg`` of ``column``
    (:func:`~.comparison.paired_differences`); a method the selection did not choose has no
    column, and its comparison is a NaN estimate (unresolved), never a number computed on another
    method. With ``claims`` (a claim id prefix such as ``"04.neg_to_pos"``), each difference is
    recorded as the claim ``<claims>.<baseline>``, with the selection's note when a method it
    rests on was not chosen."""
    table = run.per_prompt(column, agg)
    differences = {}
    for baseline in baselines:
        if {treatment, baseline} <= set(table.columns):
            differences[baseline] = paired_differences(table, treatment=treatment, baselines=[baseline],
                                                       seed=study["seed"])[baseline]  # fmt: skip
        else:
            differences[baseline] = NOT_COMPARED
    if claims is not None:
        for baseline, estimate in differences.items():
            study.record(f"{claims}.{baseline}", estimate, note=run.selection.comparison_note(baseline))
    return differences


# A comparison with a method the selection did not choose: no number, so the verdict is unresolved.
NOT_COMPARED = Estimate(float("nan"), float("nan"), float("nan"), 0, "not compared: a method was not chosen")


def successor_comparisons(
    study: Study, run: TaskRun, column: str, agg: str | Callable = "mean", *, claims: str
) -> dict[str, Estimate]:
    """The comparisons with the methods that followed ActAdd, recorded as claims: ActAdd minus the
    mean difference, each at its own choice under the same gate and fluency rule
    (``<claims>.vs_meandiff``), and the better steering method of the selection minus prompting
    (``<claims>.better_vs_prompting``), paired per prompt."""
    selection, better = run.selection, run.selection.better_steering()
    out = {"vs_meandiff": compare(study, run, column, agg, baselines=[MEAN_DIFFERENCE])[MEAN_DIFFERENCE]}
    treatment = {"actadd": TREATMENT, "meandiff": MEAN_DIFFERENCE}.get(better or "", TREATMENT)
    out["better_vs_prompting"] = (
        compare(study, run, column, agg, baselines=["prompting"], treatment=treatment)["prompting"]
        if better else NOT_COMPARED
    )  # fmt: skip
    searched = "meandiff" in selection.choices or "meandiff" in selection.unchosen
    no_pairs = "" if searched else "the task has no contrast pairs, so no mean difference was searched"
    study.record(f"{claims}.vs_meandiff", out["vs_meandiff"], note=selection.note("actadd", "meandiff") or no_pairs)
    study.record(f"{claims}.better_vs_prompting", out["better_vs_prompting"],
                 note=selection.note("actadd", "meandiff") if better is None else "")  # fmt: skip
    return out


def differences_table(differences: Mapping[str, Mapping[str, Estimate]]) -> pd.DataFrame:
    """Rows "ActAdd − <baseline>" with value, low, high, n, interval; one ``group`` per key of
    ``differences`` (a direction, or a measure)."""
    return pd.concat(
        [estimates_table({f"ActAdd − {b}": e for b, e in by_baseline.items()}, "comparison").assign(group=group)
         for group, by_baseline in differences.items()],
        ignore_index=True,
    )  # fmt: skip


def comparison_sentence(study: Study, claims: str, differences: Mapping[str, Estimate], unit: str = "pts") -> str:
    """ "ActAdd minus unsteered +5.1 points [...] (**holds**), minus prompting ... (**...**)": each
    difference with the verdict of its claim ``<claims>.<baseline>``, for a study's prose."""
    parts = [
        render(
            f"minus {baseline} {{d:{unit}}} (**{{v:verdict}}**)", d=estimate, v=study.verdict(f"{claims}.{baseline}")
        )
        for baseline, estimate in differences.items()
    ]
    return "ActAdd " + ", ".join(parts)


def prompts_table(tasks: Sequence[SteeringTask], pool: pd.DataFrame) -> pd.DataFrame:
    """Every prompt of every task with its direction and part (``select`` or ``eval``), and the
    pool's columns for it (its source and provenance)."""
    rows = pd.DataFrame(
        [(t.label, part, p) for t in tasks for part, ps in (("select", t.select_prompts), ("eval", t.eval_prompts))
         for p in ps],
        columns=["direction", "part", "prompt"],
    )  # fmt: skip
    return rows.merge(pool.drop_duplicates("prompt"), on="prompt", how="left")


def method_values(table: pd.DataFrame, *metrics: str) -> dict[str, Estimate]:
    """For prose: ``<metric>_<method>``, each method's estimate of each metric as ``table`` (a
    method table, or a steerability summary) shows it."""
    return {
        f"{metric}_{method}": table_estimate(table, method, metric) for metric in metrics for method in table["method"]
    }


def save_runs(study: Study, runs: Sequence[TaskRun], *, objective_label: str, figure: str) -> pd.DataFrame:
    """Save what the task runs measured: their selection samples and tables, the selection figure
    (``figure``), and the evaluation's completions (``completions.csv``); returns the
    selection table, one block of rows per task."""
    study.table(pd.concat([r.selection_frame for r in runs], ignore_index=True), "selection_completions")
    study.table(pd.concat([r.completions for r in runs], ignore_index=True), "completions")
    name = study["model_name"]
    study.figure(
        figures.frontier_figure(
            {r.task.label: r.selection for r in runs},
            objective_label=objective_label,
            title=f"Selection on {name}: each method's {objective_label} against its fluency over its grid (95% CIs of "
            "selection.csv)",
        ),
        figure,
    )
    return study.table(selection_table(runs), "selection")


def selection_table(runs: Iterable[TaskRun]) -> pd.DataFrame:
    """Every setting each run's selection tried, one block of rows per task (with its direction)."""
    return pd.concat([r.selection.table.assign(direction=r.task.label) for r in runs], ignore_index=True)


def samples_side_by_side(runs: Iterable[TaskRun], n_prompts: int) -> pd.DataFrame:
    """The first ``n_prompts`` evaluation prompts of each run, one row each (with its direction):
    the prompt, then every method's first completion in a column of its own."""
    frames = []
    for run in runs:
        first = run.completions[(run.completions.prompt_id < n_prompts) & (run.completions["sample"] == 0)]
        wide = first.pivot(index=["prompt_id", "prompt"], columns="method", values="completion")
        wide = wide[list(dict.fromkeys(first.method))].reset_index().drop(columns="prompt_id")
        frames.append(wide.assign(direction=run.task.label)[["direction", "prompt", *wide.columns[1:]]])
    return pd.concat(frames, ignore_index=True)
