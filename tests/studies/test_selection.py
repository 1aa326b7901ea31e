"""The selection rule of 04 and 05 at its edges: the fluency limit's bound, the fallback when no
setting is within it, the notes a choice made outside it carries, and which steering method
did better on the selection."""

from __future__ import annotations

import pandas as pd
import pytest

from actadd.studies.protocol import methods, selection
from actadd.studies.protocol.selection import Choice, Selection

PREFIX = "Be positive:\n"


def _steered(name: str, kind: str = "actadd", layer: int = 3, coeff: float = 2.0, norm: float = 1.5) -> methods.Method:
    return methods.Method(name, kind, layer=layer, coeff=coeff, relative_norm=norm, steering=f"vector-{name}")


def _frame(rows: dict[methods.Method, tuple[list[float], list[float]]]) -> pd.DataFrame:
    """A selection sample: per method, each prompt's success and judged perplexity."""
    return pd.DataFrame(
        [{"method": m.name, "kind": m.kind, **m.settings(), "prompt_id": i, "sample": 0, "success": s, "perplexity": p}
         for m, (success, perplexity) in rows.items() for i, (s, p) in enumerate(zip(success, perplexity))]
    )  # fmt: skip


BASE_PERPLEXITY = [8.0, 12.0, 10.0, 9.0]
UNSTEERED = methods.unsteered()
PREADD = methods.preadd(PREFIX, 1.0, name="preadd")


def _select(rows: dict[methods.Method, tuple[list[float], list[float]]], tolerance: float, **kwargs) -> Selection:
    every = {UNSTEERED: ([0.0] * 4, BASE_PERPLEXITY), PREADD: ([0.0] * 4, BASE_PERPLEXITY), **rows}
    return selection.select(_frame(every), "success", maximize=True, fluency_tolerance=tolerance,
                            methods=list(every), **kwargs)  # fmt: skip


def test_a_setting_exactly_at_the_limit_is_allowed_and_one_just_above_is_not():
    at = _steered("at the limit", layer=2)
    above = _steered("just above", layer=4)
    fluent = _steered("fluent", layer=6)
    # At tolerance 1 the limit is the unsteered perplexity itself: the same judged values give
    # exactly it, and values a hair larger give a perplexity just above it.
    chosen = _select({
        at: ([0.0, 1.0, 1.0, 0.0], BASE_PERPLEXITY),
        above: ([1.0, 1.0, 1.0, 1.0], [p * (1 + 1e-9) for p in BASE_PERPLEXITY]),
        fluent: ([0.0, 0.0, 1.0, 0.0], [p * 0.9 for p in BASE_PERPLEXITY]),
    }, tolerance=1.0)  # fmt: skip
    table = chosen.table.set_index("method")
    assert table.loc["at the limit", "perplexity"] == chosen.fluency_limit == table.loc["unsteered", "perplexity"]
    assert table.loc["just above", "perplexity"] > chosen.fluency_limit
    choice = chosen.choices["actadd"]
    assert choice.method == at and choice.within_limit
    assert (choice.objective, choice.fluency_limit) == (0.5, chosen.fluency_limit)
    assert table["chosen"].to_dict() == {"unsteered": False, "preadd": True, "at the limit": True, "just above": False,
                                         "fluent": False}  # fmt: skip


def test_the_limit_is_the_tolerance_times_the_unsteered_perplexity():
    # Unsteered's geometric mean is 9.64; at tolerance 1.5 the limit is 14.46.
    allowed, excluded = _steered("allowed", layer=2), _steered("excluded", layer=4)
    chosen = _select({
        allowed: ([0.0, 1.0, 0.0, 0.0], [p * 1.49 for p in BASE_PERPLEXITY]),
        excluded: ([1.0, 1.0, 1.0, 0.0], [p * 1.51 for p in BASE_PERPLEXITY]),
    }, tolerance=1.5)  # fmt: skip
    base = chosen.table.set_index("method").loc["unsteered", "perplexity"]
    assert base == pytest.approx((8 * 12 * 10 * 9) ** 0.25)
    assert chosen.fluency_limit == pytest.approx(1.5 * base)
    assert chosen.choices["actadd"].method == allowed and chosen.choices["actadd"].within_limit


def test_with_no_setting_within_the_limit_the_most_fluent_is_taken_and_flagged():
    strong = _steered("strong", layer=2)
    milder = _steered("milder", layer=4)
    chosen = _select({
        strong: ([1.0, 1.0, 1.0, 1.0], [p * 3 for p in BASE_PERPLEXITY]),
        milder: ([0.0, 0.0, 1.0, 0.0], [p * 2 for p in BASE_PERPLEXITY]),
    }, tolerance=1.5)  # fmt: skip
    choice = chosen.choices["actadd"]
    assert choice.method == milder and not choice.within_limit
    assert choice.objective == 0.25 and choice.perplexity == pytest.approx(2 * chosen.table.perplexity.iloc[0])
    assert chosen.choices["preadd"].within_limit and chosen.choices["preadd"].note == ""
    assert choice.note == (
        f"made outside the fluency limit: no ActAdd setting kept the selection perplexity within "
        f"{chosen.fluency_limit:.3g}, so the most fluent (layer 4, c = 2 (relative norm 1.5)) was taken"
    )


def test_the_notes_name_only_the_choices_made_outside_the_limit():
    inside = _steered("inside", layer=2)
    md_outside = _steered("md outside", kind="meandiff", layer=2)
    chosen = _select({
        inside: ([1.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY),
        md_outside: ([1.0, 1.0, 0.0, 0.0], [p * 4 for p in BASE_PERPLEXITY]),
    }, tolerance=1.5)  # fmt: skip
    md_note = chosen.choices["meandiff"].note
    assert md_note.startswith("made outside the fluency limit: no mean difference setting")
    assert chosen.note("actadd") == "" and chosen.note("actadd", "preadd") == ""
    assert chosen.note("actadd", "meandiff") == md_note == chosen.note("meandiff", "preadd")
    assert chosen.comparison_note("unsteered") == "" and chosen.comparison_note("PREADD") == ""
    assert "(no setting was within the fluency limit" in chosen.describe()


def test_a_comparison_note_joins_actadd_s_note_and_the_chosen_baseline_s():
    outside = {_steered("a", layer=2): ([1.0, 0.0, 1.0, 0.0], [p * 4 for p in BASE_PERPLEXITY])}
    every = {UNSTEERED: ([0.0] * 4, BASE_PERPLEXITY), PREADD: ([0.0] * 4, [p * 5 for p in BASE_PERPLEXITY]), **outside}
    chosen = selection.select(_frame(every), "success", maximize=True, fluency_tolerance=1.5, methods=list(every))
    actadd_note, preadd_note = chosen.choices["actadd"].note, chosen.choices["preadd"].note
    assert actadd_note and preadd_note and "PREADD setting" in preadd_note
    assert chosen.comparison_note("PREADD") == f"{actadd_note}; {preadd_note}"
    assert chosen.comparison_note("unsteered") == chosen.comparison_note("prompting") == actadd_note


def _choice(kind: str, objective: float, within_limit: bool) -> Choice:
    return Choice(_steered(kind, kind=kind), within_limit, 10.0, objective, 12.0 if within_limit else 20.0)


@pytest.mark.parametrize(
    "actadd, meandiff, maximize, better",
    [
        ((0.6, True), (0.7, True), True, "meandiff"),  # the higher objective
        ((0.7, True), (0.6, True), True, "actadd"),
        ((0.7, True), (0.7, True), True, "actadd"),  # a tie goes to ActAdd
        ((0.6, True), (0.7, True), False, "actadd"),  # minimizing: the lower objective
        ((0.8, True), (0.7, True), False, "meandiff"),
        ((0.7, True), (0.7, True), False, "actadd"),
        ((0.9, False), (0.1, True), True, "meandiff"),  # within the limit before a better one outside it
        ((0.1, True), (0.9, False), True, "actadd"),
        ((0.2, False), (0.3, False), True, "meandiff"),  # both outside: the better objective
    ],
)
def test_the_better_steering_method_is_within_the_limit_first_then_better(actadd, meandiff, maximize, better):
    choices = {"actadd": _choice("actadd", *actadd), "preadd": _choice("actadd", 0.0, True),
               "meandiff": _choice("meandiff", *meandiff)}  # fmt: skip
    assert Selection(pd.DataFrame(), choices, 10.0, "success", maximize).better_steering() == better


def test_without_a_mean_difference_actadd_is_the_better_steering_method():
    choices = {"actadd": _choice("actadd", 0.0, False), "preadd": _choice("actadd", 1.0, True)}
    assert Selection(pd.DataFrame(), choices, 10.0, "success", True).better_steering() == "actadd"


def test_select_gives_better_steering_the_choices_selection_objectives():
    actadd = _steered("actadd", layer=2)
    md = _steered("md", kind="meandiff", layer=2)
    chosen = _select({actadd: ([1.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY), md: ([1.0, 1.0, 0.0, 0.0], BASE_PERPLEXITY)},
                     tolerance=1.5)  # fmt: skip
    assert (chosen.choices["actadd"].objective, chosen.choices["meandiff"].objective) == (0.25, 0.5)
    assert chosen.better_steering() == "meandiff"
    minimized = selection.select(_frame({UNSTEERED: ([0.0] * 4, BASE_PERPLEXITY), PREADD: ([0.0] * 4, BASE_PERPLEXITY),
                                         actadd: ([1.0, 0.0, 0.0, 0.0], BASE_PERPLEXITY),
                                         md: ([1.0, 1.0, 0.0, 0.0], BASE_PERPLEXITY)}),
                                 "success", maximize=False, fluency_tolerance=1.5,
                                 methods=[UNSTEERED, PREADD, actadd, md])  # fmt: skip
    assert minimized.better_steering() == "actadd"


def test_the_evaluation_compares_the_choices_and_the_mean_difference_at_actadds_setting():
    actadd_2, actadd_3 = _steered("ActAdd 2", layer=2, norm=4.0), _steered("ActAdd 3", layer=3, norm=8.0)
    md_2 = _steered("md 2", kind="meandiff", layer=2, norm=4.0 * (1 + 1e-9))  # read again: the norm is not exact
    md_3 = _steered("md 3", kind="meandiff", layer=3, norm=8.0)
    md_2_other = _steered("md 2 other", kind="meandiff", layer=2, norm=8.0)
    choices = {"actadd": Choice(actadd_2, True, 10.0, 0.5, 9.0), "preadd": Choice(PREADD, True, 10.0, 0.2, 9.0),
               "meandiff": Choice(md_3, True, 10.0, 0.6, 9.0)}  # fmt: skip
    candidates = (UNSTEERED, actadd_2, actadd_3, md_2_other, md_3, md_2, PREADD)
    picked = Selection(pd.DataFrame(), choices, 10.0, "success", True, candidates)
    evaluated = {m.name: m for m in picked.evaluation_methods(PREFIX)}
    assert list(evaluated) == ["unsteered", "prompting", "PREADD", "ActAdd", "mean difference",
                               "mean difference at ActAdd's setting"]  # fmt: skip
    assert evaluated["prompting"].instruction == PREFIX and evaluated["PREADD"].strength == PREADD.strength
    assert evaluated["ActAdd"].steering == "vector-ActAdd 2"
    assert evaluated["mean difference"].steering == "vector-md 3"
    assert evaluated["mean difference at ActAdd's setting"].steering == "vector-md 2"
    without = Selection(pd.DataFrame(), choices, 10.0, "success", True, (UNSTEERED, actadd_2, md_3, PREADD))
    with pytest.raises(ValueError, match="no mean-difference setting at ActAdd's layer 2"):
        without.evaluation_methods(PREFIX)
