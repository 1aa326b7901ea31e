"""The comparison harness of studies 04 and 05: methods as data, shared prompts and seeds, every
row padded alike, disjoint selection and evaluation, equal budgets on each method's own grid at
strengths in one unit, what each vector adds to a completion, the text gate's verdicts per row,
the selection rule, paired differences, per-input steerability."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import actadd
from actadd.studies.evaluation import stats
from actadd.studies.lifecycle import streams
from actadd.studies.protocol import comparison, methods, selection
from actadd.studies.protocol.baselines import PrefixContrast
from actadd.studies.protocol.methods import Grids
from actadd.studies.protocol.strength import Scale
from actadd.vectors import MeanOfPairs

PROMPTS = ["The movie was", "I think that", "Yesterday", "My cat"]
PREFIX = "Be positive:\n"
PAIRS = [(" what a lovely day", " what an awful day"), (" so happy", " so sad")]


def _words(text: str) -> list[str]:
    """The stand-in tokenizer: one token per word."""
    return text.split()


@pytest.fixture
def fake_generate(monkeypatch):
    """methods.generate stand-in that records each call and writes a completion naming the
    text, the steering and the seed; PREADD's processor is a marker; a token is a word, after
    the start token."""
    calls = []

    def generate(model, texts, *, row_vectors, seed, logits_processors, pad_prompts, positions, **kwargs):
        calls.append({"texts": list(texts), "rows": list(row_vectors), "seeds": list(seed), "positions": positions,
                      "processors": list(logits_processors), "pad_prompts": pad_prompts})  # fmt: skip
        return [f"{t}|{v}|{s}" for t, v, s in zip(texts, row_vectors, seed)]

    monkeypatch.setattr(methods, "generate", generate)
    monkeypatch.setattr(methods, "encode", lambda model, text: ["<start>", *_words(text)])
    monkeypatch.setattr(methods, "PrefixContrast", lambda model, prefix, strength: ("preadd", prefix, strength))
    return calls


def _steered(name: str, layer: int = 3, coeff: float = 2.0, norm: float = 1.5) -> methods.Method:
    return methods.Method(name, "actadd", layer=layer, coeff=coeff, relative_norm=norm, position_norm=norm / 3,
                          steering=f"vector-{name}")  # fmt: skip


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
    assert {c["positions"] for c in fake_generate} == {"front"}
    # Without a scale, no vector's addition is measured.
    assert (frame["completion_norm"] == 0).all()
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


@pytest.mark.parametrize(
    "grids, match",
    [
        (([[0.2, 1.0], [0.3, 2.0]], [[0.2, 0.1]], [1.0, 2.0]), "equal search budgets"),
        (([[0.2, 1.0]], [[0.2, 0.1]], [1.0, 2.0]), "equal search budgets"),
        (([], [], []), "at least one"),
        (([[0.2, 1.0, 3.0]], [[0.2, 0.1]], [1.0]), "each ActAdd setting is"),
        (([[0.2, 1.0]], [[0.2]], [1.0]), "each mean difference setting is"),
    ],
)
def test_grids_refuse_unequal_budgets_and_settings_that_are_not_a_layer_and_a_strength(grids, match):
    with pytest.raises(ValueError, match=match):
        Grids(*grids)


@pytest.fixture(scope="module")
def scale(gpt2_random) -> Scale:
    """The random GPT-2's residual norm per layer on a few sentences: the unit of strength."""
    return Scale("gpt2-random", tuple(float(x) for x in actadd.residual_norms(gpt2_random, PROMPTS)))


def test_search_space_gives_each_method_its_own_grid_at_the_strengths_it_states(gpt2_random, scale, monkeypatch):
    reads = []
    read = methods.actadd_mean_difference

    def counted(*args, **kwargs):
        reads.append(kwargs["layer"])
        return read(*args, **kwargs)

    monkeypatch.setattr(methods, "actadd_mean_difference", counted)
    grids = Grids([[0.25, 2.0], [0.5, 8.0]], [[0.5, 0.1], [0.5, 0.3]], [1.0, 2.0])
    space = methods.search_space(gpt2_random, " kind", " rude", PREFIX, grids, scale, PAIRS, PREFIX)
    assert [m.kind for m in space] == ["unsteered", "prompting", "actadd", "actadd", "meandiff", "meandiff",
                                       "preadd", "preadd"]  # fmt: skip
    assert reads == [2]  # the pairs are read once per layer of the grid
    steered, means = space[2:4], space[4:6]
    for method, layer, strength in zip(steered, [1, 2], [2.0, 8.0]):
        vector = method.steering
        assert (method.layer, vector.layer) == (layer, layer)
        per_position = float(vector.vector[1:].norm(dim=-1).mean()) / scale.norms[layer]
        assert per_position == pytest.approx(strength, rel=1e-5) and method.position_norm == pytest.approx(strength)
        assert (method.coeff, method.relative_norm) == (vector.coeff, vector.relative_norm)
    unit = actadd.steering_vector(gpt2_random, " kind", " rude", layer=1)  # coefficient 1
    torch.testing.assert_close(steered[0].steering.vector, unit.vector * steered[0].coeff)
    direction = actadd.mean_difference(gpt2_random, PAIRS, layer=2, reduce="mean")
    for method, strength in zip(means, [0.1, 0.3]):
        vector = method.steering
        assert method.layer == 2 and vector.source.reduce == "mean"
        assert float(vector.vector.norm()) / scale.norms[2] == pytest.approx(strength, rel=1e-5)
        torch.testing.assert_close(vector.vector, direction.vector * vector.coeff)
    assert [(m.strength, m.instruction) for m in space[6:]] == [(1.0, PREFIX), (2.0, PREFIX)]
    assert space[1].instruction == PREFIX
    # Without contrast pairs there is no mean difference to try, without an instruction no prompting.
    plain = methods.search_space(gpt2_random, " kind", " rude", PREFIX, grids, scale)
    assert [m.kind for m in plain] == ["unsteered", "actadd", "actadd", "preadd", "preadd"]


def _direction(values: list[float], layer: int) -> actadd.DirectionVector:
    return actadd.DirectionVector(vector=torch.tensor(values), layer=layer, coeff=1.0, model_name="m",
                                  relative_norm=0.5, source=MeanOfPairs((("a", "b"),), "mean"))  # fmt: skip


def _pair_vector(rows: list[list[float]], layer: int) -> actadd.SteeringVector:
    k = len(rows)
    return actadd.SteeringVector(vector=torch.tensor(rows), layer=layer, coeff=1.0, p_plus="a", p_minus="b",
                                 tokens_plus=(0,) * k, tokens_minus=(0,) * k, model_name="m", relative_norm=1.0)  # fmt: skip


def test_completion_norm_is_each_vectors_addition_to_a_completion_in_all(fake_generate):
    """In the scale's unit (the norm at the vector's layer): an ActAdd vector adds every row once,
    whatever the completion; a direction its norm at every steered position, the prompt's tokens
    after the start token, the pad spaces of the longest ActAdd vector and the completion's tokens
    but the last."""
    scale = Scale("m", (2.0, 4.0))
    short = _pair_vector([[0.1, 0.0], [3.0, 4.0], [0.0, 5.0]], layer=0)  # rows of norm 0.1, 5, 5
    long = _pair_vector([[0.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]], layer=1)  # k = 5: 4 spaces
    direction = _direction([0.6, 0.8], layer=1)  # norm 1
    candidates = [methods.unsteered(),
                  methods.Method("ActAdd short", "actadd", layer=0, coeff=1.0, relative_norm=1.0, position_norm=2.5,
                                 steering=short),
                  methods.Method("ActAdd long", "actadd", layer=1, coeff=1.0, relative_norm=1.0, position_norm=0.5,
                                 steering=long),
                  methods.Method("md", "meandiff", layer=1, coeff=1.0, relative_norm=0.5, position_norm=0.25,
                                 steering=direction),
                  methods.preadd(PREFIX, 2.0)]  # fmt: skip
    model = SimpleNamespace(tokenizer=lambda text, add_special_tokens: SimpleNamespace(input_ids=_words(text)))
    frame = methods.sample(model, PROMPTS, candidates, 2, seed=0, stream=1, progress=False, scale=scale)
    # Every row, steered or not, is padded by the longest ActAdd vector's k - 1.
    assert [c["pad_prompts"] for c in fake_generate] == [4, 4, 4]
    assert [c["positions"] for c in fake_generate] == ["front", "all", "front"]
    norms = frame.groupby("method", sort=False)["completion_norm"].apply(list).to_dict()
    assert norms["ActAdd short"] == pytest.approx([10.1 / 2] * 8)
    assert norms["ActAdd long"] == pytest.approx([8 / 4] * 8)
    md = frame[frame["method"] == "md"]
    positions = [len(_words(p)) + 4 + max(len(_words(c)) - 1, 0) for p, c in zip(md["prompt"], md["completion"])]
    assert len(set(positions)) > 1  # each row counted on its own
    assert norms["md"] == pytest.approx([0.25 * n for n in positions])
    assert norms["unsteered"] == norms["PREADD s = 2"] == [0.0] * 8
    # A scale measured on another model is refused.
    with pytest.raises(ValueError, match="measure the scale on the vector's model"):
        methods.sample(
            model, PROMPTS, candidates, 1, seed=0, stream=1, progress=False, scale=Scale("other", (1.0,) * 2)
        )


class _Gate:
    """A stub text gate: a completion is text unless it holds "junk"; it records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str] | None]] = []

    def check(self, completions, references=None) -> pd.DataFrame:
        self.calls.append((list(completions), references))
        return pd.DataFrame({"is_text": ["junk" not in c for c in completions],
                             "reason": ["junk" if "junk" in c else "" for c in completions]})  # fmt: skip


def test_text_check_judges_each_method_against_the_unsteered_completions_of_its_prompts_and_seeds():
    rows = [("unsteered", "unsteered", p, s, f"plain {p}{s}") for p in range(2) for s in range(2)]
    # ActAdd's rows in another order, one of them junk.
    rows += [("ActAdd", "actadd", p, s, f"steered {p}{s}" + (" junk" if (p, s) == (1, 0) else ""))
             for p, s in [(1, 1), (0, 0), (1, 0), (0, 1)]]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["method", "kind", "prompt_id", "sample", "completion"])
    gate = _Gate()
    checked = methods.text_check(frame, gate)
    pd.testing.assert_frame_equal(checked[frame.columns], frame)
    assert checked["is_text"].tolist() == [True] * 4 + [True, True, False, True]
    assert checked["gate_reason"].tolist() == [""] * 6 + ["junk", ""]
    assert gate.calls[0] == (frame["completion"][:4].tolist(), frame["completion"][:4].tolist())
    # The references are the unsteered completions of each row's prompt and sample, in its order.
    assert gate.calls[1] == (frame["completion"][4:].tolist(), ["plain 11", "plain 00", "plain 10", "plain 01"])


def _selection_frame(success: dict[str, list[float]], perplexity: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, values in success.items():
        kind = method.split()[0]
        for prompt_id, value in enumerate(values):
            rows.append({"method": method, "kind": kind, "layer": None, "coeff": None, "relative_norm": None,
                         "position_norm": None, "strength": None, "prompt_id": prompt_id, "sample": 0,
                         "success": value, "perplexity": perplexity[method] * (1.1 if prompt_id % 2 else 0.9),
                         "is_text": True})  # fmt: skip
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
    assert actadd_choice.method.name == "actadd strong" and actadd_choice.perplexity <= chosen.fluency_limit
    assert preadd_choice.method.name == "preadd mild"  # harsh is too disfluent
    assert chosen.unchosen == {} and chosen.note("actadd", "preadd") == ""
    assert chosen.table["chosen"].sum() == 2
    names = [m.name for m in chosen.evaluation_methods(PREFIX)]
    assert names == ["unsteered", "prompting", "ActAdd", "PREADD"]
    assert chosen.evaluation_methods(PREFIX)[2].steering == "vector-actadd strong"


def test_no_setting_within_the_limit_leaves_the_method_unchosen_and_says_so():
    perplexity = {"unsteered": 10.0, "actadd weak": 20.0, "actadd strong": 40.0, "preadd mild": 12.0,
                  "preadd harsh": 30.0}  # fmt: skip
    chosen = selection.select(_selection_frame(SUCCESS, perplexity), "success", maximize=True,
                               fluency_tolerance=1.5, methods=SELECTION_METHODS)  # fmt: skip
    assert "actadd" not in chosen.choices  # not the most fluent of the settings outside the limit
    assert "so ActAdd was not chosen" in chosen.unchosen["actadd"]
    assert chosen.unchosen["actadd"] in chosen.report()
    assert chosen.choices["preadd"].method.name == "preadd mild"
    assert chosen.note("preadd") == "" and chosen.note("actadd", "preadd") == chosen.unchosen["actadd"]
    assert [m.name for m in chosen.evaluation_methods(PREFIX)] == ["unsteered", "prompting", "PREADD"]


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
    """The shared batches give each method the completions it gets alone with the same seeds and
    the same padding."""
    scale = Scale(actadd.model_info(smol).name, tuple(float(x) for x in actadd.residual_norms(smol, PROMPTS)))
    steered = methods.actadd(smol, "Love", "Hate", scale, layer=0.2, position_norm=0.5)
    md = methods.mean_difference(smol, PAIRS, scale, layer=0.2, position_norm=0.05)
    candidates = [methods.unsteered(), methods.prompting(PREFIX), steered, md, methods.preadd(PREFIX, 2.0)]
    kwargs = dict(max_new_tokens=6, progress=False)
    frame = methods.sample(smol, PROMPTS[:2], candidates, 2, seed=1, stream=streams.CONFIRM, **kwargs)
    seeds = frame[frame["method"] == "unsteered"]["seed"].tolist()
    prompts = frame[frame["method"] == "unsteered"]["prompt"].tolist()
    alone = partial(actadd.generate, smol, seed=seeds, pad_prompts=steered.steering.k - 1, **kwargs)
    expected = {
        "unsteered": alone(prompts),
        steered.name: alone(prompts, steered.steering),
        "prompting": alone([PREFIX + p for p in prompts]),
        md.name: alone(prompts, md.steering, positions="all"),
        "PREADD s = 2": alone(prompts, logits_processors=[PrefixContrast(smol, PREFIX, 2.0)]),
    }
    for name, texts in expected.items():
        assert frame[frame["method"] == name]["completion"].tolist() == texts, name
    assert scale.position_norm(steered.steering) == pytest.approx(0.5) and steered.layer == round(0.2 * 30)
    assert scale.position_norm(md.steering) == pytest.approx(0.05) and md.steering.source.reduce == "mean"
