"""How near a code path runs to this CPU's limit, measured in the same run: the rate of a matrix
multiply at the path's own shape, as tokens per second at 2 x parameters FLOP per token, and the
path's peak resident memory.

A transformer's decode step and scoring pass are matrix multiplies of ``rows x d_model`` by
``d_model x d_ff`` and the like, so the rate of one such multiply on this CPU (in the model's
dtype, with as many rows as the path feeds the model at once) bounds what the path can reach:
``limit = rate / (2 x parameters)`` tokens/s. A path's share of it is what its other work
(attention, element-wise operations, sampling, Python) costs. Each share is a ratio of two
timings interleaved in one run (see :func:`.overhead.time_interleaved`), so a busy machine slows
both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from actadd.checks import integer
from actadd.studies.evaluation.overhead import summarize, time_interleaved

__all__ = ["MatmulShape", "Throughput", "matmul_call", "peak_memory", "shares_of_limit", "token_limit"]


@dataclass(frozen=True)
class MatmulShape:
    """``rows x inner`` times ``inner x cols`` in ``dtype``."""

    rows: int
    inner: int
    cols: int
    dtype: torch.dtype = torch.bfloat16

    @property
    def flop(self) -> int:
        return 2 * self.rows * self.inner * self.cols


@dataclass(frozen=True)
class Throughput:
    """A timed code path: ``run()`` handles ``tokens`` tokens, feeding the model ``shape``'s rows at once."""

    run: Callable[[], object]
    tokens: int
    shape: MatmulShape


def matmul_call(shape: MatmulShape, *, seconds: float = 0.1) -> tuple[Callable[[], None], int]:
    """A call that multiplies at ``shape`` for about ``seconds`` (measured once here), and the FLOP it does."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(shape.rows, shape.inner, generator=generator).to(shape.dtype)
    b = torch.randn(shape.cols, shape.inner, generator=generator).to(shape.dtype)
    F.linear(a, b)  # oneDNN prepares its kernel on the first call
    start = time.perf_counter()
    F.linear(a, b)
    repeats = max(1, round(seconds / max(time.perf_counter() - start, 1e-6)))

    def call() -> None:
        for _ in range(repeats):
            F.linear(a, b)

    return call, repeats * shape.flop


def token_limit(flop_per_s: float | np.ndarray, n_parameters: int) -> np.ndarray:
    """Tokens/s at ``flop_per_s`` when a token costs 2 x ``n_parameters`` FLOP (a multiply and an add per weight)."""
    integer(n_parameters, "n_parameters", minimum=1)
    return np.asarray(flop_per_s, dtype=float) / (2 * n_parameters)


_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def peak_memory(fn: Callable[[], object]) -> tuple[float, float] | None:
    """``fn()``'s peak resident memory and how far it rose above the resident memory before it,
    in MiB; None where the kernel cannot reset the peak (Linux's ``/proc/self/clear_refs``)."""
    try:
        _CLEAR_REFS.write_text("5")  # resets the peak (VmHWM) to the current resident size
    except OSError:
        return None
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    return peak / 1024, (peak - before) / 1024


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"{_STATUS} has no {field} line")


def shares_of_limit(
    paths: Mapping[str, Throughput], n_parameters: int, *, repeats: int, seconds: float = 0.1
) -> dict[str, dict]:
    """Each path's tokens/s, the limit at its shape (:func:`token_limit` of the matmul rate), and
    its share of the limit, paired per repeat; every path and its matmul interleaved. Per path:
    summaries (:func:`.overhead.summarize`) ``tokens_per_s``, ``limit_tokens_per_s``, ``share``
    and ``matmul_gflop_per_s``, and the peak memory of its warm-up call (MiB, None where not measured)."""
    integer(repeats, "repeats", minimum=1)
    calls: dict[str, Callable[[], object]] = {}
    flop, memory = {}, {}
    for name, path in paths.items():
        memory[name] = peak_memory(path.run)  # the warm-up call
        calls[name] = path.run
        calls[f"{name} matmul"], flop[name] = matmul_call(path.shape, seconds=seconds)
    times = time_interleaved(calls, repeats, warmup=0)
    out = {}
    for name, path in paths.items():
        tokens_per_s = path.tokens / np.asarray(times[name])
        rate = flop[name] / np.asarray(times[f"{name} matmul"])
        limit = token_limit(rate, n_parameters)
        peak = memory[name]
        out[name] = {
            "tokens": path.tokens,
            "matmul": f"{path.shape.rows}x{path.shape.inner}x{path.shape.cols} {str(path.shape.dtype).removeprefix('torch.')}",
            "tokens_per_s": summarize(tokens_per_s),
            "limit_tokens_per_s": summarize(limit),
            "share": summarize(tokens_per_s / limit),
            "matmul_gflop_per_s": summarize(rate / 1e9),
            "peak_mib": None if peak is None else round(peak[0], 1),
            "peak_rise_mib": None if peak is None else round(peak[1], 1),
        }
    return out
