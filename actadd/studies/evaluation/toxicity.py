"""Toxicity scorers: alt-profanity-check (a linear SVM on words), tox-block (a bidirectional LSTM
trained on the Jigsaw Toxic Comment data) and Detoxify where its checkpoint can be had.

tox-block 0.1.2 runs, as published, only under TensorFlow with Keras 2 APIs, and installing
TensorFlow for one small LSTM is out of proportion. Its two trained files are read here
directly instead, without importing the package: the Keras 2 HDF5 weights with h5py into
:class:`ToxBlockLSTM`, and the pickled Keras word tokenizer through an unpickler that admits
only the handful of harmless classes that pickle names (:func:`load_word_tokenizer`), so that
neither ``keras_preprocessing`` nor any code a pickle might ask for is ever run. Install it with
:data:`TOXBLOCK_INSTALL`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import pickle
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from actadd.checks import integer
from actadd.studies.evaluation.scorers import Scorer

TOXICITY_BACKENDS = ("alt-profanity-check", "tox-block", "detoxify")
# tox-block's own dependencies (TensorFlow among them) are neither needed nor wanted here.
TOXBLOCK_INSTALL = "pip install --no-deps tox-block==0.1.2"
TOXBLOCK_VERSION = "0.1.2"
# The network's six sigmoid outputs, in the order of its last layer (tox_block.config.LIST_CLASSES).
TOXBLOCK_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
# Texts per forward pass: 256 x 100 steps x 50 dimensions is a few MB of activations.
TOXBLOCK_BATCH = 256


def toxicity(texts: Sequence[str], backend: str = "alt-profanity-check") -> np.ndarray:
    """Toxicity probability per text, shape [N].

    ``"alt-profanity-check"`` (linear SVM on Davidson + Jigsaw; works offline),
    ``"tox-block"`` (a BiLSTM on Jigsaw, P(toxic): :func:`toxblock_scorer`; works offline once
    installed) or ``"detoxify"`` (the 'original' checkpoint; needs the package and its
    downloaded weights). :func:`toxicity_backend` picks Detoxify where it can be had.
    """
    if backend == "alt-profanity-check":
        from profanity_check import predict_prob

        return predict_prob(list(texts)) if len(texts) else np.array([])
    if backend == "tox-block":
        return toxblock_scorer().score(list(texts))
    if backend == "detoxify":
        return np.asarray(_detoxify().predict(list(texts))["toxicity"])
    raise ValueError(f"unknown toxicity backend {backend!r}; use one of {', '.join(map(repr, TOXICITY_BACKENDS))}")


def toxicity_backend() -> str:
    """'detoxify' when the package is installed and its checkpoint loads, else
    'alt-profanity-check'; a warning only when Detoxify is installed but fails to load (its
    checkpoint is a download): an optional backend that is not installed is not a problem."""
    if importlib.util.find_spec("detoxify") is None:
        return "alt-profanity-check"
    try:
        _detoxify()
        return "detoxify"
    except Exception as error:  # the checkpoint download failing offline
        warnings.warn(
            f"Detoxify is installed but did not load ({type(error).__name__}: {error}); using alt-profanity-check",
            stacklevel=2,
        )
        return "alt-profanity-check"


@functools.lru_cache(maxsize=1)
def _detoxify() -> Any:
    from detoxify import Detoxify

    return Detoxify("original", device="cpu")


# ---------------------------------------------------------------------------------------
# tox-block


def toxblock_scorer(batch_size: int = TOXBLOCK_BATCH) -> Scorer:
    """tox-block's P(toxic) per text, on CPU in batches of ``batch_size``.

    The "toxic" output is the one used: in the Jigsaw labels it is the broad category, the
    other five mostly marking kinds of comment also labelled toxic, so it is the closest to
    "is this text toxic", the question alt-profanity-check and Perspective answer. It is the
    network's own sigmoid output, not tox-block's optional min-max rescaling
    (``rescale=True``), which exists to put the six categories on one scale and moves the toxic
    output by at most 0.0022.
    """
    batch_size = integer(batch_size, "batch_size", minimum=1)
    toxic = TOXBLOCK_LABELS.index("toxic")
    return Scorer("tox-block", lambda texts: toxblock_probabilities(texts, batch_size=batch_size)[:, toxic])


def toxblock_probabilities(texts: Sequence[str], *, batch_size: int = TOXBLOCK_BATCH) -> np.ndarray:
    """tox-block's six probabilities per text (columns :data:`TOXBLOCK_LABELS`), shape [N, 6].

    A text with no word in the tokenizer's vocabulary (an empty one, say) is all padding, and
    gets the network's score for that rather than the error tox-block itself raises on "".
    """
    texts = list(texts)
    if bad := [t for t in texts if not isinstance(t, str)]:
        raise ValueError(f"texts must be strings, got {bad[0]!r}; convert them with str() or drop them")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    tokenizer, network = _toxblock()
    out = [np.zeros((0, len(TOXBLOCK_LABELS)), dtype=np.float32)]
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            ids = torch.from_numpy(tokenizer.encode(texts[lo : lo + batch_size]))
            out.append(network(ids).numpy())
    return np.concatenate(out)


@functools.lru_cache(maxsize=1)
def _toxblock() -> tuple[WordTokenizer, ToxBlockLSTM]:
    folder = toxblock_files()
    tokenizer = load_word_tokenizer(folder / f"encoder_{TOXBLOCK_VERSION}.pkl")
    return tokenizer, ToxBlockLSTM.from_keras_h5(folder / f"lstm_model_{TOXBLOCK_VERSION}.h5").eval()


def toxblock_files() -> Path:
    """The folder of tox-block's trained files (``trained_models`` in the installed package),
    found without importing the package, whose modules import TensorFlow."""
    spec = importlib.util.find_spec("tox_block")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"tox-block is not installed; install it with: {TOXBLOCK_INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "trained_models"
    expected = [f"encoder_{TOXBLOCK_VERSION}.pkl", f"lstm_model_{TOXBLOCK_VERSION}.h5"]
    if missing := [name for name in expected if not (folder / name).is_file()]:
        raise ValueError(
            f"tox-block's files {missing} are not in {folder}: another version is installed; "
            f"install this one with: {TOXBLOCK_INSTALL}"
        )
    return folder


@dataclass(frozen=True)
class WordTokenizer:
    """Keras 2's text ``Tokenizer`` with ``pad_sequences``, as tox-block applies them.

    Lower-case (``lower``), replace every character of ``filters`` by ``split``, split on
    ``split`` and drop empty words; map each word to its index, keeping only the
    ``num_words - 1`` most frequent words (``word_index`` holds no others) and sending the rest
    to the out-of-vocabulary index when the tokenizer has one, else dropping them; then keep the
    last ``length`` indices and pad in front with 0 (Keras's default ``truncating="pre"``,
    ``padding="pre"``).
    """

    word_index: dict[str, int]
    filters: str
    lower: bool
    split: str
    length: int
    oov_index: int | None

    @functools.cached_property
    def _filter_table(self) -> dict[int, str]:
        return {ord(char): self.split for char in self.filters}

    def sequence(self, text: str) -> list[int]:
        """The word indices of one text, before truncation and padding."""
        if self.lower:
            text = text.lower()
        words = text.translate(self._filter_table).split(self.split)
        found = (self.word_index.get(word, self.oov_index) for word in words if word)
        return [index for index in found if index is not None]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Indices of each text, truncated and padded in front to ``length``, shape [N, length]."""
        ids = np.zeros((len(texts), self.length), dtype=np.int64)
        for row, text in enumerate(texts):
            kept = self.sequence(text)[-self.length :]
            if kept:
                ids[row, -len(kept) :] = kept
        return ids


class _Restored:
    """What a pickled object of an admitted class becomes: its attributes, and none of its code."""


# Every class tox-block's tokenizer pickle names. Plain stand-ins replace its own two, so neither
# tox_block (which imports TensorFlow) nor keras_preprocessing is needed; the rest hold the
# vocabulary (``int`` is the default factory of its word counts).
_ADMITTED: dict[tuple[str, str], Any] = {
    ("tox_block.data_processing.preprocessors", "TokenSequencer"): _Restored,
    ("keras_preprocessing.text", "Tokenizer"): _Restored,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("builtins", "int"): int,
}


class _TokenizerUnpickler(pickle.Unpickler):
    """Resolves only the classes of :data:`_ADMITTED` and refuses every other."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ADMITTED:
            admitted = ", ".join(f"{m}.{n}" for m, n in _ADMITTED)
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a tokenizer pickle: only {admitted} are admitted. "
                f"This is not tox-block {TOXBLOCK_VERSION}'s tokenizer; reinstall it with: {TOXBLOCK_INSTALL}"
            )
        return _ADMITTED[module, name]


def load_word_tokenizer(path: str | Path) -> WordTokenizer:
    """tox-block's pickled ``TokenSequencer`` (a Keras ``Tokenizer`` and a sequence length) as a
    :class:`WordTokenizer`, through an unpickler that refuses every class but the few it needs
    (``pickle.UnpicklingError`` naming the class asked for)."""
    with open(path, "rb") as file:
        sequencer = _TokenizerUnpickler(file).load()
    keras = getattr(sequencer, "tokenizer", None)
    state = vars(keras) if isinstance(keras, _Restored) else {}
    needed = ("word_index", "num_words", "filters", "lower", "split", "char_level", "oov_token")
    if missing := [key for key in needed if key not in state]:
        raise ValueError(
            f"{path} is not a pickled tox-block TokenSequencer (no tokenizer {missing}); {TOXBLOCK_INSTALL}"
        )
    if state["char_level"] or not isinstance(state["split"], str):
        raise ValueError(f"{path}: a character-level or custom-split tokenizer is not tox-block's word tokenizer")
    limit = state["num_words"] or float("inf")  # Keras: no num_words keeps every word
    return WordTokenizer(
        word_index={word: index for word, index in state["word_index"].items() if index < limit},
        filters=state["filters"],
        lower=state["lower"],
        split=state["split"],
        length=integer(getattr(sequencer, "max_sequence_length", None), "max_sequence_length", minimum=1),
        oov_index=state["word_index"].get(state["oov_token"]) if state["oov_token"] is not None else None,
    )


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's ``hard_sigmoid`` (TensorFlow 2's, before Keras 3 changed it), the saved LSTM's
    gate activation: ``clip(0.2 x + 0.5, 0, 1)``. Not PyTorch's ``hardsigmoid``, of slope 1/6."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


# What the port assumes of the saved Keras model; a file that differs is refused, not misread.
_KERAS_LAYERS = ["InputLayer", "Embedding", "Bidirectional", "GlobalMaxPooling1D", "Dense", "Dropout", "Dense"]
_KERAS_LSTM = {"activation": "tanh", "recurrent_activation": "hard_sigmoid", "use_bias": True, "return_sequences": True}


def _matches_port(layers: list[dict[str, Any]]) -> bool:
    if [layer["class_name"] for layer in layers] != _KERAS_LAYERS:
        return False
    embedding, bidirectional = layers[1]["config"], layers[2]["config"]
    lstm = bidirectional["layer"]["config"]
    return (
        not embedding["mask_zero"]  # the padding runs through the LSTM like any token
        and bidirectional["merge_mode"] == "concat"
        and all(lstm.get(key) == value for key, value in _KERAS_LSTM.items())
        and [layers[4]["config"]["activation"], layers[6]["config"]["activation"]] == ["relu", "sigmoid"]
    )


class ToxBlockLSTM(nn.Module):
    """tox-block's network in PyTorch: token embedding, a bidirectional LSTM returning every
    step (directions concatenated), max over time, dense + ReLU, dense + sigmoid. The dropout
    of the Keras model is inactive at inference and left out.

    The LSTM weights stay in Keras's layout, one slice per direction (forward, backward):
    ``kernel`` [2, dim, 4 units], ``recurrent`` [2, units, 4 units] and one ``bias``
    [2, 4 units] (Keras has no second, recurrent bias as PyTorch's LSTM does), the gate columns
    in Keras's order input, forget, cell, output. The gates use :func:`hard_sigmoid`, as the
    saved model does, so ``torch.nn.LSTM`` (logistic gates) would not reproduce it.
    """

    def __init__(self, vocabulary: int, dim: int, units: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim)
        self.kernel = nn.Parameter(torch.zeros(2, dim, 4 * units))
        self.recurrent = nn.Parameter(torch.zeros(2, units, 4 * units))
        self.bias = nn.Parameter(torch.zeros(2, 4 * units))
        self.dense = nn.Linear(2 * units, hidden)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Probabilities of each output for token ids [batch, steps], shape [batch, outputs]."""
        x = self.embedding(ids)
        # Both directions run as one batch of two: the backward one reads the steps reversed.
        both = torch.stack([x, x.flip(1)])  # [2, batch, steps, dim]
        inputs = both @ self.kernel[:, None] + self.bias[:, None, None]  # [2, batch, steps, 4 units]
        units = self.recurrent.shape[1]
        h = x.new_zeros(2, x.shape[0], units)
        c = torch.zeros_like(h)
        steps = []
        for t in range(x.shape[1]):
            z = inputs[:, :, t] + torch.bmm(h, self.recurrent)
            i, f, g, o = z.split(units, dim=-1)
            c = hard_sigmoid(f) * c + hard_sigmoid(i) * torch.tanh(g)
            h = hard_sigmoid(o) * torch.tanh(c)
            steps.append(h)
        # The max over time that follows makes the backward outputs' order irrelevant.
        pooled = torch.stack(steps, dim=2).amax(dim=2)  # [2, batch, units]
        features = torch.cat([pooled[0], pooled[1]], dim=-1)
        return torch.sigmoid(self.out(torch.relu(self.dense(features))))

    @classmethod
    def from_keras_h5(cls, path: str | Path) -> ToxBlockLSTM:
        """The network with the weights of tox-block's Keras 2 HDF5 file (``model.save`` layout:
        ``model_weights/<layer>`` holding its weights in the order of its ``weight_names``)."""
        import h5py

        with h5py.File(path, "r") as file:
            if not _matches_port(json.loads(file.attrs["model_config"])["config"]["layers"]):
                raise ValueError(f"{path} is not tox-block {TOXBLOCK_VERSION}'s BiLSTM; {TOXBLOCK_INSTALL}")

            def weights(layer: str) -> list[torch.Tensor]:
                group = file["model_weights"][layer]
                return [torch.from_numpy(group[name.decode()][()]) for name in group.attrs["weight_names"]]

            (embeddings,) = weights("embedding")
            fk, fr, fb, bk, br, bb = weights("bidirectional")
            dense_kernel, dense_bias = weights("dense")
            out_kernel, out_bias = weights("dense_1")
        network = cls(
            vocabulary=embeddings.shape[0],
            dim=embeddings.shape[1],
            units=fr.shape[0],
            hidden=dense_kernel.shape[1],
            outputs=out_kernel.shape[1],
        )
        # Keras's Dense kernel is [in, out]; nn.Linear's weight is [out, in].
        state = {
            "embedding.weight": embeddings,
            "kernel": torch.stack([fk, bk]),
            "recurrent": torch.stack([fr, br]),
            "bias": torch.stack([fb, bb]),
            "dense.weight": dense_kernel.T,
            "dense.bias": dense_bias,
            "out.weight": out_kernel.T,
            "out.bias": out_bias,
        }
        network.load_state_dict(state, strict=True)
        return network
