"""The comparison harness of studies 04 and 05: methods as data, shared prompts and seeds,
disjoint selection and evaluation, equal budgets, the selection rule, paired differences,
per-input steerability; and smoke runs of the two notebooks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import actadd
from actadd.studies.evaluation import stats
from actadd.studies.lifecycle import streams
from actadd.studies.protocol import comparison, methods, selection

PROMPTS = ["The movie was", "I think that", "Yesterday", "My cat"]
PREFIX = "Be positive:\n"


@pytest.fixture
def fake_generate(monkeypatch):
    """methods.generate stand-in that records each call and writes a completion naming the
    text, the steering and the seed; PREADD's processor is a marker."""
    calls = []

    def generate(model, texts, *, row_vectors, seed, logits_processors, **kwargs):
        calls.append({"texts": list(texts), "rows": list(row_vectors), "seeds": list(seed),
                      "processors": list(logits_processors)})  # fmt: skip
        return [f"{t}|{v}|{s}" for t, v, s in zip(texts, row_vectors, seed)]

    monkeypatch.setattr(methods, "generate", generate)
    monkeypatch.setattr(methods, "PrefixContrast", lambda model, prefix, strength: ("preadd", prefix, strength))
    return calls


def _steered(name: str, layer: int = 3, coeff: float = 2.0, norm: float = 1.5) -> methods.Method:
    return methods.Method(name, "actadd", layer=layer, coeff=coeff, relative_norm=norm, steering=f"vector-{name}")


METHODS = [
    methods.unsteered(),
    methods.prompting(PREFIX),
    methods.preadd(PREFIX, 2.0),
    _steered("ActAdd A"),
    methods.preadd(PREFIX, 4.0),
]


def test_every_method_sees_the_same_prompts_and_seeds(fake_generate):
    frame = methods.sample("model", PROMPTS, METHODS, 3, seed=7, stream=streams.SELECT, progress=False)
    assert list(frame.columns) == methods.COLUMNS
    assert len(frame) == len(METHODS) * len(PROMPTS) * 3
    by_method = {name: rows.reset_index(drop=True) for name, rows in frame.groupby("method", sort=False)}
    reference = by_method["unsteered"][["prompt_id", "sample", "seed", "prompt"]]
    for rows in by_method.values():
        pd.testing.assert_frame_equal(rows[["prompt_id", "sample", "seed", "prompt"]], reference)
    # Sample s of prompt i has seed i * n_samples + s of the stream.
    assert reference["seed"].tolist() == actadd.row_seeds(7, len(PROMPTS) * 3, stream=streams.SELECT)
    # unsteered, prompting and ActAdd share one call; each PREADD strength has its own, with its processor.
    assert len(fake_generate) == 3
    shared = fake_generate[0]
    assert shared["processors"] == [] and shared["rows"].count("vector-ActAdd A") == len(PROMPTS) * 3
    assert [c["processors"] for c in fake_generate[1:]] == [[("preadd", PREFIX, 2.0)], [("preadd", PREFIX, 4.0)]]
    # Prompting's model sees the instruction; its table keeps the plain prompt.
    prompting = by_method["prompting"]
    assert all(c.startswith(PREFIX + p) for c, p in zip(prompting["completion"], prompting["prompt"]))
    steered = by_method["ActAdd A"].iloc[0]
    assert (steered["kind"], steered["layer"], steered["coeff"], steered["relative_norm"]) == ("actadd", 3, 2.0, 1.5)
    assert np.isnan(by_method["PREADD s = 2"]["layer"].astype(float)).all()
    assert (by_method["PREADD s = 2"]["strength"] == 2.0).all()


def test_selection_and_evaluation_share_no_prompt_and_no_seed(fake_generate):
    pool = [f"prompt {i}" for i in range(6)] + ["prompt 0", "prompt 1"]  # duplicates in the pool
    selection_prompts, eval_prompts = selection.split_prompts(pool, 3, 3)
    assert not set(selection_prompts) & set(eval_prompts) and len(set(eval_prompts)) == 3
    kwargs = dict(seed=0, progress=False)
    chosen = methods.sample("model", selection_prompts, METHODS[:2], 4, stream=streams.SELECT, **kwargs)
    evaluated = methods.sample("model", eval_prompts, METHODS[:2], 4, stream=streams.CONFIRM, **kwargs)
    assert not set(chosen["prompt"]) & set(evaluated["prompt"])
    assert not set(chosen["seed"]) & set(evaluated["seed"])
    with pytest.raises(ValueError, match="distinct prompts"):
        selection.split_prompts(pool, 4, 3)


def test_methods_are_checked_and_named_uniquely(fake_generate):
    with pytest.raises(ValueError, match="needs strength"):
        methods.Method("PREADD", "preadd", instruction=PREFIX)
    with pytest.raises(ValueError, match="takes no layer"):
        methods.Method("x", "unsteered", layer=3)
    with pytest.raises(ValueError, match="kind"):
        methods.Method("x", "steering")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        methods.preadd("Be kind: ", 1.0)
    with pytest.raises(ValueError, match="unique"):
        methods.sample("model", PROMPTS, [methods.unsteered(), methods.unsteered()], 1, seed=0, stream=1)


def test_search_budgets_are_equal(monkeypatch):
    made = []

    def steering_vector(model, p_plus, p_minus, *, layer, coeff, relative_norm):
        made.append((layer, relative_norm))
        return SimpleNamespace(layer=int(layer * 10), coeff=relative_norm / 2, relative_norm=relative_norm)

    monkeypatch.setattr(methods, "steering_vector", steering_vector)
    space = methods.search_space("model", "Love", "Hate", [[0.2, 4.0], [0.3, 8.0]], PREFIX, [1.0, 2.0])
    kinds = [m.kind for m in space]
    assert kinds == ["unsteered", "actadd", "actadd", "preadd", "preadd"]
    assert made == [(0.2, 4.0), (0.3, 8.0)]
    assert [(m.layer, m.coeff, m.relative_norm) for m in space if m.kind == "actadd"] == [
        (2, 2.0, 4.0),
        (3, 4.0, 8.0),
    ]
    with pytest.raises(ValueError, match="equal search budgets"):
        methods.search_space("model", "Love", "Hate", [[0.2, 4.0], [0.3, 8.0]], PREFIX, [1.0])


def _selection_frame(success: dict[str, list[float]], perplexity: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, values in success.items():
        kind = method.split()[0]
        for prompt_id, value in enumerate(values):
            rows.append({"method": method, "kind": kind, "layer": None, "coeff": None, "relative_norm": None,
                         "strength": None, "prompt_id": prompt_id, "sample": 0, "success": value,
                         "perplexity": perplexity[method] * (1.1 if prompt_id % 2 else 0.9)})  # fmt: skip
    return pd.DataFrame(rows)


SELECTION_METHODS = [
    methods.unsteered(),
    _steered("actadd weak"),
    _steered("actadd strong"),
    methods.preadd(PREFIX, 1.0, name="preadd mild"),
    methods.preadd(PREFIX, 3.0, name="preadd harsh"),
]
SUCCESS = {
    "unsteered": [0, 0, 1, 0, 0, 1],
    "actadd weak": [1, 0, 1, 0, 0, 1],
    "actadd strong": [1, 1, 1, 1, 0, 1],
    "preadd mild": [0, 1, 1, 0, 0, 1],
    "preadd harsh": [1, 1, 1, 1, 1, 1],
}


def test_selection_takes_the_best_setting_within_the_fluency_limit():
    perplexity = {"unsteered": 10.0, "actadd weak": 12.0, "actadd strong": 14.0, "preadd mild": 11.0,
                  "preadd harsh": 30.0}  # fmt: skip
    chosen = selection.select(_selection_frame(SUCCESS, perplexity), "success", maximize=True,
                               fluency_tolerance=1.5, methods=SELECTION_METHODS)  # fmt: skip
    assert chosen.fluency_limit == pytest.approx(1.5 * chosen.table.set_index("method").loc["unsteered", "perplexity"])
    actadd_choice, preadd_choice = chosen.choices["actadd"], chosen.choices["preadd"]
    assert actadd_choice.method.name == "actadd strong" and actadd_choice.within_limit
    assert preadd_choice.method.name == "preadd mild" and preadd_choice.within_limit  # harsh is too disfluent
    assert actadd_choice.note == "" and chosen.note("actadd", "preadd") == ""
    assert chosen.table["chosen"].sum() == 2
    names = [m.name for m in chosen.evaluation_methods(PREFIX)]
    assert names == ["unsteered", "prompting", "PREADD", "ActAdd"]
    assert chosen.evaluation_methods(PREFIX)[3].steering == "vector-actadd strong"


def test_no_setting_within_the_limit_takes_the_most_fluent_and_says_so():
    perplexity = {"unsteered": 10.0, "actadd weak": 20.0, "actadd strong": 40.0, "preadd mild": 12.0,
                  "preadd harsh": 30.0}  # fmt: skip
    chosen = selection.select(_selection_frame(SUCCESS, perplexity), "success", maximize=True,
                               fluency_tolerance=1.5, methods=SELECTION_METHODS)  # fmt: skip
    choice = chosen.choices["actadd"]
    assert choice.method.name == "actadd weak" and not choice.within_limit
    assert "made outside the fluency limit" in choice.note
    assert "made outside the fluency limit" in chosen.report()
    assert chosen.choices["preadd"].within_limit
    assert chosen.note("preadd") == "" and "outside" in chosen.note("actadd", "preadd")


def test_selection_minimises_when_asked():
    perplexity = dict.fromkeys(SUCCESS, 10.0)
    chosen = selection.select(_selection_frame(SUCCESS, perplexity), "success", maximize=False,
                               fluency_tolerance=1.5, methods=SELECTION_METHODS)  # fmt: skip
    assert chosen.choices["actadd"].method.name == "actadd weak"
    with pytest.raises(ValueError, match="fluency_tolerance"):
        selection.select(_selection_frame(SUCCESS, perplexity), "success", maximize=True, fluency_tolerance=0.5,
                       methods=SELECTION_METHODS)  # fmt: skip


def _evaluation(values: dict[str, list[list[float]]]) -> pd.DataFrame:
    """A tidy table: values[method][prompt][sample]."""
    return pd.DataFrame(
        [{"method": m, "kind": "x", "prompt_id": p, "sample": s, "success": v}
         for m, prompts in values.items() for p, samples in enumerate(prompts) for s, v in enumerate(samples)]
    )  # fmt: skip


def test_paired_differences_match_a_hand_computation():
    frame = _evaluation({
        "unsteered": [[0, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 0]],
        "ActAdd": [[1, 1, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1]],
        "prompting": [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
    })  # fmt: skip
    table = comparison.per_prompt(frame, "success")
    assert list(table.columns) == ["unsteered", "ActAdd", "prompting"]
    diffs = comparison.paired_differences(table, baselines=["unsteered", "prompting"], seed=3)
    # per prompt ActAdd - unsteered: 2/3, 1/3, -1/3, 2/3 -> mean 1/3, over 4 prompts, not 12 rows
    assert diffs["unsteered"].value == pytest.approx(1 / 3) and diffs["unsteered"].n == 4
    reference = stats.paired_difference([1, 1 / 3, 1 / 3, 1], [1 / 3, 0, 2 / 3, 1 / 3], seed=3)
    assert (diffs["unsteered"].low, diffs["unsteered"].high) == pytest.approx((reference.low, reference.high))
    assert diffs["prompting"].value == pytest.approx(np.mean([1, 1 / 3, 1 / 3, 1]) - 1)
    with pytest.raises(ValueError, match="PREADD"):
        comparison.paired_differences(table)


def test_a_per_prompt_share_uses_newcombes_paired_interval():
    """Any toxic sample per prompt is 0/1: a bootstrap would collapse to [0, 0] when all pairs agree."""
    table = pd.DataFrame({"unsteered": [0.0] * 20, "ActAdd": [0.0] * 20})
    diff = comparison.paired_differences(table, baselines=["unsteered"])["unsteered"]
    reference = stats.paired_proportion_difference(np.zeros(20, bool), np.zeros(20, bool))
    assert (diff.value, diff.low, diff.high) == (reference.value, reference.low, reference.high)
    assert diff.low < 0 < diff.high


def test_two_sets_of_prompts_compare_without_collapsing_to_a_point():
    """Every prompt of one direction succeeds and none of the other: not [+100, +100] points."""
    diff = comparison.independent_difference(np.ones(6), np.zeros(6))
    assert diff.value == 1 and diff.low < 0.8 and diff.high == 1
    mixed = comparison.independent_difference(np.array([1, 2 / 3, 1, 1 / 3]), np.array([0, 1 / 3, 0, 0, 2 / 3]), seed=3)
    reference = stats.bootstrap_difference([1, 2 / 3, 1, 1 / 3], [0, 1 / 3, 0, 0, 2 / 3], stat=np.mean, seed=3)
    assert (mixed.value, mixed.low, mixed.high) == (reference.value, reference.low, reference.high)


def test_steerability_counts_prompts_moved_the_wrong_way():
    table = pd.DataFrame({"unsteered": [0.2, 0.5, 0.1, 0.4, 0.3], "ActAdd": [0.1, 0.5, 0.3, 0.1, 0.2]})
    changes, summary = comparison.steerability(table, higher_is_better=False)  # lower is better: toxicity
    assert changes["change"].tolist() == pytest.approx([0.1, 0.0, -0.2, 0.3, 0.1])
    row = summary.set_index("method").loc["ActAdd"]
    assert (row["wrong_way"], row["right_way"], row["unchanged"]) == pytest.approx((0.2, 0.6, 0.2))
    assert (row["wrong_way_low"], row["wrong_way_high"]) == pytest.approx(
        (stats.proportion(1, 5).low, stats.proportion(1, 5).high)
    )


def test_method_table_and_its_estimates_agree():
    frame = _evaluation({"unsteered": [[0, 1], [0, 0], [1, 1]], "ActAdd": [[1, 1], [0, 1], [1, 0]]})
    frame["perplexity"] = [10.0, 20.0, 40.0, np.nan, 5.0, 5.0] * 2
    table = comparison.method_table(frame, {"success": ("success", "mean")})
    assert table["method"].tolist() == ["unsteered", "ActAdd"]
    row = table.set_index("method").loc["unsteered"]
    assert row["success"] == pytest.approx(0.5) and row["n_judged"] == 5
    assert row["perplexity"] == pytest.approx(np.exp(np.mean(np.log([10, 20, 40, 5, 5]))))
    estimate = comparison.table_estimate(table, "ActAdd", "success")
    assert (estimate.value, estimate.low, estimate.high) == tuple(
        table.iloc[1][["success", "success_low", "success_high"]]
    )


def test_judge_perplexity_scores_first_samples_once_each(monkeypatch):
    scored = []

    def continuation_perplexity(judge, prompts, continuations, *, batch_size):
        scored.extend(zip(prompts, continuations))
        return np.array([float(len(c)) for c in continuations])

    monkeypatch.setattr(methods, "continuation_perplexity", continuation_perplexity)
    frame = pd.DataFrame({"prompt": ["a", "a", "b", "b", "a"], "sample": [0, 1, 0, 1, 0],
                          "completion": ["xy", "xyz", "x", "x", "xy"]})  # fmt: skip
    first = methods.judge_perplexity("judge", frame, first_sample_only=True)
    np.testing.assert_array_equal(first, [2.0, np.nan, 1.0, np.nan, 2.0])
    assert scored == [("a", "xy"), ("b", "x")]  # the repeated (prompt, completion) scored once
    np.testing.assert_array_equal(methods.judge_perplexity("judge", frame), [2.0, 3.0, 1.0, 1.0, 2.0])


def test_sample_batched_equals_each_method_alone(smol):
    """The shared batch gives each method the completions it gets alone with the same seeds."""
    steered = methods.actadd(smol, "Love", "Hate", layer=0.2, relative_norm=4.0)
    candidates = [methods.unsteered(), methods.prompting(PREFIX), steered, methods.preadd(PREFIX, 2.0)]
    kwargs = dict(max_new_tokens=6, progress=False)
    frame = methods.sample(smol, PROMPTS[:2], candidates, 2, seed=1, stream=streams.CONFIRM, **kwargs)
    seeds = frame[frame["method"] == "unsteered"]["seed"].tolist()
    prompts = frame[frame["method"] == "unsteered"]["prompt"].tolist()
    alone = {
        "unsteered": actadd.generate(smol, prompts, seed=seeds, pad_prompts=True, **kwargs),
        steered.name: actadd.generate(smol, prompts, steered.steering, seed=seeds, pad_prompts=True, **kwargs),
        "prompting": actadd.generate(smol, [PREFIX + p for p in prompts], seed=seeds, pad_prompts=True, **kwargs),
    }
    for name, texts in alone.items():
        assert frame[frame["method"] == name]["completion"].tolist() == texts
    assert steered.relative_norm == pytest.approx(4.0, rel=1e-4) and steered.layer == round(0.2 * 30)
