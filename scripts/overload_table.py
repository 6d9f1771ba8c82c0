"""The docs' overload tables (markdown) from ./scripts/bench_overload.sh's JSON: per model and protocol, the
open loop at 2 x C and 0.8 x C and SIGTERM under load, with every goal's verdict; the soak when present.
Usage: python scripts/overload_table.py MODEL... (reads bench/overload_MODEL.json, bench/soak_MODEL.json)"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def capacity_search(report: dict, protocol: str) -> dict | None:
    """How C over ``protocol`` was found (older runs: one search over HTTP for both protocols, or none: C was
    the closed-loop throughput itself, ``report["capacity"]``)."""
    return report.get("protocols", {}).get(protocol, {}).get("capacity") or report.get("capacity_search")


def capacity(report: dict, protocol: str) -> float:
    search = capacity_search(report, protocol)
    return search["rate"] if search else report["capacity"]


def capacity_note(report: dict, protocol: str) -> str:
    """C over ``protocol`` and how it was found: the closed-loop throughput the probes began at, and each probe."""
    search = capacity_search(report, protocol)
    if not search:
        return f"C = {report['capacity']:.1f}/s (closed loop)"
    probes = ", ".join(f"{p['rate']:.1f}/s: {p['answered']:.0f} answered, {p['refused']:.0f} refused, "
                       f"p99 {p['p99_ms']:.0f} ms" for p in search["probes"])
    return f"C = {search['rate']:.1f}/s (closed loop {search['closed_loop']:.1f}/s; 10 s probes: {probes})"


def main(models: list[str], bench: Path = Path("bench")) -> None:
    print("| model | protocol | load | sent | answered | refused | timed out | errors | wrong | p50 ms | p99 ms "
          "| p99 bound ms | RSS MB 10 s → end | lone → after ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for model in models:
        report = json.loads((bench / f"overload_{model}.json").read_text())
        bound = report["max_queue"] * report["engine_ms"] + 50
        for protocol, runs in report["protocols"].items():
            for load in ("2C", "0.8C"):
                r = runs[load]
                rss = r["server_rss_mb"]
                print(f"| {model} (C = {capacity(report, protocol):.1f}/s, "
                      f"batch-1 engine {report['engine_ms']:.1f} ms) "
                      f"| {protocol} | {load} = {r['rate']:.1f}/s × {r['duration_s']:.0f} s | {r['sent']} "
                      f"| {r['answered']} | {r['refused']} | {r['timed_out']} | {r['errors']} | {r['wrong']} "
                      f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {bound:.0f} | {rss['at_10s']:.0f} → {rss['end']:.0f} "
                      f"| {r['unloaded_ms']:.1f} → {r['after_ms']:.1f} |")
            s = runs["sigterm"]
            r = s["result"]
            print(f"| {model} | {protocol} | SIGTERM at 10 s of 2C: exit {s['exit_code']} after {s['exit_s']:.1f} s "
                  f"| {r['sent']} | {r['answered']} | {r['refused']} | {r['timed_out']} | {r['errors']} | {r['wrong']} "
                  f"| – | – | – | – | – |")
    print()
    for model in models:
        report = json.loads((bench / f"overload_{model}.json").read_text())
        for protocol, runs in report["protocols"].items():
            print(f"- {model}, {protocol}: {capacity_note(report, protocol)}")
            for check in runs["checks"] + runs["sigterm"]["checks"]:
                print(f"- {model}, {protocol}: **{'pass' if check['pass'] else 'FAIL'}** {check['check']}: "
                      f"{check['detail']}")
    for model in models:
        path = bench / f"soak_{model}.json"
        if path.is_file():
            soak = json.loads(path.read_text())
            print(f"\nSoak, {model}: {soak['result']['duration_s']:.0f} s at {soak['result']['rate']:.1f}/s "
                  f"(0.8 × C; {capacity_note(soak, 'http')}), every 10th request bad:")
            for check in soak["checks"]:
                print(f"- **{'pass' if check['pass'] else 'FAIL'}** {check['check']}: {check['detail']}")


if __name__ == "__main__":
    main(sys.argv[1:])
