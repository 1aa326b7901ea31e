"""Perplexity by topic relevance (02): documents binned by wedding-word density, the paper's
per-bin ratio exp(-mean(L_actadd - L_base)), and a length- and source-controlled slope."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd import SteeringVector
from actadd.checks import integer
from actadd.studies.evaluation.scorers import document_logprobs
from actadd.studies.evaluation.stats import Estimate, bootstrap_ci, bootstrap_estimate

# The paper's bins of wedding-word density (share of a document's words): 0%, 0-0.5%,
# 0.5-1%, ... Each bin is (low, high], except the first, which holds exactly 0.
DENSITY_EDGES: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 1.0)


def relevance_slope(documents: pd.DataFrame) -> Estimate:
    """The slope of each document's steered-minus-unsteered mean log-prob (``diff``) on its
    wedding-word density in percent (``density_pct``), with the log of its length in words and,
    where there is more than one, its source as covariates (OLS, HC3 robust 95% interval): does
    the steered model gain more on text the more it is about weddings, length and corpus aside?"""
    from statsmodels.formula.api import ols

    frame = documents.dropna(subset=["diff"]).assign(log_words=lambda d: np.log(d["n_words"]))
    covariates = "density_pct + log_words" + (" + C(source)" if frame["source"].nunique() > 1 else "")
    if len(frame) < 8:
        raise ValueError(f"a regression on {len(frame)} documents is not meaningful: score at least 8")
    fit = ols(f"diff ~ {covariates}", frame).fit(cov_type="HC3")
    low, high = fit.conf_int().loc["density_pct"]
    return Estimate(float(fit.params["density_pct"]), float(low), float(high), len(frame), f"OLS ~ {covariates}, HC3")


def ratio_estimate(diffs: Sequence[float] | np.ndarray, *, seed: int = 0) -> Estimate:
    """The paper's perplexity ratio exp(-X), X the mean of documents' ``L_actadd - L_base``
    (NaN, a document with no token left to score, left out), with exp(-) of X's BCa interval."""
    x = np.asarray(diffs, dtype=float)
    return bootstrap_estimate(x[~np.isnan(x)], seed=seed).map(lambda v: math.exp(-v), increasing=False)


def density_bin(density: float | Sequence[float], edges: Sequence[float] = DENSITY_EDGES) -> list[str] | str:
    """The label of each density's bin: '0%' for exactly 0, else '(a%, b%]' from ``edges``."""
    edges = list(edges)
    if len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"edges must start at 0 and increase strictly, got {edges!r}")
    labels = density_labels(edges)

    def one(d: float) -> str:
        if not 0 <= d <= edges[-1]:
            raise ValueError(f"density {d!r} is outside [0, {edges[-1]}]; densities are shares of words")
        # d in (edges[i-1], edges[i]] has searchsorted index i, and labels[i] is that bin.
        return labels[0] if d == 0 else labels[int(np.searchsorted(edges, d, side="left"))]

    if isinstance(density, Sequence) or np.ndim(density) > 0:
        return [one(float(d)) for d in density]  # type: ignore[union-attr]
    return one(float(density))


def density_labels(edges: Sequence[float] = DENSITY_EDGES) -> list[str]:
    """Bin labels in order: '0%' then '(a%, b%]' for each pair of edges."""
    return ["0%"] + [f"({100 * a:g}%, {100 * b:g}%]" for a, b in itertools.pairwise(edges)]


def perplexity_ratio_by_bin(
    bins: Sequence[str],
    logprob_steered: Sequence[float],
    logprob_base: Sequence[float],
    *,
    min_docs: int,
    order: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per bin: X = mean(L_actadd - L_base) over its documents and the perplexity ratio exp(-X), with CIs.

    ``L`` is a document's mean token log-prob. The ratio's interval is exp(-) of X's interval
    (exp is monotone). Bins with fewer than ``min_docs`` documents get ``kept = False`` and
    no estimate. Columns: bin, n_docs, kept, mean_diff, diff_low, diff_high, ratio,
    ratio_low, ratio_high; rows in ``order`` (default: first appearance).
    """
    if not len(bins) == len(logprob_steered) == len(logprob_base):
        raise ValueError(
            f"bins, logprob_steered and logprob_base must have one entry per document, got "
            f"{len(bins)}, {len(logprob_steered)} and {len(logprob_base)}"
        )
    integer(min_docs, "min_docs (a bootstrap needs two documents)", minimum=2)
    frame = pd.DataFrame(
        {"bin": list(bins), "diff": np.asarray(logprob_steered, float) - np.asarray(logprob_base, float)}
    )
    rows = []
    for name in order if order is not None else list(dict.fromkeys(frame["bin"])):
        diffs = frame.loc[frame["bin"] == name, "diff"].dropna().to_numpy()  # NaN: no token left to score
        row = {"bin": name, "n_docs": len(diffs), "kept": len(diffs) >= min_docs}
        if row["kept"]:
            mean, low, high = bootstrap_ci(diffs, seed=seed)
            row |= {"mean_diff": mean, "diff_low": low, "diff_high": high,
                    "ratio": math.exp(-mean), "ratio_low": math.exp(-high), "ratio_high": math.exp(-low)}  # fmt: skip
        rows.append(row)
    columns = ["bin", "n_docs", "kept", "mean_diff", "diff_low", "diff_high", "ratio", "ratio_low", "ratio_high"]
    return pd.DataFrame(rows).reindex(columns=columns)


def sample_documents(
    pool: pd.DataFrame, n: int | None, *, related_fraction: float, max_words: int | None, seed: int = 0
) -> pd.DataFrame:
    """``n`` whole documents of at most ``max_words`` words, ``related_fraction`` of them with a
    topic word; with ``n=None``, every document with a topic word and as many others as
    ``related_fraction`` asks for (as many again at 0.5).

    ``pool`` has the columns of ``actadd.data.web_text`` (``n_words``, ``wedding_count``).
    Whole documents, not cut ones, so a document's density is the one it was binned by.
    """
    if not 0 < related_fraction <= 1:
        raise ValueError(f"related_fraction must be in (0, 1], got {related_fraction!r}")
    short = pool if max_words is None else pool[pool["n_words"] <= max_words]
    related, unrelated = short[short["wedding_count"] > 0], short[short["wedding_count"] == 0]
    if n is None:
        n = round(len(related) / related_fraction)
    integer(n, "n", minimum=2)
    n_related = round(n * related_fraction)
    if n_related > len(related) or n - n_related > len(unrelated):
        raise ValueError(
            f"n={n} with related_fraction={related_fraction} needs {n_related} related and {n - n_related} other "
            f"documents of at most {max_words} words; the pool has {len(related)} and {len(unrelated)}: "
            "lower n, raise max_words or change related_fraction"
        )
    chosen = pd.concat(
        [related.sample(n_related, random_state=seed), unrelated.sample(n - n_related, random_state=seed)]
    )
    return chosen.sample(frac=1, random_state=seed).reset_index(drop=True)


def score_documents(
    model: TransformersModel,
    documents: pd.DataFrame,
    vectors: Mapping[str, SteeringVector],
    *,
    mask_len: int,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Every document's mean token log-prob unsteered and under each vector (``vectors``: an arm's
    label -> its vector; :func:`~.scorers.document_logprobs`): one row per (document, arm) with the
    document's columns but its text, ``arm``, ``layer``, ``coeff``, ``relative_norm``,
    ``logprob_base``, ``logprob_actadd`` and ``diff`` (steered minus unsteered)."""
    texts = documents["text"].tolist()
    score = partial(document_logprobs, model, texts, mask_len=mask_len, batch_size=batch_size)
    base = score()
    frames = []
    for arm, vector in vectors.items():
        steered = score(vector)
        frames.append(documents.drop(columns="text").assign(arm=arm, layer=vector.layer, coeff=vector.coeff,
                                                            relative_norm=vector.relative_norm, logprob_base=base,
                                                            logprob_actadd=steered, diff=steered - base))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def ratio_by_bin(scored: pd.DataFrame, *, min_docs: int, order: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """:func:`perplexity_ratio_by_bin` of a :func:`score_documents` table, per arm."""
    return pd.concat(
        [perplexity_ratio_by_bin(docs["bin"], docs["logprob_actadd"], docs["logprob_base"], min_docs=min_docs,
                                 order=order, seed=seed)
         .assign(arm=arm, layer=docs["layer"].iloc[0], coeff=docs["coeff"].iloc[0],
                 relative_norm=docs["relative_norm"].iloc[0])
         for arm, docs in scored.groupby("arm", sort=False)],
        ignore_index=True,
    )  # fmt: skip
