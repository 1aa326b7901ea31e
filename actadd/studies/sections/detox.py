"""05 · Detoxification against baselines: each method's setting chosen on selection prompts, then
every method sampled on other prompts with the same seeds (:mod:`actadd.studies.protocol.tasks`),
each continuation's toxicity scored by alt-profanity-check (Detoxify where its weights load) and
by a second classifier, tox-block's BiLSTM.

The notebook's parameters are read through the study (``study["n_eval_prompts"]``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd.studies.data import toxicity_pairs, toxicity_prompts
from actadd.studies.evaluation import metrics
from actadd.studies.evaluation import toxicity as tox
from actadd.studies.evaluation.scorers import Scorer
from actadd.studies.evaluation.stats import Estimate, proportion_of
from actadd.studies.evaluation.text_gate import Validation, held_out
from actadd.studies.lifecycle.claims import Claim, below
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.formatting import Unit
from actadd.studies.presentation.prose import model_description, samples_each, source_shares
from actadd.studies.protocol import figures, judges
from actadd.studies.protocol.comparison import steerability
from actadd.studies.protocol.methods import KIND_LABELS, MEAN_DIFFERENCE, Grids, score_unique
from actadd.studies.protocol.selection import split_prompts
from actadd.studies.protocol.strength import Scale
from actadd.studies.protocol.tasks import (
    BETTER_STEERING,
    MEAN_DIFFERENCE_METRIC,
    MEAN_DIFFERENCE_PAPER,
    NOT_COMPARED,
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

# The two toxicity measures, by claim key: (name, unit, interval).
MEASURES: dict[str, tuple[str, Unit, str]] = {
    "max_toxicity": ("expected maximum toxicity", "number", "bootstrap over prompts"),
    "any_toxic": ("toxicity probability", "points", "Newcombe paired interval"),
}


def claims(p: Mapping[str, Any]) -> list[Claim]:
    margin, tolerance = p["margin"], p["fluency_tolerance"]
    paper = "ActAdd at or near the state of the art (later versions: LLaMA-3 and OPT on RealToxicityPrompts)"
    paired = "per prompt on the same seeds (evaluation stream), mean over prompts"
    out = []
    for key, (what, unit, interval) in MEASURES.items():
        out.append(Claim(f"05.{key}.unsteered", f"ActAdd lowers the {what} below the unsteered model's", paper,
                         f"ActAdd minus unsteered {what}, {paired}; {interval}", below(0.0), unit))  # fmt: skip
        out += [
            Claim(f"05.{key}.{baseline}", f"ActAdd's {what} is about {baseline}'s or lower (at most {margin:g} above)",
                  paper, f"ActAdd minus {baseline} {what}, {paired}; {interval}", below(margin), unit)
            for baseline in ("prompting", "PREADD")
        ]  # fmt: skip
    out += [
        Claim("05.max_toxicity.vs_meandiff", "ActAdd's expected maximum toxicity is about the mean-difference "
              f"vector's or lower (at most {margin:g} above), each at its own choice under the same text gate and "
              f"fluency rule", MEAN_DIFFERENCE_PAPER, f"ActAdd minus {MEAN_DIFFERENCE_METRIC}, expected maximum "
              f"toxicity, {paired}; bootstrap over prompts", below(margin), "number", arm="successors"),
        Claim("05.max_toxicity.better_vs_prompting", "The better steering method's expected maximum toxicity is about "
              f"prompting's or lower (at most {margin:g} above)", PROMPTING_PAPER,
              f"{BETTER_STEERING} prompts, minus prompting, expected maximum toxicity, {paired}; bootstrap over prompts",
              below(margin), "number", arm="successors"),
    ]  # fmt: skip
    out.append(
        Claim("05.fluency", f"ActAdd keeps fluency: judge perplexity within {tolerance:g} times the unsteered one",
              "similar fluency", "ActAdd over unsteered geometric-mean judge perplexity: exp of the mean per-prompt "
              "difference of mean log perplexity (evaluation stream); bootstrap over prompts", below(tolerance),
              "ratio")
    )  # fmt: skip
    return out


WITHDRAWN = {
    "05.max_toxicity.meandiff": (
        "it compared ActAdd with the mean-difference vector at ActAdd's layer and relative norm, which is not the "
        "same strength (each kind's relative norm divides by other texts' norm, and the mean difference is added at "
        "every position), and that arm was neither gated for text nor held to the fluency limit: text that is not "
        "text scored as non-toxic. Replaced by 05.max_toxicity.vs_meandiff, each method at its own choice under the "
        "same text gate and fluency rule"
    )
}

SECTION = Section(
    "05_detox",
    "Later versions (LLaMA-3, OPT) on RealToxicityPrompts, against PREADD, FUDGE, AirDecoding and SelfDebias: "
    "ActAdd state of the art or close at similar fluency. (Exact table values were not available to us.)",
    claims,
    WITHDRAWN,
)

FINDINGS = """Steered model: {model}. Prompts: {n_eval:int} evaluation prompts ({samples_each}, {tokens:int}
new tokens) and {n_select:int} selection prompts, built the way RealToxicityPrompts was built from {shares}; cleaning
URLs and reply handles out of the sentences changed {cleaned:pct} of the prompts. Toxicity by {scorer}; fluency judged
by another model, {judge}.
- **Chosen on the selection prompts**, each method by the same rule (text gate and fluency limit, then the lowest
  mean toxicity): {chosen}.
- **Expected maximum toxicity.** ActAdd {expected_max_toxicity_ActAdd:num} against
  {expected_max_toxicity_unsteered:num} unsteered, {expected_max_toxicity_prompting:num} with prompting and
  {expected_max_toxicity_PREADD:num} with PREADD. {max_sentence}.
- **Toxicity probability.** ActAdd {toxicity_probability_ActAdd:pct} of prompts with a sample at or above
  {threshold:num}, against {toxicity_probability_unsteered:pct} unsteered, {toxicity_probability_prompting:pct} with
  prompting and {toxicity_probability_PREADD:pct} with PREADD; {any_sentence}.
- **Fluency cost.** ActAdd's judge perplexity is {fluency:num} times the unsteered one ({perplexity_ActAdd:num} against
  {perplexity_unsteered:num}; the claim of similar fluency **{v_fluency:verdict}**); PREADD's is
  {perplexity_PREADD:num}.
- **The methods that followed.** ActAdd minus the mean-difference vector of contrast pairs, each at its own choice
  under the same rule, is {max_toxicity_vs_meandiff:num} in expected maximum toxicity (the claim that ActAdd is about
  as low or lower **{v_max_toxicity_vs_meandiff:verdict}**; the mean difference's {expected_max_toxicity_md:num}); the
  better steering method on the selection ({better}) minus prompting is {max_toxicity_better_vs_prompting:num}
  (**{v_max_toxicity_better_vs_prompting:verdict}**).
- **Only text counts.** A setting whose completions are not text cannot be chosen, and a continuation that is not
  text gets no toxicity (it is neither toxic nor a success): {text_ActAdd:pct} of ActAdd's evaluated continuations
  are text, {text_md:pct} of the mean difference's, {text_unsteered:pct} unsteered. The gate's accuracy on held-out
  labelled continuations is {gate_accuracy:pct} (sensitivity {gate_sensitivity:pct}, specificity
  {gate_specificity:pct}).
- **Per prompt.** ActAdd raises the maximum toxicity of {wrong_way_ActAdd:pct} of prompts against unsteered decoding
  (prompting {wrong_way_prompting:pct}, PREADD {wrong_way_PREADD:pct}).
- **A second classifier.** {second} (P(toxic) of a bidirectional LSTM trained on the Jigsaw toxic comments: another
  model than {scorer}'s, though both learned from Jigsaw data) labels the same way as {scorer} on {agreement:pct} of the {n_judged:int} evaluated continuations at 0.5 (Cohen's kappa
  {kappa:num}; Spearman {spearman:num}). Under it, ActAdd minus unsteered expected maximum toxicity is
  {second_unsteered:num}, minus prompting {second_prompting:num} and minus PREADD {second_PREADD:num}.
- **Where the substitutes change the comparison.** The model is {model}, not LLaMA-3 or OPT; the prompts are shorter and
  milder than RealToxicityPrompts' web text, so there is less toxicity for any method to remove; toxicity is
  {scorer}'s, not the Perspective API's; {n_samples:int} samples per prompt instead of 25 make expected maximum toxicity
  and toxicity probability lower for every method alike; FUDGE, AirDecoding and SelfDebias are not run.
"""


@dataclass(frozen=True)
class Toxicity:
    """The main toxicity scorer (a backend name) and the second classifier."""

    backend: str
    second: Scorer


def toxicity_scorers() -> Toxicity:
    backend, second = tox.toxicity_backend(), tox.toxblock_scorer()
    print(f"toxicity: {backend}; second signal: {second.name}")
    return Toxicity(backend, second)


@dataclass(frozen=True)
class Prompts:
    """The task (selection and evaluation prompts, pair, instructions, contrast pairs), the pool
    and the share of each source among the prompts."""

    task: SteeringTask
    pool: pd.DataFrame
    shares: pd.Series
    cleaned: Estimate  # the share of the prompts whose text cleaning changed (URLs, reply handles)


def prompts(study: Study) -> Prompts:
    """Sentences scored for toxicity and halved, as RealToxicityPrompts was built; contrast pairs
    of non-toxic and toxic sentences that are no prompt. Saved as ``prompts.csv``."""
    source, seed = study["data_source"], study["seed"]
    need = study["n_select_prompts"] + study["n_eval_prompts"]
    # A few more than needed, in case two sentences halve to the same prompt.
    pool = toxicity_prompts(source, n=need + max(2, need // 20), seed=seed).to_pandas()
    select_prompts, eval_prompts = split_prompts(
        pool.prompt.tolist(), study["n_select_prompts"], study["n_eval_prompts"]
    )
    task = SteeringTask("detox", "away from toxicity", select_prompts, eval_prompts, study["p_plus"], study["p_minus"],
                        instruction=study["polite_prefix"], preadd_prefix=study["toxic_prefix"],
                        pairs=toxicity_pairs(source, study["n_pairs"], seed, exclude=pool.prompt))  # fmt: skip
    table = study.table(prompts_table([task], pool), "prompts")
    shares, cleaned = table.source.value_counts(normalize=True), proportion_of(table.cleaned.to_numpy(dtype=bool))
    print("prompt sources:", shares.round(3).to_dict())
    return Prompts(task, pool, shares, cleaned)


def scored(scorers: Toxicity, threshold: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Adds the toxicity of each continuation alone, whether it reaches ``threshold``, and the
    second classifier's toxicity to a sample table (gated: it has ``is_text``). A continuation that
    is not text gets none (NaN): neither toxic nor a success."""

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        text = frame.is_text.to_numpy(dtype=bool)
        scores = np.where(
            text, score_unique(lambda texts: tox.toxicity(texts, scorers.backend), frame.completion), np.nan
        )
        second = np.where(text, score_unique(scorers.second.score, frame.completion), np.nan)
        toxic = np.where(text, (scores >= threshold).astype(float), np.nan)
        return frame.assign(toxicity=scores, toxic=toxic, second_signal=second)

    return score


def select_and_evaluate(
    study: Study, model: TransformersModel, judge: TransformersModel, steering: Prompts, scorers: Toxicity
) -> TaskRun:
    """The selection then the evaluation (:func:`~.tasks.run_task`); saves the selection
    (``selection.csv``, its figure) and the evaluation's completions."""
    grids = Grids(study["actadd_settings"], study["meandiff_settings"], study["preadd_strengths"])
    search = SearchSpace(grids, study["n_select_samples"], study["n_eval_samples"], study["fluency_tolerance"])
    with study.timed("vectors"):
        scale = Scale.measure(model)
    run = run_task(study, model, judge, steering.task, scored(scorers, study["toxic_threshold"]), search, scale,
                   objective="toxicity", maximize=False, max_new_tokens=study["max_new_tokens"],
                   batch_size=study["batch_size"])  # fmt: skip
    save_runs(study, [run], objective_label="mean toxicity", figure="05_detox_frontier")
    return run


def distinct_2(texts: Sequence[str]) -> float:
    """distinct-2 among one prompt's samples; NaN when they hold no bigram (all very short)."""
    return metrics.distinct_n(list(texts), 2) if any(len(t.split()) > 1 for t in texts) else np.nan


@dataclass(frozen=True)
class Comparison:
    """What the evaluation measured: every method's toxicity, fluency and diversity, ActAdd's
    paired differences under each measure (and under the second classifier), the comparisons with
    the methods that followed, per-input steerability and the two classifiers' agreement."""

    methods: pd.DataFrame
    differences: dict[str, dict[str, Estimate]]
    successors: dict[str, Estimate]
    difference_table: pd.DataFrame
    steered: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    judged: judges.JudgeReport
    gate: Validation


def comparison(study: Study, run: TaskRun, scorers: Toxicity) -> Comparison:
    """Every claim recorded from the evaluation. Saved as ``comparison.csv``,
    ``paired_differences.csv``, ``steerability.csv`` and ``toxicity_agreement.csv``."""
    completions = run.completions
    completions["log_perplexity"] = np.log(completions.perplexity)
    methods = study.table(method_summary([run], {
        "expected_max_toxicity": ("toxicity", "max"), "toxicity_probability": ("toxic", "max"),
        "second_signal_max": ("second_signal", "max"), "text": ("is_text", "mean"),
        "distinct_2": ("completion", distinct_2)},
        seed=study["seed"]), "comparison")  # fmt: skip
    differences = {key: compare(study, run, column, "max", claims=f"05.{key}")
                   for key, column in (("max_toxicity", "toxicity"), ("any_toxic", "toxic"))}  # fmt: skip
    differences["second_signal"] = compare(study, run, "second_signal", "max")
    successors = successor_comparisons(study, run, "toxicity", "max", claims="05.max_toxicity")
    fluency_ratio = compare(study, run, "log_perplexity", baselines=["unsteered"])["unsteered"].map(math.exp)
    study.record("05.fluency", fluency_ratio, note=run.selection.note("actadd"))
    labels = {"max_toxicity": "expected max. toxicity", "any_toxic": "toxicity probability",
              "second_signal": f"expected max. {scorers.second.name} toxicity"}  # fmt: skip
    twin = {"max_toxicity": {MEAN_DIFFERENCE: successors["vs_meandiff"]}}
    table = study.table(differences_table({labels[k]: d | twin.get(k, {}) for k, d in differences.items()}),
                        "paired_differences")  # fmt: skip
    steered = {"maximum toxicity": steerability(run.per_prompt("toxicity", "max"), higher_is_better=False)}
    study.table(steered["maximum toxicity"][1], "steerability")
    text = completions.dropna(subset=["toxicity", "second_signal"])
    judged = judges.JudgeReport.measure(scorers.backend, scorers.second.name, text.toxicity, text.second_signal)
    study.table(judged.table(), "toxicity_agreement")
    return Comparison(methods, differences, successors, table, steered, judged, held_out())


def comparison_figures(study: Study, scorers: Toxicity, result: Comparison) -> None:
    """Toxicity, toxicity probability and fluency per method, the paired differences, and per-input steerability."""
    fig, axes = plots.panels(2, nrows=2, title=f"Detoxification on {study['model_name']}: {study['n_eval_prompts']} "
                             f"evaluation prompts, {samples_each(study['n_eval_samples'])}", panel=(6.4, 4.6))  # fmt: skip
    for ax, metric, label, title in (
        (axes[0, 0], "expected_max_toxicity", f"expected maximum toxicity ({scorers.backend})",
         "Expected max. toxicity (bootstrap, 95% CI)"),
        (axes[0, 1], "toxicity_probability", "share of prompts with a toxic sample",
         "Toxicity probability (Wilson 95% CI)"),
        (axes[1, 0], "perplexity", f"judge perplexity ({study['judge_name']})",
         "Fluency, geometric mean (bootstrap, 95% CI)"),
    ):  # fmt: skip
        plots.methods(ax, result.methods, metric, label=label, title=title, horizontal=True)
    plots.paired_differences(axes[1, 1], result.difference_table, label="ActAdd minus baseline (negative: less toxic)",
                             title="Paired per prompt (95% CI)")  # fmt: skip
    study.figure(fig, "05_detox_comparison")
    study.figure(figures.steerability_figure(result.steered, label="per-prompt max. toxicity: unsteered minus method",
                                             title="Per-input steerability against unsteered decoding (Tan et al. "
                                             "2024): positive is less toxic"), "05_detox_steerability")  # fmt: skip


def samples(study: Study, run: TaskRun) -> pd.DataFrame:
    """The first ``n_shown_samples`` evaluation prompts, every method's first completion side by
    side (they can be offensive: these prompts invite toxic text). Saved as ``samples.csv``."""
    return study.table(samples_side_by_side([run], study["n_shown_samples"]), "samples")


def finish(study: Study, steering: Prompts, run: TaskRun, scorers: Toxicity, result: Comparison) -> StudyRecord:
    """The study's record (with who judged) and "What it shows"."""
    methods, gate = result.methods, result.gate
    record = study.finish({
        "figure": "05_detox_comparison", "judge": study["judge_name"],
        "prompt_sources": steering.shares.round(4).to_dict(), "prompts_cleaned": steering.cleaned.as_dict(),
        "chosen": run.selection.chosen_settings(),
        "expected_max_toxicity": {r.method: round(r.expected_max_toxicity, 3) for r in methods.itertuples()},
        "toxicity_probability": {r.method: round(r.toxicity_probability, 3) for r in methods.itertuples()},
        "text_gate": {name: getattr(gate, name).as_dict() for name in ("accuracy", "sensitivity", "specificity")},
    }, judged_by=result.judged.summary())  # fmt: skip
    values = method_values(methods, "expected_max_toxicity", "toxicity_probability", "perplexity", "text")
    values |= method_values(result.steered["maximum toxicity"][1], "wrong_way")
    missing = {f"{m}_{n}": NOT_COMPARED for m in ("expected_max_toxicity", "toxicity_probability", "perplexity",
                                                  "text", "wrong_way") for n in ("ActAdd", "PREADD", "md")}  # fmt: skip
    values = missing | {k.replace(f"_{MEAN_DIFFERENCE}", "_md"): v for k, v in values.items()}
    study.prose(FINDINGS, model=model_description(study["model_name"]), n_eval=study["n_eval_prompts"],
                n_samples=study["n_eval_samples"], samples_each=samples_each(study["n_eval_samples"]),
                tokens=study["max_new_tokens"], n_select=study["n_select_prompts"],
                shares=source_shares(steering.shares), cleaned=steering.cleaned, scorer=scorers.backend,
                judge=model_description(study["judge_name"]), chosen=run.selection.describe(),
                threshold=study["toxic_threshold"], second=scorers.second.name,
                **{f"second_{b}": e for b, e in result.differences["second_signal"].items()},
                max_sentence=comparison_sentence(study, "05.max_toxicity", result.differences["max_toxicity"], "num"),
                any_sentence=comparison_sentence(study, "05.any_toxic", result.differences["any_toxic"]),
                **values, **vars(result.judged.agreement), n_judged=result.judged.agreement.n,
                better=KIND_LABELS.get(run.selection.better_steering() or "", "neither was chosen"),
                gate_accuracy=gate.accuracy, gate_sensitivity=gate.sensitivity, gate_specificity=gate.specificity,
                **study.measured())  # fmt: skip
    return record
