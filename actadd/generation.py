"""Steered sampling, batched.

Generation left-pads (as decoder-only generation must) and shifts each row's addition by its
padding. With ActAdd's
``positions="front"`` (or ``"back"``) only the prompt pass is steered: decode steps with the
KV cache see one new token each and are left alone, as in the paper. With ``"all"`` a
``[d_model]`` direction is added at every prompt position after the start token and at each
decoded token, once. ``chat=True`` formats each prompt with the tokenizer's chat template and
counts ActAdd's front positions from the user's content. Sampling draws every row from its
own seeded generator, so a row's text depends on its seed, not on which other rows share its
batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from actadd.checks import integer, is_int, real, strings
from actadd.models import check_context, input_device, model_info
from actadd.sampling import RowSampler, row_seeds
from actadd.steer import Positions, add, additions, encode_prompt, left_pad, pad_to_vectors, row_steerings
from actadd.vectors import Steerable

__all__ = ["PenaltyCounts", "generate", "generate_sweep"]

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
    pad_prompts: bool | int = False,
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
    A prompt shorter than a vector is an error unless ``pad_prompts``, the original code's pad
    mode: ``True`` inserts ``k - 1`` space tokens after the start token (before a chat prompt's
    content) of every row steered by a ``k``-token ActAdd vector, so that the vector's rows land
    on the spaces, never on the prompt's text; an int ``n`` inserts ``n`` spaces in every row,
    steered or not, so that an unsteered baseline sees the same padded prompt, as the original's
    experiments scored it. The comparison studies (04, 05) pad every method's rows by their
    longest ActAdd vector's ``k - 1``, since their prompts are not written for a pair; 00-03
    steer prompts written for their pairs and do not pad.
    ``logits_processors`` run on each step's logits before the sampler (e.g. a decoding-time
    baseline such as ``actadd.studies.protocol.baselines.PrefixContrast``), so the same seeded draws apply.
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
    if pad_prompts is not False:
        spaces = (
            None
            if pad_prompts is True
            else integer(pad_prompts, "pad_prompts (True, or a number of spaces)", minimum=0)
        )
        encoded = [pad_to_vectors(e, s, info.space_token_id, spaces) for e, s in zip(encoded, rows)]
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
