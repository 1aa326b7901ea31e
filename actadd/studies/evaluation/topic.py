"""Topic steering by the paper's measure (00, 01): whether a completion mentions a topic word,
that share per setting with its interval, the rule that picks the best setting, and where in
the model the best layer lies."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd import SteeringVector, Vector, generate_sweep, steering_vector
from actadd.studies.evaluation.scorers import fluency
from actadd.studies.evaluation.stats import Estimate, bootstrap_ci, proportion_of
from actadd.studies.evaluation.text import WEDDING_WORDS, topic_word_count


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


def sweep_table(settings: Sequence[Vector | None], texts: Sequence[Sequence[str]], *, seed: int = 0) -> pd.DataFrame:
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


def topic_sweep(
    model: TransformersModel,
    prompt: str,
    settings: Sequence[Vector | None],
    n_samples: int,
    *,
    stream: int,
    seed: int = 0,
    judge: TransformersModel | None = None,
    timed: Callable[[str], AbstractContextManager[Any]] = lambda phase: nullcontext(),
    **sampling: Any,
) -> tuple[pd.DataFrame, list[list[str]]]:
    """``n_samples`` completions of ``prompt`` under each setting (None: unsteered) from seed
    ``stream``, in shared batches (:func:`actadd.generate_sweep`), and their :func:`sweep_table`;
    with a ``judge`` (another model than the steered one), each setting's fluency too: the
    geometric-mean perplexity of its completions under the judge (``perplexity``,
    ``perplexity_low``, ``perplexity_high``, ``n_judged``; :func:`~.scorers.fluency`). ``timed``
    (a study's ``Study.timed``) is told which phase the time goes to: generation or judging."""
    with timed("generation"):
        texts = generate_sweep(model, prompt, settings, n_samples, seed=seed, stream=stream, **sampling)
    table = sweep_table(settings, texts, seed=seed)
    if judge is not None:
        with timed("judging"):
            judged = [fluency(judge, [prompt] * len(t), t, seed=seed) for t in texts]
        table = table.assign(**pd.DataFrame([{**e.columns("perplexity"), "n_judged": e.n} for e in judged]))
    return table, texts


def coefficient_grid(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    *,
    layer: int,
    coeffs: Sequence[float],
    relative_norm: float,
) -> tuple[dict[float, SteeringVector], float]:
    """The vectors ``p_plus - p_minus`` at ``layer`` for each of ``coeffs`` and for the
    coefficient that gives ``relative_norm`` on this model (a tuned strength carried over from
    another model or study transfers as a relative norm, not as a coefficient): ``{coeff:
    vector}`` in increasing order, and that tuned coefficient."""
    tuned = steering_vector(model, p_plus, p_minus, layer=layer, relative_norm=relative_norm).coeff
    grid = sorted({*coeffs, tuned})
    return {c: steering_vector(model, p_plus, p_minus, layer=layer, coeff=c) for c in grid}, tuned


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


def tuned_setting(probe: pd.DataFrame, norms: Sequence[float], target: float) -> pd.Series:
    """The tuned arm's rule, fixed before looking: on a layer x strength probe (a
    :func:`sweep_table`, settings in layer-major order over ``norms``), the smallest strength at
    which some layer reaches ``target`` success, at that strength's best layer
    (:func:`best_setting`); if no strength reaches it, the best cell of the whole probe. The
    row gets the probe strength as ``norm`` and whether the target was reached as ``reached``."""
    steered = probe[probe["layer"].notna()]
    steered = steered.assign(norm=list(norms) * (len(steered) // len(norms)))
    reaching = steered[steered["success"] >= target]
    pick = best_setting(steered[steered["norm"] == reaching["norm"].min()] if len(reaching) else steered)
    return pd.concat([pick, pd.Series({"reached": bool(len(reaching))})])


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
