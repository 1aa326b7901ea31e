"""Directions to and from GGUF control-vector files, the layout llama.cpp and repeng share.

A control vector file has ``general.architecture = "controlvector"``, a string
``controlvector.model_hint`` (the model family), a count ``controlvector.layer_count``, and
one float32 tensor ``direction.N`` of ``d_model`` values per steered layer. llama.cpp's
``--control-vector`` adds ``direction.N`` to the output of block ``N`` (its ``l_out`` of layer
``N``, counting blocks from 0) at every position, and never reads ``direction.0``; repeng
reads ``direction.N`` from, and adds it to, the output of block ``N`` too. ActAdd adds at the
input of block ``l``, which is the output of block ``l - 1``, so ActAdd's layer ``l`` is
``direction.{l - 1}``:

- a direction at layer 0 (the embeddings) has no slot, and one at layer 1 would be
  ``direction.0``, which llama.cpp refuses: both are refused here;
- ``direction.{n_layers - 1}`` (the output of the last block, the final norm's input) has no
  block input to go to: it is left out on import, with a warning.

(llama.cpp's own ``cvector-generator`` reads the output of block ``N - 1`` and names it
``direction.N``; the mapping here follows where the runtime adds it.) Only ``[d_model]``
directions have this layout: an ActAdd ``[k, d_model]`` vector, added once at ``k`` prompt
positions, has none.

Where llama.cpp and ActAdd's ``positions="all"`` differ: llama.cpp adds every direction at every
position it evaluates, the one at position 0 (the start token) included, while ``"all"`` leaves
the start token alone; and llama.cpp adds a ``direction.{n_layers - 1}`` after the last block,
which ActAdd cannot. tests/core/test_llama_cpp.py runs exported and imported files in llama.cpp
itself (through llama-cpp-python) on the embedded SmolLM2 and checks both differences.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from nnsight.modeling.transformers import TransformersModel

from actadd.io import atomic_write
from actadd.models import model_info
from actadd.vectors import (
    ControlVectorFile,
    DirectionVector,
    Steerable,
    Steering,
    SteeringVector,
    as_steering,
    check_model,
)

__all__ = ["export_gguf", "import_gguf"]

ARCHITECTURE = "controlvector"
_DIRECTION = re.compile(r"direction\.(\d+)")


def export_gguf(model: TransformersModel, vectors: Steerable, path: str | Path) -> Path:
    """Write ``[d_model]`` directions, one per layer, as a GGUF control vector for llama.cpp
    (``--control-vector``) and repeng (``ControlVector.import_gguf``).

    ActAdd's layer ``l`` (the input of block ``l``) becomes ``direction.{l - 1}`` (the output
    of block ``l - 1``, where both add it); directions at one layer are summed, as a
    :class:`Steering` adds them. Each is written scaled by its coefficient, so a strength of 1
    in llama.cpp or repeng adds what ActAdd adds. ``controlvector.model_hint`` is the model's
    ``config.model_type`` (repeng's hint).

    llama.cpp (``--control-vector``, or ``llama_set_adapter_cvec`` filled as its loader fills
    it) adds the file at every position it evaluates, the start token included: it steers as
    ``positions="all"`` does plus a row on the start token, which ``"all"`` leaves alone and
    which moves the next token measurably. Give it ActAdd's tokens (the start token first:
    llama.cpp adds none of its own for SmolLM2). Its ``--control-vector-layer-range`` counts
    llama.cpp's blocks, ActAdd's layer minus one. tests/core/test_llama_cpp.py checks both
    semantics in llama.cpp itself on the embedded model.
    """
    info = model_info(model)
    summed: dict[int, torch.Tensor] = {}
    for v in as_steering(vectors):
        if isinstance(v, SteeringVector):
            raise ValueError(
                f"{v.label} is a [k, d_model] ActAdd vector, added once at k prompt positions: the GGUF control-"
                "vector layout holds one [d_model] direction per layer, added at every position, so it has no "
                "place for it; export directions (actadd.mean_difference) instead"
            )
        check_model(v, info)
        if v.layer < 2:
            raise ValueError(
                f"{v.label} is at layer {v.layer}: ActAdd's layer l is the control vector's direction.(l - 1), and "
                "layer 0 (the embeddings) has no slot while llama.cpp refuses direction.0; steer layer 2 or later"
            )
        vector = v.vector.detach().to("cpu", torch.float32)
        summed[v.layer] = summed[v.layer] + vector if v.layer in summed else vector

    def write(tmp: Path) -> None:
        writer = GGUFWriter(tmp, ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", info.model_type)
        writer.add_uint32(f"{ARCHITECTURE}.layer_count", len(summed))
        for layer, vector in sorted(summed.items()):
            writer.add_tensor(f"direction.{layer - 1}", vector.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return atomic_write(path, write)


def import_gguf(model: TransformersModel, path: str | Path) -> Steering:
    """Read a GGUF control vector (llama.cpp's or repeng's) as one :class:`DirectionVector` per
    direction, for ``model``: ``direction.N`` goes to ActAdd's layer ``N + 1`` with coefficient 1.

    Refuses a file that is not a control vector, or whose directions are not ``d_model`` float32
    values; ``direction.{n_layers - 1}`` (added after the last block) is left out with a warning.
    Apply the result with ``positions="all"``.
    """
    info = model_info(model)
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot read {path} as a GGUF file ({err}): give a control vector written by llama.cpp, repeng or "
            "actadd.export_gguf"
        ) from err
    architecture = _string(reader, "general.architecture")
    if architecture != ARCHITECTURE:
        raise ValueError(
            f"{path} is a GGUF file of architecture {architecture!r}, not a control vector ({ARCHITECTURE!r})"
        )
    hint = _string(reader, f"{ARCHITECTURE}.model_hint") or ""
    directions: list[DirectionVector] = []
    for tensor in reader.tensors:
        match = _DIRECTION.fullmatch(tensor.name)
        if match is None:
            raise ValueError(f"{path} holds a tensor {tensor.name!r}: a control vector holds only direction.N tensors")
        index = int(match.group(1))
        if tensor.tensor_type != GGMLQuantizationType.F32 or tensor.n_elements != info.d_model:
            raise ValueError(
                f"{path}: {tensor.name} has {tensor.n_elements} {tensor.tensor_type.name} values, but {info.name!r} "
                f"needs {info.d_model} F32 values (its d_model): the file was made for another model"
            )
        if index + 1 >= info.n_layers:
            warnings.warn(
                f"{path}: {tensor.name} is added at the output of block {index}, after {info.name!r}'s last block "
                f"input (layer {info.n_layers - 1}): ActAdd cannot add it there, so it is left out",
                stacklevel=2,
            )
            continue
        directions.append(
            DirectionVector(
                vector=torch.tensor(np.array(tensor.data, dtype=np.float32).reshape(-1)).to(model.dtype),
                layer=index + 1,
                coeff=1.0,
                model_name=info.name,
                relative_norm=None,
                source=ControlVectorFile(path=str(path), model_hint=hint, index=index),
            )
        )
    if not directions:
        raise ValueError(f"{path} holds no direction ActAdd can add to {info.name!r}")
    return Steering(tuple(sorted(directions, key=lambda d: d.layer)))


def _string(reader: GGUFReader, key: str) -> str | None:
    """A string field of a GGUF file (its last part holds the bytes), or None when absent."""
    field = reader.get_field(key)
    if field is None or not field.parts:
        return None
    return bytes(field.parts[-1]).decode("utf-8", errors="replace")
