"""Summaries for the wedding studies: topic success per setting, perplexity ratio by topic
density, P@K curves with paired differences, and a random-direction control vector.

Everything here works on numbers the notebooks have already measured with ``actadd`` and
:mod:`.scorers`; the intervals come from :mod:`.stats`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from actadd import SteeringVector
from actadd.checks import integer
from actadd.studies.metrics import PAPER_KS, check_ks
from actadd.studies.stats import Estimate, bootstrap_ci, paired_proportion_difference, proportion_of
from actadd.studies.text import WEDDING_WORDS, topic_word_count

# The paper's bins of wedding-word density (share of a document's words): 0%, 0-0.5%,
# 0.5-1%, ... Each bin is (low, high], except the first, which holds exactly 0.
DENSITY_EDGES: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 1.0)


def topic_hits(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS) -> np.ndarray:
    """Whether each text holds at least one of ``words``, shape [N] (the paper's success)."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    return np.array([topic_word_count(t, words) > 0 for t in texts])


def topic_summary(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS, seed: int = 0) -> dict[str, float]:
    """Success (share of texts with a topic word, Wilson 95% CI) and mean topic-word count
    (BCa bootstrap 95% CI) of independent completions."""
    if isinstance(texts, str) or len(texts) < 2:
        raise ValueError(f"texts must be a sequence of at least 2 strings, got {texts!r}")
    counts = np.array([topic_word_count(t, words) for t in texts], dtype=float)
    success = proportion_of(counts > 0)
    count, count_low, count_high = bootstrap_ci(counts, seed=seed)
    return {
        "n": len(texts),
        "success": success.value, "success_low": success.low, "success_high": success.high,
        "mean_count": count, "count_low": count_low, "count_high": count_high,
    }  # fmt: skip


def sweep_table(
    settings: Sequence[SteeringVector | None], texts: Sequence[Sequence[str]], *, seed: int = 0
) -> pd.DataFrame:
    """One row per setting (None: unsteered): layer, coeff, relative_norm and
    :func:`topic_summary` of its completions."""
    if len(settings) != len(texts):
        raise ValueError(f"got {len(settings)} settings but {len(texts)} lists of completions")
    rows = [
        {
            "layer": None if s is None else s.layer,
            "coeff": 0.0 if s is None else s.coeff,
            "relative_norm": 0.0 if s is None else s.relative_norm,
            **topic_summary(t, seed=seed),
        }
        for s, t in zip(settings, texts)
    ]
    return pd.DataFrame(rows).astype({"layer": "Int64"})


def best_setting(table: pd.DataFrame) -> pd.Series:
    """The steered row with the highest success; ties go to the larger mean topic-word count,
    then to the smaller coefficient (the rule is fixed here, before any run)."""
    steered = table[table["layer"].notna()]
    if steered.empty:
        raise ValueError("the table has no steered setting to choose from")
    ranked = steered.assign(_neg_coeff=-steered["coeff"]).sort_values(
        ["success", "mean_count", "_neg_coeff"], ascending=False, kind="stable"
    )
    return ranked.iloc[0].drop("_neg_coeff")


def best_layer_depth(
    hits_by_layer: Mapping[int, np.ndarray], n_layers: int, *, n_resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Where in the model the best layer lies, as ``layer / n_layers``, with a percentile
    interval from resampling each layer's completions and taking the argmax again (ties to
    the earlier layer): the maximum of many noisy rates is itself noisy."""
    layers = sorted(hits_by_layer)
    if len(layers) < 2:
        raise ValueError(f"need at least 2 layers, got {layers}")
    rng = np.random.default_rng(seed)
    rates = np.stack(
        [rng.choice(np.asarray(hits_by_layer[layer], float), size=(n_resamples, len(hits_by_layer[layer]))).mean(1)
         for layer in layers],
        axis=1,
    )  # fmt: skip
    depth = np.asarray(layers)[rates.argmax(axis=1)] / n_layers
    observed = layers[int(np.argmax([np.mean(hits_by_layer[layer]) for layer in layers]))] / n_layers
    low, high = np.quantile(depth, [0.025, 0.975])
    return Estimate(observed, float(low), float(high), len(layers), "bootstrap of the argmax over completions")


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


def precision_curves(
    ranks: Mapping[str, Sequence[int]], *, reference: str, ks: Sequence[int] = PAPER_KS, seed: int = 0
) -> pd.DataFrame:
    """P@K of each condition and its paired difference from ``reference``, with 95% CIs.

    ``ranks[name]`` holds each prompt's 0-based answer rank under that condition (same prompts,
    same order, in every condition). P@K is a share of prompts (Wilson interval); the difference
    pairs each prompt's hit under the condition with its hit under the reference (Newcombe's
    paired interval, which does not collapse to a point when every pair agrees). Columns: condition, k,
    p_at_k, p_low, p_high, diff, diff_low, diff_high (the reference's diff is 0).
    """
    if reference not in ranks:
        raise ValueError(f"reference {reference!r} is not one of the conditions {list(ranks)}")
    arrays = {name: np.asarray(r) for name, r in ranks.items()}
    sizes = {name: len(r) for name, r in arrays.items()}
    if len(set(sizes.values())) != 1 or min(sizes.values()) < 2:
        raise ValueError(f"every condition needs the same prompts (at least 2), got sizes {sizes}")
    check_ks(ks)
    rows = []
    for name, r in arrays.items():
        for k in ks:
            hits = r < k
            share = proportion_of(hits)
            diff = paired_proportion_difference(hits, arrays[reference] < k)
            rows.append({"condition": name, "k": int(k), "p_at_k": share.value, "p_low": share.low,
                         "p_high": share.high, "diff": diff.value, "diff_low": diff.low,
                         "diff_high": diff.high})  # fmt: skip
    return pd.DataFrame(rows)


def random_direction_like(vector: SteeringVector, seed: int = 0) -> SteeringVector:
    """A control: at every position the same norm as ``vector``, in a seeded random direction.

    Positions where ``vector`` is zero (the start token, which cancels) stay zero, and the
    relative norm is unchanged by construction.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(vector.vector.shape, generator=generator, dtype=torch.float32)
    norms = vector.vector.float().norm(dim=-1, keepdim=True).cpu()
    random = noise / noise.norm(dim=-1, keepdim=True) * norms
    return replace(
        vector,
        vector=random.to(vector.vector.device, vector.vector.dtype),
        p_plus=f"random direction (seed {seed}) with the norms of {vector.p_plus!r} - {vector.p_minus!r}",
    )


def sample_documents(
    pool: pd.DataFrame, n: int, *, related_fraction: float, max_words: int | None, seed: int = 0
) -> pd.DataFrame:
    """``n`` whole documents of at most ``max_words`` words, ``related_fraction`` of them with a topic word.

    ``pool`` has the columns of ``actadd.data.web_text`` (``n_words``, ``wedding_count``).
    Whole documents, not cut ones, so a document's density is the one it was binned by.
    """
    integer(n, "n", minimum=2)
    if not 0 <= related_fraction <= 1:
        raise ValueError(f"related_fraction must be in [0, 1], got {related_fraction!r}")
    short = pool if max_words is None else pool[pool["n_words"] <= max_words]
    related, unrelated = short[short["wedding_count"] > 0], short[short["wedding_count"] == 0]
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
