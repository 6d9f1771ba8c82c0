"""NVIDIA's ``trtexec`` as a cross-check of our TensorRT engines: the command that builds the same
engine (same ONNX, strongly typed, same optimisation profile and workspace), and the throughput it
reports, to compare with ``attn-bench --engine trt`` (scripts/gpu_check.sh). Plain functions: the
command and the parsing are tested on CPU; running it needs a GPU."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping


def _shape(dims: list[int]) -> str:
    return "x".join(str(d) for d in dims)


def trtexec_command(onnx_path: Path, engine_record: Mapping[str, Any], batch: int, workspace_gib: float = 4.0,
                    save_engine: Path | None = None) -> list[str]:
    """argv for trtexec building ``onnx_path`` with the profile of ``engine_record`` (the manifest's
    ``engine`` entry) and timing it with every input at ``batch`` rows."""
    profile: Mapping[str, list[list[int]]] = engine_record["profile"]

    def shapes(index: int | None) -> str:
        parts = []
        for name, (low, opt, high) in profile.items():
            dims = [low, opt, high][index] if index is not None else [batch, *high[1:]]
            parts.append(f"{name}:{_shape(dims)}")
        return ",".join(parts)

    argv = ["trtexec", f"--onnx={onnx_path}", "--stronglyTyped", f"--minShapes={shapes(0)}",
            f"--optShapes={shapes(1)}", f"--maxShapes={shapes(2)}", f"--shapes={shapes(None)}",
            f"--memPoolSize=workspace:{int(workspace_gib * 1024)}M"]
    return argv + ([f"--saveEngine={save_engine}"] if save_engine else [])


def throughput_items_per_s(trtexec_output: str, batch: int) -> float:
    """Items/s from trtexec's "Throughput: N qps" line (one query = one batch of ``batch`` rows)."""
    match = re.search(r"Throughput:\s*([0-9.]+)\s*qps", trtexec_output)
    if not match:
        raise ValueError("no 'Throughput: N qps' line in the trtexec output")
    return float(match.group(1)) * batch
