"""``python -m actadd bench``: the overhead measurements of :mod:`actadd.studies.evaluation.overhead`
and each path's throughput as a share of this CPU's limit (:mod:`actadd.studies.evaluation.limits`),
at each thread count asked for, a printed table and one JSON record per thread count."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import actadd
from actadd import model_info, set_threads, transformers_model
from actadd.io import atomic_write, save_json
from actadd.studies.evaluation.limits import MatmulShape, Throughput, matmul_call, shares_of_limit
from actadd.studies.evaluation.overhead import (
    GENERATION_PROMPTS,
    TIMING_PAIR,
    Sampling,
    generation_cost,
    load_bench_model,
    n_parameters,
    premium_table,
    summarize,
    sweep_cost,
    time_interleaved,
)
from actadd.studies.evaluation.stats import fewest_for_median_ci
from actadd.studies.lifecycle.study import versions
from actadd.studies.pipeline.publish import README, RESULTS, replace_section
from actadd.studies.presentation.formatting import markdown_table

# The committed bench record the README's bench section is rendered from.
BENCH_RESULT = RESULTS / "bench.json"


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
    # Shares of the limit: the studies' model and dtype; steered generation with the paper's
    # sampler at each batch size, scoring texts of about 67 tokens, and one forward pass plain
    # and steered (the premium's two paths) of forward_batch x seq_len tokens.
    throughput_model: str = "smollm2-135m"
    throughput_dtype: str = "bfloat16"
    generation_batches: tuple[int, ...] = (32, 128, 256)
    generation_new_tokens: int = 40
    score_texts: int = 64
    score_words: int = 50
    score_batch: int = 16
    forward_batch: int = 16
    throughput_repeats: int = 3

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
            throughput_model="gpt2-tiny",
            generation_batches=(2, 4),
            generation_new_tokens=3,
            score_texts=4,
            score_words=10,
            score_batch=2,
            forward_batch=2,
            throughput_repeats=2,
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
    throughput = throughput_record(config)
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
        "throughput": throughput,
        "targets": targets(forward, generation),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "versions": versions(),
    }
    path = out / f"bench-{config.threads}-threads.json"
    save_json(record, path)
    record["path"] = str(path)
    return record


# Words the scored texts are made of (an ordinary English passage, cut and rotated per text).
SCORE_WORDS = (
    "the wedding was held in a small stone church near the river and every guest brought flowers from "
    "their own garden while the band played old songs late into the night as children ran between the "
    "tables laughing and the bride danced with her grandfather under strings of paper lanterns"
).split()


def throughput_record(config: BenchConfig) -> dict:
    """Each path's tokens/s beside the limit at its shape (see :func:`.limits.shares_of_limit`),
    the forward premium from the same timings, and a square 2048^3 matmul's rate, in one run."""
    model = load_bench_model(config.throughput_model, dtype=config.throughput_dtype)
    info, hf_config = model_info(model), transformers_model(model).config
    d_ff = getattr(hf_config, "intermediate_size", None) or getattr(hf_config, "n_inner", None) or 4 * info.d_model
    vector = actadd.steering_vector(model, *TIMING_PAIR, layer=info.n_layers // 2)
    dtype = model.dtype
    sampling = dict(Sampling(max_new_tokens=config.generation_new_tokens).generate_kwargs(), seed=0)
    paths: dict[str, Throughput] = {}

    def generation(batch: int) -> Callable[[], object]:
        prompts = [GENERATION_PROMPTS[i % len(GENERATION_PROMPTS)] for i in range(batch)]
        return lambda: actadd.generate(model, prompts, vector, batch_size=batch, **sampling)

    for batch in config.generation_batches:
        paths[f"generate batch {batch}"] = Throughput(
            generation(batch),
            batch * config.generation_new_tokens,  # new tokens, counting each row to the last step
            MatmulShape(batch, info.d_model, d_ff, dtype),
        )
    texts = [
        " " + " ".join(SCORE_WORDS[(i * 7 + j) % len(SCORE_WORDS)] for j in range(config.score_words))
        for i in range(config.score_texts)
    ]
    scored = sum(len(actadd.encode(model, t, start=False)) for t in texts)
    paths["score"] = Throughput(
        lambda: actadd.logprobs(model, texts, vector, batch_size=config.score_batch),
        scored,
        MatmulShape(min(config.score_batch, len(texts)) * scored // len(texts), info.d_model, d_ff, dtype),
    )
    shape = (config.forward_batch, config.seq_len)
    ids = torch.randint(0, len(model.tokenizer), shape, generator=torch.Generator().manual_seed(0))
    ids[:, 0] = info.start_token_id
    sequences = ids.tolist()
    forward_shape = MatmulShape(config.forward_batch * config.seq_len, info.d_model, d_ff, dtype)

    def plain_forward() -> None:
        with torch.no_grad():
            transformers_model(model)(input_ids=ids)

    paths["forward plain"] = Throughput(plain_forward, ids.numel(), forward_shape)
    steered = Throughput(lambda: actadd.forward_logits(model, sequences, vector), ids.numel(), forward_shape)
    paths["forward steered"] = steered
    parameters = n_parameters(model)
    shares = shares_of_limit(paths, parameters, repeats=config.throughput_repeats)
    square_call, square_flop = matmul_call(MatmulShape(2048, 2048, 2048, dtype))
    square = time_interleaved({"square": square_call}, config.throughput_repeats)["square"]
    plain_s, steered_s = (1 / shares[k]["tokens_per_s"]["median"] for k in ("forward plain", "forward steered"))
    return {
        "model": config.throughput_model,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": parameters,
        "paths": shares,
        "forward_premium_of_medians": steered_s / plain_s - 1,
        "square_matmul_gflop_per_s": summarize(square_flop / np.asarray(square) / 1e9),
    }


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

    lines = [f"threads: {record['threads']}   (median [95% interval] across repeats: order statistics for "
             f"the premium, fewer than {fewest_for_median_ci()} pairs giving none; a bootstrap for the rest)", ""]  # fmt: skip
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
        *throughput_lines(record["throughput"]),
        "",
        "targets: " + ", ".join(f"{k} {'ok' if ok else 'MISSED'}" for k, ok in record["targets"].items()),
        f"wall time {record['wall_time_s']:.0f} s; written {record['path']}",
    ]
    return "\n".join(lines)


def throughput_lines(t: dict) -> list[str]:
    """The throughput table: each path beside the limit at its shape, measured in the same run."""
    lines = [
        f"throughput ({t['model']}, {t['dtype']}, {t['parameters'] / 1e6:.0f}M parameters): limit = the {t['dtype']} "
        "matmul rate at the path's shape / (2 x parameters) tokens/s",
        f"  {'path':<22}{'tokens/s':>10}{'limit':>10}  {'share of limit':<24}{'matmul':<26}{'GFLOP/s':>8}"
        f"{'peak MiB':>10}{'rise':>8}",
    ]
    for name, p in t["paths"].items():
        share = p["share"]
        interval = f"{share['median']:.1%} [{share['low']:.1%}, {share['high']:.1%}]"
        peak = "" if p["peak_mib"] is None else f"{p['peak_mib']:>10.0f}{p['peak_rise_mib']:>+8.0f}"
        lines.append(
            f"  {name:<22}{p['tokens_per_s']['median']:>10.0f}{p['limit_tokens_per_s']['median']:>10.0f}  "
            f"{interval:<24}{p['matmul']:<26}{p['matmul_gflop_per_s']['median']:>8.0f}{peak}"
        )
    lines += [
        f"  forward premium (steered / plain - 1, medians): {t['forward_premium_of_medians']:+.1%}",
        f"  square 2048^3 {t['dtype']} matmul: {t['square_matmul_gflop_per_s']['median']:.0f} GFLOP/s",
    ]
    return lines


def bench_section(record: dict) -> str:
    """The README's bench section, rendered from one bench record (the studies' thread count):
    each path of the studies' model beside this CPU's limit at its shape, and the ratios."""
    t, g = record["throughput"], record["generation"]
    rows = []
    for name, p in t["paths"].items():
        share = p["share"]
        rows.append({
            "path": name, "tokens/s": f"{p['tokens_per_s']['median']:,.0f}",
            "limit (tokens/s)": f"{p['limit_tokens_per_s']['median']:,.0f}",
            "share of the limit": f"{share['median']:.1%} [{share['low']:.1%}, {share['high']:.1%}]",
            "matmul at its shape": f"{p['matmul']}: {p['matmul_gflop_per_s']['median']:,.0f} GFLOP/s",
            "peak memory": "-" if p["peak_mib"] is None else f"{p['peak_mib'] / 1024:.2f} GB",
        })  # fmt: skip
    ratio = g["steered_vs_hf_throughput"]
    sweep = g["sweep_speedup"]
    return (
        f"One `make bench` run on this CPU ({record['versions'].get('cpu', 'CPU not recorded')}; {record['threads']} "
        f"threads, torch {record['versions'].get('torch', '?')}; "
        f"{t['model']} in {t['dtype']}, {t['parameters'] / 1e6:.0f}M parameters). The limit at a path's shape is the "
        f"{t['dtype']} matmul rate measured in the same run at its rows x d_model x d_ff, over 2 x parameters FLOP a "
        f"token (a square 2048^3 matmul ran at {t['square_matmul_gflop_per_s']['median']:,.0f} GFLOP/s); medians "
        "with 95% bootstrap intervals across repeats:\n\n"
        + markdown_table(pd.DataFrame(rows))
        + f"\n\nSteered generation runs at {ratio['median']:.2f}x [{ratio['low']:.2f}, {ratio['high']:.2f}] the "
        f"throughput of the model's own `generate` ({g['model']}, batch {record['config']['n_prompts']}); a layer sweep "
        f"as per-row batches at {sweep['median']:.2f}x one setting at a time; the steered forward pass costs "
        f"{t['forward_premium_of_medians']:+.1%} over the plain one.\n"
    )


def publish_bench(record: dict, readme: Path = README, result: Path = BENCH_RESULT) -> Path:
    """Commit a bench record: saved as ``result`` and rendered into the README's bench section."""
    stored = {k: v for k, v in record.items() if k != "path"}
    save_json(stored, result)
    text = replace_section(readme.read_text(), "bench", bench_section(stored))
    return atomic_write(readme, lambda tmp: tmp.write_text(text))


def main(args: argparse.Namespace) -> int:
    """``python -m actadd bench`` (its arguments are defined with the others in the cli module)."""
    config = BenchConfig.quick() if args.quick else BenchConfig()
    out = Path(args.out or Path("runs") / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}")
    # 1 thread gives the stablest timings; torch's default is the count the studies run at.
    record: dict = {}
    for threads in args.threads or dict.fromkeys([1, torch.get_num_threads()]):
        record = run_bench(BenchConfig(**{**config.__dict__, "threads": threads}), out)
        print(format_table(record), end="\n\n")
    if args.publish:
        if args.quick:
            raise ValueError("--publish takes a full bench run, not --quick: drop one of them")
        print(f"published: {publish_bench(record)} (the bench at {record['threads']} threads)")
    return 0
