"""Scoring text under the steered or unsteered model, batched: per-token log-probabilities
(:func:`logprobs`), the next token's distribution (:func:`next_token_logprobs`), and one steered
forward pass's logits (:func:`forward_logits`).

Scoring right-pads, so every row starts at position 0, and batches sequences of similar length
so that little is spent on padding; each vector is placed on a row's own tokens as
:mod:`actadd.steer` places it.

A scoring pass never holds its logits. It reads the last hidden state of the positions it
scores (the unembedding's input) through the trace, stops the model there, and takes each
token's log-probability as its logit minus a log-sum-exp accumulated over slices of the
vocabulary (the technique of cut cross-entropy): it holds positions x slice values, where the
logits of batch x positions x vocabulary took gigabytes under Gemma 3's 262k-token vocabulary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from collections.abc import Sequence
from typing import Any

import nnsight
import torch
import torch.nn.functional as F
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

from actadd.checks import integer, strings
from actadd.models import ARCHITECTURES, check_context, envoy_at, input_device, model_info
from actadd.steer import Encoded, Positions, add, additions, encode, encode_prompt, row_steerings
from actadd.vectors import Steerable, Steering

__all__ = ["forward_logits", "length_batches", "logprobs", "next_token_logprobs"]

# The most logits (positions x a slice of the vocabulary) one step of the log-sum-exp holds, 16 MiB
# in float32, and the most positions it takes at once, so a slice is at least 1,024 tokens wide.
# Here a bfloat16 matmul of 1,000 positions by 4,096 tokens ran faster than by the whole vocabulary.
SLICE_VALUES = 1 << 22
SLICE_ROWS = 4096


def logprobs(
    model: TransformersModel,
    texts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    contexts: Sequence[str] | None = None,
    row_vectors: Sequence[Steerable | None] | None = None,
    batch_size: int = 16,
    positions: Positions = "front",
    chat: bool = False,
    progress: bool = False,
) -> list[torch.Tensor]:
    """Log-probability of each token of each text, under the steered or unsteered model.

    Each sequence is ``[start token] + context + text``, with the steering placed on the
    whole sequence; returned per text: a 1D float32 tensor ``[n_text_tokens]`` on the CPU,
    the log-prob of each text token given everything before it. Tokenising context and text
    separately keeps the boundary exact. With ``chat=True`` each context is the user's turn of
    the chat template and each text the assistant's reply after the generation prompt (as
    ``generate(..., chat=True)`` samples it), front positions counted from the context's content.
    ``positions`` is as in :func:`generate`. A pass takes at most ``batch_size`` texts; it holds
    their hidden states, never their logits over the whole vocabulary.
    """
    texts = strings(texts, "texts")
    if contexts is not None:
        contexts = strings(contexts, "contexts")
        if len(contexts) != len(texts):
            raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts: give one context per text")
    if chat and contexts is None:
        raise ValueError("chat=True scores each text as the assistant's reply to its context: give contexts")
    prompts = [encode_prompt(model, c, chat=chat) for c in contexts or [""] * len(texts)]
    context_ids = [p.ids for p in prompts]
    text_ids = [encode(model, t, start=False) for t in texts]
    sequences = [c + t for c, t in zip(context_ids, text_ids)]
    rows = row_steerings(len(texts), vectors, row_vectors)
    check_context(sequences, model_info(model))
    # Position p predicts token p + 1: a text is predicted from the position before its first token.
    predicting = [range(len(c) - 1, len(s) - 1) for c, s in zip(context_ids, sequences)]
    return _score(
        model, sequences, rows, _spans(prompts, chat), predicting, batch_size, positions, progress, tokens=True
    )


def next_token_logprobs(
    model: TransformersModel,
    prompts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    batch_size: int = 16,
    positions: Positions = "front",
    chat: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Log-probabilities of the token after each prompt: ``[n_prompts, vocab]`` float32 on the CPU.

    ``positions`` and ``chat`` are as in :func:`generate` (with ``chat``, the first token of
    the assistant's reply), ``batch_size`` as in :func:`logprobs`."""
    prompts = strings(prompts, "prompts")
    encoded = [encode_prompt(model, p, chat=chat) for p in prompts]
    sequences = [e.ids for e in encoded]
    rows = row_steerings(len(prompts), vectors, None)
    check_context(sequences, model_info(model))
    last = [range(len(s) - 1, len(s)) for s in sequences]
    out = _score(model, sequences, rows, _spans(encoded, chat), last, batch_size, positions, progress, tokens=False)
    return torch.cat(out)


def forward_logits(
    model: TransformersModel,
    sequences: Sequence[Sequence[int]],
    vectors: Steerable | None = None,
    *,
    row_vectors: Sequence[Steerable | None] | None = None,
    positions: Positions = "front",
) -> torch.Tensor:
    """One forward pass on token ids (each row as given: begin it with the start token, as
    :func:`actadd.steer.encode` does), steered by ``vectors`` (every row) or ``row_vectors`` (one
    steering or None per row): the logits ``[batch, max_len, vocab]``, right-padded."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError(f"sequences must be a non-empty list of non-empty token id lists, got {sequences!r}")
    rows = row_steerings(len(sequences), vectors, row_vectors)
    check_context(sequences, model_info(model))
    inputs, added = _steered_inputs(model, sequences, rows, positions, None)
    with torch.no_grad(), model.trace(inputs, remote=model_info(model).remote):
        add(model, added)
        logits = model.output.logits.save()
    return logits


def _steered_inputs(
    model: TransformersModel,
    sequences: Sequence[Sequence[int]],
    rows: Sequence[Steering | None],
    positions: Positions,
    spans: Sequence[tuple[int, int]] | None,
) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """Right-padded ``input_ids`` and ``attention_mask`` ``[batch, max_len]`` on the model's input
    device, and what to add at each steered layer (``spans`` as in :func:`actadd.steer.additions`)."""
    info = model_info(model)
    input_ids = torch.full((len(sequences), max(len(s) for s in sequences)), info.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    device = input_device(model)
    added = additions(rows, mask, info, positions, spans=spans, device=device, dtype=model.dtype)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, added


def _score(
    model: TransformersModel,
    sequences: Sequence[list[int]],
    rows: Sequence[Steering | None],
    spans: Sequence[tuple[int, int]] | None,
    predicting: Sequence[range],
    batch_size: int,
    positions: Positions,
    progress: bool,
    *,
    tokens: bool,
) -> list[torch.Tensor]:
    """Per sequence, from the positions ``predicting[i]``: the log-probability of the token each
    predicts (``tokens``, ``[len(predicting[i])]``) or its whole next-token distribution
    (``[len(predicting[i]), vocab]``), in batches of similar length, on the CPU."""
    integer(batch_size, "batch_size", minimum=1)
    info = model_info(model)
    if info.head_path is None:
        known = ", ".join(sorted(k for k, a in ARCHITECTURES.items() if a.linear_head))
        warnings.warn(
            f"{info.name!r} (model_type {info.model_type!r}): actadd does not know how this architecture turns its "
            f"last hidden state into logits, so each scoring pass holds its logits over the whole vocabulary "
            f"(batch x positions x vocabulary); lower batch_size if that is too much memory. Known: {known}",
            stacklevel=3,
        )
    scores: dict[int, torch.Tensor] = {}
    with tqdm(total=len(sequences), desc="score", disable=not progress, leave=False) as bar:
        for batch in length_batches([len(s) for s in sequences], batch_size):
            offset = min(predicting[i].start for i in batch)
            at_row = torch.tensor([j for j, i in enumerate(batch) for _ in predicting[i]], dtype=torch.long)
            at_position = torch.tensor([p - offset for i in batch for p in predicting[i]], dtype=torch.long)
            targets = (
                torch.tensor([sequences[i][p + 1] for i in batch for p in predicting[i]], dtype=torch.long)
                if tokens
                else None
            )
            inputs, added = _steered_inputs(
                model,
                [sequences[i] for i in batch],
                [rows[i] for i in batch],
                positions,
                None if spans is None else [spans[i] for i in batch],
            )
            keep_last = inputs["input_ids"].shape[1] - offset
            with (
                torch.no_grad(),
                model.trace(inputs, remote=info.remote, logits_to_keep=keep_last) as tracer,
            ):
                add(model, added)
                if info.head_path is None:
                    logits = model.output.logits
                    picked = logits[at_row.to(logits.device), at_position.to(logits.device)]
                    found = nnsight.save(_from_logits(picked, targets))
                else:
                    head = envoy_at(model, info.head_path)
                    hidden = head.input
                    picked = hidden[at_row.to(hidden.device), at_position.to(hidden.device)]
                    found = nnsight.save(_from_hidden(picked, head.weight, head.bias, targets, info.logit_softcap))
                    tracer.stop()  # the unembedding of every kept position would hold the logits this avoids
            found = found.cpu()
            for i, part in zip(batch, found.split([len(predicting[i]) for i in batch])):
                scores[i] = part
            _release_freed_memory()
            bar.update(len(batch))
    return [scores[i] for i in range(len(sequences))]


def _from_logits(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """``[n, vocab]`` logits: each target's log-probability ``[n]``, or each row's distribution (no targets)."""
    lp = logits.float().log_softmax(dim=-1)
    return lp if targets is None else lp.gather(1, targets.to(lp.device)[:, None]).squeeze(1)


def _from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor | None,
    softcap: float | None,
) -> torch.Tensor:
    """Log-probabilities from last hidden states ``[n, d_model]`` under the unembedding
    ``weight`` ``[vocab, d_model]`` (and ``bias``, ``softcap``): each target's ``[n]``, or without
    targets each row's whole distribution ``[n, vocab]``. The matmuls run in the model's dtype,
    as the model's own; the log-sum-exp is summed in float32 over a slice of the vocabulary at a
    time, for at most ``SLICE_VALUES`` logits at once."""
    if targets is None:
        return _capped(F.linear(hidden, weight, bias).float(), softcap).log_softmax(dim=-1)
    targets = targets.to(hidden.device)
    vocab = weight.shape[0]
    # As few blocks of positions as hold at most SLICE_ROWS each, evenly: every block multiplies
    # by the whole unembedding once, slice by slice, each slice as wide as SLICE_VALUES allows.
    n_blocks = max(1, -(-len(targets) // SLICE_ROWS))
    block = max(1, -(-len(targets) // n_blocks))
    width = min(vocab, SLICE_VALUES // block)
    out = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
    work: torch.Tensor | None = None  # reused: a fresh buffer of this size page-faults on every slice
    for lo in range(0, len(targets), block):
        h, t = hidden[lo : lo + block], targets[lo : lo + block]
        picked = torch.zeros(len(t), dtype=torch.float32, device=hidden.device)
        maxima, sums = [], []
        for v in range(0, vocab, width):
            logits = F.linear(h, weight[v : v + width], None if bias is None else bias[v : v + width])
            if softcap is not None:
                logits = _capped(logits.float(), softcap)
            inside = (t >= v) & (t < v + logits.shape[1])
            at = (t - v).clamp(0, logits.shape[1] - 1)[:, None]
            picked = torch.where(inside, logits.gather(1, at).squeeze(1).float(), picked)
            if logits.dtype != torch.float32:  # float32 logits are this slice's own: worked on in place
                if work is None or work.shape != logits.shape:
                    work = torch.empty(logits.shape, dtype=torch.float32, device=hidden.device)
                logits = work.copy_(logits)
            top = logits.amax(dim=-1, keepdim=True)
            maxima.append(top)
            sums.append(logits.sub_(top).exp_().sum(dim=-1, keepdim=True))
        top = torch.cat(maxima, dim=1)
        highest = top.amax(dim=1, keepdim=True)
        lse = highest + (torch.cat(sums, dim=1) * (top - highest).exp()).sum(dim=1, keepdim=True).log()
        out[lo : lo + block] = picked - lse.squeeze(1)
    return out


def _capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Float32 logits tanh-capped in place where the model caps them (Gemma 2 and 3)."""
    return logits if softcap is None else logits.div_(softcap).tanh_().mul_(softcap)


def _release_freed_memory() -> None:
    """Hand the memory of freed tensors back to the system. Passes of growing length leave
    glibc's heap fragmented (freed blocks too small for the next pass): when every pass held its
    logits, scoring 640 sentences under Gemma 3's 262k-token vocabulary grew the process from 1.5
    to 6.0 GB. A no-op where libc has no ``malloc_trim``."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return None


_MALLOC_TRIM = _malloc_trim()


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices sorted by length, in batches of at most ``batch_size``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]


def _spans(prompts: Sequence[Encoded], chat: bool) -> list[tuple[int, int]] | None:
    """Where front and back vectors go in each scored sequence: the whole sequence for plain
    prompts (None), a chat prompt's content for chat ones."""
    return [(p.first, p.end) for p in prompts] if chat else None
