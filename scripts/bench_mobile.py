"""The README's phone/board formats table: for each artifact folder, the .onnx, .ort, .pte and .int8.pte side
by side — file size, parity from the manifest, and p50 latency as a ratio to onnxruntime FP32, all timed in
one process in alternating rounds (so drift on a noisy machine hits every engine alike), on this CPU.

XNNPACK is built for ARM: on an x86 host the .pte ratios say what this CPU does, not what a phone does.

Usage: python scripts/bench_mobile.py FOLDER... [--batch 1] [--rounds 5] [--iters 4] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import runtimes
from runtimes import manifest as mf
from runtimes.bench.timing import time_calls
from runtimes.machine import machine_info, machine_summary
from runtimes.specs import random_inputs

# (row label, how runtimes opens it, manifest artifact key, parity key)
FORMATS = (
    ("ONNX FP32 (onnxruntime)", {"engine": "ort"}, "onnx", "onnx"),
    (".ort (onnxruntime)", {"engine": "ort", "file": "onnx_ort"}, "onnx_ort", "onnx_ort"),
    (".pte FP32 (ExecuTorch XNNPACK)", {"engine": "executorch", "precision": "fp32"}, "executorch", "executorch"),
    (".int8.pte (ExecuTorch XNNPACK)", {"engine": "executorch", "precision": "int8"}, "executorch_int8",
     "executorch_int8"),
)


def open_format(folder: Path, how: dict[str, str]) -> runtimes.Runtime:
    manifest = mf.read_manifest(folder)
    if "file" in how:  # a file the engine opens directly (the .ort beside the .onnx)
        return runtimes.load(folder / manifest["artifacts"][how["file"]], engine=how["engine"])
    return runtimes.load(folder, engine=how["engine"], precision=how.get("precision"))


def bench_folder(folder: Path, batch: int, rounds: int, iters: int) -> dict[str, Any]:
    manifest = mf.read_manifest(folder)
    present = [f for f in FORMATS if f[2] in manifest["artifacts"]]
    opened = [open_format(folder, how) for _, how, _, _ in present]
    arrays = random_inputs(opened[0].input_specs, batch, seed=0)
    times: list[list[np.ndarray]] = [[] for _ in opened]
    for rt in opened:
        rt(arrays)  # warm-up
    for _ in range(rounds):
        for i, rt in enumerate(opened):
            times[i].append(time_calls(lambda rt=rt: rt(arrays), warmup=0, iters=iters, seconds=None))
    p50 = [float(np.median(np.concatenate(t))) for t in times]
    rows = []
    for (label, _, key, parity_key), ms in zip(present, p50):
        parity = manifest["parity"].get(parity_key, {})
        rows.append({"format": label, "file": manifest["artifacts"][key],
                     "mb": (folder / manifest["artifacts"][key]).stat().st_size / 1e6,
                     "parity_passed": parity.get("passed"), "worst": parity.get("worst"), "p50_ms": ms,
                     "ratio_to_onnx": ms / p50[0]})
    for rt in opened:
        rt.close()
    portable = manifest.get("executorch", {}).get("portable_op_types", {})
    return {"model": manifest["model"], "batch": batch, "rows": rows, "portable_op_types": portable}


def table(reports: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [f"Machine: {machine_summary(machine)}; batch "
             f"{reports[0]['batch']}; p50 ratio = the format's p50 / onnxruntime FP32's, same run", "",
             "| model | format | MB | parity (worst rel / cosine) | p50 ms | × ONNX p50 |", "|---|---|---:|---|---:|---:|"]
    for rep in reports:
        for row in rep["rows"]:
            worst = row["worst"] or {}
            verdict = "pass" if row["parity_passed"] else "fail"
            lines.append(f"| {rep['model']} | {row['format']} | {row['mb']:.1f} | {verdict} "
                         f"({worst.get('max_rel', float('nan')):.1e} / {worst.get('min_cosine', float('nan')):.4f}) | "
                         f"{row['p50_ms']:.1f} | {row['ratio_to_onnx']:.2f} |")
    fallbacks = [f"- {rep['model']}: {rep['portable_op_types']}" for rep in reports if rep["portable_op_types"]]
    if fallbacks:
        lines += ["", "Operators XNNPACK left to ExecuTorch's portable kernels (count per operator):", *fallbacks]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="artifact folders written by attn-export")
    parser.add_argument("--batch", type=int, default=1, help="rows per call (default 1: a camera loop)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds over the formats (default 5)")
    parser.add_argument("--iters", type=int, default=4, help="calls per format per round (default 4)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = parser.parse_args()
    reports = [bench_folder(f, args.batch, args.rounds, args.iters) for f in args.folders]
    machine = machine_info()
    print(table(reports, machine))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "reports": reports}, indent=2))


if __name__ == "__main__":
    main()
