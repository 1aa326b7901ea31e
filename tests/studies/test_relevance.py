"""02's measures against independent references: the documents' mean log-probs with each
sentence's first predictions left out (plain torch on the random GPT-2), the perplexity ratio
exp(-mean diff) with its interval, and the controlled slope on wedding-word density (known
slope, numpy's HC3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

import actadd
from actadd.studies.evaluation.relevance import (
    perplexity_ratio_by_bin,
    ratio_by_bin,
    ratio_estimate,
    relevance_slope,
    score_documents,
)
from actadd.studies.evaluation.text import split_sentences
from tests.core.reference import reference_logits, token_ids

DOCUMENTS = [
    "The bride wore white. The car was red and fast.",  # sentences of 5 and 7 tokens
    "We went home. It rained all day long.",  # 4 and 7
    "Yes. No.",  # 2 and 2: nothing is left once two predictions per sentence are left out
]


def _reference(model, document: str, mask_len: int, vector: actadd.SteeringVector | None) -> float:
    """Plain torch: each sentence from the start token, its token log-probs with the first
    ``mask_len`` left out, the mean over the document's remaining tokens (NaN if none)."""
    hooks = [] if vector is None else [(vector.layer, vector.vector, 0)]
    kept = []
    for sentence in split_sentences(document):
        ids = token_ids(model, sentence)
        logits = reference_logits(model, sentence, hooks)
        lp = torch.log_softmax(logits[:-1].float(), dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        kept.append(lp[mask_len:])
    tokens = torch.cat(kept)
    return float(tokens.mean()) if len(tokens) else math.nan


@pytest.mark.parametrize("mask_len", [0, 2])
def test_score_documents_leaves_out_each_sentences_first_predictions(gpt2_random, mask_len):
    model = gpt2_random
    vector = actadd.steering_vector(model, " wedding", " tax", layer=1, coeff=8.0)
    documents = pd.DataFrame({"text": DOCUMENTS, "n_words": [10, 8, 2], "source": "s"})
    scored = score_documents(model, documents, {"paper": vector}, mask_len=mask_len, batch_size=4)
    assert list(scored.columns) == ["n_words", "source", "arm", "layer", "coeff", "relative_norm", "logprob_base",
                                    "logprob_actadd", "diff"]  # fmt: skip
    base = [_reference(model, d, mask_len, None) for d in DOCUMENTS]
    steered = [_reference(model, d, mask_len, vector) for d in DOCUMENTS]
    np.testing.assert_allclose(scored["logprob_base"], base, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(scored["logprob_actadd"], steered, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(scored["diff"], np.subtract(steered, base), atol=1e-4, equal_nan=True)
    assert (scored["arm"] == "paper").all() and (scored["layer"] == 1).all() and (scored["coeff"] == 8.0).all()
    assert (scored["relative_norm"] == vector.relative_norm).all()
    # The mask moves the numbers (so the comparison above can tell it was applied), and a
    # document whose sentences are all masked has nothing left to score.
    unmasked = [_reference(model, d, 0, None) for d in DOCUMENTS]
    if mask_len:
        assert np.abs(np.subtract(base[:2], unmasked[:2])).min() > 1e-3
        assert np.isnan(scored["logprob_base"].iloc[2]) and np.isnan(scored["diff"].iloc[2])
    else:
        assert not scored["logprob_base"].isna().any()


def test_each_arm_is_scored_with_its_own_vector_against_one_unsteered_pass(gpt2_random):
    """02's arms: the paper's and the tuned one, at other layers and perhaps the same coefficient:
    each row says which arm, layer and coefficient it is."""
    model = gpt2_random
    arms = {"tuned": actadd.steering_vector(model, " wedding", " tax", layer=3, coeff=8.0),
            "paper": actadd.steering_vector(model, " wedding", " tax", layer=0, coeff=8.0)}  # fmt: skip
    documents = pd.DataFrame({"text": DOCUMENTS[:2], "n_words": [10, 8], "source": "s"})
    scored = score_documents(model, documents, arms, mask_len=0, batch_size=4)
    assert scored["arm"].tolist() == ["tuned", "tuned", "paper", "paper"]
    assert scored["layer"].tolist() == [3, 3, 0, 0] and (scored["coeff"] == 8.0).all()
    for arm, vector in arms.items():
        rows = scored[scored["arm"] == arm]
        steered = [_reference(model, d, 0, vector) for d in DOCUMENTS[:2]]
        np.testing.assert_allclose(rows["logprob_actadd"], steered, atol=1e-4)
        assert (rows["relative_norm"] == vector.relative_norm).all()
    base = [_reference(model, d, 0, None) for d in DOCUMENTS[:2]]
    np.testing.assert_allclose(scored["logprob_base"], base * 2, atol=1e-4)
    # The two arms differ, so a row under the wrong vector would show.
    tuned, paper = (scored[scored["arm"] == a]["logprob_actadd"].to_numpy() for a in ("tuned", "paper"))
    assert np.abs(tuned - paper).min() > 1e-3


def test_ratio_by_bin_gives_each_arm_its_own_ratios_even_at_one_coefficient():
    rng = np.random.default_rng(0)
    bins = ["0%", "(0%, 0.5%]"] * 6
    base = rng.normal(-5, 0.5, size=12)
    scored = pd.concat([
        pd.DataFrame({"bin": bins, "logprob_base": base, "logprob_actadd": base + shift + rng.normal(0, 0.1, 12),
                      "arm": arm, "layer": layer, "coeff": 1.0, "relative_norm": norm})
        for arm, layer, norm, shift in (("tuned", 6, 3.0, 0.4), ("paper", 4, 1.2, -0.2))
    ], ignore_index=True)  # fmt: skip
    order = ["0%", "(0%, 0.5%]"]
    table = ratio_by_bin(scored, min_docs=2, order=order, seed=1)
    assert table["arm"].tolist() == ["tuned", "tuned", "paper", "paper"]  # the arms in the order scored
    assert table["layer"].tolist() == [6, 6, 4, 4] and table["relative_norm"].tolist() == [3.0, 3.0, 1.2, 1.2]
    for arm in ("tuned", "paper"):
        rows = scored[scored["arm"] == arm]
        reference = perplexity_ratio_by_bin(rows["bin"], rows["logprob_actadd"], rows["logprob_base"], min_docs=2,
                                            order=order, seed=1)  # fmt: skip
        mine = table[table["arm"] == arm].reset_index(drop=True)[reference.columns]
        pd.testing.assert_frame_equal(mine, reference)
        assert (reference["n_docs"] == 6).all()  # each arm's own documents, not both arms' pooled
    # The paper's arm costs perplexity (ratio above 1), the tuned one gains: they are not mixed up.
    assert (table[table["arm"] == "tuned"]["ratio"] < 1).all() and (table[table["arm"] == "paper"]["ratio"] > 1).all()


def test_ratio_estimate_is_exp_of_minus_the_mean_difference_with_the_mirrored_interval():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.2, 0.5, size=400)
    with_nan = np.concatenate([diffs, [np.nan, np.nan]])  # documents with no token left to score
    ratio = ratio_estimate(with_nan, seed=0)
    mean, se = diffs.mean(), diffs.std(ddof=1) / math.sqrt(len(diffs))
    assert ratio.n == 400
    assert ratio.value == pytest.approx(math.exp(-mean), rel=1e-12)
    # exp(-x) is decreasing: the ratio's low end is exp(-) of the mean's high end. A BCa interval
    # of 400 normal values is close to the normal one.
    z = scipy_stats.norm.ppf(0.975)
    assert ratio.low == pytest.approx(math.exp(-(mean + z * se)), rel=0.01)
    assert ratio.high == pytest.approx(math.exp(-(mean - z * se)), rel=0.01)
    assert ratio.low < ratio.value < ratio.high < 1  # the steered model is better: perplexity falls
    worse = ratio_estimate(-diffs, seed=0)
    assert worse.value == pytest.approx(1 / ratio.value) and worse.low > 1


def _documents(n: int, sources: tuple[str, ...], seed: int = 0) -> pd.DataFrame:
    """Documents whose diff is 0.04 x density (in %) - 0.03 x log(words) - 0.5 if from source
    "b", plus noise that grows with density; density is confounded with both covariates:
    source "b" is denser, and shorter documents are denser."""
    rng = np.random.default_rng(seed)
    source = rng.choice(sources, size=n)
    n_words = np.exp(rng.uniform(np.log(20), np.log(2000), size=n)).round()
    density = rng.uniform(0, 2, size=n) + 1.5 * (source == "b") + 2.0 * (np.log(n_words) < np.log(200))
    noise = rng.normal(0, 0.005 + 0.005 * density, size=n)
    diff = 0.04 * density - 0.03 * np.log(n_words) - 0.5 * (source == "b") + noise
    return pd.DataFrame({"density_pct": density, "n_words": n_words, "source": source, "diff": diff})


def _hc3_interval(frame: pd.DataFrame, columns: list[np.ndarray]) -> tuple[float, float, float]:
    """OLS with HC3 robust errors in numpy: the coefficient of the first column after the
    intercept, with its normal 95% interval."""
    x = np.column_stack([np.ones(len(frame)), *columns])
    y = frame["diff"].to_numpy()
    bread = np.linalg.inv(x.T @ x)
    beta = bread @ x.T @ y
    residual = y - x @ beta
    leverage = np.einsum("ij,jk,ik->i", x, bread, x)
    meat = x.T @ (x * (residual / (1 - leverage))[:, None] ** 2)
    se = math.sqrt((bread @ meat @ bread)[1, 1])
    z = scipy_stats.norm.ppf(0.975)
    return beta[1], beta[1] - z * se, beta[1] + z * se


def test_relevance_slope_recovers_a_known_slope_with_length_and_source_held_fixed():
    documents = _documents(300, ("a", "b"))
    documents.loc[[3, 7], "diff"] = np.nan  # documents with no token left to score
    slope = relevance_slope(documents)
    kept = documents.dropna(subset=["diff"])
    assert slope.low < 0.04 < slope.high and slope.high - slope.low < 0.02
    assert slope.n == 298 and "C(source)" in slope.method
    value, low, high = _hc3_interval(
        kept, [kept["density_pct"].to_numpy(), np.log(kept["n_words"]).to_numpy(), (kept["source"] == "b").to_numpy()]
    )
    assert (slope.value, slope.low, slope.high) == pytest.approx((value, low, high), rel=1e-6)
    # Without the covariates the confounding shows: the slope on density alone is far off.
    naive = np.polyfit(kept["density_pct"], kept["diff"], 1)[0]
    assert not slope.low < naive < slope.high


def test_relevance_slope_of_one_source_has_no_source_term():
    documents = _documents(100, ("a",), seed=1)
    slope = relevance_slope(documents)
    assert "C(source)" not in slope.method and slope.low < 0.04 < slope.high
    value, low, high = _hc3_interval(documents, [documents["density_pct"].to_numpy(), np.log(documents["n_words"])])
    assert (slope.value, slope.low, slope.high) == pytest.approx((value, low, high), rel=1e-6)
    with pytest.raises(ValueError, match="at least 8"):
        relevance_slope(documents.head(7))
