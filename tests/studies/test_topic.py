"""How 00 and 01 choose their setting (and 02 and 03 inherit it): the best cell of a sweep, the
tuned arm's smallest strength that reaches the target, and the depth of the best layer, each on
small tables whose right answer is worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from actadd.studies.evaluation.topic import best_layer_depth, best_setting, sweep_table, tuned_setting


def _texts(hits: int, n: int = 8, words_per_hit: int = 1) -> list[str]:
    """``n`` completions, the first ``hits`` with ``words_per_hit`` wedding words each: success
    hits / n, mean topic-word count hits * words_per_hit / n."""
    wedding = " and ".join(["a wedding"] * words_per_hit)
    return [f"They planned {wedding}." if i < hits else "They planned a trip." for i in range(n)]


def _table(cells: list[tuple[int | None, float, list[str]]]) -> pd.DataFrame:
    """A sweep table from (layer, coeff, completions) cells; layer None is the unsteered row."""
    settings = [None if layer is None else SimpleNamespace(layer=layer, coeff=c, relative_norm=c / 2)
                for layer, c, _ in cells]  # fmt: skip
    return sweep_table(settings, [texts for *_, texts in cells])


def _pick(row: pd.Series) -> tuple[int, float]:
    return int(row["layer"]), float(row["coeff"])


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


def test_best_setting_refuses_a_table_without_a_steered_row():
    with pytest.raises(ValueError, match="no steered setting"):
        best_setting(_table([(None, 0.0, _texts(3))]))


NORMS = [2.0, 4.0, 8.0]
# Success of each (layer, probe strength), in eighths; the tuned rule reads it column by column.
GRID = {1: [4, 4, 2], 2: [6, 2, 8], 3: [0, 7, 6]}


def _probe(grid: dict[int, list[int]], words: dict[tuple[int, int], int] | None = None) -> pd.DataFrame:
    """A layer x strength probe as 01 builds it: unsteered first, then layer-major over NORMS; a
    relative norm takes a different coefficient at each layer (here norm x (4 - layer))."""
    words = words or {}
    cells = [(None, 0.0, _texts(8))] + [
        (layer, norm * (4 - layer), _texts(hits, words_per_hit=words.get((layer, j), 1)))
        for layer, row in grid.items()
        for j, (norm, hits) in enumerate(zip(NORMS, row))
    ]
    return _table(cells)


@pytest.mark.parametrize(
    "target, layer, norm",
    [
        (0.5, 2, 2.0),  # layers 1 and 2 reach 0.5 at the smallest strength; layer 2 is the better
        (0.75, 2, 2.0),  # exactly at the target counts as reaching it
        (0.8, 3, 4.0),  # the smallest strength that reaches it, not the best cell (layer 2 at 8)
        (0.9, 2, 8.0),
    ],
)
def test_tuned_setting_takes_the_smallest_strength_that_reaches_the_target_at_its_best_layer(target, layer, norm):
    pick = tuned_setting(_probe(GRID), NORMS, target)
    assert (int(pick["layer"]), pick["norm"], pick["reached"]) == (layer, norm, True)
    assert pick["coeff"] == norm * (4 - layer)  # the row of that cell, not just its labels


def test_tuned_setting_without_a_strength_that_reaches_the_target_takes_the_best_cell_and_says_so():
    # Nothing reaches 1.0; the best cells tie at 6/8 (layer 1 at 4, layer 2 at 4 and at 8), and
    # layer 2 at 8 has more wedding words.
    grid = {1: [2, 6, 4], 2: [4, 6, 6], 3: [0, 5, 5]}
    pick = tuned_setting(_probe(grid, words={(2, 2): 2}), NORMS, 1.0)
    assert (int(pick["layer"]), pick["norm"], pick["reached"]) == (2, 8.0, False)
    # With equal words the tie goes to the smallest coefficient: layer 2 at 4 (8, against 12 and 16).
    pick = tuned_setting(_probe(grid), NORMS, 1.0)
    assert (int(pick["layer"]), pick["norm"], pick["coeff"], pick["reached"]) == (2, 4.0, 8.0, False)


def test_best_layer_depth_is_the_argmax_layer_over_the_depth_with_ties_to_the_earlier():
    ones, zeros = np.ones(8, bool), np.zeros(8, bool)
    clear = best_layer_depth({2: zeros, 6: ones, 10: zeros}, 12)
    assert (clear.value, clear.low, clear.high, clear.n) == (0.5, 0.5, 0.5, 3)
    # Two perfect layers, given in reverse order: every resample ties, and a tie is the earlier layer's.
    tied = best_layer_depth({9: ones, 3: ones, 6: zeros}, 12)
    assert (tied.value, tied.low, tied.high) == (0.25, 0.25, 0.25)


def test_best_layer_depth_interval_spans_the_layers_resampling_can_make_best():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)  # 6/8
    b = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)  # 5/8: the best in many resamples too
    never = np.zeros(8, bool)
    depth = best_layer_depth({4: a, 8: b, 12: never}, 16, seed=0)
    assert depth.value == 0.25
    assert (depth.low, depth.high) == (0.25, 0.5)
    assert depth == best_layer_depth({4: a, 8: b, 12: never}, 16, seed=0)
    with pytest.raises(ValueError, match="at least 2 layers"):
        best_layer_depth({4: a}, 16)
