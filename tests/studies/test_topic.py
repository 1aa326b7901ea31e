"""How 00 and 01 measure and choose a setting (and 02 and 03 inherit it): a completion that is not
text is no success, the best cell of a sweep among those that pass the text gate, and the tuned
rule's gentlest strength whose Wilson lower bound passes the target, each on small tables whose
right answer is worked out by hand (the tuned rule's main path is in test_best_set.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from actadd.studies.evaluation import topic
from actadd.studies.evaluation.text_gate import MIN_SHARE
from actadd.studies.evaluation.topic import best_setting, gentlest_passing, sweep_table, topic_summary


def _texts(hits: int, n: int = 8, words_per_hit: int = 1) -> list[str]:
    """``n`` completions, the first ``hits`` with ``words_per_hit`` wedding words each: success
    hits / n, mean topic-word count hits * words_per_hit / n."""
    wedding = " and ".join(["a wedding"] * words_per_hit)
    return [f"They planned {wedding}." if i < hits else "They planned a trip." for i in range(n)]


def _setting(layer: int | None, coeff: float) -> SimpleNamespace | None:
    return None if layer is None else SimpleNamespace(layer=layer, coeff=coeff, relative_norm=coeff / 2)


def _table(cells: list[tuple[int | None, float, list[str]]], is_text: list[list[bool]] | None = None) -> pd.DataFrame:
    """A sweep table from (layer, coeff, completions) cells; layer None is the unsteered row."""
    return sweep_table([_setting(layer, c) for layer, c, _ in cells], [texts for *_, texts in cells], is_text=is_text)


def _pick(row: pd.Series) -> tuple[int, float]:
    return int(row["layer"]), float(row["coeff"])


def _wilson(k: int, n: int) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(low), float(high)


# ---------------------------------------------------------------------------------------
# Only text counts


def test_a_completion_that_is_not_text_is_no_success():
    texts = _texts(6, n=10)  # 6 completions with a wedding word
    is_text = [True, False, True, False, True, True, True, True, False, True]  # 2 of the 6 are not text
    gated = topic_summary(texts, is_text=is_text)
    assert (gated["success"], gated["hits"], gated["n"]) == (0.4, 4, 10)
    assert (gated["success_low"], gated["success_high"]) == pytest.approx(_wilson(4, 10), rel=1e-9)
    assert gated["text_share"] == 0.7
    assert (gated["text_share_low"], gated["text_share_high"]) == pytest.approx(_wilson(7, 10), rel=1e-9)
    plain = topic_summary(texts)
    assert (plain["success"], plain["hits"]) == (0.6, 6) and "text_share" not in plain
    assert (plain["success_low"], plain["success_high"]) == pytest.approx(_wilson(6, 10), rel=1e-9)
    all_text = topic_summary(texts, is_text=[True] * 10)  # every completion text: the plain summary
    assert {k: v for k, v in all_text.items() if not k.startswith("text_share")} == plain


def test_a_sweep_table_gates_each_setting_by_its_own_verdicts():
    cells = [(None, 0.0, _texts(2)), (2, 4.0, _texts(8)), (4, 8.0, _texts(8))]
    # Layer 2 writes a wedding word every time but half its completions are not text.
    is_text = [[True] * 8, [True, False] * 4, [True] * 8]
    table = _table(cells, is_text)
    assert table["success"].tolist() == [0.25, 0.5, 1.0]
    assert table["text_share"].tolist() == [1.0, 0.5, 1.0]
    assert table["success_low"].tolist() == pytest.approx([_wilson(2, 8)[0], _wilson(4, 8)[0], _wilson(8, 8)[0]])
    assert table["layer"].isna().tolist() == [True, False, False]
    assert "text_share" not in _table(cells)


class _Gate:
    """A stub text gate: a completion is text unless it holds "junk"; it records the references."""

    def __init__(self) -> None:
        self.references: list[list[str] | None] = []

    def check(self, completions, references=None) -> pd.DataFrame:
        self.references.append(None if references is None else list(references))
        return pd.DataFrame({"is_text": ["junk" not in c for c in completions], "reason": ""})


def _sweep(monkeypatch, texts: list[list[str]], settings, **kwargs) -> tuple[pd.DataFrame, _Gate]:
    """topic_sweep with ``texts`` as each setting's completions and a stub gate."""
    monkeypatch.setattr(topic, "generate_sweep", lambda model, prompt, s, n, **kw: texts)
    gate = _Gate()
    table, out = topic.topic_sweep("model", "prompt", settings, len(texts[0]), stream=1, gate=gate, **kwargs)
    assert out == texts
    return table, gate


def test_a_gated_sweep_judges_every_setting_against_the_unsteered_completions(monkeypatch):
    wedding, junk = "a wedding.", "a wedding junk"
    unsteered = ["a trip.", "a walk.", "a wedding.", "a day.", "a meal."]
    texts = [
        [wedding] * 4 + [junk],  # 4 of 5 text: exactly the share required
        unsteered,
        [wedding] * 3 + [junk] * 2,  # 3 of 5: fails
    ]
    settings = [_setting(2, 4.0), None, _setting(4, 8.0)]  # the unsteered setting need not come first
    table, gate = _sweep(monkeypatch, texts, settings)
    assert gate.references == [unsteered] * 3
    assert 4 / 5 == MIN_SHARE
    assert table["passes_gate"].tolist() == [True, True, False]
    assert table["success"].tolist() == [0.8, 0.2, 0.6]  # a wedding word in junk is no success
    # Given references, the gate judges against them, and judges them too: their share sets the bar.
    table, gate = _sweep(monkeypatch, texts, settings, references=["x y z"] * 5)
    assert gate.references == [["x y z"] * 5] * 4
    # Where the unsteered completions are less text (3 of 5), 3 of 5 passes: ten points below at most.
    mostly = ["a trip.", "a walk junk", "a wedding.", "a day junk", "a meal."]
    table, _ = _sweep(monkeypatch, [texts[0], mostly, texts[2]], settings)
    assert table["passes_gate"].tolist() == [True, True, True]
    table, _ = _sweep(monkeypatch, [texts[0], mostly, [wedding] * 2 + [junk] * 3], settings)
    assert table["passes_gate"].tolist() == [True, True, False]
    # Without an unsteered setting the gate has nothing to judge against but what it is given.
    with pytest.raises(ValueError, match="gate needs references"):
        _sweep(monkeypatch, [texts[0], texts[2]], [settings[0], settings[2]])
    table, _ = _sweep(monkeypatch, [texts[0], texts[2]], [settings[0], settings[2]], references=unsteered)
    assert table["passes_gate"].tolist() == [True, False]


def test_an_ungated_sweep_has_no_gate_columns(monkeypatch):
    texts = [["a wedding."] * 3 + ["a wedding junk"]] * 2
    monkeypatch.setattr(topic, "generate_sweep", lambda model, prompt, s, n, **kw: texts)
    table, _ = topic.topic_sweep("model", "prompt", [None, _setting(2, 4.0)], 4, stream=1)
    assert table["success"].tolist() == [1.0, 1.0] and not {"passes_gate", "text_share"} & set(table.columns)


# ---------------------------------------------------------------------------------------
# The best setting


def test_best_setting_takes_the_highest_success_and_never_the_unsteered_row():
    table = _table([
        (None, 0.0, _texts(8)),  # unsteered mentions weddings every time: not a setting to choose
        (2, 4.0, _texts(4)),
        (4, 8.0, _texts(6)),  # 6/8: the best
        (6, 1.0, _texts(5, words_per_hit=3)),  # more words, but fewer completions with one
    ])  # fmt: skip
    assert table["success"].tolist() == [1.0, 0.5, 0.75, 0.625]
    assert _pick(best_setting(table)) == (4, 8.0)


def test_best_setting_breaks_a_tie_in_success_by_more_wedding_words():
    table = _table([(None, 0.0, _texts(0)), (4, 8.0, _texts(6)), (6, 16.0, _texts(6, words_per_hit=2)),
                    (2, 2.0, _texts(6))])  # fmt: skip
    assert table["mean_count"].tolist() == [0.0, 0.75, 1.5, 0.75]
    assert _pick(best_setting(table)) == (6, 16.0)


def test_best_setting_breaks_a_tie_in_success_and_words_by_the_smaller_coefficient():
    cells = [(None, 0.0, _texts(0)), (4, 8.0, _texts(6)), (2, 2.0, _texts(6)), (3, 4.0, _texts(6)), (5, 1.0, _texts(2))]
    assert _pick(best_setting(_table(cells))) == (2, 2.0)
    # The same answer whatever the rows' order.
    assert _pick(best_setting(_table(cells[::-1]))) == (2, 2.0)
    pick = best_setting(_table(cells))
    assert set(pick.index) == set(_table(cells).columns)  # the row as tabled, no helper column


def test_best_setting_takes_only_settings_that_pass_the_gate():
    table = _table([(None, 0.0, _texts(0)), (2, 2.0, _texts(8)), (4, 8.0, _texts(5)), (6, 4.0, _texts(3))])
    table["passes_gate"] = [False, False, True, True]  # the best cell's completions are not text
    assert _pick(best_setting(table)) == (4, 8.0)
    table["passes_gate"] = [True, True, False, True]
    assert _pick(best_setting(table)) == (2, 2.0)
    table["passes_gate"] = [True, False, False, False]  # the unsteered row passing is no choice
    assert best_setting(table) is None


def test_best_setting_refuses_a_table_without_a_steered_row():
    with pytest.raises(ValueError, match="no steered setting"):
        best_setting(_table([(None, 0.0, _texts(3))]))


# ---------------------------------------------------------------------------------------
# The tuned rule: the gentlest strength whose lower bound passes the target


def _probe(rows: list[tuple]) -> pd.DataFrame:
    """A probe as 01 tables it: (layer, position_norm, success_low, passes_gate, within_limit),
    unsteered first."""
    return pd.DataFrame([(None, 0.0, 0.99, True, True), *rows],
                        columns=["layer", "position_norm", "success_low", "passes_gate", "within_limit"])  # fmt: skip


def _tuned(table: pd.DataFrame, target: float = 0.9) -> tuple[int | None, float | None, bool, object]:
    pick, reached = gentlest_passing(table, target)
    if pick is None:
        return None, None, reached, None
    return int(pick["layer"]), float(pick["position_norm"]), reached, pick.name


def test_a_lower_bound_exactly_at_the_target_does_not_pass_it():
    table = _probe([(3, 1.0, 0.90, True, True), (3, 2.0, 0.91, True, True), (5, 1.0, 0.89, True, True)])
    assert _tuned(table) == (3, 2.0, True, 2)
    assert _tuned(table, target=0.899)[:3] == (3, 1.0, True)


def test_a_gentler_strength_outside_the_gate_or_the_limit_is_passed_over():
    table = _probe([
        (3, 0.5, 0.97, True, False),  # the gentlest that passes the target, but too costly
        (5, 0.5, 0.98, False, True),  # as gentle, but not text
        (3, 1.0, 0.91, True, True), (5, 1.0, 0.95, True, True),  # the gentlest allowed: its best layer
        (5, 2.0, 0.99, True, True),
    ])  # fmt: skip
    assert _tuned(table) == (5, 1.0, True, 4)


def test_strengths_equal_but_for_rounding_are_one_strength():
    # A strength per position is measured (Scale.at), so one grid strength comes out a hair apart
    # at two layers: they are one strength, and its better layer is taken.
    table = _probe([(3, 0.5, 0.92, True, True), (5, 0.5 * (1 + 1e-12), 0.95, True, True),
                    (7, 0.6, 0.99, True, True)])  # fmt: skip
    assert _tuned(table)[:3] == (5, 0.5 * (1 + 1e-12), True)


def test_a_tie_at_the_gentlest_strength_goes_to_the_earlier_row():
    table = _probe([(3, 1.0, 0.80, True, True), (7, 2.0, 0.95, True, True), (5, 2.0, 0.95, True, True)])
    assert _tuned(table) == (7, 2.0, True, 2)


def test_when_nothing_passes_the_target_the_best_allowed_lower_bound_is_taken_and_flagged():
    # The unsteered row's 0.99 is never a choice; nor the setting outside the limit.
    table = _probe([(3, 1.0, 0.60, True, True), (5, 2.0, 0.85, True, True), (7, 4.0, 0.88, True, False),
                    (3, 4.0, 0.85, True, True)])  # fmt: skip
    assert _tuned(table) == (5, 2.0, False, 2)
    table["within_limit"] = [True, False, False, False, False]
    assert _tuned(table) == (None, None, False, None)


def test_the_tuned_rule_counts_only_text_through_the_wilson_lower_bound():
    """End to end from completions: a gentle setting whose every completion names a wedding but
    four of twenty are not text has a gated lower bound under the target; the next strength, all
    text, passes it. Counting junk as success would have taken the gentle one."""
    cells = [(None, 0.0, _texts(0, n=20)), (3, 1.0, _texts(20, n=20)), (3, 2.0, _texts(19, n=20))]
    junky = [True] * 16 + [False] * 4
    table = _table(cells, [[True] * 20, junky, [True] * 20]).assign(position_norm=[0.0, 1.0, 2.0], within_limit=True)
    table["passes_gate"] = table["text_share"] >= MIN_SHARE
    assert table["passes_gate"].all() and table["success_low"][1] == pytest.approx(_wilson(16, 20)[0])
    assert _tuned(table, target=0.7) == (3, 2.0, True, 2)
    ungated = _table(cells).assign(position_norm=[0.0, 1.0, 2.0], within_limit=True, passes_gate=True)
    assert _tuned(ungated, target=0.7)[:3] == (3, 1.0, True)
