"""Which scorer to trust: the tweet split, the accuracy table and its cache, zero-shot LM
judges, and agreement between scorers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

import actadd
from actadd.studies.data import sentiment_prompts
from actadd.studies.evaluation import scorers
from actadd.studies.evaluation.stats import proportion
from actadd.studies.protocol import judges


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTADD_CACHE", str(tmp_path))
    return tmp_path


def test_the_tweet_split_is_disjoint_balanced_and_deterministic():
    split = judges.tweet_split()
    parts = {part: set(split.loc[split["part"] == part, "text"]) for part in judges.TWEET_PARTS}
    assert not parts["heldout"] & parts["train"]
    assert not (parts["heldout"] | parts["train"]) & parts["prompts"]
    counts = split.groupby(["part", "label_id"]).size()
    assert counts["heldout"].tolist() == [judges.HELDOUT_PER_CLASS] * 2
    assert counts["train"].tolist() == [judges.TRAIN_PER_CLASS] * 2
    assert split["text"].is_unique
    judges._tweet_split.cache_clear()
    pd.testing.assert_frame_equal(judges.tweet_split(), split)  # no seed involved: the same split again


def test_no_scorer_tweet_becomes_a_prompt():
    reserved = judges.scorer_tweets()
    assert len(reserved) == 2 * (judges.HELDOUT_PER_CLASS + judges.TRAIN_PER_CLASS)
    prompts = sentiment_prompts(n=400, seed=0, exclude=reserved).to_pandas()
    assert not set(prompts["text"]) & reserved
    held_out = set(judges.heldout_tweets(50)["text"])
    assert len(held_out) == 100 and held_out <= reserved


@pytest.mark.parametrize("embedder", ["minilm", "mpnet"])
def test_the_classifier_trains_on_the_training_tweets_only(monkeypatch, embedder):
    seen = {}

    def embedding_lr_scorer(texts, labels, *, name, embedder):
        seen["texts"], seen["labels"], seen["embedder"] = list(texts), list(labels), embedder
        return scorers.Scorer(name, lambda batch: np.zeros(len(batch)))

    monkeypatch.setattr(judges, "embedding_lr_scorer", embedding_lr_scorer)
    assert judges.tweet_lr_scorer(train_per_class=30, embedder=embedder).name == f"{embedder}-logreg-tweets"
    split = judges.tweet_split().set_index("text")
    assert set(split.loc[seen["texts"], "part"]) == {"train"}
    assert sorted(seen["labels"]) == [0] * 30 + [1] * 30
    assert seen["embedder"] == embedder
    with pytest.raises(ValueError, match="train_per_class"):
        judges.tweet_lr_scorer(train_per_class=judges.TRAIN_PER_CLASS + 1)


def test_accuracy_table_ranks_by_held_out_tweets_and_is_cached(monkeypatch, tmp_cache):
    tweets = pd.DataFrame({"text": ["good", "bad", "fine", "awful"], "label_id": [1, 0, 1, 0]})
    movies = pd.DataFrame({"text": ["great film", "dull film"], "label_id": [1, 0]})
    monkeypatch.setattr(judges, "heldout_tweets", lambda per_class: tweets)
    monkeypatch.setattr(judges, "pang_lee", lambda per_class: movies)
    words = {"good": 1.0, "fine": 1.0, "great film": 0.0, "dull film": 1.0}
    tweet_expert = scorers.Scorer("textblob", lambda texts: np.array([words.get(t, 0.0) for t in texts]))
    positive = scorers.Scorer("vader", lambda texts: np.ones(len(texts)))
    backwards = scorers.Scorer("minilm-logreg-tweets", lambda texts: 1 - tweet_expert.score(texts))
    negative = scorers.Scorer("mpnet-logreg-tweets", lambda texts: np.zeros(len(texts)))
    monkeypatch.setattr(judges, "vader_scorer", lambda: positive)
    monkeypatch.setattr(judges, "textblob_scorer", lambda: tweet_expert)
    monkeypatch.setattr(judges, "embedder_unavailable", lambda name: None)
    lr_scorers = {"minilm": backwards, "mpnet": negative}
    monkeypatch.setattr(judges, "tweet_lr_scorer", lambda train_per_class, embedder: lr_scorers[embedder])
    table, built = judges.sentiment_accuracy_table(None, per_class=2, train_per_class=10)
    # Ranked on the tweets even though the Pang-Lee column says otherwise; ties keep the candidates' order.
    assert table["scorer"].tolist() == ["textblob", "vader", "mpnet-logreg-tweets", "minilm-logreg-tweets"]
    assert table["tweets_accuracy"].tolist() == [1.0, 0.5, 0.5, 0.0]
    assert table["pang_lee_accuracy"].tolist() == [0.0, 0.5, 0.5, 1.0]
    wilson = judges.accuracy_estimate(table, "vader")
    reference = proportion(2, 4)
    assert (wilson.value, wilson.low, wilson.high, wilson.n) == (0.5, reference.low, reference.high, 4)
    assert built["textblob"] is tweet_expert
    assert len(list((tmp_cache / "scorers").glob("sentiment_accuracy-*.json"))) == 1

    def fails(texts):
        pytest.fail("the table must come from the cache")

    for name in ("vader_scorer", "textblob_scorer"):
        monkeypatch.setattr(judges, name, lambda: scorers.Scorer("failing", fails))
    monkeypatch.setattr(judges, "tweet_lr_scorer", lambda train_per_class, embedder: scorers.Scorer("failing", fails))
    pd.testing.assert_frame_equal(judges.sentiment_accuracy_table(None, per_class=2, train_per_class=10)[0], table)
    # Another candidate set (or size) is measured afresh, into its own file.
    with pytest.raises(pytest.fail.Exception):
        judges.sentiment_accuracy_table(None, per_class=3, train_per_class=10)


def test_mpnet_is_a_candidate_only_when_installed(monkeypatch):
    monkeypatch.setattr(judges, "embedder_unavailable", lambda name: None)
    assert "mpnet-logreg-tweets" in judges.sentiment_candidates(None)
    monkeypatch.setattr(judges, "embedder_unavailable", lambda name: "not installed; pip install ...")
    with pytest.warns(UserWarning, match="mpnet-logreg-tweets is left out.*pip install"):
        candidates = judges.sentiment_candidates(None)
    assert sorted(candidates) == ["minilm-logreg-tweets", "textblob", "vader"]


@pytest.fixture
def named_judge(monkeypatch):
    """A stand-in judge model whose actadd name is 'toy-judge', with a two-token vocabulary of answers."""
    monkeypatch.setattr(actadd, "model_info", lambda model: SimpleNamespace(name=model.name))
    monkeypatch.setattr(actadd, "encode", lambda model, text, start=True: [{" positive": 0, " negative": 1}[text]])
    return SimpleNamespace(name="toy-judge")


def test_lm_judge_compares_two_answers_in_one_pass_and_calibrates(monkeypatch, named_judge):
    calls = []

    def next_token_logprobs(model, prompts, *, batch_size=16):
        calls.append(list(prompts))
        # ' positive' likelier when the text says 'loved'; the content-free input leans positive by 0.5.
        rows = [[-1.0, -3.0] if "loved" in p else [-1.0, -1.5] if "N/A" in p else [-3.0, -1.0] for p in prompts]
        return torch.tensor(rows)

    monkeypatch.setattr(actadd, "next_token_logprobs", next_token_logprobs)
    scorer = scorers.lm_judge_scorer(named_judge)
    assert scorer.name == "lm-judge:toy-judge"
    texts = ["I loved it.", "I hated it."]
    np.testing.assert_allclose(scorer.score(texts), [1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(2.5))])
    assert calls[-1] == [scorers.SENTIMENT_INSTRUCTION.format(text=t) for t in texts]  # one sequence per text
    with pytest.raises(ValueError, match="different tokens"):
        scorers.zero_shot_judge(named_judge, "{text}", (" positive", " positive"), name="x")


def test_agreement_against_sklearn_and_scipy():
    a = np.array([0.9, 0.2, 0.7, 0.4, 0.6, 0.1])
    b = np.array([0.8, 0.3, 0.4, 0.45, 0.9, 0.2])
    result = judges.agreement(a, b)
    assert result["kappa"] == pytest.approx(cohen_kappa_score(a >= 0.5, b >= 0.5))
    assert result["agreement"] == pytest.approx(5 / 6) and result["n"] == 6
    assert result["spearman"] == pytest.approx(pd.Series(a).corr(pd.Series(b), method="spearman"))
    assert math.isnan(judges.agreement([0.9, 0.8], [0.7, 0.6])["kappa"])  # one label each: undefined
    with pytest.raises(ValueError, match="same"):
        judges.agreement([0.1, 0.2], [0.3])
