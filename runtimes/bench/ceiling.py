"""The speed limit attn-bench holds a model against: the GFLOP/s of the better of two large square GEMMs on the same
engine, precision and thread count, measured on this machine, then cached (``user_cache``, keyed by CPU, ISA flags, engine version,
precision and threads).

The GEMMs are the tiny files in ``runtimes/bench/gemm_models`` (both operands are inputs, so no weights ship), opened
with ``runtimes.load`` like any artifact: FP32 and FP16 MatMul, and an INT8 Q/DQ MatMul that onnxruntime and
OpenVINO run as an integer GEMM; OpenVINO's BF16 is the FP32 file compiled with the BF16 hint; torch times
``torch.matmul``. A model's ``% of ceiling`` is its achieved GFLOP/s over this: near 100 % a model is bound by
the CPU's arithmetic, far below it by memory traffic or per-call overhead. There is no ceiling for ExecuTorch
and TensorRT here (no standalone GEMM file for them); their rows leave it empty.

A theoretical peak (cores x FMA width x clock) is not reported: measuring the clock needs an FMA-throughput
loop in native code, which numpy cannot run; the measured GEMM is the honest, reachable limit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtimes import user_cache
from runtimes.bench.timing import best_seconds
from runtimes.machine import machine_fingerprint

GEMM_SIZES = (2048, 3072)  # the rate depends on the shape (2048: 122, 3072: 147 GFLOP/s on one Zen 4): the better
REPEATS = 6
GEMM_FOLDER = Path(__file__).parent / "gemm_models"
# (engine, precision) → (GEMM file, the precision runtimes.load opens it at)
GEMMS: dict[tuple[str, str], tuple[str, str]] = {
    ("ort", "fp32"): ("matmul_fp32.onnx", "fp32"), ("ort", "fp16"): ("matmul_fp16.onnx", "fp32"),
    ("ort", "int8"): ("matmul_int8.onnx", "fp32"),
    ("openvino", "fp32"): ("matmul_fp32.onnx", "fp32"), ("openvino", "bf16"): ("matmul_fp32.onnx", "bf16"),
    ("openvino", "int8"): ("matmul_int8.onnx", "int8"),
}


def _gemm_call(engine: str, precision: str, threads: int | None, size: int) -> Callable[[], Any] | None:
    rng = np.random.default_rng(0)
    if engine == "torch" and precision == "fp32":
        import torch

        a, b = (torch.from_numpy(rng.standard_normal((size, size)).astype(np.float32)) for _ in range(2))
        return lambda: torch.matmul(a, b)
    if (engine, precision) not in GEMMS:
        return None
    from runtimes import load

    file, opened_at = GEMMS[(engine, precision)]
    runtime = load(GEMM_FOLDER / file, engine=engine, precision=opened_at, **({"threads": threads} if threads else {}))
    dtype = np.float16 if precision == "fp16" else np.float32
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    return lambda: runtime.engine_call({"a": a, "b": b})


def measure(engine: str, precision: str, threads: int | None = None, sizes: tuple[int, ...] = GEMM_SIZES,
            repeats: int = REPEATS) -> dict[str, Any] | None:
    """GFLOP/s of the best square GEMM of ``sizes`` (2·size³ FLOPs, best of ``repeats`` calls each) on ``engine``
    at ``precision``, or ``None`` where there is no GEMM for that pair."""
    best: dict[str, Any] | None = None
    for size in sizes:
        call = _gemm_call(engine, precision, threads, size)
        if call is None:
            return None
        rate = 2 * size**3 / best_seconds(call, repeats) / 1e9
        if best is None or rate > best["gflops_per_s"]:
            best = {"gflops_per_s": round(rate, 1), "gemm": f"{size}x{size}x{size}", "threads": threads}
    return best


def ceiling(engine: str, precision: str, threads: int | None = None, *, remeasure: bool = False
            ) -> dict[str, Any] | None:
    """``measure`` once per machine, engine version, precision and thread count; later calls read the cache
    (``remeasure``: measure again and replace it, for a ceiling that a model's own rate exceeded, i.e. one
    measured while the machine was busy)."""
    key = f"{machine_fingerprint(engine)}|{engine}:{precision}|threads={threads or 'all'}|{GEMM_SIZES}"
    cached = None if remeasure else user_cache.read("ceilings").get(key)
    if cached is not None:
        return cached or None
    measured = measure(engine, precision, threads)
    user_cache.store("ceilings", key, measured or {})
    return measured
