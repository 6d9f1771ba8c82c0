"""Print the docs' serving table (markdown) from ./scripts/bench_serve.sh's JSON: for each model and each
serving mode × protocol, the added p50 at concurrency 1 over the in-process batch-1 call, throughput at
concurrency 8 and 32 against in-process batch 8, and the server's split of a request's time.
Usage: python scripts/serve_table.py MODEL... (reads bench/serve_MODEL_*.json)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

MODES = (("in-process", "in-process (default)"), ("ray", "Ray Serve"), ("ray-throughput", "Ray Serve, throughput-optimised"))


def main(models: list[str], bench: Path = Path("bench")) -> None:
    machine = json.loads((bench / f"serve_{models[0]}_inprocess.json").read_text())["machine"]
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, ISA {' '.join(machine['isa'])}\n")
    print("| model | path | c=1 p50 ms (added) | c=8 items/s (× batch 8) | c=32 items/s | split at c=1: hop / engine ms "
          "| split at c=8: queue / engine ms |")
    print("|---|---|---:|---:|---:|---|---|")
    for model in models:
        local = {r["batch"]: r for r in json.loads((bench / f"serve_{model}_inprocess.json").read_text())["results"]}
        print(f"| {model} | in-process call, batch 1 / 8 | {local[1]['p50_ms']:.2f} | {local[8]['throughput']:.1f} | – | – | – |")
        for mode, label in MODES:
            for protocol in ("http", "grpc"):
                path = bench / f"serve_{model}_{mode}_{protocol}.json"
                if not path.is_file():
                    continue
                levels = {r["concurrency"]: r for r in json.loads(path.read_text())["results"]}
                one, eight, many = levels[1], levels[8], levels[32]
                s1, s8 = one["server_split_ms"], eight["server_split_ms"]
                print(f"| {model} | {label}, {protocol.upper() if protocol == 'http' else 'gRPC'} | "
                      f"{one['p50_ms']:.2f} ({one['p50_ms'] - local[1]['p50_ms']:+.2f}) | "
                      f"{eight['throughput']:.1f} ({eight['throughput'] / local[8]['throughput']:.2f}×) | "
                      f"{many['throughput']:.1f} | {s1['hop']:.2f} / {s1['engine']:.2f} | "
                      f"{s8['queue']:.2f} / {s8['engine']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
