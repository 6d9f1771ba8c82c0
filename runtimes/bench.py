"""Latency statistics for ``attn-bench``: warm-up excluded, percentiles, throughput.

Every ``Runtime`` call is synchronous (outputs are on the host when it returns),
so wall-clock ``perf_counter`` around a call is the true end-to-end latency on
CPU; on CUDA the interval is additionally bracketed by CUDA events when torch is
present, so asynchronous work cannot escape the timer.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .base import Runtime
from .specs import random_inputs


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
    accuracy: dict[str, Any] | None = None  # runtimes.accuracy on labelled images (attn-bench --data)
    gflops_per_s: float | None = None  # achieved: the manifest's FLOPs per sample x batch / mean latency
    ceiling_gflops_per_s: float | None = None  # runtimes.ceiling: one large GEMM, same engine, precision, threads
    ceiling_pct: float | None = None  # gflops_per_s as % of the ceiling

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def with_achieved(result: BenchResult, flops_per_sample: int | None, ceiling: Mapping[str, Any] | None
                  ) -> BenchResult:
    """``result`` with its achieved GFLOP/s and its % of ``ceiling`` (``runtimes.ceiling``) where both are known."""
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


def bench_runtime(runtime: Runtime, batch: int, *, warmup: int, iters: int | None, seconds: float | None,
                  seed: int = 0) -> BenchResult:
    """Time ``runtime`` on seeded random inputs of ``batch`` rows."""
    arrays = random_inputs(runtime.input_specs, batch, seed=seed)
    lat = time_calls(lambda: runtime(arrays), warmup=warmup, iters=iters, seconds=seconds,
                     cuda=runtime.device == "cuda")
    return summarise(runtime.label, batch, lat, runtime.precision)


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


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def cpu_model_and_flags(cpuinfo: str) -> tuple[str, list[str]]:
    """CPU model name and the ISA flags that decide BF16/INT8 speed, from /proc/cpuinfo text."""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", ""), [f for f in ISA_FLAGS if f in flags]


ENGINE_MODULES = {"ort": "onnxruntime", "openvino": "openvino", "torch": "torch", "trt": "tensorrt",
                  "executorch": "executorch"}


def cpu_identity() -> tuple[str, list[str]]:
    """This machine's CPU model and ISA flags (``cpu_model_and_flags`` of /proc/cpuinfo; elsewhere the
    platform's processor name and no flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_model_and_flags(f.read())
    except OSError:
        return platform.processor(), []


def machine_fingerprint(engine: str) -> str:
    """What a measurement on ``engine`` depends on, as a cache key: CPU model, ISA flags, core count and the
    engine's version."""
    import importlib

    cpu, flags = cpu_identity()
    module = ENGINE_MODULES[engine]
    try:
        version = getattr(sys.modules.get(module) or importlib.import_module(module), "__version__", "?")
    except ImportError:
        version = "missing"
    return f"{cpu}|{' '.join(flags)}|{os.cpu_count()} cores|{module}=={version}"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, ISA flags, engine versions and capabilities."""
    cpu, flags = cpu_identity()
    info: dict[str, Any] = {"cpu": cpu or platform.processor(), "isa": flags, "cores": os.cpu_count(),
                            "platform": platform.platform(), "python": platform.python_version()}
    for module in ("onnxruntime", "openvino", "torch", "tensorrt"):  # the engines this process has loaded
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    if "openvino" in info:
        from . import bf16_probe
        from .openvino_rt import cpu_capabilities

        info["openvino_cpu_capabilities"] = list(cpu_capabilities())
        if "BF16" in info["openvino_cpu_capabilities"]:  # the ceiling any model's BF16 speed-up has here
            info["openvino_bf16_gemm"] = bf16_probe.measured()
    return info


def machine_summary(info: dict[str, Any]) -> str:
    """One line for a table's caption or a log: CPU model, cores and ISA flags from ``machine_info()``."""
    return f"{info['cpu']}, {info['cores']} cores, ISA {' '.join(info['isa']) or '(none of ' + ' '.join(ISA_FLAGS) + ')'}"


def _group(label: str) -> str:
    """``auto→openvino:bf16`` → ``auto``: rows of engine="auto" compare as one engine, whatever each batch chose."""
    return label.split("→")[0]


def speedups(results: list[BenchResult]) -> dict[tuple[str, int], float]:
    """Speed-up of each result against the first engine's result at the same batch (mean latency)."""
    first = _group(results[0].engine) if results else ""
    base = {r.batch: r.mean_ms for r in results if _group(r.engine) == first}
    return {(r.engine, r.batch): base[r.batch] / r.mean_ms for r in results if r.batch in base}


def format_table(results: list[BenchResult]) -> str:
    ups = speedups(results)
    lines = [f"{'engine':<20} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
             f"{'items/s':>9} {'speed-up':>8} {'GFLOP/s':>8} {'% ceil':>6}"]
    for r in results:
        gflops = "-" if r.gflops_per_s is None else f"{r.gflops_per_s:.1f}"
        pct = "-" if r.ceiling_pct is None else f"{r.ceiling_pct:.0f}%"
        lines.append(f"{r.engine:<20} {r.batch:>5} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} {r.p99_ms:>9.2f} "
                     f"{r.mean_ms:>9.2f} {r.throughput:>9.1f} {ups.get((r.engine, r.batch), 1.0):>7.2f}x "
                     f"{gflops:>8} {pct:>6}")
    return "\n".join(lines)


def format_accuracy_table(rows: Sequence[tuple[str, dict[str, Any]]], source: str) -> str:
    """One line per engine: top-1, top-5, agreement with the first engine, images/s."""
    lines = [f"accuracy on {source}", f"{'engine':<14} {'images':>6} {'top-1':>7} {'top-5':>7} {'agree':>7} "
                                      f"{'images/s':>9}"]
    for engine, acc in rows:
        lines.append(f"{engine:<14} {acc['images']:>6} {100 * acc['top1']:>6.2f}% {100 * acc['top5']:>6.2f}% "
                     f"{100 * acc['agreement_top1']:>6.2f}% {acc['images_per_s']:>9.1f}")
    return "\n".join(lines)


def plot_accuracy(points: Sequence[tuple[str, float, float]], path: str, title: str) -> None:
    """PNG of top-1 against p50 latency, one point per engine:precision (``(label, p50 ms, top-1)``)."""
    plt = _pyplot()
    from .fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, latency, top1 in points:
        ax.scatter([latency], [100 * top1], s=40)
        ax.annotate(label, (latency, 100 * top1), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="p50 latency (ms)", ylabel="top-1 (%)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: Sequence[Any], path: str, title: str, x: str = "batch") -> None:
    """PNG of p50 latency and throughput against ``x`` (batch size, or concurrency for a server), one line per
    engine; with achieved GFLOP/s (local rows of a model with counted FLOPs) a third panel beside its ceilings."""
    plt = _pyplot()
    from .fileio import atomic_path

    engines: dict[str, list[Any]] = {}
    for r in results:
        engines.setdefault(r.engine, []).append(r)
    achieved = any(getattr(r, "gflops_per_s", None) for r in results)
    fig, axes = plt.subplots(1, 3 if achieved else 2, figsize=(15 if achieved else 10, 4))
    ax_lat, ax_thr = axes[0], axes[1]
    for engine, rows in engines.items():
        rows = sorted(rows, key=lambda r: getattr(r, x))
        xs = [getattr(r, x) for r in rows]
        ax_lat.plot(xs, [r.p50_ms for r in rows], marker="o", label=engine)
        ax_thr.plot(xs, [r.throughput for r in rows], marker="o", label=engine)
        if achieved and rows[0].gflops_per_s is not None:
            line = axes[2].plot(xs, [r.gflops_per_s for r in rows], marker="o", label=engine)[0]
            if rows[0].ceiling_gflops_per_s:
                axes[2].axhline(rows[0].ceiling_gflops_per_s, color=line.get_color(), linestyle="--", alpha=0.6)
    ax_lat.set(xlabel=x, ylabel="p50 latency (ms)", title="latency")
    ax_thr.set(xlabel=x, ylabel="items / s", title="throughput")
    if achieved:
        axes[2].set(xlabel=x, ylabel="GFLOP/s", title="achieved (dashed: the engine's GEMM ceiling)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
