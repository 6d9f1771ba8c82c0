"""Print the docs' "reduced precision on a trained network" table (markdown) from what
scripts/bench_accuracy.sh left under runs/MODEL/: the export's manifest (FP32, FP16, ORT INT8 and
OpenVINO BF16 top-1 on the held-out digits, FP16 node share, INT8 widening step) and attn-bench's JSON
(OpenVINO INT8 top-1), then whether each of the issue's goals holds, under a machine line.
Usage: python scripts/accuracy_table.py MODEL [MODEL ...]"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from runtimes.machine import machine_info

# the goals on trained weights: top-1 points lost against the FP32 ONNX, and FP16's share of compute nodes
FP16_DROP, FP16_NODE_SHARE, INT8_DROP, BF16_DROP = 0.3, 0.9, 1.0, 0.5


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def bench_accuracy(run: Path, engine: str) -> dict[str, Any] | None:
    """attn-bench's accuracy for ``engine`` (its label, e.g. "openvino:int8"), if that run scored it."""
    path = run / "bench.json"
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text())["results"] if r["engine"] == engine and r.get("accuracy")]
    return rows[0]["accuracy"] if rows else None


def row(model: str) -> str:
    """The table row of ``model``, its last cell naming the goals it misses."""
    run = Path("runs") / model
    manifest = json.loads((run / "artifacts" / model / "manifest.json").read_text())
    parity = manifest["parity"]
    acc = {key: parity[key]["accuracy"] for key in parity if "accuracy" in parity[key]}
    fp32 = acc["onnx"]["top1"]
    missed = [] if manifest["status"] == "ok" else [f"export {manifest['status']}: {manifest.get('error')}"]
    cells = [model, pct(fp32)]
    if "onnx_fp16" in acc:
        fp16, f = acc["onnx_fp16"], manifest["fp16"]
        share = f["fp16_nodes"] / (f["fp16_nodes"] + f["fp32_nodes"])
        cells.append(f"{pct(fp16['top1'])}, {pct(fp16['agreement_top1'])}, {f['fp16_nodes']} of "
                     f"{f['fp16_nodes'] + f['fp32_nodes']} ({100 * share:.0f} %)")
        if fp16["drop_points"] > FP16_DROP:
            missed.append(f"FP16 drop {fp16['drop_points']:.2f}")
        if share < FP16_NODE_SHARE:
            missed.append(f"FP16 nodes {100 * share:.0f} %")
    else:
        cells.append("–")
    if "onnx_int8" in acc:
        int8, ov = acc["onnx_int8"], bench_accuracy(run, "openvino:int8")
        q = manifest["int8"]
        ov_top1 = pct(ov["top1"]) if ov else "–"
        cells.append(f"{pct(int8['top1'])} / {ov_top1}, {pct(int8['agreement_top1'])}, `{q['step']}` "
                     f"({q['quantized_nodes']} of {q['total_nodes']} nodes quantized)")
        if int8["drop_points"] > INT8_DROP:
            missed.append(f"INT8 drop {int8['drop_points']:.2f}")
        if ov and 100 * (fp32 - ov["top1"]) > INT8_DROP:
            missed.append(f"OpenVINO INT8 drop {100 * (fp32 - ov['top1']):.2f}")
    else:
        cells.append("–")
    if "openvino_bf16" in acc:
        bf16 = acc["openvino_bf16"]
        cells.append(f"{pct(bf16['top1'])}, {pct(bf16['agreement_top1'])}")
        if bf16["drop_points"] > BF16_DROP:
            missed.append(f"BF16 drop {bf16['drop_points']:.2f}")
    else:
        cells.append("–")
    cells.append("all met" if not missed else "missed: " + "; ".join(missed))
    return "| " + " | ".join(cells) + " |"


def main(models: list[str]) -> None:
    machine = machine_info()
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, ISA {' '.join(machine['isa'])}\n")
    print("| model | FP32 top-1 | FP16: top-1, agreement, compute nodes in FP16 | INT8 (ORT / OpenVINO): top-1, "
          "agreement, step | OpenVINO BF16: top-1, agreement | goals |")
    print("|---|---:|---|---|---|---|")
    for model in models:
        print(row(model))


if __name__ == "__main__":
    main(sys.argv[1:])
