"""The confidence set for the best layer and the tuned rule: against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from actadd.studies.evaluation.stats import best_confidence_set
from actadd.studies.evaluation.topic import gentlest_passing
from actadd.studies.lifecycle.claims import below


def test_a_clear_best_is_a_set_of_one_and_ties_stay_together():
    n = 40
    clear = np.zeros((3, n), dtype=bool)
    clear[1] = True  # layer 1 hits on every draw, the others on none: 40 discordant wins each
    found = best_confidence_set(clear)
    assert (found.best, found.members) == (1, (1,))
    assert all(p < 1e-10 for p in found.adjusted.values())
    tied = np.zeros((3, n), dtype=bool)
    tied[0, :20] = tied[2, :20] = True
    found = best_confidence_set(tied)
    assert found.best == 0 and found.members == (0, 2)  # identical rows: no discordant draw, p = 1
    assert found.adjusted[2] == 1.0


def test_a_setting_worse_by_a_few_discordant_draws_stays_in_and_holm_can_decide():
    rng = np.random.default_rng(0)
    best = rng.random(200) < 0.6
    close = best.copy()
    close[np.flatnonzero(best)[:4]] = False  # 4 discordant draws, all to the best: one-sided p = 1/16
    found = best_confidence_set(np.stack([best, close]))
    assert found.members == (0, 1) and found.adjusted[1] == pytest.approx(1 / 16)
    # Alone, 6 wins of 6 is p = 1/64 < 0.05: rejected. Beside three settings also at p = 1/64, Holm
    # multiplies the smallest by 4 (0.0625 > 0.05), and the set keeps all four.
    worse = best.copy()
    worse[np.flatnonzero(best)[:6]] = False
    assert best_confidence_set(np.stack([best, worse])).members == (0,)
    assert best_confidence_set(np.stack([best, worse, worse, worse, worse])).members == (0, 1, 2, 3, 4)


def test_the_depth_estimate_gives_a_verdict_on_where_the_best_lies():
    hits = np.zeros((8, 50), dtype=bool)
    hits[1] = True
    depth = best_confidence_set(hits).depth_estimate(8)
    assert (depth.value, depth.low, depth.high) == (1 / 8, 1 / 8, 1 / 8)
    assert below(0.25).verdict(depth) == "holds"
    hits[5] = True  # as good a layer deep in the model: the set spans both
    depth = best_confidence_set(hits).depth_estimate(8)
    assert (depth.low, depth.high) == (1 / 8, 5 / 8) and below(0.25).verdict(depth) == "unresolved"
    with pytest.raises(ValueError, match="settings, draws"):
        best_confidence_set(np.zeros(5, dtype=bool))


def _probe(rows):
    columns = ["layer", "position_norm", "success_low", "passes_gate", "within_limit"]
    return pd.DataFrame(rows, columns=columns)


def test_the_tuned_rule_takes_the_gentlest_strength_that_passes_and_its_best_layer():
    table = _probe([
        (None, 0.0, 0.0, True, True),  # unsteered: never chosen
        (3, 1.0, 0.80, True, True), (3, 2.0, 0.92, True, True), (3, 4.0, 0.97, True, True),
        (7, 1.0, 0.85, True, True), (7, 2.0, 0.95, True, True), (7, 4.0, 0.99, True, True),
    ])  # fmt: skip
    pick, reached = gentlest_passing(table, 0.9)
    assert reached and (pick.layer, pick.position_norm) == (7, 2.0)  # gentlest strength 2.0, its best layer 7
    table.loc[5, "passes_gate"] = False  # layer 7 at 2.0 fails the gate: layer 3 at 2.0 is the gentlest left
    pick, reached = gentlest_passing(table, 0.9)
    assert reached and (pick.layer, pick.position_norm) == (3, 2.0)
    table.loc[[2, 3, 6], "within_limit"] = False  # nothing that passes reaches the target
    pick, reached = gentlest_passing(table, 0.9)
    assert not reached and (pick.layer, pick.position_norm) == (7, 1.0)  # the best lower bound left
    table["passes_gate"] = False
    assert gentlest_passing(table, 0.9) == (None, False)
