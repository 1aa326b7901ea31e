"""04 · Sentiment steering against baselines: for each direction (negative→positive,
positive→negative), each method's setting chosen on selection prompts, then every method sampled
on other prompts with the same seeds (:mod:`actadd.studies.protocol.tasks`), success judged by the
scorer a fixed rule picks (:mod:`actadd.studies.protocol.judges`).

The notebook's parameters are read through the study (``study["n_eval_prompts"]``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd.studies.data import sentiment_prompts
from actadd.studies.evaluation.scorers import Scorer, relevance
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle.claims import Claim, above
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import model_description, render, source_shares
from actadd.studies.protocol import figures, judges
from actadd.studies.protocol.comparison import independent_difference, steerability
from actadd.studies.protocol.methods import MEAN_DIFFERENCE_AT_ACTADD, score_unique
from actadd.studies.protocol.selection import split_prompts
from actadd.studies.protocol.tasks import (
    BETTER_STEERING,
    MEAN_DIFFERENCE_METRIC,
    MEAN_DIFFERENCE_PAPER,
    PROMPTING_PAPER,
    SearchSpace,
    SteeringTask,
    TaskRun,
    compare,
    comparison_sentence,
    differences_table,
    method_summary,
    method_values,
    prompts_table,
    run_task,
    samples_side_by_side,
    save_runs,
    successor_comparisons,
)

# The two directions, by claim key: (label, the prompts' label, the target's label id).
DIRECTIONS = {"neg_to_pos": ("negative→positive", "negative", 1), "pos_to_neg": ("positive→negative", "positive", 0)}


def claims(p: Mapping[str, Any]) -> list[Claim]:
    margin = p["margin"]
    paper = "ActAdd at or near the state of the art (later versions: LLaMA-3 and OPT on IMDb)"
    paired = "per prompt on the same seeds (evaluation stream), mean over prompts; bootstrap over prompts"
    out = []
    for key, (d, _, _) in DIRECTIONS.items():
        out.append(Claim(f"04.{key}.unsteered", f"{d}: ActAdd succeeds more often than the unsteered model", paper,
                         f"ActAdd minus unsteered success, {paired}", above(0.0), "points"))  # fmt: skip
        out += [
            Claim(f"04.{key}.{baseline}", f"{d}: ActAdd succeeds about as often as {baseline} or more "
                  f"(at most {100 * margin:g} points less)", paper, f"ActAdd minus {baseline} success, {paired}",
                  above(-margin), "points")
            for baseline in ("prompting", "PREADD")
        ]  # fmt: skip
    for key, (d, _, _) in DIRECTIONS.items():
        out += [
            Claim(f"04.{key}.meandiff", f"{d}: at ActAdd's layer and relative norm, ActAdd succeeds about as often as "
                  f"the mean-difference vector or more (at most {100 * margin:g} points less)", MEAN_DIFFERENCE_PAPER,
                  f"ActAdd minus {MEAN_DIFFERENCE_METRIC} at ActAdd's chosen layer and relative norm, success, "
                  f"{paired}", above(-margin), "points", arm="successors"),
            Claim(f"04.{key}.better_vs_prompting", f"{d}: the better steering method succeeds about as often as "
                  f"prompting or more (at most {100 * margin:g} points less)", PROMPTING_PAPER,
                  f"{BETTER_STEERING} prompts, minus prompting, success, {paired}", above(-margin), "points",
                  arm="successors"),
        ]  # fmt: skip
    out.append(
        Claim("04.asymmetry", "Negative-to-positive steering succeeds more often than positive-to-negative",
              "negative-to-positive easier", "ActAdd success negative→positive minus positive→negative (different "
              "prompts); bootstrap over each direction's prompts (Newcombe when every prompt is 0/1)", above(0.0),
              "points")
    )  # fmt: skip
    return out


SECTION = Section(
    "04_sentiment",
    "Later versions (LLaMA-3, OPT) on IMDb reviews cut to 32 tokens: negative-to-positive succeeds more often than "
    "positive-to-negative; ActAdd state of the art or close at similar fluency. (Exact table values were not "
    "available to us.)",
    claims,
)

# One line per direction (values by method: tasks.method_values).
DIRECTION_FINDINGS = """- **{task}.** Chosen on the selection prompts: {chosen}. On the evaluation prompts ActAdd
succeeds on {success_ActAdd:pct} of continuations, against {success_unsteered:pct} unsteered, {success_prompting:pct}
with prompting and {success_PREADD:pct} with PREADD. {sentence}. Prompts moved the wrong way against unsteered:
{wrong_way_ActAdd:pct} with ActAdd, {wrong_way_prompting:pct} with prompting, {wrong_way_PREADD:pct} with PREADD. Judge
perplexity: {perplexity_ActAdd:num} with ActAdd against {perplexity_unsteered:num} unsteered. Beside the methods that
followed: the mean-difference vector at ActAdd's layer and relative norm succeeds on {md_success:pct}, and ActAdd
minus it is {meandiff:pts} (**{v_meandiff:verdict}**); the better steering method on
the selection ({better}) minus prompting is {better_vs_prompting:pts} (**{v_better_vs_prompting:verdict}**)."""

FINDINGS = """Steered model: {model}. Prompts: {n_eval:int} evaluation prompts per direction ({n_samples:int} samples
each, {tokens:int} new tokens) and {n_select:int} selection prompts per direction; of all of them {shares}. Fluency
judged by another model, {judge}.
- **The sentiment scorer.** By the rule ({rule}), success is judged by {scorer}: {accuracy_tweets:pct} accuracy on
  {n_tweets:int} held-out tweets and {accuracy_pang_lee:pct} on {n_pang_lee:int} Pang-Lee sentences. The runner-up,
  {second} ({accuracy_second:pct} on the tweets), labels the same way on {agreement:pct} of the {n_judged:int} evaluated
  continuations (Cohen's kappa {kappa:num}; Spearman {spearman:num}): a verdict that turns on a few points of success
  can turn on the scorer.
{directions}
- **Asymmetry.** ActAdd's negative→positive success minus its positive→negative success: {asymmetry:pts}; the
  paper's claim that negative-to-positive is easier **{v_asymmetry:verdict}**.
- **Where the substitutes change the comparison.** The model is {model}, not LLaMA-3 or OPT; the prompts are mostly
  short informal tweets rather than IMDb reviews, so 32 tokens is often the whole text; success is judged by {scorer},
  not by the paper's scorer; the prompting and PREADD instructions are this study's own wording.
"""


@dataclass(frozen=True)
class Scorers:
    """The candidate scorers' accuracy table (ranked by the rule), the scorer that judges and the
    runner-up, the second opinion."""

    accuracy: pd.DataFrame
    scorer: Scorer
    second: Scorer


def choose_scorer(study: Study, judge: TransformersModel) -> Scorers:
    """Every candidate's accuracy on held-out tweets and Pang-Lee sentences, ranked by the rule
    fixed before the run. Saved as ``scorer_accuracy.csv``."""
    with study.timed("judging"):
        accuracy, candidates = judges.sentiment_accuracy_table(judge, per_class=study["scorer_per_class"],
                                                               train_per_class=study["scorer_train_per_class"])  # fmt: skip
    scorer, second = (candidates[name] for name in accuracy["scorer"][:2])
    print(f"rule: {judges.CHOICE_RULE}; success judged by {scorer.name}, second opinion {second.name}")
    return Scorers(study.table(accuracy, "scorer_accuracy"), scorer, second)


@dataclass(frozen=True)
class Tasks:
    """Each direction's task (its selection and evaluation prompts, pair, instructions, contrast
    pairs), the pool they come from and the share of each source among the prompts."""

    tasks: dict[str, SteeringTask]
    pool: pd.DataFrame
    shares: pd.Series


def tasks(study: Study, model: TransformersModel) -> Tasks:
    """Prompts of each label cut to ``prompt_tokens`` (the scorers' held-out and training tweets
    never become prompts); the pool's last texts of each label are the mean difference's contrast
    pairs, prompts come from its first. Saved as ``prompts.csv``."""
    source, n_pairs = study["data_source"], study["n_pairs"]
    pool = sentiment_prompts(source, seed=study["seed"], prompt_tokens=study["prompt_tokens"], tokenizer=model.tokenizer,
                             exclude=judges.scorer_tweets() if source == "offline" else set()).to_pandas()  # fmt: skip
    tail = {label: pool.loc[pool.label == label, "prompt"].drop_duplicates().tolist()[-n_pairs:]
            for label in ("positive", "negative")}  # fmt: skip
    out = {}
    for key, (direction, label, target) in DIRECTIONS.items():
        select_prompts, eval_prompts = split_prompts(pool.loc[pool.label == label, "prompt"].tolist(),
                                                     study["n_select_prompts"], study["n_eval_prompts"])  # fmt: skip
        prefix = study["positive_prefix"] if target else study["negative_prefix"]
        pair = (study["p_plus"], study["p_minus"]) if target else (study["p_minus"], study["p_plus"])
        pairs = list(zip(tail["positive"], tail["negative"]) if target else zip(tail["negative"], tail["positive"]))
        out[key] = SteeringTask(key, direction, select_prompts, eval_prompts, *pair, instruction=prefix,
                                preadd_prefix=prefix, pairs=pairs)  # fmt: skip
    shares = study.table(prompts_table(list(out.values()), pool), "prompts").source.value_counts(normalize=True)
    print("prompt sources:", shares.round(3).to_dict(), "\nexample:", out["neg_to_pos"].eval_prompts[0])
    return Tasks(out, pool, shares)


def scored(scorer: Scorer, target: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Adds P(positive) by ``scorer``, success (the continuation alone on the ``target`` side) and
    relevance to a sample table."""

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        positive = score_unique(scorer.score, frame.completion)
        return frame.assign(p_positive=positive, success=((positive >= 0.5) == bool(target)).astype(float),
                            relevance=relevance(frame.prompt.tolist(), frame.completion.tolist()))  # fmt: skip

    return score


def select_and_evaluate(
    study: Study, model: TransformersModel, judge: TransformersModel, steering: Tasks, scorers: Scorers
) -> dict[str, TaskRun]:
    """Each direction's selection then evaluation (:func:`~.tasks.run_task`); saves the
    selection (``selection.csv``, its figure) and the evaluation's completions."""
    search = SearchSpace(study["actadd_settings"], study["preadd_strengths"], study["n_select_samples"],
                         study["n_eval_samples"], study["fluency_tolerance"], study["n_judged_prompts"])  # fmt: skip
    runs = {key: run_task(study, model, judge, task, scored(scorers.scorer, DIRECTIONS[key][2]), search,
                          objective="success", maximize=True, max_new_tokens=study["max_new_tokens"],
                          batch_size=study["batch_size"]) for key, task in steering.tasks.items()}  # fmt: skip
    save_runs(study, list(runs.values()), objective_label="success", figure="04_sentiment_selection")
    return runs


@dataclass(frozen=True)
class Comparison:
    """What the evaluation measured: every method's success and fluency per direction, ActAdd's
    paired differences, the comparisons with the methods that followed, per-input steerability,
    and who judged (with the second opinion's agreement)."""

    methods: pd.DataFrame
    differences: dict[str, dict[str, Estimate]]
    successors: dict[str, dict[str, Estimate]]
    difference_table: pd.DataFrame
    steered: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    judged: judges.JudgeReport


def comparison(study: Study, runs: dict[str, TaskRun], scorers: Scorers) -> Comparison:
    """Every claim recorded from the evaluation. Saved as ``comparison.csv``,
    ``paired_differences.csv``, ``steerability.csv`` and ``scorer_agreement.csv``."""
    seed = study["seed"]
    completions = pd.concat([r.completions for r in runs.values()], ignore_index=True)
    methods = study.table(method_summary(list(runs.values()), {"success": ("success", "mean"),
                                                               "relevance": ("relevance", "mean")}, seed=seed),
                          "comparison")  # fmt: skip
    differences = {key: compare(study, run, "success", claims=f"04.{key}") for key, run in runs.items()}
    successors = {key: successor_comparisons(study, run, "success", claims=f"04.{key}") for key, run in runs.items()}
    success = {key: run.per_prompt("success")["ActAdd"] for key, run in runs.items()}
    study.record(
        "04.asymmetry",
        independent_difference(success["neg_to_pos"], success["pos_to_neg"], seed=seed),
        note=runs["neg_to_pos"].selection.note("actadd") or runs["pos_to_neg"].selection.note("actadd"),
    )
    table = study.table(differences_table({runs[k].task.label: {**d, MEAN_DIFFERENCE_AT_ACTADD: successors[k]["meandiff"]}
                                           for k, d in differences.items()}), "paired_differences")  # fmt: skip
    steered = {run.task.label: steerability(run.per_prompt("success")) for run in runs.values()}
    study.table(pd.concat([s.assign(direction=d) for d, (_, s) in steered.items()], ignore_index=True), "steerability")
    # The second opinion on the same continuations: how far the verdicts depend on the scorer.
    with study.timed("scoring"):
        second_scores = score_unique(scorers.second.score, completions.completion)
    judged = judges.JudgeReport.measure(scorers.scorer.name, scorers.second.name, completions.p_positive,
                                        second_scores, scorers.accuracy)  # fmt: skip
    study.table(judged.table(), "scorer_agreement")
    return Comparison(methods, differences, successors, table, steered, judged)


def comparison_figures(study: Study, scorers: Scorers, result: Comparison) -> None:
    """Success and fluency per method and direction, the paired differences, and per-input steerability."""
    n = study["n_eval_samples"]
    fig, axes = plots.panels(3, title=f"Sentiment steering on {study['model_name']}: {study['n_eval_prompts']} "
                             f"evaluation prompts per direction, {n} sample{'s' * (n != 1)} each; success by "
                             f"{scorers.scorer.name}", panel=(6.2, 5.2))  # fmt: skip
    plots.methods(axes[0, 0], result.methods, "success", label="share of continuations on the target side",
                  title="Success (bootstrap over prompts, 95% CI)", horizontal=True)  # fmt: skip
    plots.methods(axes[0, 1], result.methods, "perplexity", label=f"judge perplexity ({study['judge_name']})",
                  title=f"Fluency on the first {study['n_judged_prompts']} prompts (bootstrap, 95% CI)",
                  horizontal=True)  # fmt: skip
    plots.paired_differences(axes[0, 2], result.difference_table, label="ActAdd minus baseline (percentage points)",
                             title="Success, paired per prompt (95% CI)", scale=100)  # fmt: skip
    study.figure(fig, "04_sentiment_comparison")
    study.figure(figures.steerability_figure(result.steered, label="per-prompt success minus unsteered",
                                             title="Per-input steerability against unsteered decoding "
                                             "(Tan et al. 2024)"), "04_sentiment_steerability")  # fmt: skip


def samples(study: Study, runs: dict[str, TaskRun]) -> pd.DataFrame:
    """The first ``n_shown_samples`` evaluation prompts of each direction, every method's first
    completion side by side. Saved as ``samples.csv``."""
    return study.table(samples_side_by_side(runs.values(), study["n_shown_samples"]), "samples")


def finish(
    study: Study, steering: Tasks, runs: dict[str, TaskRun], scorers: Scorers, result: Comparison
) -> StudyRecord:
    """The study's record (with who judged) and "What it shows"."""
    methods = result.methods
    record = study.finish({
        "figure": "04_sentiment_comparison", "scorer_rule": judges.CHOICE_RULE,
        "prompt_sources": steering.shares.round(4).to_dict(),
        "chosen": {r.task.label: r.selection.chosen_settings() for r in runs.values()},
        "success": {f"{r.direction} / {r.method}": round(r.success, 3) for r in methods.itertuples()},
    }, judged_by=result.judged.summary())  # fmt: skip

    def direction(key: str) -> str:
        run, rows, successors = runs[key], methods[methods.direction == runs[key].task.label], result.successors[key]
        return render(DIRECTION_FINDINGS, task=run.task.label, chosen=run.selection.describe(),
                      sentence=comparison_sentence(study, f"04.{key}", result.differences[key]),
                      better=run.selection.better_steering(), **successors,
                      md_success=method_values(rows, "success")[f"success_{MEAN_DIFFERENCE_AT_ACTADD}"],
                      **{f"v_{k}": study.verdict(f"04.{key}.{k}") for k in successors},
                      **method_values(rows, "success", "perplexity"),
                      **method_values(result.steered[run.task.label][1], "wrong_way"))  # fmt: skip

    accuracy, scorer, second = scorers.accuracy, scorers.scorer.name, scorers.second.name
    accuracy_of = {data: judges.accuracy_estimate(accuracy, scorer, data) for data in ("tweets", "pang_lee")}
    study.prose(FINDINGS, model=model_description(study["model_name"]), n_eval=study["n_eval_prompts"],
                n_samples=study["n_eval_samples"], tokens=study["max_new_tokens"], n_select=study["n_select_prompts"],
                shares=source_shares(steering.shares), judge=model_description(study["judge_name"]),
                rule=judges.CHOICE_RULE, scorer=scorer, second=second,
                **{f"accuracy_{data}": e for data, e in accuracy_of.items()},
                **{f"n_{data}": e.n for data, e in accuracy_of.items()},
                accuracy_second=judges.accuracy_estimate(accuracy, second), **vars(result.judged.agreement),
                n_judged=result.judged.agreement.n, directions="\n".join(direction(key) for key in runs),
                **study.measured())  # fmt: skip
    return record
