"""Adding steering vectors to the residual stream inside an nnsight trace: where, and when.

``positions`` says where each vector goes, at the input of its block:

- ``"front"`` (ActAdd's, the default): the ``k`` rows of a ``[k, d_model]`` vector on the
  row's first ``k`` tokens, row 0 on the start token, in the prompt pass only. With the KV
  cache the decode steps are not steered again: they attend to the steered keys and values.
- ``"back"``: the same rows on the row's last ``k`` tokens, in the prompt pass only.
- ``"all"``: a ``[d_model]`` direction at every position after the row's start token, in
  the prompt pass and at every token decoded after it (how CAA and repeng add directions).

Every placement is shifted by the row's own padding (read from the attention mask), so a
padded batch steers every row at its own tokens, and padding is never steered. Use
:func:`apply` in your own trace:

    inputs = actadd.tokenize(model, prompts)          # start token first, left-padded
    with torch.no_grad(), model.trace(inputs):
        actadd.apply(model, wedding)                  # before any read of a later block
        hidden = model.model.layers[20].output.save()

Inside ``model.generate(...)`` the body binds to the prompt pass only, which is ActAdd's
semantics. nnsight's steering tutorial adds a direction in a generate body and says it
"fires on every generation step"; in nnsight 0.8 a statement in the body reaches the first
forward only, and a direction added at each step is a different method from ActAdd's, which
adds once to the prompt and lets the decoded tokens see it through the cache. To steer every
step use ``positions="all"`` inside ``for step in tracer.iter[...]`` (see :func:`apply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from nnsight.modeling.transformers import TransformersModel

from actadd.checks import strings
from actadd.models import ModelInfo, blocks, input_device, model_info
from actadd.vectors import DirectionVector, Steerable, Steering, SteeringVector, as_steering, check_model

__all__ = ["Positions", "apply", "encode", "tokenize"]

Positions = Literal["front", "back", "all"]


@dataclass(frozen=True)
class Encoded:
    """A prompt's token ids, and the tokens ``ids[first:end]`` a front or back vector may cover.

    Row 0 of a front vector lands on ``ids[first]``: the start token of a plain prompt
    (``first`` 0), or the token before the user's content in a chat prompt, so that row
    ``j >= 1`` lands on the ``j``-th token of the content either way.
    """

    ids: list[int]
    first: int
    end: int


def encode(model: TransformersModel, text: str, *, start: bool = True) -> list[int]:
    """Token ids of ``text`` with the model's start token at position 0 (when ``start``)."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    return [model_info(model).start_token_id, *ids] if start else list(ids)


def encode_prompt(model: TransformersModel, text: str, *, chat: bool = False) -> Encoded:
    """``text`` as token ids: the model's start token then the text, or with ``chat`` the
    tokenizer's chat template around it (a user turn, then the assistant's generation prompt).

    The template's pieces and the content are tokenised apart, so the content's tokens are
    exactly the text's own and the boundary is known, whatever the template puts around it.
    """
    if not chat:
        ids = encode(model, text)
        return Encoded(ids, 0, len(ids))
    prefix, content, suffix = _chat_parts(model, text)
    tokenizer = model.tokenizer
    before = tokenizer(prefix, add_special_tokens=False).input_ids
    inside = tokenizer(content, add_special_tokens=False).input_ids
    after = tokenizer(suffix, add_special_tokens=False).input_ids
    return Encoded([*before, *inside, *after], len(before) - 1, len(before) + len(inside))


def _chat_parts(model: TransformersModel, text: str) -> tuple[str, str, str]:
    """The chat template's text before the user's content, the content as the template writes it, and the rest."""
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{model_info(model).name!r} has no chat template (its tokenizer's chat_template is unset): pass "
            "chat=False for plain prompts, or set tokenizer.chat_template to the instruct model's template"
        )

    def render(content: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    marker = "\x00actadd-content\x00"  # found nowhere else in a template
    prefix, found, suffix = render(marker).partition(marker)
    whole = render(text)
    if not found or marker in suffix or not prefix or not (whole.startswith(prefix) and whole.endswith(suffix)):
        raise ValueError(
            f"the chat template of {model_info(model).name!r} does not put the user's content once between fixed "
            "text, so where its tokens start cannot be known: pass chat=False and format the prompts yourself"
        )
    return prefix, whole[len(prefix) : len(whole) - len(suffix)], suffix


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
    positions: Positions = "front",
) -> None:
    """Inside your own ``model.trace(...)`` or ``model.generate(...)`` body: steer the forward pass.

    ``vectors`` steers every row; ``row_vectors`` gives one steering (or None) per row. Where
    each row's tokens are is read from the forward's attention mask (left or right padding,
    or none), so call this first in the body, before reading any block's activations. Each
    row should begin with the model's start token, as :func:`tokenize` makes it.

    It steers the forward pass it is called in. In a generate body that is the prompt pass,
    all that ``"front"`` (ActAdd's) and ``"back"`` steer. To steer every decoded token too,
    call it with ``positions="all"`` at every step, in its own invoke, and read the result
    in another (nnsight runs nothing after a step loop in the same invoke)::

        with model.generate(max_new_tokens=20) as tracer:
            with tracer.invoke(inputs):
                for step in tracer.iter[:20]:
                    actadd.apply(model, direction, positions="all")
            with tracer.invoke():
                tokens = tracer.result.save()

    With the KV cache each step computes only its new token, so every token is steered
    exactly once.
    """
    if not model.interleaver.interleaving:
        raise ValueError(
            "actadd.apply steers a forward pass as it runs: call it inside a `with model.trace(...):` or "
            "`with model.generate(...):` body, before reading any block"
        )
    _, kwargs = model.inputs
    input_ids = kwargs["input_ids"]
    batch, width = input_ids.shape
    mask = kwargs.get("attention_mask")
    if mask is None:
        # transformers leaves out the mask of an unpadded batch, even in a decode step: the
        # tokens before this forward (in the KV cache) are then counted by its first position id.
        position_ids = kwargs.get("position_ids")
        past = 0 if position_ids is None else int(position_ids[0, 0])
        mask = torch.ones(batch, past + width, dtype=torch.long, device=input_ids.device)
    rows = row_steerings(batch, vectors, row_vectors)
    added = additions(rows, mask, model_info(model), positions, width=width, device=input_ids.device, dtype=model.dtype)
    add(model, added)


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


def pad_to_vectors(
    prompt: Encoded, steering: Steering | None, space_token_id: int, spaces: int | None = None
) -> Encoded:
    """The original code's pad mode (``pad_tokens_to_match_activation_additions``): insert
    ``k - 1`` space tokens after ``prompt.first`` (the start token, or the token before a chat
    prompt's content), ``k`` the length of the row's longest ActAdd vector, so that the vector's
    rows after the start token land on the spaces and none overlaps the prompt's own text; a row
    without an ActAdd vector is left as it is. ``spaces`` inserts that many instead, steered or
    not (a baseline padded like the rows it is compared with)."""
    if spaces is None:
        spaces = max((v.k for v in steering or () if isinstance(v, SteeringVector)), default=1) - 1
    if spaces <= 0:
        return prompt
    at = prompt.first + 1
    ids = [*prompt.ids[:at], *[space_token_id] * spaces, *prompt.ids[at:]]
    return Encoded(ids, prompt.first, prompt.end + spaces)


def additions(
    rows: Sequence[Steering | None],
    mask: torch.Tensor,
    info: ModelInfo,
    positions: Positions,
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    width: int | None = None,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[int, torch.Tensor]:
    """The tensor to add at each steered layer's input: ``{layer: [batch, width, d_model]}``.

    ``mask`` ``[batch, total]`` is the attention mask of the sequences so far (1 on a row's
    tokens, 0 on its padding); the forward computes its last ``width`` columns (default all:
    the prompt pass; 1: a decode step with the KV cache). ``spans[i]`` is ``(first, end)`` of
    the tokens of row ``i`` a front or back vector may cover, counted from the row's first
    token (default: all of them, ``(0, length)``). ActAdd vectors go on a span's first ``k``
    (front) or last ``k`` (back) tokens, in the prompt pass only; directions (``"all"``) on
    every computed position after each row's first token.
    """
    if positions not in ("front", "back", "all"):
        raise ValueError(
            f"positions must be 'front' (ActAdd's), 'back' or 'all' (a [d_model] direction at every position), "
            f"got {positions!r}"
        )
    batch, total = mask.shape
    width = total if width is None else width
    mask = mask.to(device).bool()
    first_token = mask.int().argmax(dim=1)  # after the row's left padding, or 0 with right padding
    lengths = mask.sum(dim=1).tolist()
    added: dict[int, torch.Tensor] = {}

    def at(layer: int) -> torch.Tensor:
        if layer not in added:
            added[layer] = torch.zeros(batch, width, info.d_model, device=device, dtype=dtype)
        return added[layer]

    for i, steering in enumerate(rows):
        for v in steering or ():
            check_model(v, info)
            _check_positions(v, positions)
            if isinstance(v, DirectionVector):
                # Every computed position of the row's tokens but its first (the start token).
                steered = mask[i] & (torch.arange(total, device=device) > first_token[i])
                at(v.layer)[i] += steered[total - width :, None] * v.vector.to(device, dtype)
                continue
            if width != total:
                raise ValueError(
                    f"positions={positions!r} places {v.label} on the prompt, but this forward computes {width} of "
                    f"{total} positions (a decode step with the KV cache): steer the prompt pass (outside a "
                    "tracer.iter loop), or add a [d_model] direction with positions='all'"
                )
            first, end = (0, lengths[i]) if spans is None else spans[i]
            if end - first < v.k:
                raise ValueError(
                    f"prompt {i} has {end - first} tokens from the one under row 0 (the start token, or the token "
                    f"before a chat prompt's content), shorter than the {v.k}-token vector {v.p_plus!r} - "
                    f"{v.p_minus!r}: lengthen it or pass pad_prompts=True"
                )
            offset = int(first_token[i]) + (first if positions == "front" else end - v.k)
            at(v.layer)[i, offset : offset + v.k] += v.vector.to(device, dtype)
    return added


def _check_positions(v: SteeringVector | DirectionVector, positions: Positions) -> None:
    """A ``[k, d_model]`` ActAdd vector goes front or back, a ``[d_model]`` direction everywhere."""
    if isinstance(v, DirectionVector) and positions != "all":
        raise ValueError(
            f"{v.label} is one [d_model] direction, added at every position: pass positions='all' "
            f"(positions={positions!r} places the k rows of a [k, d_model] ActAdd vector)"
        )
    if isinstance(v, SteeringVector) and positions == "all":
        raise ValueError(
            f"{v.label} is a [k, d_model] ActAdd vector, added once at k positions: pass positions='front' "
            "(the paper's) or 'back'; positions='all' adds a [d_model] direction (actadd.mean_difference) everywhere"
        )


def add(model: TransformersModel, added: dict[int, torch.Tensor]) -> None:
    """Inside a trace, or one step of a generate: add to each block's input in place."""
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
