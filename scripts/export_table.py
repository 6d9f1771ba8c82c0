"""Print the docs' export tables (markdown) from the manifests of `attn-export all --fp16` (see
scripts/bench_export.sh): FP32 parity per model, then what FP16 kept in FP32 and why, under a machine line.
Usage: python scripts/export_table.py OUT_DIR"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from runtimes.machine import machine_info, machine_summary


def stage_seconds(timings: dict[str, float], *prefixes: str) -> float:
    return sum(v for k, v in timings.items() if k.startswith(prefixes))


def main(out: Path) -> None:
    manifests = [json.loads(p.read_text()) for p in sorted(out.glob("*/manifest.json"))]
    machine, versions = machine_info(), manifests[0]["versions"]
    print(f"Machine: {machine_summary(machine)}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu"))
          + "\n")
    print("| model | status | ONNX nodes (slim) | ONNX MB | export s | parity s | worst rel | min cosine | top-1 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for m in manifests:
        worst = m["parity"]["onnx"]["worst"]
        size = m["files"][m["artifacts"]["onnx"]]["size"] / 1e6
        t = m["timings"]
        print(f"| {m['model']} | {m['status']} | {m['simplify']['nodes_before']}→{m['simplify']['nodes_after']} | "
              f"{size:.0f} | {stage_seconds(t, 'check model', 'torch.export', 'onnx export', 'simplify'):.1f} | "
              f"{stage_seconds(t, 'parity vs onnxruntime'):.1f} | {worst['max_rel']:.1e} | "
              f"{worst['min_cosine']:.7f} | {100 * worst['min_top1']:.0f} % |")
    print("\n| model | FP16 nodes | FP32 nodes | widening step | worst rel | min cosine | top-1 | why FP32 |")
    print("|---|---:|---:|---|---:|---:|---:|---|")
    for m in manifests:
        f, worst = m["fp16"], m["parity"]["onnx_fp16"]["worst"]
        why = ", ".join(f["fp32_reasons"]) or "–"
        print(f"| {m['model']} | {f['fp16_nodes']} | {f['fp32_nodes']} | {f['step']} | {worst['max_rel']:.1e} | "
              f"{worst['min_cosine']:.5f} | {100 * worst['min_top1']:.0f} % | {why} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
