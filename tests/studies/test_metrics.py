"""Text helpers, metrics and intervals against values worked out by hand; real scorers on clear examples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import actadd
from actadd.studies.evaluation import metrics, scorers, stats
from actadd.studies.evaluation import text as text_helpers
from actadd.studies.protocol import judges


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTADD_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def named_judge(monkeypatch):
    """A stand-in judge model whose actadd name is 'toy-judge'."""
    monkeypatch.setattr(actadd, "model_info", lambda model: SimpleNamespace(name=model.name))
    return SimpleNamespace(name="toy-judge")


def test_topic_word_count_whole_words_any_case():
    text = "Wedding bells! The BRIDE's dress; Wednesday; a bridegroom; they wed, remarried, MARRIED."
    # Wedding, BRIDE('s), wed, MARRIED -- not Wednesday, bridegroom, remarried
    assert text_helpers.topic_word_count(text) == 4
    assert text_helpers.topic_word_count("cats and dogs, a Cat", words=["cat"]) == 1
    with pytest.raises(ValueError, match="words"):
        text_helpers.topic_word_count("x", words="wedding")


def test_topic_success_is_fraction_with_one_or_more():
    assert metrics.topic_success(["a wedding", "nothing here", "married twice, married"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        metrics.topic_success([])


def test_word_tokens():
    assert text_helpers.word_tokens("Don't stop-now: 3.5 cats") == ["Don't", "stop", "now", "3", "5", "cats"]


def test_punkt_on_abbreviations_and_decimals():
    paragraph = (
        "Dr. Smith moved to the U.S. in 1999 and paid $3.50 for coffee. "
        "Mr. Jones disagreed with him. Was it worth 2.5 times the price? Yes!"
    )
    assert text_helpers.split_sentences(paragraph) == [
        "Dr. Smith moved to the U.S. in 1999 and paid $3.50 for coffee.",
        "Mr. Jones disagreed with him.",
        "Was it worth 2.5 times the price?",
        "Yes!",
    ]


def test_mean_token_logprob_weights_tokens_not_sentences():
    # (-1 - 2 - 3) / 3 tokens = -2; a mean of sentence means would give -2.25
    assert metrics.mean_token_logprob([torch.tensor([-1.0, -2.0]), torch.tensor([-3.0])]) == pytest.approx(-2.0)
    assert metrics.perplexity(-2.0) == pytest.approx(math.e**2)
    with pytest.raises(ValueError, match="no tokens"):
        metrics.mean_token_logprob([torch.tensor([])])


@pytest.fixture
def fake_logprobs(monkeypatch):
    """actadd.logprobs stand-in: every whitespace word of a text is one token of log-prob -(its text's word count)."""
    calls = []

    def logprobs(model, texts, vectors=None, *, contexts=None, batch_size=16, progress=False):
        calls.append({"texts": list(texts), "vectors": vectors, "contexts": contexts, "batch_size": batch_size})
        return [torch.full((len(t.split()),), -float(len(t.split()))) for t in texts]

    monkeypatch.setattr(actadd, "logprobs", logprobs, raising=False)
    return calls


def test_document_logprob_splits_sentences_and_averages_tokens(fake_logprobs):
    # 'Dr. Smith came home.' 4 tokens at -4; 'He slept.' 2 tokens at -2 -> (16 + 4) / 6
    assert scorers.document_logprob("model", "Dr. Smith came home. He slept.", vectors="v") == pytest.approx(-20 / 6)
    assert fake_logprobs[0] == {"texts": ["Dr. Smith came home.", "He slept."], "vectors": "v", "contexts": None,
                                "batch_size": 16}  # fmt: skip
    both = scorers.document_logprobs("model", ["One two. Three.", "Four five six."], batch_size=64)
    assert fake_logprobs[1]["batch_size"] == 64
    np.testing.assert_allclose(both, [(-4 - 1) / 3, -3.0])


def test_precision_at_k_from_logits_and_ranks():
    logits = torch.tensor([[0.1, 0.5, 0.2], [0.9, 0.1, 0.3], [0.2, 0.2, 0.1]])
    # answer 2 is second (rank 1); answer 0 is first; answer 1 ties for first (ties favour the answer)
    np.testing.assert_array_equal(metrics.answer_ranks(logits, [2, 0, 1]), [1, 0, 0])
    p = metrics.precision_at_k(logits, [2, 0, 1], ks=[1, 2])
    assert p.to_dict() == {1: pytest.approx(2 / 3), 2: 1.0}
    from_ranks = metrics.precision_at_k(np.array([0, 5, 99, 100]), ks=[1, 6, 100])
    assert from_ranks.tolist() == [0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(np.array([0]), ks=[0])


def test_paper_ks_span_1_to_100():
    assert metrics.PAPER_KS[0] == 1 and metrics.PAPER_KS[-1] == 100


def test_distinct_n_by_hand():
    texts = ["a b a b", "a b c"]
    assert metrics.distinct_n(texts, 1) == pytest.approx(3 / 7)  # {a, b, c} of 7 words
    assert metrics.distinct_n(texts, 2) == pytest.approx(3 / 5)  # ab ba ab | ab bc
    assert metrics.distinct_n(texts, 3) == 1.0  # aba bab | abc
    with pytest.raises(ValueError, match="n must"):
        metrics.distinct_n(texts, 0)


def test_bootstrap_ci_matches_normal_approximation():
    values = np.array([0.0, 1.0] * 50)
    estimate, low, high = stats.bootstrap_ci(values)
    half_width = 1.96 * math.sqrt(0.25 / 100)  # binomial standard error at p = 0.5, n = 100
    assert estimate == 0.5
    assert low == pytest.approx(0.5 - half_width, abs=0.02) and high == pytest.approx(0.5 + half_width, abs=0.02)
    assert stats.bootstrap_ci(values, seed=1) == stats.bootstrap_ci(values, seed=1)
    assert stats.bootstrap_ci(np.zeros(10)) == (0.0, 0.0, 0.0)
    median, low, high = stats.bootstrap_ci(np.arange(11.0), stat=np.median)
    assert median == 5.0 and low < 5.0 < high


def test_median_ci_is_the_order_statistics_a_sign_test_gives():
    """Worked by hand from Binomial(n, 1/2): at 95%, 6 values give [min, max] (coverage 1 - 2/64),
    12 give the 3rd and 10th smallest (P(B <= 2) = 79/4096 <= 0.025 < P(B <= 3) = 299/4096),
    and 5 or fewer no interval at all ([min, max] of 5 covers 1 - 2/32 = 94%)."""
    values = np.array([7.0, 1.0, 12.0, 3.0, 9.0, 4.0, 11.0, 2.0, 8.0, 5.0, 10.0, 6.0])
    assert stats.median_ci(values) == (6.5, 3.0, 10.0)
    assert stats.median_ci(values[:6]) == (5.5, 1.0, 12.0)
    median, low, high = stats.median_ci(values[:5])
    assert median == 7.0 and math.isnan(low) and math.isnan(high)
    estimate = stats.median_estimate(values[:4])
    assert estimate.n == 4 and math.isnan(estimate.low) and estimate.method == "order statistics (sign test)"
    with pytest.raises(ValueError, match="confidence"):
        stats.median_ci(values, confidence=0.0)


def test_the_fewest_values_for_a_median_interval_follow_the_binomial():
    """[min, max] of n values misses the median with probability 2 / 2^n: at 95% that needs
    2^n > 40, so 6; at 90%, 2^n > 20, so 5; at 99%, 2^n > 200, so 8. One value fewer gives none."""
    assert [stats.fewest_for_median_ci(c) for c in (0.9, 0.95, 0.99)] == [5, 6, 8]
    assert stats.fewest_for_median_ci() == 6
    for confidence in (0.9, 0.95, 0.99):
        n = stats.fewest_for_median_ci(confidence)
        assert math.isnan(stats.median_ci(np.arange(n - 1.0), confidence)[1])
        assert stats.median_ci(np.arange(float(n)), confidence)[1:] == (0.0, n - 1.0)
    with pytest.raises(ValueError, match="below 1"):
        stats.fewest_for_median_ci(1.0)


CLEAR = ["This movie was wonderful, I loved every minute of it.", "A terrible, boring film. I hated it."]


@pytest.mark.parametrize("factory", [scorers.vader_scorer, scorers.textblob_scorer])
def test_lexicon_scorers_on_clear_examples(factory):
    positive, negative = factory().score(CLEAR)
    assert positive > 0.5 > negative


def test_fluency_conditions_on_prompts_and_takes_the_geometric_mean(fake_logprobs, named_judge):
    perplexities = scorers.continuation_perplexity(
        named_judge, ["I went up to my friend", "Hello"], [" and said hi", " there"]
    )
    assert fake_logprobs[0]["contexts"] == ["I went up to my friend", "Hello"]
    np.testing.assert_allclose(perplexities, [math.exp(3), math.exp(1)])
    estimate = scorers.fluency_estimate([math.exp(3), math.exp(1), math.exp(2)])
    assert estimate.value == pytest.approx(math.exp(2))
    with pytest.raises(ValueError, match="continuations"):
        scorers.continuation_perplexity(named_judge, ["a"], [])


@pytest.mark.slow
def test_relevance_prefers_on_topic_continuations():
    on_topic, off_topic = scorers.relevance(
        ["I love weddings"] * 2, ["The bride wore a white dress.", "Tax forms are due in April."]
    )
    assert on_topic > off_topic and on_topic < 1.0


@pytest.mark.slow
def test_embedding_logreg_on_clear_examples():
    positive, negative = judges.tweet_lr_scorer(train_per_class=100).score(CLEAR)
    assert positive > 0.5 > negative


@pytest.mark.slow
def test_lm_judge_on_clear_examples():
    judge = actadd.load_model("smollm2-135m")
    positive, negative = scorers.lm_judge_scorer(judge).score(CLEAR)
    assert positive > negative


def test_fluency_equals_a_one_at_a_time_reference(smol):
    """Batched, length-sorted, continuation-only scoring against one actadd.logprobs call per
    completion; blank completions are left out; the aggregate is the geometric mean."""
    prompts = ["I went up to my friend and said", "Hello", "The weather is", "Once upon a time there was"]
    continuations = [" hello there, friend.", "  ", " nice today.", " a small dragon who loved to read books"]
    scored = scorers.continuation_perplexity(smol, prompts, continuations, batch_size=3)
    reference = [
        float(torch.exp(-actadd.logprobs(smol, [c], contexts=[p], batch_size=1)[0].double().mean()))
        for p, c in zip(prompts, continuations)
        if c.strip()
    ]
    assert np.isnan(scored[1])
    np.testing.assert_allclose(scored[[0, 2, 3]], reference, rtol=1e-4)  # batched vs alone: float32 noise
    estimate = scorers.fluency(smol, prompts, continuations)
    assert estimate.value == pytest.approx(math.exp(np.mean(np.log(reference))), rel=1e-4)
    assert estimate.low <= estimate.value <= estimate.high and estimate.n == 3
