"""Reading the residual stream, and the steering vectors made from it.

- :func:`residual_stream`: the residual stream at the input of block ``layer`` for a batch of
  texts, one ``[n_tokens, d_model]`` tensor per text (start token included): what a steering
  vector is made of, and what a user reads to build one of their own.
- :func:`steering_vector`: ActAdd's ``coeff * (h+ - h-)`` of one prompt pair, ``[k, d_model]``.
- :func:`mean_difference`: the mean over text pairs of ``h(positive) - h(negative)``,
  ``[d_model]`` (CAA's vector), each text read by a reduction (:data:`REDUCTIONS`, or your own).

Both record their strength relative to the residual norm at their layer (``relative_norm``),
because coefficients do not transfer between models whose residual norms differ by orders of
magnitude.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from nnsight.modeling.transformers import TransformersModel

from actadd.checks import integer, real, strings
from actadd.models import blocks, check_context, input_device, model_info, resolve_layer
from actadd.steer import encode
from actadd.vectors import DirectionVector, MeanOfPairs, SteeringVector

__all__ = ["REDUCTIONS", "Reduction", "mean_difference", "residual_norms", "residual_stream", "steering_vector"]

# A reduction takes one text's residual stream ``[n_tokens, d_model]`` (the start token at row 0)
# and returns the rows it is read at ``[m, d_model]``; the text's reading is their mean.
Reduction = Callable[[torch.Tensor], torch.Tensor]


def last_token(resid: torch.Tensor) -> torch.Tensor:
    """The text's last token (as CAA reads its answer token)."""
    return resid[-1:]


def content_tokens(resid: torch.Tensor) -> torch.Tensor:
    """Every token after the start token."""
    return resid[1:]


REDUCTIONS: dict[str, Reduction] = {"last": last_token, "mean": content_tokens}


def residual_stream(
    model: TransformersModel, texts: str | Sequence[str], *, layer: int | float, batch_size: int = 16
) -> list[torch.Tensor]:
    """The residual stream at the input of block ``layer`` (the paper's ``resid_pre``) for each
    text, with the model's start token at position 0: one ``[n_tokens, d_model]`` tensor per text,
    on the model's device, in its dtype.

    ``layer`` is a block index (negative counts from the end) or a fraction of the depth in
    [0, 1). Texts run in batches of ``batch_size`` (similar lengths together, right-padded, so
    padding never reaches a text's own positions); each pass stops at block ``layer``.
    """
    texts = strings(texts, "texts")
    info = model_info(model)
    layer = resolve_layer(layer, info)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    ids = [encode(model, t) for t in texts]
    check_context(ids, info)
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths waste no padding
    for lo in range(0, len(order), batch_size):
        batch = order[lo : lo + batch_size]
        resid = _block_input(model, [ids[i] for i in batch], layer)
        for row, i in enumerate(batch):
            out[i] = resid[row, : len(ids[i])]
    return out


def residual_norms(model: TransformersModel, texts: str | Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
    """The mean norm of the residual stream at the input of every block, ``[n_layers]``: over the
    texts' tokens after the start token (which carries an outsized norm), each token weighted
    alike. On a fixed reference sample of texts this is the one scale every kind of vector's
    strength is measured against: its ``added_norm`` over this, at its layer."""
    texts = strings(texts, "texts")
    info = model_info(model)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    ids = [encode(model, t) for t in texts]
    if short := [t for t, i in zip(texts, ids) if len(i) < 2]:
        raise ValueError(f"texts must have at least one token, got {short[0]!r}")
    check_context(ids, info)
    total, count = torch.zeros(info.n_layers, dtype=torch.float64), 0
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for lo in range(0, len(order), batch_size):
        batch = [ids[i] for i in order[lo : lo + batch_size]]
        width = max(len(s) for s in batch)
        input_ids = torch.tensor([s + [info.pad_token_id] * (width - len(s)) for s in batch])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch])
        content = mask.bool().clone()
        content[:, 0] = False  # the start token
        device = input_device(model)
        saved = []
        with torch.no_grad(), model.trace({"input_ids": input_ids.to(device), "attention_mask": mask.to(device)},
                                          remote=info.remote):  # fmt: skip
            for layer in range(info.n_layers):
                saved.append(blocks(model)[layer].input.norm(dim=-1).save())
        for layer, norms in enumerate(saved):
            total[layer] += norms.detach().double().cpu()[content].sum()
        count += int(content.sum())
    return (total / count).float()


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
    reduce: str | Reduction = "last",
    batch_size: int = 16,
) -> DirectionVector:
    """The mean over ``pairs`` of ``h(positive) - h(negative)``, shape ``[d_model]`` (CAA's vector).

    ``h`` is a text's residual stream at the input of block ``layer`` (:func:`residual_stream`;
    a block index, negative from the end, or a fraction of the depth), read by ``reduce``: the
    name of a reduction in :data:`REDUCTIONS` (``"last"``, the text's last token, as CAA reads
    its answer token; ``"mean"``, every token after the start token) or a function of one
    text's ``[n_tokens, d_model]`` residual returning the rows to average (recorded by its
    ``__name__``). The mean of differences is the best linear steering direction under Im &
    Li's (2025) analysis; add it at every position with ``positions="all"``.

    The strength is ``coeff`` (default 1: the plain mean), or ``relative_norm``: the vector's
    norm over the mean residual norm of the texts at the rows read (per text, the mean over its
    rows), the coefficient that gives it computed and recorded.
    """
    info = model_info(model)
    pairs = _pairs(pairs)
    layer = resolve_layer(layer, info)
    coeff, target = _strength(coeff, relative_norm)
    name, read_rows = _reduction(reduce)
    texts = [p for p, _ in pairs] + [n for _, n in pairs]
    empty = next((i for i, t in enumerate(texts) if len(encode(model, t)) < 2), None)
    if empty is not None:
        raise ValueError(f"pair {empty % len(pairs)} has an empty text {texts[empty]!r}: give both texts some tokens")
    resids = residual_stream(model, texts, layer=layer, batch_size=batch_size)
    reads = [read_rows(r).float() for r in resids]
    bad = next((i for i, r in enumerate(reads) if r.dim() != 2 or r.shape[0] == 0), None)
    if bad is not None:
        raise ValueError(
            f"reduce {name!r} returned shape {tuple(reads[bad].shape)} for text {texts[bad]!r}: a reduction returns "
            "the [m, d_model] rows to average, m >= 1"
        )
    h = torch.stack([r.mean(dim=0) for r in reads])
    norms = torch.stack([r.norm(dim=-1).mean() for r in reads])
    diff = h[: len(pairs)].mean(dim=0) - h[len(pairs) :].mean(dim=0)
    unit_relative = (diff.norm() / norms.mean()).item()
    coeff = _coefficient(coeff, target, unit_relative, f"the {len(pairs)} pairs")
    return DirectionVector(
        vector=(coeff * diff).to(model.dtype),
        layer=layer,
        coeff=coeff,
        model_name=info.name,
        relative_norm=abs(coeff) * unit_relative,
        source=MeanOfPairs(pairs=pairs, reduce=name),
    )


def _reduction(reduce: Any) -> tuple[str, Reduction]:
    """A reduction's name and function, from either."""
    if isinstance(reduce, str):
        if reduce not in REDUCTIONS:
            raise ValueError(
                f"reduce must be one of {sorted(REDUCTIONS)} (each text's last token, as CAA, or the mean over its "
                f"tokens) or a function of a [n_tokens, d_model] residual, got {reduce!r}"
            )
        return reduce, REDUCTIONS[reduce]
    if callable(reduce):
        return getattr(reduce, "__name__", type(reduce).__name__), reduce
    raise ValueError(f"reduce must be a name in {sorted(REDUCTIONS)} or a function, got {reduce!r}")


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
