"""Steering vectors: what is added at the input of one decoder block, with the model it was
made on, its coefficient, its strength relative to that layer's residual norm and where it
comes from, saved and loaded with safetensors.

- :class:`SteeringVector`, ActAdd's (Turner et al. 2023): ``coeff * (h+ - h-)`` of one prompt
  pair, shape ``[k, d_model]``, added once at ``k`` positions of a prompt (``positions="front"``,
  the paper's, or ``"back"``).
- :class:`DirectionVector`: one ``[d_model]`` direction, added at every position
  (``positions="all"``): a mean difference over many pairs (CAA as in Rimsky et al. 2024), or
  a control vector read from a GGUF file (:mod:`actadd.control_vectors`).

:mod:`actadd.extraction` reads them from a model; :mod:`actadd.steer` adds them; several vectors
form a :class:`Steering` and their additions sum.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import torch
from nnsight.modeling.transformers import TransformersModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from actadd.checks import real
from actadd.io import atomic_write
from actadd.models import ModelInfo, check_layer, model_info

__all__ = [
    "ControlVectorFile",
    "DirectionVector",
    "MeanOfPairs",
    "Steerable",
    "Steering",
    "SteeringVector",
    "Vector",
    "as_steering",
    "check_model",
]

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

    def at_relative_norm(self: _V, relative_norm: float) -> _V:
        """This vector rescaled so that its relative norm is ``relative_norm`` (the sign of its
        coefficient kept); refused for a vector whose relative norm is unknown or zero."""
        target = real(relative_norm, "relative_norm", minimum=0)
        if not self.relative_norm:
            raise ValueError(
                f"{self.label} has relative norm {self.relative_norm!r}: no scale gives it a relative norm of "
                f"{target:g}; rescale it with * instead"
            )
        return self * (target / self.relative_norm)

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
    def added_norm(self) -> float:
        """The norm it adds per steered position: the mean row norm over rows 1..k-1 (row 0, on
        the start token, cancels), the rows a prompt's own tokens receive."""
        rows = self.vector[1:] if self.k > 1 else self.vector
        return float(rows.float().norm(dim=-1).mean())

    @property
    def total_added_norm(self) -> float:
        """The norm it adds to one completion in all: every row once, in the prompt pass."""
        return float(self.vector.float().norm(dim=-1).sum())

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
    the name of the reduction that read each text (:data:`actadd.extraction.REDUCTIONS`:
    ``"last"``, its last token, as CAA; ``"mean"``, the mean over its tokens after the start token)."""

    pairs: tuple[tuple[str, str], ...]
    reduce: str

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
    def added_norm(self) -> float:
        """The norm it adds per steered position (it is added at every position after the start token)."""
        return float(self.vector.float().norm())

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


def check_model(v: Vector, info: ModelInfo) -> None:
    """Refuse a vector made on another model (or at a layer this model does not have)."""
    if v.model_name != info.name or v.vector.shape[-1] != info.d_model:
        raise ValueError(
            f"{v.label} was made on model {v.model_name!r} (d_model {v.vector.shape[-1]}), not on {info.name!r} "
            f"(d_model {info.d_model}): recompute it on this model"
        )
    check_layer(v.layer, info)
