"""Steering vectors: ``coeff * (h+ - h-)`` from a prompt pair, saved and loaded with safetensors.

A steering vector is the difference of two prompts' residual streams at the input of one
decoder block, of shape ``[k, d_model]``. :mod:`actadd.steer` adds it to another prompt's
residual stream; several vectors form a :class:`Steering` and their additions sum.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from nnsight.modeling.transformers import TransformersModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from actadd.checks import is_int, is_real, real
from actadd.io import atomic_write
from actadd.models import ModelInfo, blocks, check_context, input_device, model_info


@dataclass(frozen=True)
class SteeringVector:
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

    @property
    def k(self) -> int:
        """Number of positions the vector covers (including the start token)."""
        return self.vector.shape[0]

    def __mul__(self, scale: float) -> SteeringVector:
        scale = real(scale, "scale")
        return replace(
            self, vector=self.vector * scale, coeff=self.coeff * scale, relative_norm=self.relative_norm * abs(scale)
        )

    __rmul__ = __mul__

    def __neg__(self) -> SteeringVector:
        return self * -1.0

    def __add__(self, other: SteeringVector | Steering) -> Steering:
        return Steering((self,)) + other

    def __repr__(self) -> str:
        return (
            f"SteeringVector({self.p_plus!r} - {self.p_minus!r}, layer={self.layer}, coeff={self.coeff:g}, "
            f"k={self.k}, relative_norm={self.relative_norm:.3f}, model={self.model_name!r})"
        )

    def save(self, path: str | Path) -> Path:
        """Write to safetensors, with every field but the tensor as metadata."""
        meta = {
            "layer": self.layer,
            "coeff": self.coeff,
            "p_plus": self.p_plus,
            "p_minus": self.p_minus,
            "tokens_plus": list(self.tokens_plus),
            "tokens_minus": list(self.tokens_minus),
            "model_name": self.model_name,
            "relative_norm": self.relative_norm,
        }
        tensor = self.vector.detach().to("cpu", torch.float32).contiguous()
        return atomic_write(
            path, lambda tmp: save_file({"vector": tensor}, str(tmp), metadata={"actadd": json.dumps(meta)})
        )

    @classmethod
    def load(cls, path: str | Path, model: TransformersModel | None = None) -> SteeringVector:
        """Read a vector saved by :meth:`save`; refuse it if ``model`` is not the one it was made on."""
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("actadd")
                tensor = f.get_tensor("vector") if "vector" in f.keys() else None
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"cannot read {path} as a safetensors file ({err}): give a file written by SteeringVector.save"
            ) from err
        if raw is None or tensor is None:
            raise ValueError(
                f"{path} is a safetensors file without actadd's 'actadd' metadata and 'vector' tensor: "
                "not a SteeringVector written by SteeringVector.save"
            )
        try:
            meta = json.loads(raw)
            meta["tokens_plus"], meta["tokens_minus"] = tuple(meta["tokens_plus"]), tuple(meta["tokens_minus"])
            vector = cls(vector=tensor, **meta)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path} has unreadable actadd metadata ({err}): not a SteeringVector written by save"
            ) from err
        if model is not None:
            check_model(vector, model_info(model))
        return vector


@dataclass(frozen=True)
class Steering:
    """Several steering vectors applied together (their additions sum), all made on one model."""

    vectors: tuple[SteeringVector, ...]

    def __post_init__(self) -> None:
        first = self.vectors[0] if self.vectors else None
        for v in self.vectors:
            if first is not None and v.model_name != first.model_name:
                raise ValueError(
                    f"cannot combine vectors made on different models: {first.p_plus!r} - {first.p_minus!r} on "
                    f"{first.model_name!r} and {v.p_plus!r} - {v.p_minus!r} on {v.model_name!r}; recompute one of "
                    "them on the other's model"
                )

    def __add__(self, other: SteeringVector | Steering) -> Steering:
        return Steering(self.vectors + as_steering(other).vectors)

    def __mul__(self, scale: float) -> Steering:
        return Steering(tuple(v * scale for v in self.vectors))

    __rmul__ = __mul__

    def __iter__(self) -> Iterator[SteeringVector]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)


Steerable = SteeringVector | Steering | Sequence[SteeringVector]


def as_steering(vectors: Steerable) -> Steering:
    """One vector, a Steering, or a list of vectors, as a Steering."""
    if isinstance(vectors, Steering):
        return vectors
    if isinstance(vectors, SteeringVector):
        return Steering((vectors,))
    if isinstance(vectors, Sequence) and vectors and all(isinstance(v, SteeringVector) for v in vectors):
        return Steering(tuple(vectors))
    raise ValueError(
        f"expected a SteeringVector, a Steering or a non-empty list of SteeringVectors, got {type(vectors).__name__}"
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
    if coeff is not None and relative_norm is not None:
        raise ValueError(f"give coeff ({coeff!r}) or relative_norm ({relative_norm!r}), not both")
    coeff = 1.0 if coeff is None else real(coeff, "coeff")
    target = None if relative_norm is None else real(relative_norm, "relative_norm", minimum=0)
    ids_plus, ids_minus = encode(model, p_plus), encode(model, p_minus)
    if len(ids_plus) == len(ids_minus) == 1:
        raise ValueError(f"the prompt pair ({p_plus!r}, {p_minus!r}) is empty: give at least one non-empty prompt")
    check_context([ids_plus, ids_minus], info)
    if p_plus == p_minus:
        warnings.warn(f"p_plus equals p_minus ({p_plus!r}): the steering vector is zero", stacklevel=2)
    k = max(len(ids_plus), len(ids_minus))
    ids_plus += [info.space_token_id] * (k - len(ids_plus))
    ids_minus += [info.space_token_id] * (k - len(ids_minus))

    input_ids = torch.tensor([ids_plus, ids_minus], device=input_device(model))
    with (
        torch.no_grad(),
        model.trace(
            {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, remote=info.remote
        ) as tracer,
    ):
        resid = blocks(model)[layer].input.save()
        tracer.stop()  # the blocks from `layer` on are not needed
    resid = resid.detach()
    diff = resid[0] - resid[1]
    unit_relative = (diff[1:].norm(dim=-1).mean() / resid[:, 1:].norm(dim=-1).mean()).item() if k > 1 else 0.0
    if target is not None:
        if unit_relative == 0:
            raise ValueError(
                f"the pair ({p_plus!r}, {p_minus!r}) gives a zero difference: no coefficient reaches a norm"
            )
        coeff = target / unit_relative
    vector = coeff * diff
    relative = abs(coeff) * unit_relative
    return SteeringVector(
        vector=vector,
        layer=layer,
        coeff=coeff,
        p_plus=p_plus,
        p_minus=p_minus,
        tokens_plus=tuple(ids_plus),
        tokens_minus=tuple(ids_minus),
        model_name=info.name,
        relative_norm=relative,
    )


def encode(model: TransformersModel, text: str, *, start: bool = True) -> list[int]:
    """Token ids of ``text`` with the model's start token at position 0 (when ``start``)."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    return [model_info(model).start_token_id, *ids] if start else list(ids)


def check_model(v: SteeringVector, info: ModelInfo) -> None:
    """Refuse a vector made on another model (or at a layer this model does not have)."""
    if v.model_name != info.name or v.vector.shape[-1] != info.d_model:
        raise ValueError(
            f"steering vector {v.p_plus!r} - {v.p_minus!r} was made on model {v.model_name!r} "
            f"(d_model {v.vector.shape[-1]}), not on {info.name!r} (d_model {info.d_model}): recompute it on this model"
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
