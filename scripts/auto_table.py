"""The table of scripts/bench_auto.sh for docs/benchmarks.md, from runs-auto/MODEL/bench.json: per model and
batch, what engine="auto" chose, its mean latency against the fastest single engine:precision timed in the same
run (the goal: within 3 %; the choice's own single row is compared, timed in the same way as the others, beside the
auto row's separate timing), and the best verified FP32 row's achieved GFLOP/s and % of its engine's ceiling.

    python scripts/auto_table.py [MODEL ...]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runtimes.machine import machine_summary

RUNS = Path("runs-auto")


def rows(model: str) -> list[str]:
    report = json.loads((RUNS / model / "bench.json").read_text())
    out = []
    for batch in sorted({r["batch"] for r in report["results"]}):
        at = [r for r in report["results"] if r["batch"] == batch]
        auto = next(r for r in at if r["engine"].startswith("auto→"))
        single = [r for r in at if not r["engine"].startswith("auto→")]
        fastest = min(single, key=lambda r: r["mean_ms"])
        fp32 = min((r for r in single if r["precision"] == "fp32"), key=lambda r: r["mean_ms"])
        chosen = next(r for r in single if r["engine"] == auto["engine"].removeprefix("auto→"))
        ratio = chosen["mean_ms"] / fastest["mean_ms"]  # the choice's own row, timed beside the others
        pct = "–" if fp32["ceiling_pct"] is None else f"{fp32['ceiling_pct']:.0f} %"
        gflops = "–" if fp32["gflops_per_s"] is None else f"{fp32['gflops_per_s']:.1f}"
        out.append(f"| {model} | {batch} | {auto['engine'].removeprefix('auto→')} | {auto['mean_ms']:.2f} | "
                   f"{fastest['engine']} {fastest['mean_ms']:.2f} | {ratio:.3f} | {fp32['engine']}: {gflops} | {pct} |")
    return out


def main(models: list[str]) -> None:
    first = json.loads((RUNS / models[0] / "bench.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"Measured on {machine_summary(first['machine'])}, commit {commit}, with `scripts/bench_auto.sh "
          f"{' '.join(models)}` (random init, 1000 classes, `--seconds 3` per row in 5 alternating rounds).\n")
    print("| model | batch | auto chose | auto row ms | fastest single (ms) | choice / fastest | best FP32 GFLOP/s | "
          "% of ceiling |")
    print("|---|---:|---|---:|---|---:|---|---:|")
    for model in models:
        if (RUNS / model / "bench.json").is_file():
            print("\n".join(rows(model)))


if __name__ == "__main__":
    main(sys.argv[1:])
