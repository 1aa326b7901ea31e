"""Topic steering by the paper's measure (00, 01): whether a completion mentions a topic word
(only text counts, with a text gate), that share per setting with its interval, and the rules
that pick a setting: the best (:func:`best_setting`) and the gentlest that passes a target
(:func:`gentlest_passing`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd import Vector, generate_sweep
from actadd.studies.evaluation.scorers import fluency
from actadd.studies.evaluation.stats import bootstrap_ci, proportion_of
from actadd.studies.evaluation.text import WEDDING_WORDS, topic_word_count
from actadd.studies.evaluation.text_gate import TextGate, required_share


def topic_hits(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS) -> np.ndarray:
    """Whether each text holds at least one of ``words``, shape [N] (the paper's success)."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    return np.array([topic_word_count(t, words) > 0 for t in texts])


def topic_summary(
    texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS, seed: int = 0, is_text: Sequence[bool] | None = None
) -> dict[str, float]:
    """Success (share of texts with a topic word, Wilson 95% CI) and mean topic-word count
    (BCa bootstrap 95% CI) of independent completions; with ``is_text`` (the text gate's verdict
    on each), a completion that is not text is no success and its words are not counted, and the
    share that is text is given (``text_share``, ``text_low``, ``text_high``)."""
    if isinstance(texts, str) or len(texts) < 2:
        raise ValueError(f"texts must be a sequence of at least 2 strings, got {texts!r}")
    text = np.ones(len(texts), dtype=bool) if is_text is None else np.asarray(is_text, dtype=bool)
    if text.shape != (len(texts),):
        raise ValueError(f"is_text must hold one verdict per text ({len(texts)}), got {len(text)}")
    counts = np.array([topic_word_count(t, words) for t in texts], dtype=float) * text
    success = proportion_of((counts > 0) & text)
    count, count_low, count_high = bootstrap_ci(counts, seed=seed)
    out = {
        "n": len(texts),
        "success": success.value, "success_low": success.low, "success_high": success.high, "hits": int(((counts > 0) & text).sum()),
        "mean_count": count, "count_low": count_low, "count_high": count_high,
    }  # fmt: skip
    if is_text is not None:
        out |= proportion_of(text).columns("text_share")
    return out


def sweep_table(
    settings: Sequence[Vector | None],
    texts: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    is_text: Sequence[Sequence[bool]] | None = None,
) -> pd.DataFrame:
    """One row per setting (None: unsteered): layer, coeff, relative_norm and
    :func:`topic_summary` of its completions (gated by ``is_text``, one list per setting)."""
    if len(settings) != len(texts) or (is_text is not None and len(is_text) != len(texts)):
        given = "" if is_text is None else f" and {len(is_text)} lists of verdicts"
        raise ValueError(f"got {len(settings)} settings but {len(texts)} lists of completions{given}: give one each")
    gated: list[Sequence[bool] | None] = [None] * len(texts) if is_text is None else list(is_text)
    rows = [
        {
            "layer": None if s is None else s.layer,
            "coeff": 0.0 if s is None else s.coeff,
            "relative_norm": 0.0 if s is None else s.relative_norm,
            **topic_summary(t, seed=seed, is_text=g),
        }
        for s, t, g in zip(settings, texts, gated)
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
    gate: TextGate | None = None,
    references: Sequence[str] | None = None,
    timed: Callable[[str], AbstractContextManager[Any]] = lambda phase: nullcontext(),
    **sampling: Any,
) -> tuple[pd.DataFrame, list[list[str]]]:
    """``n_samples`` completions of ``prompt`` under each setting (None: unsteered) from seed
    ``stream``, in shared batches (:func:`actadd.generate_sweep`), and their :func:`sweep_table`;
    with a ``gate`` (:class:`~.text_gate.TextGate`), every completion is judged text or not against
    ``references`` (the unsteered completions on the same seeds; default: those of the sweep's
    unsteered setting), a completion that is not text is no success, and each setting gets its
    share of text and whether it ``passes_gate`` (:func:`~.text_gate.required_share` of the
    references' own share); with a ``judge`` (another model than the steered one), each
    setting's fluency too: the geometric-mean perplexity of its completions under the
    judge (``perplexity``, ``perplexity_low``, ``perplexity_high``, ``n_judged``;
    :func:`~.scorers.fluency`). ``timed`` (a study's ``Study.timed``) is told which phase the time
    goes to: generation or judging."""
    with timed("generation"):
        texts = generate_sweep(model, prompt, settings, n_samples, seed=seed, stream=stream, **sampling)
    is_text = None
    if gate is not None:
        own = None  # the unsteered setting's row, when its completions are the references
        if references is None:
            if None not in settings:
                raise ValueError(
                    "gate needs references: give the unsteered completions, or sweep the unsteered setting"
                )
            own = list(settings).index(None)
            references = texts[own]
        is_text = [gate.check(t, references=references)["is_text"].tolist() for t in texts]
        # The bar a setting must pass depends on how much text the unsteered completions are.
        unsteered = (
            is_text[own] if own is not None else gate.check(references, references=references)["is_text"].tolist()
        )
        required = required_share(sum(unsteered) / len(unsteered))
    table = sweep_table(settings, texts, seed=seed, is_text=is_text)
    if is_text is not None:
        table["passes_gate"] = table["text_share"] >= required
    if judge is not None:
        with timed("judging"):
            judged = [fluency(judge, [prompt] * len(t), t, seed=seed) for t in texts]
        table = table.assign(**pd.DataFrame([{**e.columns("perplexity"), "n_judged": e.n} for e in judged]))
    return table, texts


def best_setting(table: pd.DataFrame) -> pd.Series | None:
    """The steered row with the highest success; ties go to the larger mean topic-word count,
    then to the smaller coefficient (the rule is fixed here, before any run). When the table says
    which settings pass the text gate (``passes_gate``), only those can be chosen; None when no
    steered setting does (a model whose steered completions are not text has nothing to confirm)."""
    steered = table[table["layer"].notna()]
    if steered.empty:
        raise ValueError("the table has no steered setting to choose from: sweep at least one vector")
    if "passes_gate" in steered:
        steered = steered[steered["passes_gate"].astype(bool)]
    if steered.empty:
        return None
    ranked = steered.assign(_neg_coeff=-steered["coeff"]).sort_values(
        ["success", "mean_count", "_neg_coeff"], ascending=False, kind="stable"
    )
    return ranked.iloc[0].drop("_neg_coeff")


def gentlest_passing(table: pd.DataFrame, target: float) -> tuple[pd.Series | None, bool]:
    """The tuned rule, fixed before looking and expected to pass, on a probe table (one row per
    setting with ``success_low`` (Wilson), ``position_norm``, ``passes_gate``, ``within_limit``;
    unsteered rows, ``layer`` NaN, are never chosen): among the settings that pass the text gate
    and the fluency limit, the gentlest strength at which some layer's Wilson lower bound of
    success exceeds ``target``, at that strength's best layer (the highest lower bound, then the
    earlier row). When none exceeds it, the setting with the highest lower bound among those that
    pass, and ``False``; when none passes, ``(None, False)``."""
    allowed = table[table["layer"].notna() & table["passes_gate"].astype(bool) & table["within_limit"].astype(bool)]
    if allowed.empty:
        return None, False
    reaching = allowed[allowed["success_low"] > target]
    if len(reaching):
        gentlest = reaching[np.isclose(reaching["position_norm"], reaching["position_norm"].min())]
        return gentlest.loc[gentlest["success_low"].idxmax()], True
    return allowed.loc[allowed["success_low"].idxmax()], False
