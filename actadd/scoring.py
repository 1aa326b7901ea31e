"""Scoring text under the steered or unsteered model, batched: per-token log-probabilities
(:func:`logprobs`), the next token's distribution (:func:`next_token_logprobs`), and one steered
forward pass's logits (:func:`forward_logits`).

Scoring right-pads, so every row starts at position 0, and batches sequences of similar length
so that little is spent on padding; each vector is placed on a row's own tokens as
:mod:`actadd.steer` places it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

from actadd.checks import integer, strings
from actadd.models import check_context, input_device, model_info
from actadd.steer import Encoded, Positions, add, additions, encode, encode_prompt, row_steerings
from actadd.vectors import Steerable, Steering

__all__ = ["forward_logits", "length_batches", "logprobs", "next_token_logprobs"]


def logprobs(
    model: TransformersModel,
    texts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    contexts: Sequence[str] | None = None,
    row_vectors: Sequence[Steerable | None] | None = None,
    batch_size: int = 16,
    max_logits: int | None = None,
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
    ``positions`` is as in :func:`generate`. A pass takes at most ``batch_size`` texts and, with
    ``max_logits``, fewer where its logits (texts x scored positions x vocabulary) would pass
    that many: a model with a large vocabulary, such as Gemma 3's 262k tokens, scoring long
    texts 32 at a time holds gigabytes of them.
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
    spans = _spans(prompts, chat)
    rows = row_steerings(len(texts), vectors, row_vectors)
    check_context(sequences, model_info(model))

    # Only the positions that predict a text token go through the unembedding (a large share
    # of the cost for a big vocabulary); sequences are batched by length to waste no padding.
    first_scored = [len(c) - 1 for c in context_ids]
    scores: dict[int, torch.Tensor] = {}
    batches = _batched_logits(model, sequences, rows, spans, first_scored, batch_size, max_logits, positions, progress)
    for batch, logits, offset in batches:
        for j, i in enumerate(batch):
            first, last = len(context_ids[i]), len(sequences[i])
            targets = torch.tensor(sequences[i][first:last], device=logits.device)
            lp = logits[j, first - 1 - offset : last - 1 - offset].float().log_softmax(dim=-1)
            scores[i] = lp.gather(1, targets[:, None]).squeeze(1).cpu()
    return [scores[i] for i in range(len(texts))]


def next_token_logprobs(
    model: TransformersModel,
    prompts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    batch_size: int = 16,
    max_logits: int | None = None,
    positions: Positions = "front",
    chat: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Log-probabilities of the token after each prompt: ``[n_prompts, vocab]`` on the CPU.

    ``positions`` and ``chat`` are as in :func:`generate` (with ``chat``, the first token of
    the assistant's reply), ``batch_size`` and ``max_logits`` as in :func:`logprobs`."""
    prompts = strings(prompts, "prompts")
    encoded = [encode_prompt(model, p, chat=chat) for p in prompts]
    sequences = [e.ids for e in encoded]
    spans = _spans(encoded, chat)
    rows = row_steerings(len(prompts), vectors, None)
    check_context(sequences, model_info(model))
    out: dict[int, torch.Tensor] = {}
    last = [len(s) - 1 for s in sequences]
    batches = _batched_logits(model, sequences, rows, spans, last, batch_size, max_logits, positions, progress)
    for batch, logits, offset in batches:
        for j, i in enumerate(batch):
            out[i] = logits[j, last[i] - offset].float().log_softmax(-1).cpu()
    return torch.stack([out[i] for i in range(len(prompts))])


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
    return _forward(model, sequences, rows, positions)


def _forward(
    model: TransformersModel,
    sequences: Sequence[Sequence[int]],
    rows: Sequence[Steering | None],
    positions: Positions = "front",
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    keep_last: int | None = None,
) -> torch.Tensor:
    """One steered forward pass on right-padded token ids: logits ``[batch, max_len, vocab]``,
    or of the last ``keep_last`` positions only (``[batch, keep_last, vocab]``). ``spans`` are
    the rows' steerable tokens, as in :func:`actadd.steer.additions`."""
    info = model_info(model)
    lengths = [len(s) for s in sequences]
    seq_len = max(lengths)
    input_ids = torch.full((len(sequences), seq_len), info.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    device = input_device(model)
    added = additions(rows, mask, info, positions, spans=spans, device=device, dtype=model.dtype)
    kwargs = {} if keep_last is None else {"logits_to_keep": keep_last}
    with (
        torch.no_grad(),
        model.trace(
            {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, remote=info.remote, **kwargs
        ),
    ):
        add(model, added)
        logits = model.output.logits.save()
    return logits


def _batched_logits(
    model: TransformersModel,
    sequences: Sequence[list[int]],
    rows: Sequence[Steering | None],
    spans: Sequence[tuple[int, int]] | None,
    first_needed: Sequence[int],
    batch_size: int,
    max_logits: int | None,
    positions: Positions,
    progress: bool,
) -> Iterator[tuple[list[int], torch.Tensor, int]]:
    """Batches of similar length: (row indices, logits of the positions from the batch's
    earliest ``first_needed`` on, that position)."""
    integer(batch_size, "batch_size", minimum=1)
    if max_logits is not None:
        integer(max_logits, "max_logits", minimum=1)
    lengths = [len(s) for s in sequences]
    batches = length_batches(lengths, first_needed, batch_size, model_info(model).vocab_size, max_logits)
    with tqdm(total=len(sequences), desc="score", disable=not progress, leave=False) as bar:
        for batch in batches:
            offset = min(first_needed[i] for i in batch)
            logits = _forward(
                model,
                [sequences[i] for i in batch],
                [rows[i] for i in batch],
                positions,
                spans=None if spans is None else [spans[i] for i in batch],
                keep_last=max(lengths[i] for i in batch) - offset,
            )
            yield batch, logits, offset
            _release_freed_memory()
            bar.update(len(batch))


def _release_freed_memory() -> None:
    """Hand the memory of freed tensors back to the system. Passes of growing length leave
    glibc's heap fragmented (freed blocks too small for the next pass's logits): scoring 640
    sentences under Gemma 3's 262k-token vocabulary grew the process from 1.5 to 6.0 GB, and 02's
    thousands took a 24 GiB machine out of memory. A no-op where libc has no ``malloc_trim``."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return None


_MALLOC_TRIM = _malloc_trim()


def length_batches(
    lengths: Sequence[int],
    first_needed: Sequence[int],
    batch_size: int,
    vocab_size: int,
    max_logits: int | None = None,
) -> list[list[int]]:
    """Row indices in batches of similar length: at most ``batch_size`` rows and, given
    ``max_logits``, no more logits than that (rows x positions from the batch's earliest
    ``first_needed`` to its longest sequence x ``vocab_size``) unless a single row holds more."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        trial = [*batch, i]
        scored = lengths[i] - min(first_needed[j] for j in trial)  # lengths ascend: row i is the longest
        over = max_logits is not None and len(trial) * scored * vocab_size > max_logits
        if batch and (len(trial) > batch_size or over):
            batches.append(batch)
            trial = [i]
        batch = trial
    return [*batches, batch] if batch else batches


def _spans(prompts: Sequence[Encoded], chat: bool) -> list[tuple[int, int]] | None:
    """Where front and back vectors go in each scored sequence: the whole sequence for plain
    prompts (None), a chat prompt's content for chat ones."""
    return [(p.first, p.end) for p in prompts] if chat else None
