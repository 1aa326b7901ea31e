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

The prompt pass runs through nnsight, steered; the decode steps run in this module's own loop
over the transformers model with a KV cache written in place, each step's draw made by
:class:`actadd.sampling.RowSampler` directly (a steered step, with ``"all"``, through nnsight
again). A model on NDIF runs transformers' ``generate`` inside one nnsight request instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from actadd.checks import integer, is_int, real, strings
from actadd.models import check_context, input_device, model_info, transformers_model
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
    batch_size: int = 128,
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
    ``batch_size`` 128: on a 2-core CPU, SmolLM2-135M in bfloat16 generated about 1.7x as many
    tokens a second as at 32 and as many as at 256 (``make bench`` measures it), holding about
    0.3 GB more; a batch's rows share its slowest row's steps.
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
    completions: list[str] = []
    for lo in tqdm(range(0, len(encoded), batch_size), desc="generate", disable=not progress, leave=False):
        batch, batch_rows = encoded[lo : lo + batch_size], rows[lo : lo + batch_size]
        input_ids, mask, starts = left_pad([e.ids for e in batch], info.pad_token_id, input_device(model))
        spans = [(e.first, e.end) for e in batch]
        device, dtype = input_device(model), model.dtype
        added = additions(batch_rows, mask, info, positions, spans=spans, device=device, dtype=dtype)
        # With "all", each decode step computes one new token, real in every row: the step mask's new column.
        step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_added = (
            additions(batch_rows, step_mask, info, "all", width=1, device=device, dtype=dtype)
            if positions == "all"
            else None
        )
        sampler = RowSampler(
            input_ids.shape[1],
            seeds[lo : lo + batch_size],
            temperature=temperature,
            top_p=top_p,
            freq_penalty=freq_penalty,
            prompt_starts=starts if freq_penalty_counts == "prompt_and_completion" else None,
        )
        decode = _decode_remotely if info.remote else _decode
        new_tokens = decode(model, input_ids, mask, added, step_added, logits_processors, sampler, max_new_tokens)
        completions += model.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return completions


def _decode(
    model: TransformersModel,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    added: dict[int, torch.Tensor],
    step_added: dict[int, torch.Tensor] | None,
    processors: Sequence[LogitsProcessor],
    sampler: RowSampler,
    max_new_tokens: int,
) -> torch.Tensor:
    """The new tokens ``[batch, n <= max_new_tokens]`` after the left-padded prompts ``input_ids``
    ``[batch, prompt_len]``, each row padded after its stop token, as transformers' greedy
    ``generate`` makes them: each step's logits go through ``processors``, then ``sampler`` draws.

    The prompt pass runs through nnsight with ``added``; a decode step runs through nnsight with
    ``step_added`` where every step is steered (positions "all"), else as a plain forward of the
    transformers model: it has nothing to add, and nnsight's tracing and HF's ``generate`` cost more
    per step than the sampler. The KV cache is written in place (:func:`_kv_cache`)."""
    info = model_info(model)
    hf_model = transformers_model(model)
    batch, width = input_ids.shape
    device = input_ids.device
    stops = torch.tensor(info.stop_token_ids, dtype=torch.long, device=device)
    # Every column the processors and the sampler will see; padding after a row stops.
    ids = torch.full((batch, width + max_new_tokens), info.pad_token_id, dtype=torch.long, device=device)
    ids[:, :width] = input_ids
    # As transformers' generate: positions count each row's real tokens; an unpadded batch has no mask.
    padded = bool((mask == 0).any())
    full_mask = torch.ones_like(ids)
    full_mask[:, :width] = mask
    position_ids = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    cache = _kv_cache(hf_model, batch, width + max_new_tokens)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    step_ids, length = input_ids, width
    for step in range(max_new_tokens):
        inputs: dict[str, Any] = {"input_ids": step_ids, "position_ids": position_ids}
        traced = step == 0 or step_added is not None
        if padded or traced:  # nnsight gives a trace without one a mask as wide as its input, hiding the cache
            inputs["attention_mask"] = full_mask[:, :length]
        if traced:
            with torch.no_grad(), model.trace(inputs, cache=cache, use_cache=True, logits_to_keep=1):
                add(model, added if step == 0 else step_added)  # type: ignore[arg-type]
                logits = model.output.logits.save()
        else:
            with torch.no_grad():
                logits = hf_model(**inputs, cache=cache, use_cache=True, logits_to_keep=1).logits
        scores = logits[:, -1].to(torch.float32, copy=True)
        seen = ids[:, :length]
        for processor in processors:
            scores = processor(seen, scores)
        tokens = torch.where(unfinished, sampler.draw(seen, scores), info.pad_token_id)
        ids[:, length] = tokens
        length += 1
        unfinished &= ~torch.isin(tokens, stops)
        if not unfinished.any():
            break
        step_ids, position_ids = tokens[:, None], position_ids[:, -1:] + 1
    return ids[:, width:length]


def _decode_remotely(
    model: TransformersModel,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    added: dict[int, torch.Tensor],
    step_added: dict[int, torch.Tensor] | None,
    processors: Sequence[LogitsProcessor],
    sampler: RowSampler,
    max_new_tokens: int,
) -> torch.Tensor:
    """:func:`_decode` for a model that runs elsewhere (NDIF): transformers' ``generate`` inside one
    nnsight request, the sampler as the last logits processor (it has drawn; greedy picks the draw)."""
    info = model_info(model)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=info.pad_token_id,
        eos_token_id=list(info.stop_token_ids) or None,
    )
    logits_processor = LogitsProcessorList([*processors, sampler])
    kwargs = dict(generation_config=config, logits_processor=logits_processor, remote=info.remote)
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    if step_added is None:
        with torch.no_grad(), model.generate(inputs, **kwargs) as tracer:
            add(model, added)  # the body runs on the prompt pass only
            output = tracer.result.save()
    else:
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
    return output[:, input_ids.shape[1] :]


def _kv_cache(hf_model: Any, batch: int, capacity: int) -> DynamicCache:
    """transformers' cache for ``hf_model``, with each layer that attends over the whole sequence
    so far held in one buffer of ``capacity`` positions and written in place: the default
    concatenates every layer's keys and values at every step. A sliding-window layer shorter
    than ``capacity`` is left as transformers makes it."""
    cache = DynamicCache(config=hf_model.config)
    for i, layer in enumerate(cache.layers):
        window = getattr(layer, "sliding_window", None)
        if type(layer) is DynamicLayer or (
            type(layer) is DynamicSlidingWindowLayer and window is not None and capacity <= window
        ):
            cache.layers[i] = _InPlaceLayer(batch, capacity)
    return cache


class _InPlaceLayer(DynamicLayer):
    """One layer's keys and values ``[batch, heads, capacity, head_dim]``, filled from the start;
    ``keys`` and ``values`` are views of the filled part."""

    def __init__(self, batch: int, capacity: int):
        super().__init__()
        self.batch, self.capacity, self.length = batch, capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        heads, key_dim, value_dim = key_states.shape[1], key_states.shape[-1], value_states.shape[-1]
        self._keys = key_states.new_empty(self.batch, heads, self.capacity, key_dim)
        self._values = value_states.new_empty(self.batch, heads, self.capacity, value_dim)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values


def generate_sweep(
    model: TransformersModel,
    prompt: str,
    settings: Sequence[Steerable | None],
    n_samples: int,
    *,
    seed: int = 0,
    stream: int = 0,
    batch_size: int = 128,
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
