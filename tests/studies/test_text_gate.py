"""The text gate: degenerate completions fail, ordinary text passes, the held-out accuracy on the
labelled set holds its floor, and the set-level signal catches a method that repeats itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from actadd.studies.evaluation import text_gate
from actadd.studies.evaluation.text_gate import TextGate

# The degenerate completions quoted in the review of the committed runs.
DEGENERATE = [
    ":D2637!56674E8A31F5E",
    ":\nI3E56F!E4656R!E365",
    " it them the that which them it with which it that it on two them",
    "his his his bride's h -- hers-- he--",
    "a wife bride bride wife death wife bebe ( wife home be m bride marriage",
    "40404040465420165730",
    "isEmptyisEmptyimread",
    "\n\nC\n\nThe 2.\n\nB The 13.",
    "jLFKJA.com/s/532419608",
]
ORDINARY = [
    "I went to the market this morning and bought some bread, but they had run out of milk.",
    "She said she would call back later, so I waited by the phone for an hour.",
    "The committee will meet again on Tuesday to discuss the budget for next year.",
    " and then, of course, nobody could remember where the keys were.",
    "@united thanks for getting me home on time, the crew was great! #happy",
    "@JetBlue 2 hour delay and you still want to charge me for a drink? Nah, I'm good.",
    "RT @friend: can't believe it's already Friday lol",
    "Thanks!",
    "lol ok",
    "Wait... what?! It's 5:30 pm and I'm still at work!!!",
    '"Hey, are you coming to the party tonight?" he asked.',
]
# The measured held-out accuracy's Wilson lower bound (0.86 on 265 rows), rounded down.
ACCURACY_FLOOR = 0.85


@pytest.fixture(scope="module")
def validation() -> text_gate.Validation:
    return text_gate.validate()


def test_every_degenerate_example_fails_and_is_labelled_not_text():
    table = TextGate().check(DEGENERATE)
    assert not table["is_text"].any(), table.loc[table["is_text"], "text"].tolist()
    assert (table["reason"] != "").all()
    labelled = text_gate.read_labelled()
    labels = labelled.set_index("text").loc[DEGENERATE, "label"]
    assert (labels == "not_text").all()


def test_ordinary_text_passes():
    table = TextGate().check(ORDINARY)
    assert table["is_text"].all(), table.loc[~table["is_text"], ["text", "reason"]].to_dict("records")


@pytest.mark.parametrize("blank", ["", "   ", "\n\n", ".", "!!!", "12345 678", "http://t.co/abc123"])
def test_a_completion_without_words_is_not_text(blank):
    row = TextGate().check([blank]).iloc[0]
    assert not row["is_text"]
    assert "no words" in row["reason"]


def test_measures_against_hand_counts():
    table = TextGate().measure(["The cat sat on the mat.", "cat cat cat sat", ":D2637!56674E8A31F5E dog"])
    first = table.iloc[0]
    # 6 words; content words cat, sat, mat (the, on, the are stop words); all known.
    assert (first["n_words"], first["word_share"], first["known_share"]) == (6, 1.0, 1.0)
    assert (first["content_distinct"], first["function_share"], first["max_word_run"]) == (1.0, 0.5, 1)
    # Under min_words (6): no statistics of repetition or syntax.
    assert np.isnan(table.iloc[1]["content_distinct"])
    # 'D2637!56674E8A31F5E' (19 characters after the edge ':') is junk beside the 3 of 'dog'.
    assert table.iloc[2]["word_share"] == pytest.approx(3 / 22)


def test_a_word_repeated_back_to_back_fails_but_twice_does_not():
    gate = TextGate()
    repeated, doubled = gate.check(
        ["I said no no no to the man at the door today", "She said that that cake was good"]
    )["reason"]
    assert "one word over and over" in repeated
    assert doubled == ""


def test_held_out_accuracy_holds_its_floor_with_the_documented_defaults(validation):
    assert validation.gate == TextGate()
    assert validation.accuracy.value >= ACCURACY_FLOOR
    assert validation.accuracy.low < validation.accuracy.value < validation.accuracy.high
    table = validation.table().set_index("measure")
    assert list(table.index) == ["accuracy", "sensitivity", "specificity"]
    # Sensitivity and specificity are counted on the two labels of the held-out half.
    labelled = text_gate.read_labelled()
    held_out = text_gate.split_labelled(labelled)[1]
    assert table.loc["sensitivity", "n"] == (held_out["label"] == "not_text").sum()
    assert table.loc["specificity", "n"] == (held_out["label"] == "text").sum()
    assert len(validation.errors) == round((1 - validation.accuracy.value) * len(held_out))


def test_the_split_is_fixed_disjoint_and_halves_each_label():
    labelled = text_gate.read_labelled()
    tuning, held_out = text_gate.split_labelled(labelled)
    again, _ = text_gate.split_labelled(labelled)
    assert tuning.index.equals(again.index)
    assert set(tuning.index).isdisjoint(held_out.index)
    assert len(tuning) + len(held_out) == len(labelled)
    for label in text_gate.LABELS:
        assert abs((tuning["label"] == label).sum() - (held_out["label"] == label).sum()) <= 1
    assert not text_gate.split_labelled(labelled, seed=1)[0].index.equals(tuning.index)


def test_a_method_repeating_one_phrase_fails_against_varied_references():
    references = ORDINARY[:4] + [
        "My brother moved to Leeds last spring and he loves his new job there.",
        "We should probably leave before the traffic gets worse on the bridge.",
    ]
    collapsed = ["I love this so much, it is the best day of my life."] * 6
    alone = TextGate().check(collapsed)
    assert alone["is_text"].all()  # each reads as text on its own
    table = TextGate().check(collapsed, references=references)
    assert not table["is_text"].any()
    assert (table["reason"] == "repeats across completions").all()
    summary = TextGate().summary(collapsed, references=references)
    assert not summary.passes and summary.share.value == 0
    assert summary.reasons == {"repeats across completions": 6}
    assert summary.set_distinct == pytest.approx(table["set_distinct"].iloc[0])
    # Varied completions keep about the references' diversity.
    assert text_gate.set_distinct_ratio(references[::-1], references) == pytest.approx(1.0)
    assert TextGate().check(ORDINARY[4:], references=references)["is_text"].all()


def test_set_distinct_ratio_by_hand():
    # 'a b a b a' has bigrams ab ba ab ba: 2 distinct of 4; 'a b c d e' has 4 of 4.
    assert text_gate.set_distinct_ratio(["a b a b a"], ["a b c d e"]) == pytest.approx(0.5)
    # Compared on the first 2 bigrams of each: ab, ba against ab, bc.
    assert text_gate.set_distinct_ratio(["a b a"], ["a b c d e"]) == pytest.approx(1.0)


def test_summary_share_is_a_wilson_interval():
    texts = [*ORDINARY[:3], DEGENERATE[0]]
    summary = TextGate().summary(pd.Series(texts))
    expected = scipy_stats.binomtest(3, 4).proportion_ci(method="wilson")
    assert (summary.share.value, summary.share.n) == (0.75, 4)
    assert (summary.share.low, summary.share.high) == pytest.approx((expected.low, expected.high))
    assert not summary.passes
    assert TextGate().summary(texts, min_share=0.7).passes
    assert summary.set_distinct is None
    assert summary.reasons == {"no words": 1, "digits or symbols": 1}


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="completions must be strings, got 3"):
        TextGate().check(["fine", 3])
    with pytest.raises(ValueError, match="completions must be strings, got nan"):
        TextGate().check(pd.Series(["fine", float("nan")]))
    with pytest.raises(ValueError, match="references must be strings"):
        TextGate().check(["fine"], references=[None])
    with pytest.raises(ValueError, match="completions is empty"):
        TextGate().summary([])
    with pytest.raises(ValueError, match="min_word_share"):
        TextGate(min_word_share=1.5)
    with pytest.raises(ValueError, match="references hold no word bigrams"):
        text_gate.set_distinct_ratio(["a b c"], ["one"])
    bad = pd.DataFrame({"text": ["x"], "label": ["gibberish"], "source": ["hand"]})
    with pytest.raises(ValueError, match="gibberish"):
        text_gate.score(TextGate(), bad)


def test_the_share_required_is_eighty_percent_or_ten_points_below_an_unsteered_model_that_writes_less_text():
    from actadd.studies.evaluation.text_gate import required_share

    assert required_share(1.0) == 0.8 and required_share(0.9) == 0.8
    assert required_share(0.75) == pytest.approx(0.65) and required_share(0.3) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="unsteered_share"):
        required_share(1.5)
