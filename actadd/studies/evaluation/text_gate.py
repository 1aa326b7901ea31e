"""Whether a completion is text: a gate of a few measured rules, tuned and validated on
hand-labelled completions (``text_gate_labelled.csv`` beside this module, shipped with the
package; the labelling rule is in ``data/README.md``).

A steering setting can "succeed" with output that is not text: a sentiment scorer calls a
digit run positive, a repeated topic word counts as a topic hit, and a judge model gives
repetition a low perplexity. No one of those measures separates text from non-text, so the
gate reads the completion itself. Its measures, per completion: HTML tags are dropped, the
text is split at whitespace into chunks and each chunk, stripped of edge punctuation, is a
word (letters of one script, inner apostrophes and hyphens), a hashtag, an @handle or URL
(neutral), punctuation (neutral), a number, or junk (anything else):

- ``word_share``: the characters of words and hashtags over those of words, hashtags, numbers
  and junk (``':D2637!56674E8A31F5E'``, ``'40404040465420165730'`` and glued salad such as
  ``"Catherine's.'co's.'na's.,'ng"`` score low);
- ``known_share``: the share of words in TextBlob's English word lists (its spelling list and
  its Brill tagger lexicon, shipped in the ``textblob`` wheel: about 88,000 words with
  "lol", "gonna" and many names), low for identifier or foreign-script salad
  (``'isEmptyisEmptyimread'``);
- ``line_words``: chunks per non-empty line, for completions of several lines; low for
  isolated letters and numbers on their own lines (``'\\n\\nC\\n\\nThe 2.\\n\\nB The 13.'``);

and, from :attr:`TextGate.min_words` words on (a short reply, "Thanks!", has no statistics to
judge):

- ``content_distinct``: distinct content words over content words (the function words are
  scikit-learn's English stop list), low for a word or phrase repeated
  (``'a wife bride bride wife death wife bebe'``);
- ``max_word_run``: the longest run of one word back to back (``"his his his"``);
- ``function_share``: the share of words that are function words, high for salad of them
  (``' it them the that which them it with which'``), low for salad of content words
  (``' standby satisfaction to have standby high Column matter'``).

A completion with no word or hashtag (empty, blank, digits, a URL alone) is not text: a blank
continuation is no steering success, and it never passes a selection. A run of digits or
symbols inside text is no rule of its own: measured on the tuning half, it caught nothing the
word share did not. Salad that keeps function words in place (``' such may to a short. Mr
which is to a Column'``) passes: it takes a language model to see it.

Per setting, given ``references`` (the unsteered completions of the same prompts): the
completions' distinct bigrams over the references', on equal numbers of bigrams. Below
:attr:`TextGate.min_set_distinct` the method has collapsed onto a few phrases, and every
completion of the setting fails ("repeats across completions") even where each reads as text
alone. That threshold is a guard set by hand, not tuned: the labelled set is per completion.

How a study uses it:

- per completion: ``TextGate().check(completions, references=unsteered)`` gives every
  measure, ``is_text`` and the ``reason`` (the rules a completion broke), for samples tables;
- per setting: ``TextGate().summary(completions, references=unsteered)`` gives the share of
  its completions that pass with a Wilson interval, and ``passes``: at least
  :data:`MIN_SHARE` of them pass (the studies ask :func:`required_share`: no more than
  :data:`UNSTEERED_MARGIN` below the unsteered share where the unsteered model writes less text
  than :data:`MIN_SHARE`). A setting that does not pass cannot be chosen, whatever its
  objective or perplexity. The gate also fails some real text (its specificity, from
  :func:`validate`), so report the unsteered completions' share beside a method's.

The thresholds are those :func:`tune` finds on one half of the labelled set
(:func:`split_labelled`, a fixed seeded split, half of each label), and :func:`validate`
scores them on the other half: that held-out accuracy is the one to quote. A test checks that
tuning reproduces the defaults of :class:`TextGate`.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from actadd.checks import integer, real, strings
from actadd.studies.evaluation.stats import Estimate, proportion, proportion_of

# The labelled continuations, shipped beside this module as package data.
LABELLED_SET = Path(__file__).with_name("text_gate_labelled.csv")
LABELS = ("text", "not_text")
SPLIT_SEED = 0
# Completions: a sequence of strings, or a pandas column of them.
Texts: TypeAlias = Sequence[str] | pd.Series
# A setting passes when at least this share of its completions pass the gate. The gate passes
# about nine in ten completions of real text (its specificity), so a setting of text falls below
# 0.8 on 40 completions about once in a hundred (binomial), while gibberish passes far less.
MIN_SHARE = 0.8
# Where the unsteered model itself writes less text than that on a study's prompts (tweets go on
# with hashtags and handles: about three in four of its continuations pass there), a setting
# passes at this many points below the unsteered share: a setting has to write about as much
# text as the model does unsteered, and an absolute bar at the unsteered level would turn the
# choice among gentle settings into noise (40 completions: about 7 points of sampling spread).
UNSTEERED_MARGIN = 0.1


def required_share(unsteered_share: float, min_share: float = MIN_SHARE) -> float:
    """The share of its completions that must be text for a setting to pass the gate:
    ``min_share``, or :data:`UNSTEERED_MARGIN` below the unsteered completions' own share on the
    same prompts where that is lower."""
    real(unsteered_share, "unsteered_share", minimum=0, maximum=1)
    return min(real(min_share, "min_share", minimum=0, maximum=1), unsteered_share - UNSTEERED_MARGIN)


# Characters stripped from a chunk's ends before it is classified.
_EDGES = "\"'`“”‘’«»()[]{}<>*_.,;:!?…–—-~|/\\^=+"
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_NUMBER = re.compile(r"[$£€]?\d+(?:[.,:/-]\d+)*(?:%|st|nd|rd|th|s|am|pm|k|m|g|kg|km)?", re.IGNORECASE)
_TAG = re.compile(r"#[^\W\d_][\w-]*")
_HTML = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*>")
_MARKUP = re.compile(r"@\w+|https?://\S*|www\.\S+|\S+\.(?:com|org|net|co|ly|io|gov|edu|uk)(?:/\S*)?", re.IGNORECASE)
_LATIN_END = "\u0250"  # Basic Latin to Latin Extended-B


@functools.cache
def known_words() -> frozenset[str]:
    """Lower-cased English words of TextBlob's spelling list (Norvig's corpus) and Brill tagger
    lexicon (Brown and Penn Treebank, with some web words): about 88,000."""
    # Found, not imported: importing textblob imports NLTK, seconds for two text files.
    spec = importlib.util.find_spec("textblob")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the text gate's word lists ship with textblob: pip install 'actadd[studies]'")
    folder = Path(spec.submodule_search_locations[0]) / "en"
    words: set[str] = set()
    for name in ("en-spelling.txt", "en-lexicon.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith(";;;"):
                words.add(line.split()[0].lower())
    return frozenset(words)


@functools.cache
def function_words() -> frozenset[str]:
    """scikit-learn's English stop list (318 words): pronouns, determiners, prepositions,
    conjunctions, auxiliaries and a few frequent adverbs."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _base(word: str) -> str:
    """A word without its clitic ("don't" -> "do", "bride's" -> "bride")."""
    word = word.replace("’", "'")
    if word.endswith("n't"):
        return word[:-3]
    return word.split("'")[0]


def _is_known(word: str) -> bool:
    vocabulary = known_words()
    if word in vocabulary or _base(word) in vocabulary:
        return True
    parts = word.split("-")
    return len(parts) > 1 and all(p in vocabulary or _base(p) in vocabulary for p in parts)


def _chunk_kind(chunk: str) -> tuple[str, str]:
    """(kind, core) of a whitespace chunk: 'tag' (a hashtag), 'markup' (an @handle or URL),
    'punct', 'word' (letters of one script, inner apostrophes and hyphens), 'number' or
    'junk' (anything else: letters mixed with digits, symbols or another script)."""
    bare = chunk.strip(_EDGES.replace("@", "").replace("#", ""))
    if _TAG.fullmatch(bare):
        return "tag", bare
    if _MARKUP.fullmatch(bare):
        return "markup", bare
    core = chunk.strip(_EDGES)
    if not core or not any(c.isalnum() for c in core):
        return "punct", core
    if _WORD.fullmatch(core):
        latin = {c < _LATIN_END for c in core if c.isalpha()}
        return ("word", core) if len(latin) == 1 else ("junk", core)
    if _NUMBER.fullmatch(core):
        return "number", core
    return "junk", core


def measures(text: str, min_words: int) -> dict[str, float]:
    """The gate's measures of one completion (see the module docstring); NaN where undefined."""
    lines = [line.split() for line in _HTML.sub(" ", text).splitlines() if line.strip()]
    kinds = [_chunk_kind(chunk) for line in lines for chunk in line]
    words = [core for kind, core in kinds if kind == "word"]
    lower = [w.lower() for w in words]
    lengths = {kind: sum(len(core) for k, core in kinds if k == kind) for kind in ("word", "tag", "number", "junk")}
    counted = sum(lengths.values())
    nan = float("nan")
    row = {
        "n_words": float(len(words)),
        "n_tags": float(sum(kind == "tag" for kind, _ in kinds)),
        "word_share": (lengths["word"] + lengths["tag"]) / counted if counted else 0.0,
        "known_share": float(np.mean([_is_known(w) for w in lower])) if words else nan,
        "line_words": len(kinds) / len(lines) if len(lines) > 1 else nan,
        "content_distinct": nan,
        "function_share": nan,
        "max_word_run": nan,
    }
    if len(words) >= min_words:
        stop = function_words()
        content = [w for w in lower if w not in stop and _base(w) not in stop]
        row["content_distinct"] = len(set(content)) / len(content) if content else 1.0
        row["function_share"] = 1 - len(content) / len(words)
        row["max_word_run"] = float(max(len(list(group)) for _, group in itertools.groupby(lower)))
    return row


@dataclass(frozen=True)
class TextGate:
    """Thresholds of the text gate; a completion is text when it breaks no rule.

    The defaults are those :func:`tune` finds on the labelled set's tuning half, except
    ``min_words`` and ``min_set_distinct``, which are set by hand.
    """

    min_word_share: float = 0.8  # characters of words and hashtags over those of all but punctuation and markup
    min_known_share: float = 0.7  # words in the English word lists
    min_line_words: float = 2.5  # chunks per line, for completions of several lines
    min_content_distinct: float = 0.6  # distinct content words over content words
    max_word_run: int = 3  # one word this many times back to back fails
    max_function_share: float = 0.9  # function words over words: salad of "it them the that"
    min_function_share: float = 0.2  # ... and salad of content words
    min_words: int = 6  # the last four rules judge completions of at least this many words
    min_set_distinct: float = 0.5  # a setting's distinct bigrams over the references'

    def __post_init__(self) -> None:
        for name in ("min_word_share", "min_known_share", "min_content_distinct", "max_function_share",
                     "min_function_share", "min_set_distinct"):  # fmt: skip
            real(getattr(self, name), name, minimum=0, maximum=1)
        real(self.min_line_words, "min_line_words", minimum=0)
        integer(self.max_word_run, "max_word_run", minimum=2)
        integer(self.min_words, "min_words", minimum=2)

    def rules(self, table: pd.DataFrame) -> dict[str, pd.Series]:
        """Per rule (the reason a completion fails), which rows of :meth:`measure`'s table break it."""
        longer = table["n_words"] >= self.min_words
        return {
            "no words": table["n_words"] + table["n_tags"] == 0,
            "digits or symbols": table["word_share"] < self.min_word_share,
            "unknown words": table["known_share"] < self.min_known_share,
            "short lines": table["line_words"] < self.min_line_words,
            "repeated words": longer & (table["content_distinct"] < self.min_content_distinct),
            "one word over and over": longer & (table["max_word_run"] >= self.max_word_run),
            "only function words": longer & (table["function_share"] > self.max_function_share),
            "no function words": longer & (table["function_share"] < self.min_function_share),
        }

    def measure(self, completions: Texts) -> pd.DataFrame:
        """Every measure of every completion, one row each, without a verdict."""
        texts = _texts(completions, "completions")
        return pd.DataFrame([measures(text, self.min_words) for text in texts]).assign(text=texts)

    def check(self, completions: Texts, references: Texts | None = None) -> pd.DataFrame:
        """One row per completion: the text, every measure, ``is_text`` and ``reason`` (the
        rules it broke, "; "-joined; empty when it passes). With ``references`` (the unsteered
        completions of the same prompts) the column ``set_distinct`` holds the completions'
        distinct bigrams over the references', and below ``min_set_distinct`` every row fails."""
        table = self.measure(completions)
        broken = self.rules(table)
        if references is not None:
            ratio = set_distinct_ratio(table["text"].tolist(), references)
            table["set_distinct"] = ratio
            broken["repeats across completions"] = pd.Series(ratio < self.min_set_distinct, index=table.index)
        table["reason"] = [
            "; ".join(name for name, fails in broken.items() if fails.iloc[i]) for i in range(len(table))
        ]
        table["is_text"] = table["reason"] == ""
        return table[["text", *[c for c in table.columns if c not in ("text", "is_text", "reason")], "is_text",
                      "reason"]]  # fmt: skip

    def summary(
        self, completions: Texts, references: Texts | None = None, *, min_share: float = MIN_SHARE
    ) -> GateSummary:
        """The share of a setting's completions that pass (Wilson interval), and whether at least
        ``min_share`` of them do."""
        real(min_share, "min_share", minimum=0, maximum=1)
        table = self.check(completions, references)
        share = proportion_of(table["is_text"].to_numpy())
        reasons = Counter(r for reason in table["reason"] for r in reason.split("; ") if r)
        ratio = float(table["set_distinct"].iloc[0]) if references is not None else None
        return GateSummary(share, share.value >= min_share, dict(reasons), ratio)


@dataclass(frozen=True)
class GateSummary:
    """A setting's completions through the gate: ``share`` that pass (Wilson), ``passes`` (at
    least the required share), how many failed each rule, and the set-level bigram ratio."""

    share: Estimate
    passes: bool
    reasons: dict[str, int]
    set_distinct: float | None


def _texts(values: Texts, name: str) -> list[str]:
    """A non-empty list of strings (a pandas column or numpy array too), else a ValueError naming ``name``."""
    return strings(values.tolist() if isinstance(values, (pd.Series, np.ndarray)) else values, name)


def _bigrams(texts: Sequence[str]) -> list[tuple[str, str]]:
    grams = []
    for text in texts:
        words = [
            core.lower() for kind, core in map(_chunk_kind, text.split()) if kind in ("word", "tag", "number", "junk")
        ]
        grams += list(itertools.pairwise(words))
    return grams


def set_distinct_ratio(completions: Texts, references: Texts) -> float:
    """Distinct-2 of ``completions`` over distinct-2 of ``references`` (word bigrams within each
    text, lower-cased), both on the first N bigrams, N the smaller count: distinct-n falls as
    text grows, so the two are compared at one size. A set without a bigram scores 0."""
    mine, theirs = _bigrams(_texts(completions, "completions")), _bigrams(_texts(references, "references"))
    if not theirs:
        raise ValueError("references hold no word bigrams: pass the unsteered completions of the same prompts")
    n = min(len(mine), len(theirs))
    if n == 0:
        return 0.0
    return (len(set(mine[:n])) / n) / (len(set(theirs[:n])) / n)


# ---------------------------------------------------------------------------------------
# Validation on the labelled set

# The values tried per threshold when tuning, from the most lenient (the rule off or nearly) to
# the strictest, and the rule each one sets; min_words and min_set_distinct are not tuned.
GRID: dict[str, tuple[float, ...]] = {
    "min_word_share": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "min_known_share": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "min_line_words": (0.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    "min_content_distinct": (0.0, 0.4, 0.5, 0.6, 0.7, 0.8),
    "max_word_run": (99, 5, 4, 3),  # a word twice in a row is ordinary ("had had", "you. You")
    "max_function_share": (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7),
    "min_function_share": (0.0, 0.1, 0.15, 0.2, 0.25, 0.3),
}
RULE_OF = {
    "min_word_share": "digits or symbols",
    "min_known_share": "unknown words",
    "min_line_words": "short lines",
    "min_content_distinct": "repeated words",
    "max_word_run": "one word over and over",
    "max_function_share": "only function words",
    "min_function_share": "no function words",
}


def read_labelled(path: str | Path = LABELLED_SET) -> pd.DataFrame:
    """The labelled completions: columns text, prompt, label ('text'/'not_text'), source, note."""
    return check_labelled(pd.read_csv(path, keep_default_na=False, dtype=str), str(path))


def check_labelled(table: pd.DataFrame, what: str = "the labelled rows") -> pd.DataFrame:
    """``table`` unchanged if it has the columns text, label and source and only :data:`LABELS`."""
    missing = {"text", "label", "source"} - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks the columns {sorted(missing)}: give text, label and source")
    bad = sorted(set(table["label"]) - set(LABELS))
    if bad:
        raise ValueError(f"{what} has the labels {bad}; use {LABELS}")
    return table


def split_labelled(labelled: pd.DataFrame, seed: int = SPLIT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tuning half, held-out half): a seeded split, half of each label on either side."""
    rng = np.random.default_rng(integer(seed, "seed"))
    tune_rows = []
    for label in LABELS:
        rows = np.flatnonzero(labelled["label"].to_numpy() == label)
        tune_rows += rng.permutation(rows)[: len(rows) // 2].tolist()
    in_tune = np.zeros(len(labelled), dtype=bool)
    in_tune[tune_rows] = True
    return labelled[in_tune], labelled[~in_tune]


def tune(labelled: pd.DataFrame, max_rounds: int = 10) -> TextGate:
    """The thresholds of :data:`GRID` with the best balanced accuracy on ``labelled`` (the mean
    of the shares of not-text caught and of text passed), by coordinate ascent: from every
    threshold at its most lenient value, set each in turn to its best value given the others,
    until a round changes none. Ties go to the more lenient value."""
    base = _replace(TextGate(), {name: values[0] for name, values in GRID.items()})
    table = base.measure(labelled["text"].tolist())
    not_text = labelled["label"].to_numpy() == "not_text"
    # Per threshold and value, the rows its rule fails; a gate fails a row when any rule does.
    fails = {name: [_replace(base, {name: v}).rules(table)[RULE_OF[name]].to_numpy() for v in values]
             for name, values in GRID.items()}  # fmt: skip
    always = base.rules(table)["no words"].to_numpy()
    choice = {name: GRID[name].index(getattr(base, name)) for name in GRID}
    for _ in range(integer(max_rounds, "max_rounds", minimum=1)):
        changed = False
        for name in GRID:
            others = always | np.any([fails[o][choice[o]] for o in GRID if o != name], axis=0)
            scores = [_balanced_accuracy(others | row_fails, not_text) for row_fails in fails[name]]
            best = int(np.argmax(scores))  # the first maximum: the most lenient of the ties
            if scores[best] > scores[choice[name]]:
                choice[name], changed = best, True
        if not changed:
            break
    return _replace(base, {name: GRID[name][i] for name, i in choice.items()})


def _balanced_accuracy(flagged: np.ndarray, not_text: np.ndarray) -> float:
    return float((flagged[not_text].mean() + (~flagged[~not_text]).mean()) / 2)


def _replace(gate: TextGate, values: dict[str, float]) -> TextGate:
    ints = {f.name for f in fields(TextGate) if f.type == "int"}
    changes: dict[str, Any] = {k: int(v) if k in ints else float(v) for k, v in values.items()}
    return replace(gate, **changes)


@dataclass(frozen=True)
class Validation:
    """The gate on held-out labelled completions: accuracy, sensitivity (the share of not-text
    caught) and specificity (the share of text passed), each with a Wilson interval, and the
    rows it got wrong."""

    gate: TextGate
    accuracy: Estimate
    sensitivity: Estimate
    specificity: Estimate
    n_tune: int
    errors: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """One row per measure: value, low, high, n."""
        return pd.DataFrame(
            [{"measure": name, **getattr(self, name).as_dict()} for name in ("accuracy", "sensitivity", "specificity")]
        )


def score(gate: TextGate, labelled: pd.DataFrame, n_tune: int = 0) -> Validation:
    """``gate`` on ``labelled`` (columns text, label and source)."""
    check_labelled(labelled)
    table = gate.check(labelled["text"].tolist())
    not_text = labelled["label"].to_numpy() == "not_text"
    flagged = ~table["is_text"].to_numpy()
    if not not_text.any() or not_text.all():
        raise ValueError("the labelled rows must hold both labels to measure sensitivity and specificity")
    right = flagged == not_text
    errors = table[~right].assign(
        label=labelled["label"].to_numpy()[~right], source=labelled["source"].to_numpy()[~right]
    )
    return Validation(
        gate,
        proportion(int(right.sum()), len(right)),
        proportion(int((flagged & not_text).sum()), int(not_text.sum())),
        proportion(int((~flagged & ~not_text).sum()), int((~not_text).sum())),
        n_tune,
        errors,
    )


def validate(labelled: pd.DataFrame | None = None, seed: int = SPLIT_SEED) -> Validation:
    """Tune on one half of the labelled set (:func:`split_labelled`) and score on the other:
    the held-out accuracy is the number a study quotes."""
    labelled = read_labelled() if labelled is None else labelled
    tuning, held_out = split_labelled(labelled, seed)
    return score(tune(tuning), held_out, n_tune=len(tuning))


def held_out(seed: int = SPLIT_SEED) -> Validation:
    """The default gate (:class:`TextGate`, whose thresholds :func:`tune` finds on the tuning half)
    scored on the held-out half of the labelled set: what a study quotes beside its results."""
    _, held = split_labelled(read_labelled(), seed)
    return score(TextGate(), held, n_tune=0)
