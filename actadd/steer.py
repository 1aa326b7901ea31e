"""Adding steering vectors to the residual stream inside an nnsight trace.

Each vector goes to the input of its block, at the row's first ``k`` tokens ('front', the
paper's alignment) or its last ``k`` ('back'), shifted by the row's own padding so that a
padded batch steers every row at its own tokens. Use :func:`apply` in your own trace:

    inputs = actadd.tokenize(model, prompts)          # start token first, left-padded
    with torch.no_grad(), model.trace(inputs):
        actadd.apply(model, wedding)                  # before any read of a later block
        hidden = model.model.layers[20].output.save()

Inside ``model.generate(...)`` the body applies to the prompt pass only, which is ActAdd's
semantics: decode steps with the KV cache see the steered keys and values and are not
steered again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from nnsight.modeling.transformers import TransformersModel

from actadd.checks import strings
from actadd.models import ModelInfo, blocks, input_device, model_info
from actadd.vectors import Steerable, Steering, as_steering, check_model, encode

Alignment = Literal["front", "back"]


def tokenize(model: TransformersModel, prompts: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask"}`` for a trace: each prompt with the model's start token
    at position 0 (as ActAdd's vectors are made), left-padded as generation needs."""
    ids = [encode(model, p) for p in strings(prompts, "prompts")]
    input_ids, mask, _ = left_pad(ids, model_info(model).pad_token_id, input_device(model))
    return {"input_ids": input_ids, "attention_mask": mask}


def apply(
    model: TransformersModel,
    vectors: Steerable | None = None,
    *,
    row_vectors: Sequence[Steerable | None] | None = None,
    alignment: Alignment = "front",
) -> None:
    """Inside your own ``model.trace(...)`` or ``model.generate(...)`` body: steer the forward pass.

    ``vectors`` steers every row; ``row_vectors`` gives one steering (or None) per row. Where
    each row's tokens are is read from the trace's attention mask (left or right padding,
    or none), so call this first in the body, before reading any block's activations. Each
    row should begin with the model's start token, as :func:`tokenize` makes it.
    """
    if not model.interleaver.interleaving:
        raise ValueError(
            "actadd.apply steers a forward pass as it runs: call it inside a `with model.trace(...):` or "
            "`with model.generate(...):` body, before reading any block"
        )
    _, kwargs = model.inputs
    input_ids = kwargs["input_ids"]
    mask = kwargs.get("attention_mask")
    batch, seq_len = input_ids.shape
    if mask is None:
        starts, lengths = [0] * batch, [seq_len] * batch
    else:
        lengths = [int(n) for n in mask.sum(dim=1).tolist()]
        # The first real token of each row: after its left padding, or at 0 with right padding.
        starts = [int(i) for i in mask.int().argmax(dim=1).tolist()]
    rows = row_steerings(batch, vectors, row_vectors)
    add(
        model,
        additions(
            rows, starts, lengths, seq_len, model_info(model), alignment, device=input_ids.device, dtype=model.dtype
        ),
    )


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
    (back) ``k`` tokens, so padding does not shift the steering.
    """
    if alignment not in ("front", "back"):
        raise ValueError(f"alignment must be 'front' or 'back', got {alignment!r}")
    added: dict[int, torch.Tensor] = {}
    for i, steering in enumerate(rows):
        for v in steering or ():
            check_model(v, info)
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


def add(model: TransformersModel, added: dict[int, torch.Tensor]) -> None:
    """Inside a trace or the prompt pass of a generate: add to each block's input in place."""
    layers = blocks(model)
    for layer, tensor in sorted(added.items()):
        resid = layers[layer].input
        resid.add_(tensor.to(resid.device))  # a device_map or remote model: the layer's own device


def left_pad(sequences: Sequence[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-padded ``input_ids`` and ``attention_mask`` ``[batch, max_len]``, and where each row starts."""
    seq_len = max(len(s) for s in sequences)
    starts = [seq_len - len(s) for s in sequences]
    input_ids = torch.tensor([[pad_id] * p + s for p, s in zip(starts, sequences)], device=device)
    mask = torch.tensor([[0] * p + [1] * len(s) for p, s in zip(starts, sequences)], device=device)
    return input_ids, mask, starts
