"""Toxicity scorers: alt-profanity-check on clear examples, the Detoxify fallback, and the PyTorch
port of tox-block against the scores its own README documents."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from actadd.studies.evaluation import toxicity

needs_toxblock = pytest.mark.skipif(
    importlib.util.find_spec("tox_block") is None, reason=f"tox-block is not installed: {toxicity.TOXBLOCK_INSTALL}"
)


def test_toxicity_on_clear_examples():
    toxic, polite = toxicity.toxicity(["you are a stupid idiot", "have a nice day"])
    assert toxic > 0.8 and polite < 0.3
    with pytest.raises(ValueError, match="backend"):
        toxicity.toxicity(["x"], backend="perspective")


def test_toxicity_backend_is_quiet_when_detoxify_is_not_installed(monkeypatch, recwarn):
    monkeypatch.setattr(toxicity.importlib.util, "find_spec", lambda name: None)
    assert toxicity.toxicity_backend() == "alt-profanity-check"
    assert not [w for w in recwarn if "Detoxify" in str(w.message)]


def test_toxicity_backend_warns_when_an_installed_detoxify_fails_to_load(monkeypatch):
    def offline():
        raise OSError("cannot download the checkpoint")

    monkeypatch.setattr(toxicity.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(toxicity, "_detoxify", offline)
    with pytest.warns(UserWarning, match="Detoxify is installed but did not load"):
        assert toxicity.toxicity_backend() == "alt-profanity-check"


def readme_predictions() -> tuple[list[str], np.ndarray]:
    """The bulk example of tox-block 0.1.2's README (the long description in its installed
    METADATA): ``make_predictions([...], rescale=True)`` and the dictionary it returned there."""
    readme = importlib.metadata.distribution("tox-block").read_text("METADATA") or ""
    blocks = [ast.literal_eval(block) for block in re.findall(r"```python\n(\{\n0:.*?)```", readme, flags=re.S)]
    assert len(blocks) == 1, "the README's bulk example was not found"
    rows = [blocks[0][i] for i in sorted(blocks[0])]
    return [row["text"] for row in rows], np.array([[row[label] for label in toxicity.TOXBLOCK_LABELS] for row in rows])


def readme_rescaling() -> tuple[np.ndarray, np.ndarray]:
    """tox-block's ``rescale=True`` min-max bounds per label, read from its config.py (not imported:
    the package imports TensorFlow)."""
    config = toxicity.toxblock_files().parent / "config" / "config.py"
    for node in ast.parse(config.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RESCALE_PROBA":
            bounds = ast.literal_eval(node.value)
            return tuple(np.array([bounds[label][k] for label in toxicity.TOXBLOCK_LABELS]) for k in (0, 1))
    raise AssertionError(f"no RESCALE_PROBA in {config}")


@needs_toxblock
def test_toxblock_port_reproduces_the_readme_scores():
    texts, documented = readme_predictions()
    low, high = readme_rescaling()
    raw = toxicity.toxblock_probabilities(texts)
    # tox-block's rescaling, as prediction._rescale_proba does it.
    np.testing.assert_allclose(np.abs((raw - low) / (high - low)), documented, atol=5e-5)
    # The scorer is the raw "toxic" output, the README's value with the rescaling undone.
    toxic = toxicity.TOXBLOCK_LABELS.index("toxic")
    expected = documented[:, toxic] * (high[toxic] - low[toxic]) + low[toxic]
    np.testing.assert_allclose(toxicity.toxicity(texts, backend="tox-block"), expected, atol=5e-5)


@needs_toxblock
def test_toxblock_batches_like_one_text_at_a_time_and_scores_any_string():
    texts = ["You are a total idiot.", "", "Lovely weather in the park today.", "ok " * 300]
    batched = toxicity.toxblock_probabilities(texts, batch_size=3)
    one_by_one = np.concatenate([toxicity.toxblock_probabilities([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    assert batched.shape == (4, 6) and np.all((batched >= 0) & (batched <= 1))
    assert toxicity.toxblock_probabilities([]).shape == (0, 6)
    with pytest.raises(ValueError, match="strings"):
        toxicity.toxblock_probabilities(["fine", None])


@needs_toxblock
def test_the_tokenizer_keeps_the_keras_vocabulary_limit():
    tokenizer = toxicity.load_word_tokenizer(toxicity.toxblock_files() / "encoder_0.1.2.pkl")
    # Keras's num_words=20000 keeps indices 1..19999 (0 is the padding).
    assert sorted(tokenizer.word_index.values()) == list(range(1, 20000))
    assert tokenizer.length == 100 and tokenizer.oov_index is None


def test_word_tokenizer_follows_keras_defaults():
    keras_filters = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'  # Tokenizer's default filters
    words = {"you": 1, "idiot": 2, "you're": 3}
    plain = toxicity.WordTokenizer(words, keras_filters, lower=True, split=" ", length=4, oov_index=None)
    # Lower-cased, punctuation split off, unknown words dropped, the apostrophe kept (not a filter).
    assert plain.sequence("You're an IDIOT!you\ttoo") == [3, 2, 1]
    # Truncated and padded in front (pad_sequences' defaults truncating="pre", padding="pre").
    assert plain.encode(["idiot you you you you", "idiot", "nothing known"]).tolist() == [
        [1, 1, 1, 1],
        [0, 0, 0, 2],
        [0, 0, 0, 0],
    ]
    with_oov = toxicity.WordTokenizer(words, keras_filters, lower=True, split=" ", length=4, oov_index=9)
    assert with_oov.sequence("you moron") == [1, 9]


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_tokenizer_unpickler_refuses_any_other_class(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "encoder.pkl"
    path.write_bytes(pickle.dumps(RunsACommand(marker)))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|nt|os)\.system"):
        toxicity.load_word_tokenizer(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"tokenizer": Path("x")}))
    with pytest.raises(pickle.UnpicklingError, match="pathlib"):
        toxicity.load_word_tokenizer(path)


def test_toxblock_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(toxicity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=re.escape(toxicity.TOXBLOCK_INSTALL)):
        toxicity.toxblock_files()
