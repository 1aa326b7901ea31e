"""Steering vectors, read from the residual stream at the input of one decoder block.

Two kinds, one concept: what is added at block ``layer``'s input, with the model it was made
on, its coefficient, its strength relative to that layer's residual norm and where it comes
from, saved and loaded with safetensors.

- :class:`SteeringVector`, ActAdd's (Turner et al. 2023): ``coeff * (h+ - h-)`` of one prompt
  pair, shape ``[k, d_model]``, added once at ``k`` positions of a prompt (``positions="front"``,
  the paper's, or ``"back"``).
- :class:`DirectionVector`: one ``[d_model]`` direction, added at every position
  (``positions="all"``): a mean difference over many pairs (:func:`mean_difference`, CAA as in
  Rimsky et al. 2024), or a control vector read from a GGUF file (:mod:`actadd.control_vectors`).

:mod:`actadd.steer` adds them; several vectors form a :class:`Steering` and their additions sum.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast

import torch
from nnsight.modeling.transformers import TransformersModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from actadd.checks import integer, is_int, is_real, real
from actadd.io import atomic_write
from actadd.models import ModelInfo, blocks, check_context, input_device, model_info

Reduce = Literal["last", "mean"]

_V = TypeVar("_V", bound="_Vector")


class _Vector:
    """What every steering vector has and does: scaling, combining, saving, the model check.

    Subclasses are frozen dataclasses with the fields ``vector``, ``layer``, ``coeff``,
    ``model_name`` and ``relative_norm``, and say where they come from in ``label``.
    """

    vector: torch.Tensor
    layer: int
    coeff: float
    model_name: str
    relative_norm: float | None
    kind: ClassVar[str]  # the name its files record

    @property
    def label(self) -> str:
        """What the vector is, for messages."""
        raise NotImplementedError

    def __mul__(self: _V, scale: float) -> _V:
        scale = real(scale, "scale")
        norm = None if self.relative_norm is None else self.relative_norm * abs(scale)
        return replace(self, vector=self.vector * scale, coeff=self.coeff * scale, relative_norm=norm)  # type: ignore[type-var]

    __rmul__ = __mul__

    def __neg__(self: _V) -> _V:
        return self * -1.0

    def __add__(self, other: SteeringVector | DirectionVector | Steering) -> Steering:
        return Steering((self,)) + other  # type: ignore[arg-type]

    def save(self, path: str | Path) -> Path:
        """Write to safetensors, with every field but the tensor as metadata."""
        meta = {"kind": self.kind, **self._metadata()}
        tensor = self.vector.detach().to("cpu", torch.float32).contiguous()
        return atomic_write(
            path, lambda tmp: save_file({"vector": tensor}, str(tmp), metadata={"actadd": json.dumps(meta)})
        )

    @classmethod
    def load(cls: type[_V], path: str | Path, model: TransformersModel | None = None) -> _V:
        """Read a vector written by ``save``; refuse it if ``model`` is not the one it was made on."""
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("actadd")
                tensor = f.get_tensor("vector") if "vector" in f.keys() else None
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"cannot read {path} as a safetensors file ({err}): give a file written by {cls.__name__}.save"
            ) from err
        if raw is None or tensor is None:
            raise ValueError(
                f"{path} is a safetensors file without actadd's 'actadd' metadata and 'vector' tensor: "
                f"not a {cls.__name__} written by {cls.__name__}.save"
            )
        try:
            meta = json.loads(raw)
            kind = _KINDS[meta.pop("kind", SteeringVector.kind)]  # files without a kind predate DirectionVector
        except (ValueError, KeyError) as err:
            raise ValueError(f"{path} has unreadable actadd metadata ({err!r}): not a vector written by save") from err
        if not issubclass(kind, cls):
            raise ValueError(f"{path} holds a {kind.__name__}, not a {cls.__name__}: read it with {kind.__name__}.load")
        try:
            vector = cast(Vector, kind._from_metadata(tensor, meta))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path} has unreadable actadd metadata ({err}): not a {kind.__name__} written by save"
            ) from err
        if model is not None:
            check_model(vector, model_info(model))
        return vector  # type: ignore[return-value]

    def _metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_metadata(cls: type[_V], tensor: torch.Tensor, meta: dict[str, Any]) -> _V:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class SteeringVector(_Vector):
    """``coeff * (h+ - h-)`` at the input of block ``layer``: ``vector`` is ``[k, d_model]``.

    ``relative_norm`` is the mean per-position norm of the vector over the mean per-position
    residual norm of the pair at that layer, both over positions 1..k-1 (position 0, the
    start token, cancels and has an outsized norm). It makes coefficients comparable across
    models whose residual norms differ by orders of magnitude.
    """

    vector: torch.Tensor
    layer: int
    coeff: float
    p_plus: str
    p_minus: str
    tokens_plus: tuple[int, ...]
    tokens_minus: tuple[int, ...]
    model_name: str
    relative_norm: float
    kind: ClassVar[str] = "actadd"

    def __post_init__(self) -> None:
        if self.vector.dim() != 2:
            raise ValueError(
                f"a SteeringVector is [k, d_model], got shape {tuple(self.vector.shape)}: a [d_model] direction "
                "is a DirectionVector"
            )

    @property
    def k(self) -> int:
        """Number of positions the vector covers (including the start token)."""
        return self.vector.shape[0]

    @property
    def label(self) -> str:
        return f"steering vector {self.p_plus!r} - {self.p_minus!r}"

    def __repr__(self) -> str:
        return (
            f"SteeringVector({self.p_plus!r} - {self.p_minus!r}, layer={self.layer}, coeff={self.coeff:g}, "
            f"k={self.k}, relative_norm={self.relative_norm:.3f}, model={self.model_name!r})"
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "coeff": self.coeff,
            "p_plus": self.p_plus,
            "p_minus": self.p_minus,
            "tokens_plus": list(self.tokens_plus),
            "tokens_minus": list(self.tokens_minus),
            "model_name": self.model_name,
            "relative_norm": self.relative_norm,
        }

    @classmethod
    def _from_metadata(cls, tensor: torch.Tensor, meta: dict[str, Any]) -> SteeringVector:
        meta["tokens_plus"], meta["tokens_minus"] = tuple(meta["tokens_plus"]), tuple(meta["tokens_minus"])
        return cls(vector=tensor, **meta)


@dataclass(frozen=True)
class MeanOfPairs:
    """Where a mean-difference direction comes from: its (positive, negative) text pairs, and
    how each text was read (``"last"``: its last token, as CAA; ``"mean"``: the mean over its
    tokens after the start token)."""

    pairs: tuple[tuple[str, str], ...]
    reduce: Reduce

    @property
    def digest(self) -> str:
        """A short fingerprint of the pairs, to tell two sets apart in a table."""
        return hashlib.sha256(json.dumps(self.pairs).encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"MeanOfPairs({len(self.pairs)} pairs, reduce={self.reduce!r}, digest={self.digest})"


@dataclass(frozen=True)
class ControlVectorFile:
    """Where an imported direction comes from: tensor ``direction.{index}`` of a GGUF control
    vector file (llama.cpp and repeng add it at the output of block ``index``)."""

    path: str
    model_hint: str
    index: int


@dataclass(frozen=True, kw_only=True)
class DirectionVector(_Vector):
    """One direction, added at every position at the input of block ``layer``: ``vector`` is ``[d_model]``.

    ``relative_norm`` is the vector's norm over the mean residual norm, at that layer, of the
    texts it was read from at the positions it was read at (None for a direction read from a
    file, which carries no texts). ``source`` says where it comes from.
    """

    vector: torch.Tensor
    layer: int
    coeff: float
    model_name: str
    relative_norm: float | None
    source: MeanOfPairs | ControlVectorFile
    kind: ClassVar[str] = "direction"

    def __post_init__(self) -> None:
        if self.vector.dim() != 1:
            raise ValueError(
                f"a DirectionVector is [d_model], got shape {tuple(self.vector.shape)}: a [k, d_model] ActAdd "
                "vector is a SteeringVector"
            )

    @property
    def label(self) -> str:
        if isinstance(self.source, MeanOfPairs):
            return f"mean difference of {len(self.source.pairs)} pairs ({self.source.digest})"
        return f"direction.{self.source.index} of {self.source.path!r}"

    def __repr__(self) -> str:
        norm = "unknown" if self.relative_norm is None else f"{self.relative_norm:.3f}"
        return (
            f"DirectionVector({self.label}, layer={self.layer}, coeff={self.coeff:g}, relative_norm={norm}, "
            f"model={self.model_name!r})"
        )

    def _metadata(self) -> dict[str, Any]:
        source = {"type": type(self.source).__name__, **asdict(self.source)}
        return {
            "layer": self.layer,
            "coeff": self.coeff,
            "model_name": self.model_name,
            "relative_norm": self.relative_norm,
            "source": source,
        }

    @classmethod
    def _from_metadata(cls, tensor: torch.Tensor, meta: dict[str, Any]) -> DirectionVector:
        fields = dict(meta.pop("source"))
        source: MeanOfPairs | ControlVectorFile
        if fields.pop("type") == "MeanOfPairs":
            source = MeanOfPairs(pairs=tuple((p, n) for p, n in fields["pairs"]), reduce=fields["reduce"])
        else:
            source = ControlVectorFile(**fields)
        return cls(vector=tensor, source=source, **meta)


_KINDS: dict[str, type[_Vector]] = {SteeringVector.kind: SteeringVector, DirectionVector.kind: DirectionVector}

Vector = SteeringVector | DirectionVector


@dataclass(frozen=True)
class Steering:
    """Several steering vectors applied together (their additions sum), all made on one model."""

    vectors: tuple[Vector, ...]

    def __post_init__(self) -> None:
        first = self.vectors[0] if self.vectors else None
        for v in self.vectors:
            if first is not None and v.model_name != first.model_name:
                raise ValueError(
                    f"cannot combine vectors made on different models: {first.label} on {first.model_name!r} and "
                    f"{v.label} on {v.model_name!r}; recompute one of them on the other's model"
                )

    def __add__(self, other: Vector | Steering) -> Steering:
        return Steering(self.vectors + as_steering(other).vectors)

    def __mul__(self, scale: float) -> Steering:
        return Steering(tuple(v * scale for v in self.vectors))

    __rmul__ = __mul__

    def __iter__(self) -> Iterator[Vector]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)


Steerable = SteeringVector | DirectionVector | Steering | Sequence[Vector]


def as_steering(vectors: Steerable) -> Steering:
    """One vector, a Steering, or a list of vectors, as a Steering."""
    if isinstance(vectors, Steering):
        return vectors
    if isinstance(vectors, SteeringVector | DirectionVector):
        return Steering((vectors,))
    if isinstance(vectors, Sequence) and vectors and all(isinstance(v, _Vector) for v in vectors):
        return Steering(tuple(vectors))
    raise ValueError(
        "expected a SteeringVector, a DirectionVector, a Steering or a non-empty list of them, "
        f"got {type(vectors).__name__}"
    )


def steering_vector(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    *,
    layer: int | float,
    coeff: float | None = None,
    relative_norm: float | None = None,
) -> SteeringVector:
    """The paper's steering vector ``coeff * (h+ - h-)``, shape ``[k, d_model]``.

    Both prompts get the model's start token at position 0; the shorter is right-padded with
    the token for ' ' to the longer's length ``k``. ``h±`` is the residual stream at the input
    of block ``layer``, from one batch-of-2 forward pass. ``layer`` is a block index (negative
    counts from the end: -1 is the last block) or a float in [0, 1), a fraction of the depth.

    The strength is ``coeff`` (default 1, the paper's unit), or ``relative_norm``: the vector's
    mean per-position norm over the pair's residual norm at that layer, which transfers between
    models whose residual norms differ by orders of magnitude; the coefficient that gives it is
    computed and recorded.
    """
    info = model_info(model)
    if not isinstance(p_plus, str) or not isinstance(p_minus, str):
        raise ValueError(f"prompts must be strings, got {type(p_plus).__name__} and {type(p_minus).__name__}")
    layer = resolve_layer(layer, info)
    coeff, target = _strength(coeff, relative_norm)
    ids_plus, ids_minus = encode(model, p_plus), encode(model, p_minus)
    if len(ids_plus) == len(ids_minus) == 1:
        raise ValueError(f"the prompt pair ({p_plus!r}, {p_minus!r}) is empty: give at least one non-empty prompt")
    check_context([ids_plus, ids_minus], info)
    if p_plus == p_minus:
        warnings.warn(f"p_plus equals p_minus ({p_plus!r}): the steering vector is zero", stacklevel=2)
    k = max(len(ids_plus), len(ids_minus))
    ids_plus += [info.space_token_id] * (k - len(ids_plus))
    ids_minus += [info.space_token_id] * (k - len(ids_minus))

    resid = _block_input(model, [ids_plus, ids_minus], layer)
    diff = resid[0] - resid[1]
    unit_relative = (diff[1:].norm(dim=-1).mean() / resid[:, 1:].norm(dim=-1).mean()).item() if k > 1 else 0.0
    coeff = _coefficient(coeff, target, unit_relative, f"the pair ({p_plus!r}, {p_minus!r})")
    return SteeringVector(
        vector=coeff * diff,
        layer=layer,
        coeff=coeff,
        p_plus=p_plus,
        p_minus=p_minus,
        tokens_plus=tuple(ids_plus),
        tokens_minus=tuple(ids_minus),
        model_name=info.name,
        relative_norm=abs(coeff) * unit_relative,
    )


def mean_difference(
    model: TransformersModel,
    pairs: Sequence[tuple[str, str]],
    *,
    layer: int | float,
    coeff: float | None = None,
    relative_norm: float | None = None,
    reduce: Reduce = "last",
    batch_size: int = 16,
) -> DirectionVector:
    """The mean over ``pairs`` of ``h(positive) - h(negative)``, shape ``[d_model]`` (CAA's vector).

    ``h`` is the residual stream at the input of block ``layer`` (as in :func:`steering_vector`:
    a block index, negative from the end, or a fraction of the depth), read at each text's last
    token (``reduce="last"``, as CAA reads it at the answer token) or averaged over the text's
    tokens after the start token (``reduce="mean"``). Each text gets the model's start token
    at position 0. Texts run in batches of ``batch_size``, right-padded, each read at its own
    last real token. The mean of differences is the best linear steering direction under
    Im & Li's (2025) analysis; add it at every position with ``positions="all"``.

    The strength is ``coeff`` (default 1: the plain mean), or ``relative_norm``: the vector's
    norm over the mean residual norm of the texts at the read positions (per text, the mean
    over its read positions), the coefficient that gives it computed and recorded.
    """
    info = model_info(model)
    pairs = _pairs(pairs)
    layer = resolve_layer(layer, info)
    coeff, target = _strength(coeff, relative_norm)
    if reduce not in ("last", "mean"):
        raise ValueError(f"reduce must be 'last' (each text's last token, as CAA) or 'mean', got {reduce!r}")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    texts = [p for p, _ in pairs] + [n for _, n in pairs]
    ids = [encode(model, t) for t in texts]
    empty = next((i for i, x in enumerate(ids) if len(x) < 2), None)
    if empty is not None:
        raise ValueError(f"pair {empty % len(pairs)} has an empty text {texts[empty]!r}: give both texts some tokens")
    check_context(ids, info)

    reads: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    norms = torch.empty(len(texts))
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths waste no padding
    for lo in range(0, len(order), batch_size):
        batch = order[lo : lo + batch_size]
        resid = _block_input(model, [ids[i] for i in batch], layer)
        for row, i in enumerate(batch):
            n = len(ids[i])
            read = resid[row, n - 1 : n] if reduce == "last" else resid[row, 1:n]
            reads[i] = read.float().mean(dim=0)
            norms[i] = read.float().norm(dim=-1).mean()
    h = torch.stack(reads)
    diff = h[: len(pairs)].mean(dim=0) - h[len(pairs) :].mean(dim=0)
    unit_relative = (diff.norm() / norms.mean()).item()
    coeff = _coefficient(coeff, target, unit_relative, f"the {len(pairs)} pairs")
    return DirectionVector(
        vector=(coeff * diff).to(model.dtype),
        layer=layer,
        coeff=coeff,
        model_name=info.name,
        relative_norm=abs(coeff) * unit_relative,
        source=MeanOfPairs(pairs=pairs, reduce=reduce),
    )


def encode(model: TransformersModel, text: str, *, start: bool = True) -> list[int]:
    """Token ids of ``text`` with the model's start token at position 0 (when ``start``)."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    return [model_info(model).start_token_id, *ids] if start else list(ids)


def check_model(v: Vector, info: ModelInfo) -> None:
    """Refuse a vector made on another model (or at a layer this model does not have)."""
    if v.model_name != info.name or v.vector.shape[-1] != info.d_model:
        raise ValueError(
            f"{v.label} was made on model {v.model_name!r} (d_model {v.vector.shape[-1]}), not on {info.name!r} "
            f"(d_model {info.d_model}): recompute it on this model"
        )
    check_layer(v.layer, info)


def check_layer(layer: Any, info: ModelInfo) -> int:
    """A block index of this model, as an int in ``[0, n_layers)``."""
    if not is_int(layer) or not 0 <= layer < info.n_layers:
        raise ValueError(f"layer must be an int in [0, {info.n_layers - 1}] for {info.name!r}, got {layer!r}")
    return int(layer)


def resolve_layer(layer: Any, info: ModelInfo) -> int:
    """A layer as a block index: an int in ``[-n_layers, n_layers)`` (negative counts from the
    end, as in other steering libraries) or a float in ``[0, 1)``, a fraction of the depth
    (``round(fraction * n_layers)``, at most the last block)."""
    n = info.n_layers
    if is_int(layer):
        if not -n <= layer < n:
            raise ValueError(f"layer must be in [{-n}, {n - 1}] for {info.name!r} ({n} blocks), got {layer!r}")
        return int(layer) % n
    if is_real(layer) and 0 <= layer < 1:
        return min(round(float(layer) * n), n - 1)
    raise ValueError(
        f"layer must be a block index in [{-n}, {n - 1}] or a fraction of the depth in [0, 1) for {info.name!r}, "
        f"got {layer!r}"
    )


def _strength(coeff: Any, relative_norm: Any) -> tuple[float, float | None]:
    """The coefficient (default 1) and the relative norm asked for instead, checked."""
    if coeff is not None and relative_norm is not None:
        raise ValueError(f"give coeff ({coeff!r}) or relative_norm ({relative_norm!r}), not both")
    target = None if relative_norm is None else real(relative_norm, "relative_norm", minimum=0)
    return (1.0 if coeff is None else real(coeff, "coeff")), target


def _coefficient(coeff: float, target: float | None, unit_relative: float, what: str) -> float:
    """``coeff``, or the coefficient that gives the relative norm ``target``."""
    if target is None:
        return coeff
    if unit_relative == 0:
        raise ValueError(f"{what} give a zero difference: no coefficient reaches a norm")
    return target / unit_relative


def _pairs(pairs: Any) -> tuple[tuple[str, str], ...]:
    """A non-empty sequence of (positive text, negative text), as a tuple of string pairs."""
    if isinstance(pairs, str) or not isinstance(pairs, Sequence) or not pairs:
        raise ValueError(f"pairs must be a non-empty list of (positive, negative) texts, got {pairs!r}")
    checked = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"pair {i} must be (positive text, negative text), got {pair!r}")
        if not all(isinstance(t, str) for t in pair):
            raise ValueError(f"pair {i} must hold two strings, got {pair!r}")
        checked.append((pair[0], pair[1]))
    return tuple(checked)


def _block_input(model: TransformersModel, sequences: Sequence[list[int]], layer: int) -> torch.Tensor:
    """The residual stream at the input of block ``layer`` for right-padded ``sequences``:
    ``[batch, max_len, d_model]`` (positions past a row's length hold padding)."""
    info = model_info(model)
    width = max(len(s) for s in sequences)
    input_ids = torch.tensor([list(s) + [info.pad_token_id] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    device = input_device(model)
    with (
        torch.no_grad(),
        model.trace(
            {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, remote=info.remote
        ) as tracer,
    ):
        resid = blocks(model)[layer].input.save()
        tracer.stop()  # the blocks from `layer` on are not needed
    return resid.detach()
