"""Does BF16 pay off on this CPU? One OpenVINO GEMM timed at f32 and at BF16, in one run.

OpenVINO lists BF16 among a CPU's capabilities whenever it has AVX512-BF16, but the
instruction does not make every such CPU faster: on Intel without AMX, VDPBF16PS has
no more throughput than FP32 FMAs and the conversions cost extra, while Zen 4 and AMX
CPUs run BF16 GEMMs 2–8× faster. A 1024×1024×1024 MatMul is the cheapest honest
answer (~0.5 s, once per process): ``precision="auto"`` picks BF16 only where it wins,
and attn-bench reports the ratio beside the CPU's ISA flags.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from runtimes.bench.timing import best_seconds
from runtimes.optional import require

GEMM_SIZE = 1024
REPEATS = 12


def _gemm_model(ov: Any, size: int) -> Any:
    from openvino import opset13 as ops

    a = ops.parameter([size, size], np.float32, name="a")
    w = ops.constant(np.random.default_rng(0).standard_normal((size, size)).astype(np.float32))
    return ov.Model([ops.matmul(a, w, False, False)], [a], "bf16_probe")


def gemm_speedup(core: Any, size: int = GEMM_SIZE, repeats: int = REPEATS) -> dict[str, float]:
    """f32 and BF16 seconds per ``size``³ MatMul on OpenVINO's CPU plugin, and f32/BF16 (>1: BF16 faster)."""
    ov = require("openvino", "the BF16 probe", "openvino")
    x = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    seconds = {}
    for hint in ("f32", "bf16"):
        compiled = core.compile_model(_gemm_model(ov, size), "CPU",
                                      {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        seconds[hint] = best_seconds(lambda: request.infer([x]), repeats)
    gflops = {k: 2 * size**3 / v / 1e9 for k, v in seconds.items()}
    return {"size": size, "f32_gflops": round(gflops["f32"], 1), "bf16_gflops": round(gflops["bf16"], 1),
            "bf16_speedup": round(seconds["f32"] / seconds["bf16"], 3)}


@functools.lru_cache(maxsize=1)
def measured() -> dict[str, float]:
    """``gemm_speedup`` on the process's shared OpenVINO core, once per process."""
    from runtimes.engines.openvino_rt import core

    return gemm_speedup(core())
