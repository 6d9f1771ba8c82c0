"""What a measurement was taken on: CPU model, ISA flags, cores and engine versions.

Shared by attn-bench's reports, the GEMM-ceiling cache and ``engine="auto"``'s cache key, so each names the
machine the same way.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any

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
        from runtimes.engines import bf16_probe
        from runtimes.engines.openvino_rt import cpu_capabilities

        info["openvino_cpu_capabilities"] = list(cpu_capabilities())
        if "BF16" in info["openvino_cpu_capabilities"]:  # the ceiling any model's BF16 speed-up has here
            info["openvino_bf16_gemm"] = bf16_probe.measured()
    return info


def machine_summary(info: dict[str, Any]) -> str:
    """One line for a table's caption or a log: CPU model, cores and ISA flags from ``machine_info()``."""
    isa = " ".join(info["isa"]) or f"(none of {' '.join(ISA_FLAGS)})"
    return f"{info['cpu']}, {info['cores']} cores, ISA {isa}"
