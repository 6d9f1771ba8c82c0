"""Latency statistics for ``attn-bench``: warm-up excluded, percentiles, throughput.

Every ``Runtime`` call is synchronous (outputs are on the host when it returns),
so wall-clock ``perf_counter`` around a call is the true end-to-end latency on
CPU; on CUDA the interval is additionally bracketed by CUDA events when torch is
present, so asynchronous work cannot escape the timer.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtimes.base import Runtime
from runtimes.specs import random_inputs


@dataclass(frozen=True)
class BenchResult:
    """One engine at one batch size."""

    engine: str  # the label: "ort", "openvino:bf16", ...
    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # items per second, from the mean latency
    precision: str = "fp32"
    accuracy: dict[str, Any] | None = None  # runtimes.bench.accuracy on labelled images (attn-bench --data)
    gflops_per_s: float | None = None  # achieved: the manifest's FLOPs per sample x batch / mean latency
    ceiling_gflops_per_s: float | None = None  # runtimes.bench.ceiling: one large GEMM, same engine, precision, threads
    ceiling_pct: float | None = None  # gflops_per_s as % of the ceiling

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def with_achieved(result: BenchResult, flops_per_sample: int | None, ceiling: Mapping[str, Any] | None
                  ) -> BenchResult:
    """``result`` with its achieved GFLOP/s and its % of ``ceiling`` (``runtimes.bench.ceiling``) where both are
    known."""
    if not flops_per_sample:
        return result
    achieved = flops_per_sample * result.batch / (result.mean_ms / 1e3) / 1e9
    limit = ceiling["gflops_per_s"] if ceiling else None
    return replace(result, gflops_per_s=round(achieved, 2), ceiling_gflops_per_s=limit,
                   ceiling_pct=round(100 * achieved / limit, 1) if limit else None)


def summarise(engine: str, batch: int, latencies_ms: np.ndarray, precision: str = "fp32") -> BenchResult:
    """Percentiles and throughput of per-call latencies (ms)."""
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
    mean = float(latencies_ms.mean())
    return BenchResult(engine, batch, int(latencies_ms.size), float(p50), float(p90), float(p99), mean,
                       batch * 1000.0 / mean, precision)


def time_calls(call: Callable[[], Any], *, warmup: int, iters: int | None, seconds: float | None,
               cuda: bool = False) -> np.ndarray:
    """Latencies (ms) of ``call`` after ``warmup`` untimed calls: ``iters`` calls, or as many as fit
    in ``seconds`` (at least 3)."""
    for _ in range(warmup):
        call()
    events = _cuda_events() if cuda else None
    out: list[float] = []
    deadline = time.perf_counter() + (seconds or 0.0)

    def done() -> bool:
        if iters:
            return len(out) >= iters
        return len(out) >= 3 and time.perf_counter() >= deadline

    while not done():
        start = time.perf_counter()
        if events:
            events[0].record()
        call()
        if events:
            events[1].record()
            events[1].synchronize()
            out.append(max(events[0].elapsed_time(events[1]), (time.perf_counter() - start) * 1e3))
        else:
            out.append((time.perf_counter() - start) * 1e3)
    return np.asarray(out)


def best_seconds(call: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` calls after one untimed call (which allocates and primes the kernels): the least
    disturbed call on a shared machine, what a GEMM ceiling or probe reports."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _cuda_events() -> tuple[Any, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def bench_alternating(runs: Sequence[tuple[Runtime, int]], *, rounds: int, warmup: int, iters: int | None,
                      seconds: float | None, seed: int = 0) -> list[BenchResult]:
    """Time each ``(runtime, batch)`` on seeded random inputs of ``batch`` rows, in ``rounds`` rounds that
    alternate them, each round giving every row its share of ``iters`` or ``seconds``: drift on a noisy machine
    then hits every row alike, as in ``runtimes.auto_select``. One round times each row once, in turn."""
    arrays = [random_inputs(rt.input_specs, batch, seed=seed) for rt, batch in runs]
    samples: list[list[np.ndarray]] = [[] for _ in runs]
    for round_index in range(rounds):
        for index, (rt, _) in enumerate(runs):
            samples[index].append(time_calls(
                lambda rt=rt, x=arrays[index]: rt(x), warmup=warmup if round_index == 0 else 0,
                iters=-(-iters // rounds) if iters else None, seconds=seconds / rounds if seconds else None,
                cuda=rt.device == "cuda"))
    return [summarise(rt.label, batch, np.concatenate(lat), rt.precision) for (rt, batch), lat in zip(runs, samples)]


def overhead(runtime: Runtime, batch: int, *, rounds: int, iters: int, seed: int = 0) -> dict[str, float]:
    """``Runtime.__call__`` vs the backend's bare engine call (``Runtime.engine_call``: for ort,
    ``InferenceSession.run``) on the same inputs.

    Rounds alternate the two so drift on a noisy machine hits both alike; the
    overhead is the ratio of the medians of all calls.
    """
    arrays = random_inputs(runtime.input_specs, batch, seed=seed)
    wrapped, bare = [], []
    for _ in range(rounds):
        wrapped.append(time_calls(lambda: runtime(arrays), warmup=1, iters=iters, seconds=None))
        bare.append(time_calls(lambda: runtime.engine_call(arrays), warmup=1, iters=iters, seconds=None))
    w, b = float(np.median(np.concatenate(wrapped))), float(np.median(np.concatenate(bare)))
    return {"batch": batch, "wrapped_p50_ms": w, "bare_p50_ms": b, "overhead_pct": 100.0 * (w / b - 1.0)}
