"""Steered sampling and scoring, batched.

Generation left-pads (as decoder-only generation must) and shifts each row's addition by its
padding; scoring right-pads, so every row starts at position 0. Only the prompt pass is
steered: decode steps with the KV cache see one new token each and are left alone, as in the
paper. Sampling draws every row from its own seeded generator, so a row's text depends on its
seed, not on which other rows share its batch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from actadd.core import (
    Alignment,
    Steerable,
    Steering,
    additions,
    apply_additions,
    encode,
    pad_to_vectors,
    row_steerings,
)
from actadd.models import input_device, model_info


def row_seeds(seed: int, n: int) -> list[int]:
    """Independent per-row seeds: row ``r`` gets the same seed whatever ``n`` is."""
    return [int(s.generate_state(1, np.uint64)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


# Top-p keeps a handful of tokens at the studies' top_p = 0.3, so the sampler ranks only the
# top NUCLEUS_WIDTH tokens; a row whose nucleus is wider sends its batch through the full sort.
NUCLEUS_WIDTH = 256


class RowSampler(LogitsProcessor):
    """Temperature, OpenAI frequency penalty and top-p, then one draw per row from its own generator.

    Returns scores that are 0 at the drawn token and -inf elsewhere, so the caller's greedy
    step picks exactly the draw. ``temperature == 0`` is greedy decoding (after the penalty).
    The frequency penalty subtracts ``freq_penalty * count`` from each token's logit, counting
    the token's occurrences in the completion so far (not the prompt), as OpenAI defines it;
    transformers' ``repetition_penalty`` is a different, multiplicative rule.

    Each step draws one uniform ``u`` per row from the row's generator and takes the token at
    which the nucleus's cumulative probability first exceeds ``u`` times the nucleus's mass
    (inverse CDF), so a row consumes one number per step whatever its batch holds.
    """

    def __init__(self, prompt_len: int, seeds: Sequence[int], *, temperature: float, top_p: float, freq_penalty: float):
        self.prompt_len = prompt_len
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.freq_penalty = temperature, top_p, freq_penalty
        self._work: torch.Tensor | None = None  # reused across steps: a fresh [batch, vocab] buffer page-faults

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Each full-vocabulary temporary costs page faults at large batches, so there are few.
        scores = scores.float()
        completion = input_ids[:, self.prompt_len :]
        if self.freq_penalty and completion.shape[1]:
            penalty = torch.full(completion.shape, -float(self.freq_penalty), dtype=scores.dtype, device=scores.device)
            scores = scores.scatter_add(1, completion, penalty)  # -penalty once per occurrence
        if self.temperature == 0:
            choice = scores.argmax(dim=-1)
        else:
            choice = self._sample(scores if self.temperature == 1 else scores / self.temperature)
        return torch.full_like(scores, -math.inf).scatter_(1, choice[:, None], 0.0)

    def _sample(self, scores: torch.Tensor) -> torch.Tensor:
        """One token per row of ``scores`` ``[batch, vocab]``: top-p, then the row's inverse-CDF draw."""
        top = scores.amax(dim=-1, keepdim=True)
        if self._work is None or self._work.shape != scores.shape:
            self._work = torch.empty_like(scores)
        log_norm = top + torch.sub(scores, top, out=self._work).exp_().sum(dim=-1, keepdim=True).log()
        if not log_norm.isfinite().all():
            row = int((~log_norm.isfinite()).nonzero()[0, 0])
            raise ValueError(
                f"row {row}'s logits hold a NaN or no finite value (log-normaliser {log_norm[row].item()}): "
                "the model's output is broken, often by a steering coefficient too large for its dtype"
            )
        order, probs = self._nucleus(scores, log_norm)
        cumulative = probs.cumsum(dim=-1)
        uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        uniform = uniform.to(scores.device)  # the generators live on the CPU
        target = uniform[:, None] * cumulative[:, -1:].double()
        # The first candidate whose cumulative probability exceeds the target; it has p > 0.
        rank = (cumulative.double() <= target).sum(dim=-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
        return rank.squeeze(1) if order is None else order.gather(1, rank).squeeze(1)

    def _nucleus(self, scores: torch.Tensor, log_norm: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Candidate tokens ``[batch, n]`` (None: the whole vocabulary in order) and their
        probabilities ``[batch, n]``, zero outside the top-p nucleus."""
        if self.top_p >= 1:  # the whole distribution: nothing to rank
            return None, (scores - log_norm).exp()
        vocab = scores.shape[-1]
        width = min(NUCLEUS_WIDTH, vocab)
        values, order = scores.topk(width, dim=-1)
        probs = (values - log_norm).exp()
        if width < vocab and (probs.cumsum(dim=-1)[:, -1] < self.top_p).any():
            # A nucleus reaches past the top `width`: rank the rest too. The first `width`
            # candidates stay as they were, so every other row draws exactly as it would alone.
            rest_values, rest_order = scores.scatter(1, order, -math.inf).sort(dim=-1, descending=True)
            order = torch.cat([order, rest_order[:, : vocab - width]], dim=-1)
            probs = torch.cat([probs, (rest_values[:, : vocab - width] - log_norm).exp()], dim=-1)
        # The smallest prefix whose mass reaches top_p (always the top token).
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p
        return order, probs * keep


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
    batch_size: int = 32,
    alignment: Alignment = "front",
    pad_prompts: bool = False,
    progress: bool = True,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> list[str]:
    """Sample a completion (the new text only) for each prompt, steered or not.

    ``vectors`` steers every row; ``row_vectors`` gives one steering (or None) per row, so a
    sweep over layers and coefficients with its unsteered baseline runs as one batched call.
    ``seed`` is an int (row ``r`` gets ``row_seeds(seed, n)[r]``) or one seed per row.
    ``temperature=0`` decodes greedily. A prompt shorter than a vector is an error unless
    ``pad_prompts``, which inserts space tokens after the start token, as the original code.
    ``logits_processors`` run on each step's logits before the sampler (e.g. a decoding-time
    baseline such as ``actadd.baselines.PrefixContrast``), so the same seeded draws apply.
    """
    prompts = _check_prompts(prompts)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not _is_real(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not _is_real(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if not _is_real(freq_penalty):
        raise ValueError(f"freq_penalty must be a finite number, got {freq_penalty!r}")
    _check_batch_size(batch_size)
    seeds = row_seeds(seed, len(prompts)) if isinstance(seed, numbers.Integral) else [int(s) for s in seed]
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts: give one seed per prompt or an int")

    info = model_info(model)
    rows = row_steerings(len(prompts), vectors, row_vectors)
    ids = [encode(model, p) for p in prompts]
    if pad_prompts:
        ids = [pad_to_vectors(x, s, info.space_token_id) for x, s in zip(ids, rows)]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,  # RowSampler has already drawn; greedy picks its draw
        num_beams=1,
        pad_token_id=info.pad_token_id,
        eos_token_id=info.eos_token_id,
    )
    completions: list[str] = []
    for lo in tqdm(range(0, len(ids), batch_size), desc="generate", disable=not progress, leave=False):
        batch_ids, batch_rows = ids[lo : lo + batch_size], rows[lo : lo + batch_size]
        input_ids, mask, starts = _left_pad(batch_ids, info.pad_token_id, input_device(model))
        added = additions(
            batch_rows,
            starts,
            [len(x) for x in batch_ids],
            input_ids.shape[1],
            info,
            alignment,
            device=input_device(model),
            dtype=model.dtype,
        )
        sampler = RowSampler(
            input_ids.shape[1],
            seeds[lo : lo + batch_size],
            temperature=temperature,
            top_p=top_p,
            freq_penalty=freq_penalty,
        )
        with torch.no_grad(), model.generate(
            {"input_ids": input_ids, "attention_mask": mask},
            generation_config=config,
            logits_processor=LogitsProcessorList([*logits_processors, sampler]),
            remote=info.remote,
        ) as tracer:
            apply_additions(model, added)  # the body runs on the prompt pass only
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
    batch_size: int = 64,
    **sampling,
) -> list[list[str]]:
    """``n_samples`` completions of ``prompt`` under each setting (None: unsteered), as large batches.

    Rows of every setting get the seeds ``row_seeds(seed, n_samples)``, so each setting's
    completions equal ``generate(model, [prompt] * n_samples, setting, seed=seed)`` while the
    whole sweep, baseline included, shares batches. Returns one list per setting.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if not settings:
        raise ValueError("settings is empty: give at least one steering (or None for unsteered)")
    rows = [s for s in settings for _ in range(n_samples)]
    texts = generate(
        model,
        [prompt] * len(rows),
        row_vectors=rows,
        seed=row_seeds(seed, n_samples) * len(settings),
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
    alignment: Alignment = "front",
    progress: bool = False,
) -> list[torch.Tensor]:
    """Log-probability of each token of each text, under the steered or unsteered model.

    Each sequence is ``[start token] + context + text``, with the steering placed on the
    whole sequence; returned per text: a 1D float32 tensor ``[n_text_tokens]`` on the CPU,
    the log-prob of each text token given everything before it. Tokenising context and text
    separately keeps the boundary exact.
    """
    texts = _check_prompts(texts, what="texts")
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"got {len(contexts)} contexts for {len(texts)} texts: give one context per text")
    context_ids = [encode(model, c) for c in contexts] if contexts is not None else [encode(model, "")] * len(texts)
    text_ids = [encode(model, t, start=False) for t in texts]
    sequences = [c + t for c, t in zip(context_ids, text_ids)]
    rows = row_steerings(len(texts), vectors, row_vectors)

    scores: list[torch.Tensor] = []
    for lo, logits in _batched_logits(model, sequences, rows, batch_size, alignment, progress):
        for j, logit in enumerate(logits):
            i = lo + j
            first, last = len(context_ids[i]), len(sequences[i])
            targets = torch.tensor(sequences[i][first:last], device=logit.device)
            lp = logit[first - 1 : last - 1].float().log_softmax(dim=-1)
            scores.append(lp.gather(1, targets[:, None]).squeeze(1).cpu())
    return scores


def next_token_logprobs(
    model: TransformersModel,
    prompts: str | Sequence[str],
    vectors: Steerable | None = None,
    *,
    batch_size: int = 16,
    alignment: Alignment = "front",
    progress: bool = False,
) -> torch.Tensor:
    """Log-probabilities of the token after each prompt: ``[n_prompts, vocab]`` on the CPU."""
    prompts = _check_prompts(prompts)
    sequences = [encode(model, p) for p in prompts]
    rows = row_steerings(len(prompts), vectors, None)
    out = []
    for lo, logits in _batched_logits(model, sequences, rows, batch_size, alignment, progress):
        last = torch.tensor([len(s) - 1 for s in sequences[lo : lo + len(logits)]], device=logits.device)
        out.append(logits[torch.arange(len(logits), device=logits.device), last].float().log_softmax(-1).cpu())
    return torch.cat(out)


def forward_logits(
    model: TransformersModel,
    sequences: Sequence[Sequence[int]],
    rows: Sequence[Steering | None],
    alignment: Alignment = "front",
) -> torch.Tensor:
    """One steered forward pass on right-padded token ids: logits ``[batch, max_len, vocab]``."""
    info = model_info(model)
    lengths = [len(s) for s in sequences]
    seq_len = max(lengths)
    input_ids = torch.full((len(sequences), seq_len), info.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    added = additions(
        rows, [0] * len(rows), lengths, seq_len, info, alignment, device=input_device(model), dtype=model.dtype
    )
    device = input_device(model)
    with torch.no_grad(), model.trace(
        {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, remote=info.remote
    ):
        apply_additions(model, added)
        logits = model.output.logits.save()
    return logits


def _batched_logits(model, sequences, rows, batch_size, alignment, progress):
    _check_batch_size(batch_size)
    for lo in tqdm(range(0, len(sequences), batch_size), desc="score", disable=not progress, leave=False):
        yield lo, forward_logits(model, sequences[lo : lo + batch_size], rows[lo : lo + batch_size], alignment)


def _left_pad(sequences: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    seq_len = max(len(s) for s in sequences)
    starts = [seq_len - len(s) for s in sequences]
    input_ids = torch.tensor([[pad_id] * p + s for p, s in zip(starts, sequences)], device=device)
    mask = torch.tensor([[0] * p + [1] * len(s) for p, s in zip(starts, sequences)], device=device)
    return input_ids, mask, starts


def _check_prompts(prompts: str | Sequence[str], what: str = "prompts") -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{what} is empty: give at least one string")
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ValueError(f"{what} must be strings, got {bad[0]!r}")
    return prompts


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _is_real(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, numbers.Real) and math.isfinite(x)
