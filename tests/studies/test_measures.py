"""The summaries of the wedding studies against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from actadd import SteeringVector
from actadd.studies.evaluation import stats
from actadd.studies.evaluation.metrics import precision_at_k
from actadd.studies.evaluation.recall import precision_curves, random_direction_like
from actadd.studies.evaluation.relevance import density_bin, density_labels, perplexity_ratio_by_bin, sample_documents
from actadd.studies.evaluation.topic import topic_summary


def test_density_bin_edges_are_right_closed_and_zero_is_its_own_bin():
    edges = [0.0, 0.005, 0.01, 1.0]
    assert density_labels(edges) == ["0%", "(0%, 0.5%]", "(0.5%, 1%]", "(1%, 100%]"]
    assert density_bin([0.0, 1e-9, 0.005, 0.00501, 0.01, 0.5, 1.0], edges) == [
        "0%", "(0%, 0.5%]", "(0%, 0.5%]", "(0.5%, 1%]", "(0.5%, 1%]", "(1%, 100%]", "(1%, 100%]",
    ]  # fmt: skip
    assert density_bin(0.007, edges) == "(0.5%, 1%]"


@pytest.mark.parametrize("edges", [[0.01, 0.02], [0.0, 0.02, 0.01], [0.0]])
def test_density_bin_rejects_bad_edges(edges):
    with pytest.raises(ValueError, match="edges"):
        density_bin(0.0, edges)


def test_density_bin_rejects_out_of_range_density():
    with pytest.raises(ValueError, match="outside"):
        density_bin(1.5, [0.0, 1.0])


def test_perplexity_ratio_by_bin_matches_hand_computation():
    bins = ["a", "a", "a", "b", "c", "c"]
    base = [-3.0, -2.0, -4.0, -1.0, -2.0, -2.0]
    steered = [-2.9, -2.2, -3.6, -0.5, -1.5, -1.9]  # diffs a: 0.1, -0.2, 0.4; b: 0.5; c: 0.5, 0.1
    table = perplexity_ratio_by_bin(bins, steered, base, min_docs=2, order=["c", "b", "a"]).set_index("bin")
    assert list(table.index) == ["c", "b", "a"]
    assert table.loc["a", "n_docs"] == 3 and table.loc["a", "kept"]
    assert table.loc["a", "mean_diff"] == pytest.approx(0.1)
    assert table.loc["a", "ratio"] == pytest.approx(math.exp(-0.1))
    assert table.loc["c", "ratio"] == pytest.approx(math.exp(-0.3))
    # exp is decreasing: the ratio's low end comes from the diff's high end.
    assert table.loc["a", "ratio_low"] == pytest.approx(math.exp(-table.loc["a", "diff_high"]))
    assert table.loc["a", "ratio_low"] <= table.loc["a", "ratio"] <= table.loc["a", "ratio_high"]
    assert not table.loc["b", "kept"] and np.isnan(table.loc["b", "ratio"])


def test_perplexity_ratio_by_bin_rejects_mismatched_inputs_and_tiny_threshold():
    with pytest.raises(ValueError, match="one entry per document"):
        perplexity_ratio_by_bin(["a"], [0.0, 1.0], [0.0], min_docs=2)
    with pytest.raises(ValueError, match="min_docs"):
        perplexity_ratio_by_bin(["a", "a"], [0.0, 1.0], [0.0, 0.0], min_docs=1)


def test_precision_curves_agree_with_metrics_and_pair_the_difference():
    reference = np.array([0, 5, 50, 200, 3, 0])
    steered = np.array([1, 5, 99, 0, 3, 7])
    ks = [1, 4, 6, 51, 100]
    curves = precision_curves({"base": reference, "steered": steered}, reference="base", ks=ks)
    for name, ranks in (("base", reference), ("steered", steered)):
        rows = curves[curves.condition == name].set_index("k")
        pd.testing.assert_series_equal(rows.p_at_k, precision_at_k(ranks, ks=ks), check_names=False)
    rows = curves[curves.condition == "steered"].set_index("k")
    # K=1: base hits prompts 0 and 5, steered hits prompt 3 -> 1/6 - 2/6.
    assert rows.loc[1, "diff"] == pytest.approx(-1 / 6)
    assert rows.loc[51, "diff"] == pytest.approx(0.0)  # base hits {0,1,2,4,5}, steered {0,1,3,4,5}
    assert (curves[curves.condition == "base"]["diff"] == 0).all()
    assert (curves.diff_low <= curves["diff"] + 1e-12).all() and (curves["diff"] <= curves.diff_high + 1e-12).all()
    # A share gets a Wilson interval, a paired difference Newcombe's: 0 of 6 is not [0, 0].
    wilson = stats.proportion(1, 6)
    assert (rows.loc[1, "p_low"], rows.loc[1, "p_high"]) == pytest.approx((wilson.low, wilson.high))
    base_k1 = curves[(curves.condition == "base") & (curves.k == 1)].iloc[0]
    assert base_k1.diff_low < 0 < base_k1.diff_high


def test_precision_curves_rejects_unpaired_conditions():
    with pytest.raises(ValueError, match="reference"):
        precision_curves({"a": [0, 1]}, reference="b")
    with pytest.raises(ValueError, match="same prompts"):
        precision_curves({"a": [0, 1], "b": [0, 1, 2]}, reference="a")


def _vector(tensor: torch.Tensor) -> SteeringVector:
    return SteeringVector(
        vector=tensor, layer=3, coeff=2.0, p_plus=" weddings", p_minus="", tokens_plus=(0, 1, 2),
        tokens_minus=(0, 5, 5), model_name="toy", relative_norm=1.7,
    )  # fmt: skip


def test_random_direction_keeps_each_position_norm_and_is_seeded():
    torch.manual_seed(0)
    tensor = torch.randn(3, 256) * torch.tensor([[0.0], [5.0], [0.5]])  # position 0 cancels, as in a real pair
    original = _vector(tensor)
    control = random_direction_like(original, seed=1)
    torch.testing.assert_close(control.vector.norm(dim=-1), tensor.norm(dim=-1))
    assert torch.all(control.vector[0] == 0)
    cosine = torch.nn.functional.cosine_similarity(control.vector[1:], tensor[1:], dim=-1)
    assert cosine.abs().max() < 0.3  # random directions in 256 dimensions are nearly orthogonal to it
    assert control.relative_norm == original.relative_norm and control.layer == original.layer
    torch.testing.assert_close(random_direction_like(original, seed=1).vector, control.vector)
    assert not torch.allclose(random_direction_like(original, seed=2).vector, control.vector)


def test_topic_summary_counts_whole_words():
    summary = topic_summary(["A wedding and a bride.", "nothing here", "Wedded? no. Married, yes", "swedding"])
    assert summary["n"] == 4
    assert summary["success"] == pytest.approx(0.5)
    assert summary["mean_count"] == pytest.approx((2 + 0 + 1 + 0) / 4)
    assert summary["success_low"] <= 0.5 <= summary["success_high"]
    with pytest.raises(ValueError, match="at least 2"):
        topic_summary(["one wedding"])


def test_sample_documents_balances_related_and_respects_length():
    pool = pd.DataFrame({
        "text": [f"doc {i}" for i in range(12)],
        "n_words": [10, 20, 30, 400, 50, 60, 70, 80, 500, 100, 110, 120],
        "wedding_count": [1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0],
    })  # fmt: skip
    chosen = sample_documents(pool, 6, related_fraction=0.5, max_words=300, seed=0)
    assert len(chosen) == 6 and (chosen.wedding_count > 0).sum() == 3 and chosen.n_words.max() <= 300
    assert chosen.equals(sample_documents(pool, 6, related_fraction=0.5, max_words=300, seed=0))
    with pytest.raises(ValueError, match="related"):
        sample_documents(pool, 8, related_fraction=0.5, max_words=300)
