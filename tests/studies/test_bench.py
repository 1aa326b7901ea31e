"""The benchmark harness: premium arithmetic, interleaving, the JSON record; smoke runs (no timed assertions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import actadd
from actadd.studies.evaluation import limits, overhead
from actadd.studies.pipeline import bench
from actadd.studies.pipeline.cli import main as cli
from actadd.studies.pipeline.cli import thread_counts


@pytest.fixture
def threads_restored():
    """The bench sets torch's thread count for the whole process; put it back after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_premium_is_ratio_minus_one():
    assert overhead.premium(1.05, 1.0) == pytest.approx(0.05)
    np.testing.assert_allclose(overhead.premium([2.0, 3.0, 0.9], [2.0, 2.0, 1.0]), [0.0, 0.5, -0.1])


def test_interleaved_order_alternates_direction():
    assert overhead.interleaved_order(["base", "actadd", "hook"], 3) == [
        ["base", "actadd", "hook"],
        ["hook", "actadd", "base"],
        ["base", "actadd", "hook"],
    ]


def test_time_interleaved_runs_warmup_then_interleaved_repeats():
    calls = []
    paths = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = overhead.time_interleaved(paths, 3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_time_interleaved_refuses_bad_repeats(bad):
    with pytest.raises(ValueError, match="repeats"):
        overhead.time_interleaved({"a": lambda: None}, bad)


def test_summarize_gives_median_inside_its_interval():
    s = overhead.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["n"] == 5
    assert s["low"] <= s["median"] <= s["high"]


def test_random_gpt2_shape_has_the_published_size_and_tied_embeddings():
    model = overhead.load_bench_model("gpt2-tiny")
    hf = model._module
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    assert len(hf.transformer.h) == overhead.GPT2_SHAPES["gpt2-tiny"][0]
    assert model.tokenizer.bos_token == "<|endoftext|>" and len(model.tokenizer) == 50257


def test_timed_paths_compute_the_same_logits():
    """The bench's own hook path and its nnsight path give the same logits, and differ from the
    unsteered base; a hook path that did not steer would be refused before any timing."""
    model = overhead.load_bench_model("gpt2-tiny")
    vector = actadd.steering_vector(model, *overhead.TIMING_PAIR, layer=1, coeff=4.0)
    ids = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))
    paths = overhead.forward_paths(model, vector, ids)
    steered, hooked, base = paths["actadd"](), paths["hook"](), paths["base"]()
    torch.testing.assert_close(steered, hooked, rtol=0, atol=1e-5)
    assert (steered - base).abs().max() > 1e-3
    assert overhead.check_paths_agree(paths) <= 1e-5
    for unsteered in ("hook", "actadd"):  # either path failing to steer is refused
        with pytest.raises(ValueError, match="disagree"):
            overhead.check_paths_agree({**paths, unsteered: paths["base"]})
    times = overhead.forward_premium(model, batch=2, seq_len=12, passes=1, seeds=[0], warmup=0)
    assert {k: len(v) for k, v in times.items()} == {"base": 1, "actadd": 1, "hook": 1}
    with pytest.raises(ValueError, match="seq_len 3"):
        overhead.forward_premium(model, batch=1, seq_len=3, passes=1, seeds=[0])


def test_forward_premium_refuses_to_time_paths_that_disagree(gpt2_random, monkeypatch):
    def unsteered_hook(model, vector, ids):
        paths = forward_paths(model, vector, ids)
        return {**paths, "hook": paths["base"]}

    forward_paths, timed = overhead.forward_paths, []
    monkeypatch.setattr(overhead, "forward_paths", unsteered_hook)
    monkeypatch.setattr(overhead, "time_interleaved", lambda *args, **kwargs: timed.append(args))
    with pytest.raises(ValueError, match="disagree"):
        overhead.forward_premium(gpt2_random, batch=1, seq_len=8, passes=1, seeds=[0])
    assert timed == []


FORWARD_ROW = {
    "model": "gpt2-tiny", "batch": 2, "parameters": 5e6, "extra_ms": 0.1, "premium": 0.005, "premium_low": -0.01,
    "premium_high": 0.02, "nnsight_over_hook": 1.01, "nnsight_over_hook_low": 0.99, "nnsight_over_hook_high": 1.03,
    "vector_over_pair_forward": 1.1, "vector_low": 1.0, "vector_high": 1.3,
}  # fmt: skip
# Timed seconds per repeat: HF's generate, the package's steered generate, one prompt at a time.
GENERATION_TIMES = {"hf": [1.0, 1.9, 3.0], "actadd": [2.0, 2.0, 2.5], "one_at_a_time": [4.0, 6.0, 7.5]}
SWEEP_TIMES = {"one_setting_at_a_time": [3.4, 3.6, 4.5], "per_row": [2.0, 2.0, 2.5]}


def test_run_bench_computes_each_ratio_from_the_timed_paths(gpt2_random, tmp_path, monkeypatch, threads_restored):
    calls = {}
    monkeypatch.setattr(bench, "premium_table", lambda models, **kwargs: (pd.DataFrame([FORWARD_ROW]), {}))
    monkeypatch.setattr(bench, "load_bench_model", lambda name, **kwargs: gpt2_random)
    monkeypatch.setattr(bench, "generation_cost", lambda model, prompts, **kwargs: GENERATION_TIMES)

    def sweep_cost(model, *, layers, **kwargs):
        calls["layers"] = layers
        return SWEEP_TIMES

    monkeypatch.setattr(bench, "sweep_cost", sweep_cost)
    config = bench.BenchConfig(**{**bench.BenchConfig.quick().__dict__, "threads": 1, "sweep_layers": (1, 3, 9)})
    record = bench.run_bench(config, tmp_path)
    assert record["threads"] == torch.get_num_threads() == 1
    g = record["generation"]
    # hf / actadd times: the steered throughput over HF's; one at a time / batched: the batching's gain.
    assert g["steered_vs_hf_throughput"]["median"] == pytest.approx(0.95)  # of 0.5, 0.95, 1.2
    assert g["batched_vs_one_at_a_time"]["median"] == pytest.approx(3.0)  # of 2, 3, 3
    assert g["sweep_speedup"]["median"] == pytest.approx(1.8)  # of 1.7, 1.8, 1.8
    n_tokens = config.n_prompts * config.max_new_tokens
    assert g["tokens_per_s"]["hf"]["median"] == pytest.approx(n_tokens / 1.9)
    assert calls["layers"] == [1, 3] and g["sweep_settings"] == 3  # the random GPT-2 has 4 layers; and the baseline
    assert record["targets"] == {
        "forward_premium_within_1pct": True,
        "vector_at_most_1.2x_pair_forward": True,
        "steered_generation_at_least_0.97x": False,
        "sweep_at_least_1.7x": True,
    }
    written = json.loads((tmp_path / "bench-1-threads.json").read_text())
    assert written == json.loads(json.dumps({k: v for k, v in record.items() if k != "path"}))
    table = bench.format_table(record)
    assert "gpt2-tiny" in table and "+0.50 [-1.00, +2.00]" in table  # the premium in percent, with its interval
    assert "steered_generation_at_least_0.97x MISSED" in table and "sweep_at_least_1.7x ok" in table


@pytest.mark.parametrize(
    "change, target, met",
    [
        ({"premium": 0.01}, "forward_premium_within_1pct", True),
        ({"premium": -0.01}, "forward_premium_within_1pct", True),
        ({"premium": 0.0101}, "forward_premium_within_1pct", False),
        ({"premium": -0.0101}, "forward_premium_within_1pct", False),
        ({"vector_over_pair_forward": 1.2}, "vector_at_most_1.2x_pair_forward", True),
        ({"vector_over_pair_forward": 1.21}, "vector_at_most_1.2x_pair_forward", False),
        ({"steered": 0.97}, "steered_generation_at_least_0.97x", True),
        ({"steered": 0.969}, "steered_generation_at_least_0.97x", False),
        ({"sweep": 1.7}, "sweep_at_least_1.7x", True),
        ({"sweep": 1.69}, "sweep_at_least_1.7x", False),
    ],
)
def test_each_target_reads_its_own_median_at_its_edge(change, target, met):
    # Two models, one of them changed: a forward target holds only if it holds for every model.
    met_by_all = {**FORWARD_ROW, "premium": 0.0, "vector_over_pair_forward": 1.0}
    changed = {**met_by_all, **{k: v for k, v in change.items() if k in FORWARD_ROW}}
    summary = {"low": 0.0, "high": 9.0, "n": 3}
    generation = {"steered_vs_hf_throughput": {**summary, "median": change.get("steered", 1.0)},
                  "sweep_speedup": {**summary, "median": change.get("sweep", 2.0)}}  # fmt: skip
    targets = bench.targets([met_by_all, changed], generation)
    assert targets == {name: met if name == target else True for name in targets}


def test_bench_quick_prints_table_and_writes_json_per_thread_count(tmp_path, capsys, threads_restored):
    assert cli(["bench", "--quick", "--threads", "2,1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("threads: 2") < printed.index("threads: 1")
    assert "forward premium" in printed and "gpt2-tiny" in printed
    assert json.loads((tmp_path / "bench-2-threads.json").read_text())["threads"] == 2
    record = json.loads((tmp_path / "bench-1-threads.json").read_text())
    assert record["threads"] == 1
    assert set(record) >= {"config", "forward", "generation", "targets", "wall_time_s", "versions"}
    summary_keys = {"median", "low", "high", "n"}
    (forward,) = record["forward"]  # the quick config times one model at one batch
    assert forward["model"] == "gpt2-tiny" and forward["parameters"] > 0 and forward["batch"] == 2
    # 2 pairs give a median premium no 95% interval (order statistics need 6)
    assert math.isnan(forward["premium_low"]) and math.isnan(forward["premium_high"])
    for name, low, high in [
        ("vector_over_pair_forward", "vector_low", "vector_high"),
        ("nnsight_over_hook", "nnsight_over_hook_low", "nnsight_over_hook_high"),
    ]:
        assert forward[low] <= forward[name] <= forward[high]
    g = record["generation"]
    for key in ("steered_vs_hf_throughput", "batched_vs_one_at_a_time", "sweep_speedup"):
        assert set(g[key]) == summary_keys and g[key]["median"] > 0
    assert set(g["tokens_per_s"]) == {"hf", "actadd", "one_at_a_time"}
    assert record["targets"] == bench.targets(record["forward"], record["generation"])
    # Each path beside the limit at its own shape: generation's matmul has the batch's rows.
    t = record["throughput"]
    assert t["model"] == "gpt2-tiny" and t["dtype"] == "bfloat16" and t["parameters"] == forward["parameters"]
    paths = t["paths"]
    assert list(paths) == ["generate batch 2", "generate batch 4", "score", "forward plain", "forward steered"]
    for batch in (2, 4):
        path = paths[f"generate batch {batch}"]
        assert path["tokens"] == batch * 3 and path["matmul"] == f"{batch}x64x256 bfloat16"
    assert paths["forward plain"]["tokens"] == 2 * 16 and paths["forward plain"]["matmul"] == "32x64x256 bfloat16"
    for path in paths.values():
        for key in ("tokens_per_s", "limit_tokens_per_s", "share"):
            assert 0 < path[key]["low"] <= path[key]["median"] <= path[key]["high"]
    assert "share of limit" in printed and "square 2048^3 bfloat16 matmul" in printed
    # --publish refuses a quick run: the README's figures come from a full one.
    with pytest.raises(ValueError, match="--quick"):
        cli(["bench", "--quick", "--threads", "1", "--out", str(tmp_path), "--publish"])


def test_the_bench_section_is_rendered_from_the_record_and_written_between_its_markers(tmp_path):
    share = {"median": 0.3125, "low": 0.25, "high": 0.5}
    path = {"tokens_per_s": {"median": 1234.4}, "limit_tokens_per_s": {"median": 3950.0}, "share": share,
            "matmul": "128x576x1536 bfloat16", "matmul_gflop_per_s": {"median": 1200.0}, "peak_mib": 2048.0}  # fmt: skip
    record = {
        "threads": 2, "versions": {"torch": "2.13.0"}, "config": {"n_prompts": 8}, "path": "runs/x.json",
        "throughput": {"model": "smollm2-135m", "dtype": "bfloat16", "parameters": 134.5e6,
                       "paths": {"generate batch 128": path, "score": path | {"peak_mib": None}},
                       "forward_premium_of_medians": 0.004, "square_matmul_gflop_per_s": {"median": 1700.0}},
        "generation": {"model": "smollm2-135m", "steered_vs_hf_throughput": {"median": 2.5, "low": 2.4, "high": 2.6},
                       "sweep_speedup": {"median": 3.0, "low": 2.9, "high": 3.1}},
    }  # fmt: skip
    text = bench.bench_section(record)
    assert "| generate batch 128 | 1,234 | 3,950 | 31.2% [25.0%, 50.0%] |" in text
    assert "2.00 GB" in text and "| - |" in text  # the score path has no peak
    assert "2.50x [2.40, 2.60]" in text and "+0.4%" in text and "1,700 GFLOP/s" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\nrest\n")
    bench.publish_bench(record, readme=readme, result=tmp_path / "bench.json")
    assert "old" not in readme.read_text() and text in readme.read_text() and readme.read_text().endswith("rest\n")
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert "path" not in stored and stored["threads"] == 2


def test_the_committed_readme_shows_the_committed_bench():
    from actadd.studies.pipeline.publish import README, section

    assert bench.BENCH_RESULT.is_file(), "no bench is committed: run make bench"
    record = json.loads(bench.BENCH_RESULT.read_text())
    assert section(README.read_text(), "bench").strip() == bench.bench_section(record).strip()


def test_token_limit_is_the_matmul_rate_over_two_flop_per_parameter():
    assert limits.token_limit(2.7e11, 135_000_000) == pytest.approx(1000.0)
    np.testing.assert_allclose(limits.token_limit(np.array([2e9, 4e9]), 1_000_000), [1000.0, 2000.0])
    with pytest.raises(ValueError, match="n_parameters"):
        limits.token_limit(1e9, 0)


def test_a_matmul_call_does_the_flop_it_states(monkeypatch):
    shape = limits.MatmulShape(8, 16, 32)
    call, flop = limits.matmul_call(shape, seconds=0.01)
    done = []
    linear = torch.nn.functional.linear

    def counted(a, b):
        done.append((tuple(a.shape), tuple(b.shape), a.dtype))
        return linear(a, b)

    monkeypatch.setattr(torch.nn.functional, "linear", counted)
    call()
    assert done and set(done) == {((8, 16), (32, 16), torch.bfloat16)}
    assert flop == len(done) * 2 * 8 * 16 * 32 == len(done) * shape.flop


def test_peak_memory_sees_what_a_call_allocates():
    held = limits.peak_memory(lambda: torch.ones(64 * 2**20))  # 256 MiB, written, then freed
    if held is None:
        pytest.skip("this kernel cannot reset the peak resident memory (/proc/self/clear_refs)")
    peak, rise = held
    assert rise >= 200 and peak >= rise
    assert limits.peak_memory(lambda: None)[1] < 32


def test_each_share_pairs_a_paths_timing_with_its_own_matmul(monkeypatch):
    """Tokens/s over the limit at the path's shape, repeat by repeat: 100 tokens in 1 s and 2 s,
    beside a 1,000-FLOP matmul in 0.5 s and 0.25 s, 5 parameters: limits 200 and 400 tokens/s."""
    monkeypatch.setattr(limits, "matmul_call", lambda shape, seconds: (lambda: None, 1000))
    monkeypatch.setattr(
        limits, "time_interleaved", lambda calls, repeats, warmup: {"a": [1.0, 2.0], "a matmul": [0.5, 0.25]}
    )
    path = limits.Throughput(lambda: None, 100, limits.MatmulShape(4, 8, 16))
    a = limits.shares_of_limit({"a": path}, 5, repeats=2)["a"]
    assert a["tokens_per_s"]["median"] == pytest.approx(75.0)
    assert a["limit_tokens_per_s"]["median"] == pytest.approx(300.0)
    assert a["share"]["median"] == pytest.approx((0.5 + 0.125) / 2)
    assert a["matmul"] == "4x8x16 bfloat16" and a["tokens"] == 100


@pytest.mark.parametrize("bad", ["0", "1,x", "", "-2"])
def test_bench_refuses_bad_thread_counts(bad, capsys):
    with pytest.raises(SystemExit):
        cli(["bench", "--quick", "--threads", bad])
    assert f"got {bad!r}" in capsys.readouterr().err


def test_thread_counts_parse_in_order_without_repeats():
    assert thread_counts("2,1,2") == [2, 1]
