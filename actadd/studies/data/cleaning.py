"""Prompts that are text: a text is cleaned of what a model would continue as something other
than text (a URL, a reply's addressees) before it is cut to a prompt. The rule, in order:

1. HTML entities are decoded (``&amp;`` -> ``&``; the corpus's doubly encoded ``&amp;gt;`` too);
2. URLs are removed: ``http://...``, ``https://...``, ``www....``, a bare ``t.co/...``, and the
   ``http`` a retweet was truncated in (``httpäó_``, its ellipsis mis-decoded);
3. a leading run of @handles (a reply's addressees, or a retweet's ``RT @name:``; Twitter's
   ``.@name`` too) is dropped;
4. every other @handle becomes ``@user``, as TweetEval (Barbieri et al., 2020) does: the sentence
   keeps a name in its place ("fine @user for his hat"), not an identifier the model would go on
   spelling out;
5. whitespace is collapsed to single spaces.

A text left with fewer than :data:`MIN_PROMPT_WORDS` words (whitespace-separated chunks holding a
letter, ``@user`` not counted) is no prompt: ``"@united thanks"`` leaves ``"thanks"``. Hashtags
stay (they are words people write), and so does anything else, including the tweets' mis-decoded
characters.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

MIN_PROMPT_WORDS = 2
HANDLE = "@user"

_ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+);")
# "http" before a colon, or before the non-ASCII a truncation left ("httpäó_"), then the rest of the chunk.
_URL = re.compile(r"(?:\bhttps?(?=:|[^\x00-\x7f])|\bwww\.|(?<![\w.])t\.co/)\S*", re.IGNORECASE)
_LEADING_HANDLES = re.compile(r"^(?:(?:RT|MT)\s+)?(?:\.?@[A-Za-z0-9_]+[:,]?\s*)+")
# A handle is not part of an e-mail address or a longer name: nothing word-like just before it.
_HANDLE = re.compile(r"(?<![A-Za-z0-9_.])@[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Cleaned:
    """A text after :func:`clean`: ``changed`` when more than whitespace was removed or replaced,
    ``keep`` when it still holds :data:`MIN_PROMPT_WORDS` words."""

    text: str
    changed: bool
    keep: bool


def _decode_entities(text: str) -> str:
    for _ in range(3):  # the tweets hold entities encoded twice ("&amp;gt;"); three rounds end any seen
        decoded = _ENTITY.sub(lambda match: html.unescape(match.group(0)), text)
        if decoded == text:
            break
        text = decoded
    return text


def words(text: str) -> int:
    """The words of ``text`` as the prompt rule counts them: chunks with a letter, ``@user`` aside."""
    return sum(1 for chunk in text.split() if chunk != HANDLE and any(c.isalpha() for c in chunk))


def clean(text: str) -> Cleaned:
    """``text`` cleaned by the module's rule, whether that changed it and whether it is still a prompt."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}")
    out = " ".join(_URL.sub(" ", _decode_entities(text)).split())
    out = _HANDLE.sub(HANDLE, _LEADING_HANDLES.sub("", out))
    out = " ".join(out.split())
    return Cleaned(out, out != " ".join(text.split()), words(out) >= MIN_PROMPT_WORDS)
