"""Print the README's engine table (markdown) from attn-bench JSON files: p50 ms and speed-up against
onnxruntime FP32 per model and batch, with the machine line. Usage: python scripts/bench_table.py bench/*.json"""
from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> None:
    reports = [json.load(open(p)) for p in paths]
    machine = reports[0]["machine"]
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, ISA {' '.join(machine['isa'])}; "
          f"onnxruntime {machine.get('onnxruntime')}, OpenVINO {machine.get('openvino', '').split('-')[0]}")
    gemms = [rep["machine"]["openvino_bf16_gemm"] for rep in reports if "openvino_bf16_gemm" in rep["machine"]]
    if gemms:  # this CPU's BF16 ceiling, measured at the start of each model's run
        ups = sorted(g["bf16_speedup"] for g in gemms)
        print(f"BF16 ceiling: a {gemms[0]['size']}³ OpenVINO GEMM runs {ups[0]:.2f}–{ups[-1]:.2f}× as fast in BF16 as "
              f"in f32 ({len(gemms)} runs)")
    print()
    engines = list(dict.fromkeys(r["engine"] for rep in reports for r in rep["results"]))
    base = engines[0]
    print("| model | batch | " + " | ".join(f"{e} p50 ms" for e in engines) + " | "
          + " | ".join(f"{e} ×" for e in engines[1:]) + " |")
    print("|---|---:|" + "---:|" * (2 * len(engines) - 1))
    for rep in reports:
        rows: dict[int, dict[str, dict]] = {}
        for r in rep["results"]:
            rows.setdefault(r["batch"], {})[r["engine"]] = r
        for batch, by_engine in sorted(rows.items()):
            p50 = [f"{by_engine[e]['p50_ms']:.1f}" if e in by_engine else "–" for e in engines]
            ref = by_engine[base]["mean_ms"]
            ups = [f"{ref / by_engine[e]['mean_ms']:.2f}" if e in by_engine else "–" for e in engines[1:]]
            print(f"| {rep['model']} | {batch} | " + " | ".join(p50) + " | " + " | ".join(ups) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
