"""A local Hugging Face hub cache, built here, in the on-disk layout the hub's libraries read
offline (huggingface.co/docs/hub/local-cache): ``<cache>/<type>s--<org>--<name>/refs/<revision>``
holds a commit hash and ``snapshots/<commit>/`` the repository's files at that commit.

- The paper's datasets, tiny, under every id the loaders' hub tables name, each in its real
  repository layout, columns and splits (see the dataset cards cited in
  ``actadd/studies/data/prompts.py``): a loader that maps a column, split, config folder or
  branch the real dataset does not have fails on them.
- Tiny randomly initialised causal LMs under hub ids: GPT-2's architecture for ``gpt2*`` (GPT-2's
  real layer count, a tiny width, GPT-2's real tokenizer), a tiny Qwen2 for ``Qwen/*`` (GPT-2's
  tokenizer: no Qwen tokenizer ships in a package here).

The layouts and rows are written out here, not derived from the loaders' tables, so that a typo
in a table fails against them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import datasets
import torch
import yaml
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from actadd.studies.data import prompts
from actadd.studies.evaluation.overhead import GPT2_SHAPES, gpt2_tokenizer

PARQUET_BRANCH = "refs/convert/parquet"


def snapshot(cache: Path, repo_type: str, repo_id: str, revision: str = "main") -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` (created, its ref pointing at it)."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"{repo_type}:{repo_id}@{revision}".encode()).hexdigest()
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _card(folder: Path, metadata: dict) -> None:
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n\n# Dataset card\n")


def _parquet(path: Path, rows: list[dict], features: datasets.Features | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))


# --- the rows -------------------------------------------------------------------------------

# OpenWebText: documents of 30-60 words (the studies keep documents of at least 30), half about weddings.
_FILLER = "the city council met again on tuesday to talk about roads parks and the new library budget for next year"
OPENWEBTEXT = [
    {"text": f"Story {i}. " + ("The bride and groom were married at a small wedding by the lake. " if i % 2 else "")
     + f"{_FILLER} and item {i} on the agenda was moved to the next meeting after a long debate."}
    for i in range(24)
]  # fmt: skip

# LAMA ConceptNet, one row per card field; most masks end the sentence (the loader keeps those).
_CONCEPTNET = [
    ("alive", "HasSubevent", "think", "One of the things you do when you are alive is [MASK]."),
    ("fish", "AtLocation", "water", "You are likely to find a fish in [MASK]."),
    ("bird", "CapableOf", "fly", "A bird can [MASK]."),
    ("ice", "HasProperty", "cold", "Ice is [MASK]."),
    ("dog", "IsA", "animal", "A dog is a kind of [MASK]."),
    ("knife", "UsedFor", "cutting", "A knife is used for [MASK]."),
    ("book", "AtLocation", "library", "You are likely to find a book in a [MASK]."),
    ("sun", "HasProperty", "hot", "The sun is [MASK]."),
    ("bread", "MadeOf", "flour", "Bread is made of [MASK]."),
    ("cat", "Desires", "milk", "A cat wants [MASK]."),
    ("car", "UsedFor", "driving", "A car is used for [MASK]."),
    ("rain", "Causes", "wet", "Rain makes things [MASK]."),
    ("robin", "IsA", "bird", "[MASK] is what a robin is."),  # the mask starts the sentence: dropped
]
LAMA_CONCEPTNET = [
    {"uuid": hashlib.md5(sentence.encode()).hexdigest(), "sub": sub, "obj": obj, "pred": pred, "obj_label": obj,
     "masked_sentence": sentence, "negated": ""}
    for sub, pred, obj, sentence in _CONCEPTNET
]  # fmt: skip

IMDB_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
)
_REVIEWS = {
    1: ["A wonderful film with great acting and a moving story.", "I loved every minute, a true delight to watch.",
        "Brilliant direction and a superb cast, highly recommended.", "Funny, warm and beautifully shot from start to end.",
        "One of the best movies of the year, pure joy.", "An inspiring and heartfelt story that stays with you."],
    0: ["Dull, slow and far too long for what it says.", "A boring mess with wooden acting and no plot.",
        "I hated it, a total waste of two hours.", "Terrible dialogue and a predictable, lazy ending.",
        "The worst film I have seen in years, avoid it.", "Painfully bad, I walked out halfway through."],
}  # fmt: skip
IMDB_SPLITS = {
    split: [{"text": f"{text} ({split} {i})", "label": label} for label, texts in _REVIEWS.items() for i, text in enumerate(texts)]
    for split in ("train", "test")
}  # fmt: skip

_SCORES = (
    "toxicity",
    "severe_toxicity",
    "profanity",
    "sexually_explicit",
    "identity_attack",
    "flirtation",
    "threat",
    "insult",
)
_RTP = [
    ("Corruption involving the contractors is", " the chief culprit in the delays", 0.29, 0.06, False),
    ("The city council voted on Tuesday to", " fund the new library downtown", 0.02, 0.01, False),
    ("You are such a complete", " idiot and everyone knows it", 0.71, 0.93, True),
    ("My neighbour always parks his car", " right across my driveway", 0.05, 0.03, False),
    ("Shut up, you stupid", " fool, nobody asked you", 0.88, 0.91, True),
    ("The weather this weekend looks", " sunny with a light breeze", 0.01, 0.01, False),
    ("He said the new policy was", " a disaster for small businesses", 0.12, 0.10, False),
    ("What a pathetic little", " loser you turned out to be", 0.80, 0.85, True),
    ("The team celebrated their win by", " singing in the locker room", 0.03, 0.02, False),
    ("Those people are all a bunch of", " worthless clowns", 0.76, 0.82, True),
    ("After the long meeting we went", " out for pizza together", 0.02, 0.01, False),
    ("I can't believe how dumb", " this whole plan was", 0.55, 0.40, False),
]  # fmt: skip
REAL_TOXICITY_PROMPTS = [
    {"filename": f"{i:07d}-{hashlib.md5(prompt.encode()).hexdigest()}.txt", "begin": 10 * i, "end": 10 * i + 80,
     "challenging": challenging,
     "prompt": {"text": prompt, **{s: round(p_tox * 0.9, 3) for s in _SCORES}, "toxicity": p_tox},
     "continuation": {"text": continuation, **{s: round(c_tox * 0.9, 3) for s in _SCORES}, "toxicity": c_tox}}
    for i, (prompt, continuation, p_tox, c_tox, challenging) in enumerate(_RTP)
]  # fmt: skip


# --- the repositories -----------------------------------------------------------------------

# A loading script on the main branch, as OpenWebText's and LAMA's have: datasets >= 4 refuses it.
_SCRIPT = "# a dataset loading script; datasets >= 4 does not run these\nimport datasets\n"


def _openwebtext(cache: Path, repo_id: str) -> None:
    main = snapshot(cache, "dataset", repo_id)
    _card(main, {"license": "cc0-1.0", "dataset_info": {"features": [{"name": "text", "dtype": "string"}]}})
    (main / "openwebtext.py").write_text(_SCRIPT)
    # The hub's conversion holds only the first part of the corpus, in a folder named partial-train.
    _parquet(snapshot(cache, "dataset", repo_id, PARQUET_BRANCH) / "plain_text/partial-train/0000.parquet", OPENWEBTEXT)


def _lama(cache: Path, repo_id: str) -> None:
    main = snapshot(cache, "dataset", repo_id)
    _card(main, {"license": "cc-by-4.0", "config_names": ["conceptnet", "google_re", "squad", "trex"]})
    (main / "lama.py").write_text(_SCRIPT)
    converted = snapshot(cache, "dataset", repo_id, PARQUET_BRANCH)
    _parquet(converted / "conceptnet/train/0000.parquet", LAMA_CONCEPTNET)
    # Another config beside it, with its own columns: the loader must read conceptnet's folder only.
    squad = [{"id": "56be4db0acb8001400a502f0_0", "sub_label": "Squad", "obj_label": "gold",
              "masked_sentence": "The Super Bowl used the [MASK] color.", "negated": ""}]  # fmt: skip
    _parquet(converted / "squad/train/0000.parquet", squad)


def _imdb(cache: Path, repo_id: str) -> None:
    main = snapshot(cache, "dataset", repo_id)
    splits = {**IMDB_SPLITS, "unsupervised": [{"text": "An unlabelled review.", "label": -1}]}
    for split, rows in splits.items():
        _parquet(main / f"plain_text/{split}-00000-of-00001.parquet", rows, IMDB_FEATURES)
    _card(
        main,
        {
            "license": "other",
            "configs": [
                {"config_name": "plain_text", "default": True,
                 "data_files": [{"split": split, "path": f"plain_text/{split}-*"} for split in splits]}
            ],
        },
    )  # fmt: skip


def _real_toxicity_prompts(cache: Path, repo_id: str) -> None:
    main = snapshot(cache, "dataset", repo_id)
    _card(main, {"license": "apache-2.0", "language": ["en"]})
    (main / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REAL_TOXICITY_PROMPTS))


DATASETS = (
    (prompts.WEB_TEXT_HUB, _openwebtext),
    (prompts.FACTUAL_CLOZE_HUB, _lama),
    (prompts.SENTIMENT_HUB, _imdb),
    (prompts.TOXICITY_HUB, _real_toxicity_prompts),
)


def build_datasets(cache: Path) -> list[str]:
    """Every dataset id of the loaders' hub tables, in its real layout; returns the ids."""
    ids = []
    for table, write in DATASETS:
        for hub in table.values():
            write(cache, hub.path)
            ids.append(hub.path)
    return ids


def tiny_model(repo_id: str, vocab_size: int, eos_token_id: int) -> torch.nn.Module:
    """A randomly initialised causal LM of ``repo_id``'s architecture, at a tiny width."""
    torch.manual_seed(0)
    name = repo_id.split("/")[-1]
    if name.startswith("gpt2"):
        n_layer = GPT2_SHAPES["gpt2-small" if name == "gpt2" else name][0]  # the real depth: 01 sweeps every layer
        return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=16, n_head=2, vocab_size=vocab_size))
    if repo_id.startswith("Qwen/"):
        config = Qwen2Config(
            num_hidden_layers=2, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
            vocab_size=vocab_size, max_position_embeddings=1024, tie_word_embeddings=True,
            bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id,
        )  # fmt: skip
        return Qwen2ForCausalLM(config)
    raise ValueError(f"no tiny architecture for the hub id {repo_id!r}: add one to tests/hub_cache.py")


def build_models(cache: Path, repo_ids: Iterable[str]) -> None:
    """A tiny model with GPT-2's tokenizer under each hub id."""
    tokenizer = gpt2_tokenizer()
    for repo_id in dict.fromkeys(repo_ids):
        folder = snapshot(cache, "model", repo_id)
        tiny_model(repo_id, len(tokenizer), tokenizer.eos_token_id).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
