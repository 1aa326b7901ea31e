"""Steered sampling and scoring, batched.

Generation left-pads (as decoder-only generation must) and shifts each row's addition by its
padding; scoring right-pads, so every row starts at position 0. With ActAdd's
``positions="front"`` (or ``"back"``) only the prompt pass is steered: decode steps with the
KV cache see one new token each and are left alone, as in the paper. With ``"all"`` a
``[d_model]`` direction is added at every prompt position after the start token and at each
decoded token, once. ``chat=True`` formats each prompt with the tokenizer's chat template and
counts ActAdd's front positions from the user's content. Sampling draws every row from its
own seeded generator, so a row's text depends on its seed, not on which other rows share its
batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from actadd.checks import integer, is_int, real, strings
from actadd.models import check_context, input_device, model_info
from actadd.sampling import RowSampler, row_seeds
from actadd.steer import Encoded, Positions, add, additions, encode_prompt, left_pad, pad_to_vectors, row_steerings
from actadd.vectors import Steerable, Steering, encode

PenaltyCounts = Literal["completion", "prompt_and_completion"]


def generate(
    model: TransformersModel,
    prompts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    row_vectors: Sequence[Steerable | None] | None = None,
    max_new_tokens: int = 40,
    seed: int | Sequence[int] = 0,
    temperature: float = 1.0,
    top_p: float = 0.3,
    freq_penalty: float = 1.0,
    freq_penalty_counts: PenaltyCounts = "completion",
    batch_size: int = 32,
    positions: Positions = "front",
    chat: bool = False,
    pad_prompts: bool = False,
    progress: bool = True,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> list[str]:
    """Sample a completion (the new text only) for each prompt, steered or not.

    ``vectors`` steers every row; ``row_vectors`` gives one steering (or None) per row, so a
    sweep over layers and coefficients with its unsteered baseline runs as one batched call.
    ``seed`` is an int (row ``r`` gets ``row_seeds(seed, n)[r]``) or one seed per row.
    ``temperature=0`` decodes greedily. ``positions`` is where each vector is added (see
    :mod:`actadd.steer`): ``"front"``, ActAdd's, puts a ``[k, d_model]`` vector on each prompt's
    first ``k`` tokens in the prompt pass only; ``"all"`` adds a ``[d_model]`` direction at every
    prompt position after the start token and at every decoded token. ``chat=True`` formats each
    prompt as a user turn of the tokenizer's chat template, with the assistant's generation
    prompt after it; a front vector's row ``j >= 1`` then lands on the content's ``j``-th token.
    A prompt shorter than a vector is an error unless ``pad_prompts``, which inserts space
    tokens after the start token (before a chat prompt's content), as the original code.
    ``logits_processors`` run on each step's logits before the sampler (e.g. a decoding-time
    baseline such as ``actadd.studies.harness.baselines.PrefixContrast``), so the same seeded draws apply.
    ``freq_penalty_counts`` is ``"completion"`` (OpenAI's rule) or ``"prompt_and_completion"``
    (the original ActAdd code's, which also counted the prompt and start token). A completion
    stops at the model's end token or its document separator (``ModelInfo.stop_token_ids``).
    """
    prompts = strings(prompts, "prompts")
    max_new_tokens = integer(max_new_tokens, "max_new_tokens", minimum=1)
    real(top_p, "top_p", minimum=0, maximum=1, open_minimum=True)
    real(temperature, "temperature (0 is greedy)", minimum=0)
    real(freq_penalty, "freq_penalty")
    if freq_penalty_counts not in ("completion", "prompt_and_completion"):
        raise ValueError(
            f"freq_penalty_counts must be 'completion' (OpenAI's rule) or 'prompt_and_completion' (the original "
            f"ActAdd code's), got {freq_penalty_counts!r}"
        )
    integer(batch_size, "batch_size", minimum=1)
    if isinstance(seed, int) or is_int(seed):
        seeds = row_seeds(int(seed), len(prompts))  # type: ignore[arg-type]
    elif isinstance(seed, Sequence) and all(is_int(s) for s in seed):
        seeds = [int(s) for s in seed]
    else:
        raise ValueError(f"seed must be an int or one int per prompt, got {seed!r}")
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts: give one seed per prompt or an int")

    info = model_info(model)
    rows = row_steerings(len(prompts), vectors, row_vectors)
    encoded = [encode_prompt(model, p, chat=chat) for p in prompts]
    if pad_prompts:
        encoded = [pad_to_vectors(e, s, info.space_token_id) for e, s in zip(encoded, rows)]
    check_context([e.ids for e in encoded], info, max_new_tokens)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,  # RowSampler has already drawn; greedy picks its draw
        num_beams=1,
        pad_token_id=info.pad_token_id,
        eos_token_id=list(info.stop_token_ids) or None,
    )
    completions: list[str] = []
    for lo in tqdm(range(0, len(encoded), batch_size), desc="generate", disable=not progress, leave=False):
        batch, batch_rows = encoded[lo : lo + batch_size], rows[lo : lo + batch_size]
        input_ids, mask, starts = left_pad([e.ids for e in batch], info.pad_token_id, input_device(model))
        spans = [(e.first, e.end) for e in batch]
        device, dtype = input_device(model), model.dtype
        added = additions(batch_rows, mask, info, positions, spans=spans, device=device, dtype=dtype)
        sampler = RowSampler(
            input_ids.shape[1],
            seeds[lo : lo + batch_size],
            temperature=temperature,
            top_p=top_p,
            freq_penalty=freq_penalty,
            prompt_starts=starts if freq_penalty_counts == "prompt_and_completion" else None,
        )
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        kwargs = dict(
            generation_config=config,
            logits_processor=LogitsProcessorList([*logits_processors, sampler]),
            remote=info.remote,
        )
        if positions != "all":
            with torch.no_grad(), model.generate(inputs, **kwargs) as tracer:
                add(model, added)  # the body runs on the prompt pass only
                output = tracer.result.save()
        else:
            # Each decode step computes one new token, real in every row: the step mask's new column.
            step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_added = additions(batch_rows, step_mask, info, "all", width=1, device=device, dtype=dtype)
            with warnings.catch_warnings():
                # A batch that stops early leaves the step loop asking for a step that never
                # comes; nnsight warns so by design, and the result is read in its own invoke.
                warnings.filterwarnings("ignore", message=".*was never reached", category=UserWarning)
                with torch.no_grad(), model.generate(**kwargs) as tracer:
                    with tracer.invoke(inputs):
                        for step in tracer.iter[:max_new_tokens]:
                            add(model, added if step == 0 else step_added)
                    with tracer.invoke():
                        output = tracer.result.save()
        new_tokens = output[:, input_ids.shape[1] :]
        completions += model.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return completions


def generate_sweep(
    model: TransformersModel,
    prompt: str,
    settings: Sequence[Steerable | None],
    n_samples: int,
    *,
    seed: int = 0,
    stream: int = 0,
    batch_size: int = 64,
    **sampling: Any,
) -> list[list[str]]:
    """``n_samples`` completions of ``prompt`` under each setting (None: unsteered), as large batches.

    Rows of every setting get the seeds ``row_seeds(seed, n_samples, stream=stream)``, so each
    setting's completions equal ``generate(model, [prompt] * n_samples, setting, seed=seed)``
    (for stream 0) while the whole sweep, baseline included, shares batches. Choose a setting
    on one ``stream`` and report it on another: they share no seed. Returns one list per setting.
    """
    n_samples = integer(n_samples, "n_samples", minimum=1)
    if not settings:
        raise ValueError("settings is empty: give at least one steering (or None for unsteered)")
    rows = [s for s in settings for _ in range(n_samples)]
    texts = generate(
        model,
        [prompt] * len(rows),
        row_vectors=rows,
        seed=row_seeds(seed, n_samples, stream=stream) * len(settings),
        batch_size=batch_size,
        **sampling,
    )
    return [texts[i * n_samples : (i + 1) * n_samples] for i in range(len(settings))]


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
            logits = forward_logits(
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
