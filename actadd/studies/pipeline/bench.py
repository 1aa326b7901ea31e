"""``python -m actadd bench``: the overhead measurements of :mod:`actadd.studies.evaluation.overhead`
at each thread count asked for, a printed table and one JSON record per thread count."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actadd import model_info, set_threads
from actadd.io import save_json
from actadd.studies.evaluation.overhead import (
    GENERATION_PROMPTS,
    Sampling,
    generation_cost,
    load_bench_model,
    premium_table,
    summarize,
    sweep_cost,
)
from actadd.studies.lifecycle.study import versions


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
    table, _ = premium_table(
        config.forward_models,
        seq_len=config.seq_len,
        seeds=config.seeds,
        batches={config.batch: (config.forward_models, config.passes)},
        vector_repeats=config.vector_repeats,
    )
    forward = table.to_dict("records")
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
        "generation": generation,
        "targets": targets(forward, generation),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "versions": versions(),
    }
    path = out / f"bench-{config.threads}-threads.json"
    save_json(record, path)
    record["path"] = str(path)
    return record


def targets(forward: list[dict], generation: dict) -> dict[str, bool]:
    """The package's performance targets, judged on the medians: ActAdd's forward pass within
    1% of the plain model's, the vector at most 1.2x one forward of its pair, steered generation
    at least 0.97x the model's own, and a layer sweep as one batch at least 1.7x faster."""
    return {
        "forward_premium_within_1pct": all(abs(f["premium"]) <= 0.01 for f in forward),
        "vector_at_most_1.2x_pair_forward": all(f["vector_over_pair_forward"] <= 1.2 for f in forward),
        "steered_generation_at_least_0.97x": generation["steered_vs_hf_throughput"]["median"] >= 0.97,
        "sweep_at_least_1.7x": generation["sweep_speedup"]["median"] >= 1.7,
    }


def format_table(record: dict) -> str:
    """The short table ``python -m actadd bench`` prints."""

    def ci(s: dict, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        return f"{fmt.format(s['median'] * scale)} [{fmt.format(s['low'] * scale)}, {fmt.format(s['high'] * scale)}]"

    def row_ci(row: dict, name: str, low: str, high: str, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        return ci({"median": row[name], "low": row[low], "high": row[high]}, scale, fmt)

    lines = [f"threads: {record['threads']}   (median [95% bootstrap interval] across repeats)", ""]
    lines.append(
        f"{'model':<14}{'params':>8}  {'forward premium %':<26}{'extra ms / pass':<18}{'nnsight / hook':<24}"
        f"{'vector / pair fwd':<22}"
    )
    for f in record["forward"]:
        lines.append(
            f"{f['model']:<14}{f['parameters'] / 1e6:>7.0f}M  "
            f"{row_ci(f, 'premium', 'premium_low', 'premium_high', 100, '{:+.2f}'):<26}{f['extra_ms']:<+18.2f}"
            f"{row_ci(f, 'nnsight_over_hook', 'nnsight_over_hook_low', 'nnsight_over_hook_high'):<24}"
            f"{row_ci(f, 'vector_over_pair_forward', 'vector_low', 'vector_high'):<22}"
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
