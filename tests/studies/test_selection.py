"""The selection rule of 04 and 05 at its edges, the same for every kind of method: a setting
whose completions are not text is never chosen, whatever its objective; a setting exactly at the
fluency limit is allowed and one just above is not; a kind with no setting that passes both is
not chosen, and says why; which steering method did better on the selection; and what the
evaluation compares."""

from __future__ import annotations

import pandas as pd
import pytest

from actadd.studies.evaluation.text_gate import MIN_SHARE
from actadd.studies.protocol import methods, selection
from actadd.studies.protocol.methods import MEAN_DIFFERENCE
from actadd.studies.protocol.selection import Choice, Selection

PREFIX = "Be positive:\n"
TEXT = [True] * 5


def _steered(name: str, kind: str = "actadd", layer: int = 3, norm: float = 1.5) -> methods.Method:
    return methods.Method(name, kind, layer=layer, coeff=2 * norm, relative_norm=norm, position_norm=norm / 3,
                          steering=f"vector-{name}")  # fmt: skip


Rows = dict[methods.Method, tuple[list[float], list[float], list[bool]]]


def _frame(rows: Rows) -> pd.DataFrame:
    """A selection sample: per method, each prompt's success, judged perplexity and whether the
    gate found the completion text."""
    return pd.DataFrame(
        [{"method": m.name, "kind": m.kind, **m.settings(), "prompt_id": i, "sample": 0, "success": s, "perplexity": p,
          "is_text": t}
         for m, (success, perplexity, text) in rows.items() for i, (s, p, t) in enumerate(zip(success, perplexity, text))]
    )  # fmt: skip


BASE_PERPLEXITY = [8.0, 12.0, 10.0, 9.0, 11.0]
UNSTEERED = methods.unsteered()
PREADD = methods.preadd(PREFIX, 1.0, name="preadd")


def _select(rows: Rows, tolerance: float = 1.5, maximize: bool = True, **kwargs) -> Selection:
    every = {UNSTEERED: ([0.0] * 5, BASE_PERPLEXITY, TEXT), PREADD: ([0.0] * 5, BASE_PERPLEXITY, TEXT), **rows}
    return selection.select(_frame(every), "success", maximize=maximize, fluency_tolerance=tolerance,
                            methods=list(every), **kwargs)  # fmt: skip


def _scaled(factor: float) -> list[float]:
    return [p * factor for p in BASE_PERPLEXITY]


def test_a_setting_exactly_at_the_limit_is_allowed_and_one_just_above_is_not():
    at = _steered("at the limit", layer=2)
    above = _steered("just above", layer=4)
    fluent = _steered("fluent", layer=6)
    # At tolerance 1 the limit is the unsteered perplexity itself: the same judged values give
    # exactly it, and values a hair larger give a perplexity just above it.
    chosen = _select({
        at: ([0.0, 1.0, 1.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
        above: ([1.0] * 5, _scaled(1 + 1e-9), TEXT),
        fluent: ([0.0, 0.0, 1.0, 0.0, 0.0], _scaled(0.9), TEXT),
    }, tolerance=1.0)  # fmt: skip
    table = chosen.table.set_index("method")
    assert table.loc["at the limit", "perplexity"] == chosen.fluency_limit == table.loc["unsteered", "perplexity"]
    assert table.loc["just above", "perplexity"] > chosen.fluency_limit
    assert table["within_limit"].to_dict() == {"unsteered": True, "preadd": True, "at the limit": True,
                                               "just above": False, "fluent": True}  # fmt: skip
    choice = chosen.choices["actadd"]
    assert choice.method == at
    assert (choice.objective, choice.perplexity, choice.text_share) == (0.4, chosen.fluency_limit, 1.0)
    assert table["chosen"].to_dict() == {"unsteered": False, "preadd": True, "at the limit": True, "just above": False,
                                         "fluent": False}  # fmt: skip


def test_the_limit_is_the_tolerance_times_the_unsteered_perplexity():
    # Unsteered's geometric mean is 9.88; at tolerance 1.5 the limit is 14.8.
    allowed, excluded = _steered("allowed", layer=2), _steered("excluded", layer=4)
    chosen = _select({
        allowed: ([0.0, 1.0, 0.0, 0.0, 0.0], _scaled(1.49), TEXT),
        excluded: ([1.0, 1.0, 1.0, 0.0, 0.0], _scaled(1.51), TEXT),
    }, tolerance=1.5)  # fmt: skip
    base = chosen.table.set_index("method").loc["unsteered", "perplexity"]
    assert base == pytest.approx((8 * 12 * 10 * 9 * 11) ** 0.2)
    assert chosen.fluency_limit == pytest.approx(1.5 * base)
    assert chosen.choices["actadd"].method == allowed


def test_a_setting_whose_completions_are_not_text_is_never_chosen_whatever_its_objective():
    junk = _steered("mostly junk", layer=2)  # the best objective and the most fluent, but 3 of 5 text
    edge = _steered("exactly at the share", layer=4)  # 4 of 5 text: exactly the share required
    clean = _steered("all text", layer=6)
    rows = {
        junk: ([1.0] * 5, _scaled(0.5), [True, True, False, True, False]),
        edge: ([1.0, 1.0, 1.0, 0.0, 0.0], BASE_PERPLEXITY, [True, True, True, False, True]),
        clean: ([1.0, 0.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
    }
    chosen = _select(rows)
    table = chosen.table.set_index("method")
    assert 4 / 5 == MIN_SHARE and table.loc["exactly at the share", "text_share"] == MIN_SHARE
    assert table["passes_gate"].to_dict() == {"unsteered": True, "preadd": True, "mostly junk": False,
                                              "exactly at the share": True, "all text": True}  # fmt: skip
    assert table.loc["mostly junk", "text_share"] == pytest.approx(0.6)
    assert table.loc["mostly junk", "text_share_low"] < 0.6 < table.loc["mostly junk", "text_share_high"]
    choice = chosen.choices["actadd"]
    assert choice.method == edge and (choice.objective, choice.text_share) == (0.6, 0.8)
    # The share required is the rule's, and can be set: at half, the junk setting passes and wins.
    assert _select(rows, min_text_share=0.5).choices["actadd"].method == junk
    # One completion fewer that is text, and the setting at the edge fails as well.
    rows[edge] = (rows[edge][0], BASE_PERPLEXITY, [True, True, False, False, True])
    assert _select(rows).choices["actadd"].method == clean


def test_where_the_unsteered_model_writes_less_text_a_setting_needs_as_much_less_ten_points():
    as_unsteered = _steered("as much text as unsteered", layer=2)  # 3 of 5, like the unsteered model
    less = _steered("less text", layer=4)  # 2 of 5: 20 points below it
    half = [True, False, True, False, True]
    rows = {as_unsteered: ([1.0, 0.0, 1.0, 0.0, 0.0], BASE_PERPLEXITY, half),
            less: ([1.0] * 5, BASE_PERPLEXITY, [True, False, False, False, True])}  # fmt: skip
    every = {UNSTEERED: ([0.0] * 5, BASE_PERPLEXITY, half), PREADD: ([0.0] * 5, BASE_PERPLEXITY, TEXT), **rows}
    chosen = selection.select(_frame(every), "success", maximize=True, fluency_tolerance=1.5, methods=list(every))
    gate = chosen.table.set_index("method")["passes_gate"]
    assert gate["as much text as unsteered"] and not gate["less text"] and gate["unsteered"]
    assert chosen.choices["actadd"].method == as_unsteered
    # Beside an unsteered model whose completions are all text, 3 of 5 fails the 80% bar.
    assert "actadd" not in _select(rows).choices


def test_the_text_share_counts_every_sample_not_only_the_judged_ones():
    """A selection judges fluency on each prompt's first sample; the gate's share is over all of
    a setting's completions: here every second sample is not text."""
    steered = _steered("half junk", layer=2)
    other = _steered("text", layer=4)
    rows = {UNSTEERED: ([0.0] * 5, BASE_PERPLEXITY, TEXT), PREADD: ([0.0] * 5, BASE_PERPLEXITY, TEXT),
            steered: ([1.0] * 5, BASE_PERPLEXITY, TEXT), other: ([0.0] * 5, BASE_PERPLEXITY, TEXT)}  # fmt: skip
    first = _frame(rows)
    second = first.assign(sample=1, perplexity=float("nan"), is_text=first["method"] != steered.name)
    chosen = selection.select(pd.concat([first, second], ignore_index=True), "success", maximize=True,
                              fluency_tolerance=1.5, methods=list(rows))  # fmt: skip
    table = chosen.table.set_index("method")
    assert table.loc["half junk", "text_share"] == 0.5 and table.loc["half junk", "n_judged"] == 5
    assert chosen.choices["actadd"].method == other


def test_every_kind_is_chosen_by_the_same_rule():
    """PREADD and the mean difference pass the same gate and limit as ActAdd."""
    junk_preadd = methods.preadd(PREFIX, 4.0, name="preadd strong")
    md_fluent, md_junk = _steered("md", kind="meandiff", layer=2), _steered("md junk", kind="meandiff", layer=3)
    md_costly = _steered("md costly", kind="meandiff", layer=4)
    chosen = _select({
        _steered("a", layer=2): ([0.0] * 5, BASE_PERPLEXITY, TEXT),
        junk_preadd: ([1.0] * 5, BASE_PERPLEXITY, [False] * 5),
        md_fluent: ([1.0, 0.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
        md_junk: ([1.0] * 5, BASE_PERPLEXITY, [True, False] * 2 + [True]),
        md_costly: ([1.0] * 5, _scaled(2.0), TEXT),
    })  # fmt: skip
    assert chosen.choices["preadd"].method == PREADD  # the PREADD setting of the best objective is junk
    assert chosen.choices["meandiff"].method == md_fluent
    assert not chosen.unchosen


def test_a_kind_with_no_setting_that_passes_both_is_not_chosen_and_says_why():
    junk = _steered("junk", layer=2)  # fluent but not text
    junk_too = _steered("junk too", layer=3)
    costly = _steered("costly", layer=4)  # text but beyond the limit
    md = _steered("md", kind="meandiff", layer=2)
    chosen = _select({
        junk: ([1.0] * 5, BASE_PERPLEXITY, [False] * 5),
        junk_too: ([1.0] * 5, BASE_PERPLEXITY, [True, False] * 2 + [True]),
        costly: ([1.0] * 5, _scaled(3.0), TEXT),
        md: ([0.0, 1.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
    })  # fmt: skip
    assert "actadd" not in chosen.choices  # no most fluent, no most textual fallback
    why = chosen.unchosen["actadd"]
    assert why == (
        "no ActAdd setting passed both the text gate (at least 80% text; 1 of 3 did) and the fluency limit "
        f"(perplexity {chosen.fluency_limit:.3g}; 2 of 3 did), so ActAdd was not chosen and is not compared"
    )
    assert not chosen.table[chosen.table["kind"] == "actadd"]["chosen"].any()
    assert chosen.table["chosen"].sum() == 2  # PREADD's and the mean difference's
    assert [m.name for m in chosen.evaluation_methods(PREFIX)] == ["unsteered", "prompting", "PREADD",
                                                                    MEAN_DIFFERENCE]  # fmt: skip
    assert chosen.better_steering() == "meandiff"  # the only steering method chosen
    assert chosen.chosen_settings()["actadd"] == {"not chosen": why}
    assert chosen.chosen_settings()["meandiff"] == md.settings()
    assert f"ActAdd: {why}" in chosen.report().splitlines() and f"ActAdd: {why}" in chosen.describe()


def test_the_notes_name_the_kinds_that_were_not_chosen():
    chosen = _select({
        _steered("a", layer=2): ([1.0, 0.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
        _steered("md", kind="meandiff", layer=2): ([1.0] * 5, _scaled(4.0), TEXT),
    })  # fmt: skip
    md_why = chosen.unchosen["meandiff"]
    assert md_why.startswith("no mean difference setting passed both") and set(chosen.unchosen) == {"meandiff"}
    assert chosen.note("actadd") == chosen.note("actadd", "preadd") == ""
    assert chosen.note("actadd", "meandiff") == md_why == chosen.note("meandiff", "preadd")
    assert chosen.comparison_note(MEAN_DIFFERENCE) == md_why
    for baseline in ("unsteered", "prompting", "PREADD"):
        assert chosen.comparison_note(baseline) == "", baseline


def test_a_comparison_note_joins_actadds_reason_and_the_baselines():
    every = {UNSTEERED: ([0.0] * 5, BASE_PERPLEXITY, TEXT), PREADD: ([0.0] * 5, BASE_PERPLEXITY, [False] * 5),
             _steered("a", layer=2): ([1.0] * 5, _scaled(4.0), TEXT),
             _steered("md", kind="meandiff", layer=2): ([1.0] * 5, BASE_PERPLEXITY, TEXT)}  # fmt: skip
    chosen = selection.select(_frame(every), "success", maximize=True, fluency_tolerance=1.5, methods=list(every))
    actadd_why, preadd_why = chosen.unchosen["actadd"], chosen.unchosen["preadd"]
    assert "ActAdd setting" in actadd_why and "PREADD setting" in preadd_why and "meandiff" not in chosen.unchosen
    assert chosen.comparison_note("PREADD") == f"{actadd_why}; {preadd_why}"
    assert chosen.comparison_note("unsteered") == chosen.comparison_note("prompting") == actadd_why
    assert chosen.comparison_note(MEAN_DIFFERENCE) == actadd_why
    assert chosen.note("preadd", "actadd") == f"{preadd_why}; {actadd_why}"  # in the order asked
    assert chosen.better_steering() == "meandiff"


def test_a_kind_the_table_does_not_hold_is_neither_chosen_nor_unchosen():
    chosen = _select({_steered("a", layer=2): ([1.0] * 5, BASE_PERPLEXITY, TEXT)})
    assert set(chosen.choices) == {"actadd", "preadd"} and chosen.unchosen == {}
    assert chosen.note("actadd", "meandiff") == "" and chosen.better_steering() == "actadd"


def test_ties_go_to_the_earlier_setting():
    first, second = _steered("first", layer=2), _steered("second", layer=4)
    rows = {first: ([1.0, 0.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT),
            second: ([0.0, 1.0, 0.0, 0.0, 0.0], _scaled(0.5), TEXT)}  # fmt: skip
    assert _select(rows).choices["actadd"].method == first
    assert _select(rows, maximize=False).choices["actadd"].method == first
    assert _select(dict(reversed(rows.items()))).choices["actadd"].method == second


def test_select_minimises_when_asked():
    low, high = _steered("low", layer=2), _steered("high", layer=4)
    rows = {low: ([0.0, 1.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT), high: ([1.0] * 5, BASE_PERPLEXITY, TEXT)}
    assert _select(rows).choices["actadd"].method == high
    chosen = _select(rows, maximize=False)
    assert chosen.choices["actadd"].method == low and chosen.choices["actadd"].objective == 0.2


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: f.drop(columns="is_text"), "is_text"),
        (lambda f: f.drop(columns="perplexity"), "perplexity"),
        (lambda f: f[f["kind"] != "unsteered"], "exactly one unsteered"),
        (lambda f: f.assign(method=f["method"].replace({"preadd": "unknown"})), "unknown"),
    ],
)
def test_select_refuses_a_table_it_cannot_choose_from(change, match):
    every = {UNSTEERED: ([0.0] * 5, BASE_PERPLEXITY, TEXT), PREADD: ([0.0] * 5, BASE_PERPLEXITY, TEXT)}
    with pytest.raises(ValueError, match=match):
        selection.select(change(_frame(every)), "success", maximize=True, fluency_tolerance=1.5, methods=list(every))
    with pytest.raises(ValueError, match="fluency_tolerance"):
        selection.select(_frame(every), "success", maximize=True, fluency_tolerance=0.9, methods=list(every))


def _choice(kind: str, objective: float) -> Choice:
    return Choice(_steered(kind, kind=kind), objective, 10.0, 1.0)


@pytest.mark.parametrize(
    "actadd, meandiff, maximize, better",
    [
        (0.6, 0.7, True, "meandiff"),  # the higher objective
        (0.7, 0.6, True, "actadd"),
        (0.7, 0.7, True, "actadd"),  # a tie goes to ActAdd
        (0.6, 0.7, False, "actadd"),  # minimizing: the lower objective
        (0.8, 0.7, False, "meandiff"),
        (0.7, 0.7, False, "actadd"),
        (0.6, None, True, "actadd"),  # the only one chosen, whatever its objective
        (None, 0.1, True, "meandiff"),
        (None, None, True, None),  # neither chosen: no better one
    ],
)
def test_the_better_steering_method_is_the_better_of_those_chosen(actadd, meandiff, maximize, better):
    choices = {"preadd": Choice(PREADD, 0.99, 10.0, 1.0)}
    choices |= {} if actadd is None else {"actadd": _choice("actadd", actadd)}
    choices |= {} if meandiff is None else {"meandiff": _choice("meandiff", meandiff)}
    unchosen = {k: "not chosen" for k in ("actadd", "meandiff") if k not in choices}
    assert Selection(pd.DataFrame(), choices, unchosen, 10.0, "success", maximize).better_steering() == better


def test_select_gives_better_steering_the_choices_selection_objectives():
    actadd = _steered("actadd", layer=2)
    md = _steered("md", kind="meandiff", layer=2)
    rows = {actadd: ([1.0, 0.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY, TEXT), md: ([1.0, 1.0, 0.0, 0.0, 0.0],
                                                                           BASE_PERPLEXITY, TEXT)}  # fmt: skip
    chosen = _select(rows)
    assert (chosen.choices["actadd"].objective, chosen.choices["meandiff"].objective) == (0.2, 0.4)
    assert chosen.better_steering() == "meandiff"
    assert _select(rows, maximize=False).better_steering() == "actadd"


def test_the_evaluation_compares_unsteered_prompting_and_each_choice_under_its_name():
    actadd_2, md_3 = _steered("ActAdd 2", layer=2, norm=4.0), _steered("md 3", kind="meandiff", layer=3, norm=8.0)
    choices = {"actadd": Choice(actadd_2, 0.5, 9.0, 1.0), "preadd": Choice(PREADD, 0.2, 9.0, 0.9),
               "meandiff": Choice(md_3, 0.6, 9.0, 0.8)}  # fmt: skip
    picked = Selection(pd.DataFrame(), choices, {}, 10.0, "success", True)
    evaluated = {m.name: m for m in picked.evaluation_methods(PREFIX)}
    assert list(evaluated) == ["unsteered", "prompting", "ActAdd", "PREADD", MEAN_DIFFERENCE]
    assert evaluated["prompting"].instruction == PREFIX and evaluated["PREADD"].strength == PREADD.strength
    assert evaluated["PREADD"].instruction == PREADD.instruction
    for name, chosen in (("ActAdd", actadd_2), (MEAN_DIFFERENCE, md_3)):
        assert evaluated[name].steering == chosen.steering and evaluated[name].settings() == chosen.settings()
        assert evaluated[name].kind == chosen.kind
    # A kind that was not chosen is not evaluated.
    without = Selection(pd.DataFrame(), {k: choices[k] for k in ("actadd", "preadd")}, {"meandiff": "why"}, 10.0,
                        "success", True)  # fmt: skip
    assert [m.name for m in without.evaluation_methods(PREFIX)] == ["unsteered", "prompting", "ActAdd", "PREADD"]
