"""Scorers that load a model or train a classifier: document log-probs, sentiment, zero-shot LM
judges, relevance and fluency. The toxicity classifiers are in :mod:`.toxicity`; which sentiment
scorer to trust is decided in :mod:`actadd.studies.protocol.judges`."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

import actadd
from actadd.checks import integer
from actadd.io import atomic_write, cache_dir
from actadd.studies.evaluation.embedders import EMBEDDERS, embedder_folder
from actadd.studies.evaluation.metrics import mean_token_logprob, perplexity
from actadd.studies.evaluation.stats import Estimate, cluster_mean
from actadd.studies.evaluation.text import split_sentences


def document_logprobs(
    model: TransformersModel,
    documents: Sequence[str],
    vectors: actadd.Steerable | None = None,
    *,
    mask_len: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """Mean token log-prob of each document, shape [len(documents)], steered when ``vectors`` is given.

    Each document is split into sentences with Punkt and every sentence is scored from the
    model's start token (``actadd.logprobs``); the mean runs over the document's tokens,
    leaving out each sentence's first ``mask_len`` predictions, as the original code did
    (``mask_len = k``) so that the immediate effect of the addition is excluded. A document
    with no token left gets NaN. All sentences go through ``actadd.logprobs`` together so
    they batch across documents; ``batch_size`` is as in ``actadd.logprobs``.
    """
    mask_len = integer(mask_len, "mask_len", minimum=0)
    sentences = [split_sentences(document) for document in documents]
    if empty := [i for i, s in enumerate(sentences) if not s]:
        raise ValueError(f"documents {empty[:5]} have no sentences; drop empty documents first")
    flat = [sentence for group in sentences for sentence in group]
    scored = [
        lp[mask_len:]
        for lp in actadd.logprobs(model, flat, vectors, batch_size=batch_size, progress=len(flat) > batch_size)
    ]
    means, start = [], 0
    for group in sentences:
        kept = scored[start : start + len(group)]
        means.append(mean_token_logprob(kept) if sum(lp.numel() for lp in kept) else np.nan)
        start += len(group)
    return np.array(means)


def document_logprob(model: TransformersModel, document: str, vectors: actadd.Steerable | None = None) -> float:
    """Mean token log-prob of one document, sentences split with Punkt (see :func:`document_logprobs`)."""
    return float(document_logprobs(model, [document], vectors)[0])


@dataclass(frozen=True)
class Scorer:
    """A text classifier: ``score(texts)`` gives the probability of its class per text, shape [N]
    (P(positive) for a sentiment scorer, P(toxic) for a toxicity scorer)."""

    name: str
    score: Callable[[list[str]], np.ndarray]


def vader_scorer() -> Scorer:
    """VADER (vaderSentiment==3.3.2): compound score in [-1, 1] mapped to [0, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return Scorer("vader", lambda texts: np.array([(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts]))


def textblob_scorer() -> Scorer:
    """TextBlob's default pattern analyser (textblob==0.20.1): polarity in [-1, 1] mapped to [0, 1]."""
    from textblob import TextBlob

    return Scorer("textblob", lambda texts: np.array([(TextBlob(t).sentiment.polarity + 1) / 2 for t in texts]))


@functools.lru_cache(maxsize=len(EMBEDDERS))
def sentence_embedder(name: str = "minilm") -> Any:
    """The packaged sentence embedder ``name`` (``"minilm"`` or ``"mpnet"``, see
    :mod:`.embedders`) as a SentenceTransformer on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedder_folder(name)), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64, embedder: str = "minilm") -> np.ndarray:
    """Unit-length sentence embeddings by ``embedder`` (``"minilm"``: [N, 384]; ``"mpnet"``:
    [N, 768], stronger and 6-7x slower on tweets). Each distinct text is embedded once: generated
    continuations repeat, and mpnet's cost makes every saved pass count."""
    model = sentence_embedder(embedder)
    rows: dict[str, int] = {}
    positions = [rows.setdefault(text, len(rows)) for text in texts]
    if not rows:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        list(rows), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(rows) > 1000
    )
    return vectors[positions]


def embedding_lr_scorer(texts: Sequence[str], labels: Sequence[int], *, name: str, embedder: str = "minilm") -> Scorer:
    """Logistic regression on ``embedder``'s embeddings (:func:`embed`) of labelled ``texts``
    (label 1: positive).

    Embedding thousands of texts takes minutes on a CPU (mpnet's far more), so the features are
    cached under ``name``, the embedder and the texts' hash.
    """
    from sklearn.linear_model import LogisticRegression

    key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:10]
    path = cache_dir("scorers") / f"{name}-{embedder}-embeddings-{key}.npy"
    if not path.exists():
        features = embed(texts, embedder=embedder)
        atomic_write(path, lambda tmp: np.save(tmp, features))
    classifier = LogisticRegression(max_iter=1000).fit(np.load(path), np.asarray(labels))
    return Scorer(name, lambda batch: classifier.predict_proba(embed(batch, embedder=embedder))[:, 1])


SENTIMENT_INSTRUCTION = "Is the sentiment of this text positive or negative?\nText: {text}\nAnswer: The sentiment is"
# The content-free input of contextual calibration (Zhao et al. 2021, "Calibrate before use").
CONTENT_FREE = "N/A"
# Everything that defines the sentiment LM judge, so a measured accuracy can be keyed on it.
SENTIMENT_JUDGE = (SENTIMENT_INSTRUCTION, (" positive", " negative"), CONTENT_FREE)
# Rows of next-token log-probs held at once: a row is the whole vocabulary (262k floats for Gemma-3).
_JUDGE_CHUNK = 256


def zero_shot_judge(
    model: TransformersModel, instruction: str, answers: tuple[str, str], *, name: str, batch_size: int = 16
) -> Scorer:
    """A zero-shot LM judge: P(first answer) = sigmoid(m(text) - m("N/A")), where m is the margin
    log p(a) - log p(b) of the first tokens ``a``, ``b`` of the two ``answers`` after
    ``instruction`` (a template with ``{text}``). Subtracting the margin on a content-free input
    (contextual calibration) removes the model's prior for one answer, which otherwise puts
    every text on one side of 0.5. One forward pass per text, of which only the last position
    goes through the unembedding."""
    first, second = (actadd.encode(model, answer, start=False) for answer in answers)
    if not first or not second or first[0] == second[0]:
        raise ValueError(f"the answers {answers!r} must start with two different tokens for {name!r}")
    if "{text}" not in instruction:
        raise ValueError(f"instruction must contain '{{text}}' where the judged text goes, got {instruction!r}")

    def margins(texts: list[str]) -> np.ndarray:
        contexts = [instruction.format(text=t) for t in texts]
        out = []
        chunks = range(0, len(contexts), _JUDGE_CHUNK)
        for lo in tqdm(chunks, desc=name, disable=len(chunks) < 2, leave=False):
            lp = actadd.next_token_logprobs(model, contexts[lo : lo + _JUDGE_CHUNK], batch_size=batch_size)
            out.append((lp[:, first[0]] - lp[:, second[0]]).double().numpy())
        return np.concatenate(out)

    prior = margins([CONTENT_FREE])[0]

    def score(texts: list[str]) -> np.ndarray:
        return 1 / (1 + np.exp(-(margins(texts) - prior))) if texts else np.array([])

    return Scorer(name, score)


def lm_judge_scorer(model: TransformersModel, batch_size: int = 16) -> Scorer:
    """Sentiment by a zero-shot LM judge (:func:`zero_shot_judge`): ' positive' against ' negative'."""
    name = f"lm-judge:{actadd.model_info(model).name}"
    instruction, answers, _ = SENTIMENT_JUDGE
    return zero_shot_judge(model, instruction, answers, name=name, batch_size=batch_size)


def relevance(prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
    """Cosine similarity of MiniLM embeddings of each prompt and its continuation, shape [N]."""
    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one each")
    return np.sum(embed(prompts) * embed(continuations), axis=1)


def continuation_perplexity(
    judge: TransformersModel, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 16
) -> np.ndarray:
    """Perplexity of each continuation given its prompt under ``judge`` (not the steered model):
    exp of the token-weighted mean negative log-likelihood of its tokens, shape [N]. Only the
    continuation's positions are scored. A blank continuation (the model stopped at once) gets
    NaN: there is nothing to judge."""
    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one each")
    out = np.full(len(continuations), np.nan)
    keep = [i for i, c in enumerate(continuations) if c.strip()]
    if keep:
        scored = actadd.logprobs(
            judge,
            [continuations[i] for i in keep],
            contexts=[prompts[i] for i in keep],
            batch_size=batch_size,
            progress=len(keep) > batch_size,
        )
        means = np.array([mean_token_logprob([lp]) if lp.numel() else np.nan for lp in scored])
        out[keep] = perplexity(means)
    return out


def fluency_estimate(
    perplexities: Sequence[float] | np.ndarray, groups: Sequence[Any] | None = None, *, seed: int = 0
) -> Estimate:
    """The fluency of a set of completions: the geometric mean of their perplexities (robust to
    the heavy tail of a few broken completions), with a bootstrap over ``groups`` (prompts;
    default: every completion its own). Blank completions (NaN) are left out."""
    logs = np.log(np.asarray(perplexities, dtype=float))
    return cluster_mean(logs, np.arange(len(logs)) if groups is None else np.asarray(groups), seed=seed).map(math.exp)


def fluency(
    judge: TransformersModel,
    prompts: Sequence[str],
    continuations: Sequence[str],
    groups: Sequence[Any] | None = None,
    *,
    batch_size: int = 16,
    seed: int = 0,
) -> Estimate:
    """The one fluency measure of every study: the geometric-mean perplexity of the
    continuations given their prompts under ``judge`` (:func:`continuation_perplexity`,
    :func:`fluency_estimate`)."""
    return fluency_estimate(
        continuation_perplexity(judge, prompts, continuations, batch_size=batch_size), groups, seed=seed
    )
