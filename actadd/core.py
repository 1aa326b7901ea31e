"""The ActAdd core: steering vectors from prompt pairs, and the steered forward pass.

A steering vector is ``coeff * (h+ - h-)``, the difference of two prompts' residual streams
at the input of one decoder block, of shape ``[k, d_model]``. Steering adds it to another
prompt's residual stream at the same block, at that prompt's first ``k`` positions ('front'
alignment) or its last ``k`` ('back'). Every intervention goes through an nnsight trace.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Union

import torch
from nnsight.modeling.transformers import TransformersModel
from safetensors.torch import load_file, save_file

from actadd.io import atomic_write
from actadd.models import ModelInfo, blocks, input_device, model_info

Alignment = Literal["front", "back"]


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
        scale = _check_coeff(scale, "scale")
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
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata().get("actadd")
        if raw is None:
            raise ValueError(f"{path} has no actadd metadata: not a saved SteeringVector")
        meta = json.loads(raw)
        meta["tokens_plus"], meta["tokens_minus"] = tuple(meta["tokens_plus"]), tuple(meta["tokens_minus"])
        vector = cls(vector=load_file(str(path))["vector"], **meta)
        if model is not None:
            _check_model(vector, model_info(model))
        return vector


@dataclass(frozen=True)
class Steering:
    """Several steering vectors applied together (their additions sum)."""

    vectors: tuple[SteeringVector, ...]

    def __add__(self, other: SteeringVector | Steering) -> Steering:
        return Steering(self.vectors + as_steering(other).vectors)

    def __mul__(self, scale: float) -> Steering:
        return Steering(tuple(v * scale for v in self.vectors))

    __rmul__ = __mul__

    def __iter__(self):
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)


Steerable = Union[SteeringVector, Steering, Sequence[SteeringVector]]


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
    model: TransformersModel, p_plus: str, p_minus: str, *, layer: int, coeff: float = 1.0
) -> SteeringVector:
    """The paper's steering vector ``coeff * (h+ - h-)``, shape ``[k, d_model]``.

    Both prompts get the model's start token at position 0; the shorter is right-padded with
    the token for ' ' to the longer's length ``k``. ``h±`` is the residual stream at the input
    of block ``layer`` (0-based), from one batch-of-2 forward pass.
    """
    info = model_info(model)
    if not isinstance(p_plus, str) or not isinstance(p_minus, str):
        raise ValueError(f"prompts must be strings, got {type(p_plus).__name__} and {type(p_minus).__name__}")
    _check_layer(layer, info)
    coeff = _check_coeff(coeff)
    ids_plus, ids_minus = encode(model, p_plus), encode(model, p_minus)
    if len(ids_plus) == len(ids_minus) == 1:
        raise ValueError(f"the prompt pair ({p_plus!r}, {p_minus!r}) is empty: give at least one non-empty prompt")
    if p_plus == p_minus:
        warnings.warn(f"p_plus equals p_minus ({p_plus!r}): the steering vector is zero", stacklevel=2)
    k = max(len(ids_plus), len(ids_minus))
    ids_plus += [info.space_token_id] * (k - len(ids_plus))
    ids_minus += [info.space_token_id] * (k - len(ids_minus))

    input_ids = torch.tensor([ids_plus, ids_minus], device=input_device(model))
    with torch.no_grad(), model.trace(
        {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, remote=info.remote
    ) as tracer:
        resid = blocks(model)[layer].input.save()
        tracer.stop()  # the blocks from `layer` on are not needed
    resid = resid.detach()
    diff = resid[0] - resid[1]
    vector = coeff * diff
    resid_norm = resid[:, 1:].norm(dim=-1).mean()
    relative = (vector[1:].norm(dim=-1).mean() / resid_norm).item() if k > 1 else 0.0
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


def row_steerings(
    n_rows: int, vectors: Steerable | None, row_vectors: Sequence[Steerable | None] | None
) -> list[Steering | None]:
    """Per-row steering: ``vectors`` for every row, or ``row_vectors`` one entry per row."""
    if vectors is not None and row_vectors is not None:
        raise ValueError("give either vectors (same for every row) or row_vectors (one per row), not both")
    if row_vectors is None:
        steering = None if vectors is None else as_steering(vectors)
        return [steering] * n_rows
    if len(row_vectors) != n_rows:
        raise ValueError(f"row_vectors has {len(row_vectors)} entries for {n_rows} prompts: give one per prompt")
    return [None if v is None else as_steering(v) for v in row_vectors]


def pad_to_vectors(ids: list[int], steering: Steering | None, space_token_id: int) -> list[int]:
    """Insert space tokens after the start token until the prompt is as long as its longest vector."""
    k = max((v.k for v in steering), default=0) if steering else 0
    return [ids[0], *[space_token_id] * (k - len(ids)), *ids[1:]] if len(ids) < k else ids


def additions(
    rows: Sequence[Steering | None],
    starts: Sequence[int],
    lengths: Sequence[int],
    seq_len: int,
    info: ModelInfo,
    alignment: Alignment,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[int, torch.Tensor]:
    """The tensor to add at each steered layer's input: ``{layer: [batch, seq_len, d_model]}``.

    Row ``i``'s tokens occupy positions ``starts[i] .. starts[i] + lengths[i] - 1`` of the
    padded batch; each of its vectors is placed at the row's own first (front) or last
    (back) ``k`` tokens, so left padding does not shift the steering.
    """
    if alignment not in ("front", "back"):
        raise ValueError(f"alignment must be 'front' or 'back', got {alignment!r}")
    added: dict[int, torch.Tensor] = {}
    for i, steering in enumerate(rows):
        for v in steering or ():
            _check_model(v, info)
            if lengths[i] < v.k:
                raise ValueError(
                    f"prompt {i} has {lengths[i]} tokens (with the start token), shorter than the {v.k}-token "
                    f"vector {v.p_plus!r} - {v.p_minus!r}: lengthen it or pass pad_prompts=True"
                )
            offset = starts[i] + (0 if alignment == "front" else lengths[i] - v.k)
            if v.layer not in added:
                added[v.layer] = torch.zeros(len(rows), seq_len, info.d_model, device=device, dtype=dtype)
            added[v.layer][i, offset : offset + v.k] += v.vector.to(device, dtype)
    return added


def apply_additions(model: TransformersModel, added: dict[int, torch.Tensor]) -> None:
    """Inside a trace or the prompt pass of a generate: add to the residual stream in place."""
    layers = blocks(model)
    for layer, tensor in sorted(added.items()):
        resid = layers[layer].input
        resid.add_(tensor.to(resid.device))  # a device_map or remote model: the layer's own device


def _check_model(v: SteeringVector, info: ModelInfo) -> None:
    if v.model_name != info.name or v.vector.shape[-1] != info.d_model:
        raise ValueError(
            f"steering vector {v.p_plus!r} - {v.p_minus!r} was made on model {v.model_name!r} "
            f"(d_model {v.vector.shape[-1]}), not on {info.name!r} (d_model {info.d_model}): recompute it on this model"
        )
    _check_layer(v.layer, info)


def _check_layer(layer: int, info: ModelInfo) -> None:
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 0 <= layer < info.n_layers:
        raise ValueError(f"layer must be an int in [0, {info.n_layers - 1}] for {info.name!r}, got {layer!r}")


def _check_coeff(coeff: float, what: str = "coeff") -> float:
    if isinstance(coeff, bool) or not isinstance(coeff, numbers.Real) or not math.isfinite(coeff):
        raise ValueError(f"{what} must be a finite number, got {coeff!r}")
    return float(coeff)
