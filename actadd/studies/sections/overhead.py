"""06 · Inference overhead: the forward-pass premium of the ActAdd path per model size and batch,
the vector's own cost, and steered generation against the model's own ``generate``; every figure
a ratio of two paths timed in one run (:mod:`actadd.studies.evaluation.overhead`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from actadd.studies.evaluation import overhead
from actadd.studies.evaluation.stats import CONFIDENCE, bootstrap_difference, fewest_for_median_ci, median_estimate
from actadd.studies.lifecycle.claims import Claim, below, within
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.presentation.prose import count, render


def claims(p: Mapping[str, Any]) -> list[Claim]:
    batch, seq_len, margin = p["paper_batch"], p["seq_len"], p["premium_margin"]
    smallest, largest = p["sizes"][0], p["sizes"][-1]
    timed = "median of paired t_actadd / t_base - 1; interval from order statistics (sign test) over passes"
    return [
        Claim("06.paper_batch", f"At the paper's batch ({batch} x {seq_len}), the forward premium is small "
              f"({smallest} shape)", "-0.05% to 0.4%", timed, within(-margin, margin), "percent"),
        Claim("06.batch1_largest", f"At batch 1 x {seq_len}, the forward premium is small ({largest} shape)",
              "-0.05% to 0.4%", timed, within(-margin, margin), "percent"),
        Claim("06.falls_with_size", "The premium falls with model size", "falls from GPT-2 small to XL",
              f"median premium of {largest} minus that of {smallest} at batch 1; bootstrap over passes",
              below(0.0), "percent"),
    ]  # fmt: skip


SECTION = Section(
    "06_overhead",
    "Batch 32 x 64 random tokens, GPT-2 small to XL and OPT: the premium t_actadd / t_base - 1 is small (the "
    "original plot spans -0.05% to 0.4%) and falls with model size.",
    claims,
)

FINDINGS = """At {threads}, {n_pairs:int} paired passes per model:

- **Batch 1 x {seq_len:int}.** The median premium ranges from {lo:pct} to {hi:pct} over the models (ratio of mean
  times: {mlo:pct} to {mhi:pct}); on the {largest} shape it is {batch1_largest:pct}: the claim that it is small (within
  {margin:pct}) **{v_batch1_largest:verdict}**. Largest minus smallest: {falls_with_size:pct} (the claim that the
  premium falls with size **{v_falls_with_size:verdict}**). The nnsight path costs {hook_lo:num}x to {hook_hi:num}x a
  plain torch hook doing the same addition: what premium there is is nnsight's fixed cost per forward call, not the
  addition.
- **The paper's batch ({batch:int} x {seq_len:int}).** {paper_text}
- **Steered generation** runs at {gen:num}x the throughput of the model's own unsteered `generate` with the same
  sampler.
- **What differs from the paper.** The GPT-2 models are random-weight shapes timed on a CPU, not trained models on a
  GPU; the XL shape and the paper's 100 passes are left to the paper profile.
"""

PAPER_BATCH_FINDINGS = """On the {name} shape the median of {pairs} is {paper_batch:pct} (ratio of means {means:pct}):
the claim that it is small **{v_paper_batch:verdict}**{why}."""


def forward_premium(study: Study) -> pd.DataFrame:
    """The three forward paths interleaved per model and batch, and the vector's cost; records
    the premium claims. Saved as ``forward_premium.csv``."""
    sizes, seed, n_seeds = study["sizes"], study["seed"], study["n_seeds"]
    with study.timed("timing"):
        table, premiums = overhead.premium_table(
            [*sizes, study["model_name"]], seq_len=study["seq_len"], seeds=[seed + i for i in range(n_seeds)],
            vector_repeats=study["vector_repeats"], seed=seed,
            batches={1: ([*sizes, study["model_name"]], study["passes"]),
                     study["paper_batch"]: (study["paper_batch_sizes"], study["paper_batch_passes"])})  # fmt: skip
    smallest, largest = sizes[0], sizes[-1]
    record_median(study, "06.batch1_largest", premiums[(largest, 1)])
    study.record("06.falls_with_size", bootstrap_difference(premiums[(largest, 1)], premiums[(smallest, 1)], seed=seed))
    if (smallest, study["paper_batch"]) in premiums:
        record_median(study, "06.paper_batch", premiums[(smallest, study["paper_batch"])])
    return study.table(table, "forward_premium")


def record_median(study: Study, claim_id: str, pairs: np.ndarray) -> None:
    """Record the median paired premium with its order-statistics interval; too few pairs for a
    95% interval leave the claim unresolved, and its note says so."""
    estimate = median_estimate(pairs)
    note = ""
    if np.isnan(estimate.low):
        note = (
            f"a median of {count(len(pairs), 'pair')} has no {CONFIDENCE:.0%} interval, which takes at least "
            f"{fewest_for_median_ci()}"
        )
    study.record(claim_id, estimate, note=note)


def premium_figure(study: Study, table: pd.DataFrame) -> None:
    """The premium per model, smallest first (paired median and ratio of means), and the vector's cost."""
    margin = study["premium_margin"]
    table = table.sort_values("parameters", kind="stable")
    table = table.assign(labelled=[f"{m} ({p / 1e6:.0f}M)" for m, p in zip(table.model, table.parameters)])
    fig, axes = plots.panels(2, title=f"What the ActAdd path costs at {count(torch.get_num_threads(), 'CPU thread')}",
                             panel=(6.4, 4.6))  # fmt: skip
    plots.by_setting(axes[0, 0], table, "labelled", "premium", hue="batch",
                     hue_format=f"batch {{}} x {study['seq_len']}", scale=100)  # fmt: skip
    axes[0, 0].scatter(plots.category_positions(table, "labelled", hue="batch"), 100 * table.premium_of_means,
                       marker="x", color="black", s=20, zorder=3, label="ratio of means")  # fmt: skip
    axes[0, 0].axhline(0, color="grey", lw=1)
    axes[0, 0].axhspan(-100 * margin, 100 * margin, color="green", alpha=0.1, label="within the margin")
    axes[0, 0].set(xlabel="model (parameters)", ylabel="forward premium (%)",
                   title="Median paired premium (95% CI, order statistics)")  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    plots.by_setting(axes[0, 1], table.drop_duplicates("model"), "labelled", "vector_over_pair_forward",
                     low="vector_low", high="vector_high")  # fmt: skip
    axes[0, 1].axhline(1.0, color="grey", ls="--", lw=1, label="one forward of the pair")
    axes[0, 1].set(xlabel="model (parameters)", ylabel="vector time / pair forward time",
                   title="Computing the vector vs one forward of the pair (median, 95% CI)")  # fmt: skip
    axes[0, 1].legend(fontsize=8)
    study.figure(fig, "06_overhead_premium")


@dataclass(frozen=True)
class GenerationCost:
    """Steered ``actadd.generate`` against the model's own unsteered ``generate``: the table
    (tokens per second of each, their throughput ratio) and the ratio's summary."""

    table: pd.DataFrame
    ratio: dict[str, float]


def generation_cost(study: Study) -> GenerationCost:
    """Both generation paths on the same prompts, interleaved. Saved as ``generation.csv``."""
    model = overhead.load_bench_model(study["model_name"], seed=study["seed"])
    n_prompts, max_new_tokens = study["n_prompts"], study["max_new_tokens"]
    prompts = [overhead.GENERATION_PROMPTS[i % len(overhead.GENERATION_PROMPTS)] for i in range(n_prompts)]
    with study.timed("timing"):
        times = overhead.generation_cost(model, prompts, sampling=overhead.Sampling(max_new_tokens=max_new_tokens),
                                         repeats=study["gen_repeats"], one_at_a_time=False, seed=study["seed"])  # fmt: skip
    ratio = overhead.summarize(np.divide(times["hf"], times["actadd"]))
    tokens = n_prompts * max_new_tokens
    row = {"model": study["model_name"],
           **{f"{k}_tokens_per_s": float(np.median(tokens / np.asarray(t))) for k, t in times.items()},
           "throughput_ratio": ratio["median"], "ratio_low": ratio["low"], "ratio_high": ratio["high"],
           "n": ratio["n"]}  # fmt: skip
    return GenerationCost(study.table(pd.DataFrame([row]), "generation"), ratio)


def finish(study: Study, table: pd.DataFrame, generation: GenerationCost) -> StudyRecord:
    """The study's record and "What it shows"."""
    record = study.finish({
        "premium_by_model_and_batch": {f"{r.model} batch {r.batch}": round(r.premium, 5) for r in table.itertuples()},
        "nnsight_over_hook_by_model": dict(zip(table.model, table.nnsight_over_hook.round(3))),
        "steered_generation_throughput_ratio": round(generation.ratio["median"], 3),
        "threads": torch.get_num_threads(),
    })  # fmt: skip
    sizes, batch = study["sizes"], study["paper_batch"]
    batch1, paper_rows = table[table.batch == 1], table[table.batch == batch]
    measured = study.measured()
    if "paper_batch" in measured:
        note = study.note("06.paper_batch")
        paper_text = render(PAPER_BATCH_FINDINGS, name=sizes[0], means=float(paper_rows.premium_of_means.iloc[0]),
                            pairs=count(int(paper_rows.n_pairs.iloc[0]), "paired premium"),
                            why=f": {note}" if note else "", **measured)  # fmt: skip
    else:
        paper_text = "Not timed in this profile."
    study.prose(FINDINGS, threads=count(torch.get_num_threads(), "CPU thread"), n_pairs=int(batch1.n_pairs.min()), seq_len=study["seq_len"],
                margin=study["premium_margin"], lo=float(batch1.premium.min()), hi=float(batch1.premium.max()),
                mlo=float(batch1.premium_of_means.min()), mhi=float(batch1.premium_of_means.max()), largest=sizes[-1],
                batch=batch, hook_lo=float(table.nnsight_over_hook.min()), hook_hi=float(table.nnsight_over_hook.max()),
                gen=generation.ratio["median"], paper_text=paper_text, **measured)  # fmt: skip
    return record
