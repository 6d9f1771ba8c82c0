"""attn-serve under overload, measured (issue 32's goals); called by ./scripts/bench_overload.sh.

For each MODEL: attn-serve (defaults: in-process, --max-batch 8, --max-queue 32) on free loopback ports; the
closed-loop throughput of 16 HTTP clients and the batch-1 engine time (the server's engine_us at one client);
then for HTTP and for gRPC: that protocol's capacity C, an open loop at 2 × C and at 0.8 × C for --duration
seconds, and a 2 × C load with SIGTERM half-way (the server is restarted after it). --soak S instead runs S
seconds at 0.8 × the HTTP C with every 10th request bad. Each check of the goals is printed pass/FAIL beside
its numbers, and everything goes to bench/overload_MODEL.json (bench/soak_MODEL.json for --soak).

C is the highest open-loop rate the server keeps up with: 10 s probes, from the closed-loop throughput down
in steps of 10 %, until one is answered with nothing refused, timed out or failed, and with its p99 within 4
lone-request latencies. Every goal is an open-loop load, and closed-loop clients keep a queue of 16 in the
server, so batches of 8 form; an open loop at that rate leaves the queue empty between arrivals and is kept
up with only once a queue stands (c2f_ca on a Zen 3: 60.4/s closed loop, 39.7/s over HTTP without a standing
queue, 67.0/s answered in full batches at 2 × that): C is the knee of the latency curve. A rate just above it
can be answered in full for 10 s while a queue builds behind the engine (a 56/s probe on c2f_ca was, p99
197 ms against 20 ms lone, and the soak at 0.8 × that refused 14): hence the p99 rule.
Each protocol has its own C: gRPC's front end costs the shared cores more than HTTP's (at the HTTP C,
c2f_ca's 0.8 × C over gRPC had a p99 of 314 ms against 30 ms over HTTP).

Usage: python scripts/overload_run.py MODEL... [--duration 60] [--soak 600] [--engine-threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtimes import machine
from runtimes.bench import open_loop, remote

CLIENTS = 16
MAX_QUEUE = 32  # attn-serve's default at --max-batch 8
PROBE_S = 10.0  # each open-loop probe of the capacity search
PROBE_STEP = 0.9  # the next probe's rate, after one with anything refused
PROBES = 8  # at most: down to 0.9 ** 7 = 48 % of the closed-loop throughput
PROBE_QUEUE = 4  # a probe's p99 at most this many lone latencies: no queue standing behind the engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``attn-serve FOLDER`` with its defaults (or ``options``), on free ports, until ``stop``."""

    options: list[str] = []  # attn-serve options beyond its defaults (--engine-threads), for every server

    def __init__(self, folder: Path, log: Path) -> None:
        self.http, self.grpc = free_port(), free_port()
        self.proc = subprocess.Popen(["attn-serve", str(folder), "--http-port", str(self.http), "--grpc-port",
                                      str(self.grpc), *self.options], stdout=open(log, "a"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"attn-serve exited {self.proc.returncode}: see {log}")
            time.sleep(1)
        sys.exit(f"attn-serve was not ready in 300 s: see {log}")

    def url(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.http if protocol == 'http' else self.grpc}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    print(f"  {'pass' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return {"check": name, "pass": bool(ok), "detail": detail}


@dataclass
class Capacity:
    """C over one protocol and how it was found (see the module docstring)."""

    protocol: str
    rate: float  # C, requests/s
    closed_loop: float  # requests/s at CLIENTS closed-loop HTTP clients: the first probe's rate
    probes: list[dict[str, float]]  # rate, answered, refused, timed_out, errors, p99_ms, unloaded_ms of each probe

    def describe(self) -> str:
        return (f"C over {self.protocol} = {self.rate:.1f} requests/s (open loop, {len(self.probes)} probe(s) of "
                f"{PROBE_S:g} s from the closed-loop {self.closed_loop:.1f}/s at {CLIENTS} HTTP clients)")


def closed_loop(server: Server, model: str) -> tuple[float, float]:
    """(requests/s at CLIENTS closed-loop HTTP clients, the server's mean batch-1 engine ms at one client)."""
    url = server.url("http")
    specs = remote.model_specs(url, model, "http")
    lone = remote.run_level(url, model, "http", specs, 1, 30)
    return remote.run_level(url, model, "http", specs, CLIENTS, 20).throughput, lone.server_split_ms["engine"]


def capacity(server: Server, model: str, protocol: str, start: float) -> Capacity:
    """Measure C over ``protocol`` (each protocol's front end costs the shared cores differently), probing
    down from ``start``; exit when not even the last probe keeps up."""
    probes: list[dict[str, float]] = []
    rate = start
    for _ in range(PROBES):
        probe = open_loop.run_open_loop(server.url(protocol), model, protocol, rate, PROBE_S)
        probes.append({"rate": rate, "answered": probe.answered, "refused": probe.refused,
                       "timed_out": probe.timed_out, "errors": probe.errors, "p99_ms": probe.p99_ms,
                       "unloaded_ms": probe.unloaded_ms})
        print(f"   {protocol} probe {rate:.1f}/s: {probe.answered} answered, {probe.refused} refused, "
              f"{probe.timed_out} timed out, {probe.errors} errors; p99 {probe.p99_ms:.0f} ms "
              f"(lone {probe.unloaded_ms:.0f} ms)", flush=True)
        if probe.answered == probe.sent and probe.p99_ms <= PROBE_QUEUE * probe.unloaded_ms:
            return Capacity(protocol, rate, start, probes)
        rate *= PROBE_STEP
    sys.exit(f"{model}: no open-loop rate over {protocol} down to {rate / PROBE_STEP:.1f}/s was answered in full "
             f"without a queue; see the probes above")


def overload_checks(over: open_loop.OpenLoopResult, engine_ms: float) -> list[dict[str, Any]]:
    bound = MAX_QUEUE * engine_ms + 50
    rss = over.server_rss_mb
    return [
        check("2C: every request answered bit-equal or refused/timed out",
              over.errors == 0 and over.wrong == 0,
              f"{over.answered} answered ({over.wrong} wrong, max |diff| {over.max_abs_diff:g}), {over.refused} "
              f"refused, {over.timed_out} timed out, {over.errors} errors of {over.sent}"),
        check("2C: p99 of answered <= queue cap x batch-1 engine time + 50 ms", over.p99_ms <= bound,
              f"p99 {over.p99_ms:.0f} ms, bound {MAX_QUEUE} x {engine_ms:.1f} + 50 = {bound:.0f} ms"
              + (f"; the slowest 1 %: {open_loop.describe_tail(over.tail_split_ms)}" if over.tail_split_ms else "")),
        check("2C: server RSS at the end at most 10 % above after 10 s", rss["end"] <= 1.10 * rss["at_10s"],
              f"{rss['at_10s']:.0f} → {rss['end']:.0f} MB (start {rss['start']:.0f}, max {rss['max']:.0f})"),
        check("2C: first request after the load within 2 x its unloaded latency",
              over.after_ms <= 2 * over.unloaded_ms, f"{over.after_ms:.1f} ms vs unloaded {over.unloaded_ms:.1f} ms"),
    ]


def sigterm_run(folder: Path, model: str, protocol: str, rate: float, log: Path) -> dict[str, Any]:
    server = Server(folder, log)
    results: list[open_loop.OpenLoopResult] = []
    load = threading.Thread(target=lambda: results.append(
        open_loop.run_open_loop(server.url(protocol), model, protocol, rate, 20.0)))
    load.start()
    time.sleep(10 + 2)  # the generator's unloaded pool takes a moment first
    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    server.proc.wait(timeout=120)
    took = time.monotonic() - signalled
    load.join()
    result = results[0]
    return {"result": result.to_json(), "exit_code": server.proc.returncode, "exit_s": took,
            "checks": [check(f"SIGTERM at 2C ({protocol}): accepted answered, new refused, exit 0 within the drain "
                             f"timeout", result.errors == 0 and result.wrong == 0 and server.proc.returncode == 0
                             and took <= 30,
                             f"exit {server.proc.returncode} after {took:.1f} s; {result.answered} answered, "
                             f"{result.refused} refused, {result.errors} errors of {result.sent}")]}


def run_model(model: str, duration: float, out: Path) -> None:
    folder = Path("artifacts") / model
    log = out / f"overload_{model}.log"
    server = Server(folder, log)
    try:
        closed, engine_ms = closed_loop(server, model)
        print(f"== {model}: closed loop {closed:.1f} requests/s at {CLIENTS} clients, batch-1 engine "
              f"{engine_ms:.1f} ms", flush=True)
        report: dict[str, Any] = {"machine": machine.machine_info(), "model": model,
                                  "serve_options": Server.options, "closed_loop": closed, "engine_ms": engine_ms,
                                  "max_queue": MAX_QUEUE, "protocols": {}}
        for protocol in ("http", "grpc"):
            cap = capacity(server, model, protocol, closed)
            c = cap.rate
            print(f"== {model}: {cap.describe()}", flush=True)
            over = open_loop.run_open_loop(server.url(protocol), model, protocol, 2 * c, duration)
            print(open_loop.format_table([over]), flush=True)
            under = open_loop.run_open_loop(server.url(protocol), model, protocol, 0.8 * c, duration, window_s=10)
            print(open_loop.format_table([under]), flush=True)
            for why in under.refusal_examples:
                print(f"  0.8C refused ({under.refused_by_window} per 10 s): {why}", flush=True)
            checks = overload_checks(over, engine_ms) + [
                check("0.8C: nothing refused", under.refused == 0 and under.timed_out == 0 and under.errors == 0,
                      f"{under.answered} answered, {under.refused} refused, {under.timed_out} timed out, "
                      f"{under.errors} errors of {under.sent}; p99 {under.p99_ms:.0f} ms")]
            report["protocols"][protocol] = {"capacity": asdict(cap), "2C": over.to_json(), "0.8C": under.to_json(),
                                             "checks": checks}
    finally:
        server.stop()
    for protocol, runs in report["protocols"].items():
        runs["sigterm"] = sigterm_run(folder, model, protocol, 2 * runs["capacity"]["rate"], log)
    (out / f"overload_{model}.json").write_text(json.dumps(report, indent=1))


def soak_model(model: str, seconds: float, out: Path) -> None:
    folder = Path("artifacts") / model
    server = Server(folder, out / f"soak_{model}.log")
    try:
        closed, engine_ms = closed_loop(server, model)
        cap = capacity(server, model, "http", closed)
        c = cap.rate
        # how far the load leans on batching to keep up
        print(f"== {model}: {cap.describe()}, batch-1 engine {engine_ms:.1f} ms; soak {seconds:g} s at 0.8 x C = "
              f"{0.8 * c:.1f}/s, every 10th request bad (at batch 1 the engine would be "
              f"{0.8 * c * engine_ms / 10:.0f} % busy)", flush=True)
        soak = open_loop.run_open_loop(server.url("http"), model, "http", 0.8 * c, seconds, bad_every=10)
    finally:
        server.stop()
    print(open_loop.format_table([soak]))
    for why in soak.refusal_examples:
        print(f"  refused ({soak.refused_by_window} per minute; send lag max {soak.send_lag_max_ms:.0f} ms): {why}")
    rss, p99 = soak.rss_by_window_mb, soak.p99_by_window_ms
    for minute, (split, lone) in enumerate(zip(soak.tail_split_by_window_ms, soak.lone_engine_ms_by_window)):
        tail = open_loop.describe_tail(split) if split else "-"
        print(f"  minute {minute + 1}: p99 {p99[minute]:.0f} ms, lone engine call {lone:.1f} ms; slowest 1 %: {tail}")
    swings = [abs(b / a - 1) for a, b in zip(p99, p99[1:])]
    checks = [
        check("soak: zero 5xx on good requests, bad ones answered 4xx",
              soak.errors == 0 and soak.refused == 0 and soak.bad_rejected == soak.bad_sent,
              f"{soak.answered} good answered, {soak.refused} refused, {soak.errors} errors; "
              f"{soak.bad_rejected}/{soak.bad_sent} bad answered 4xx"),
        check("soak: RSS growth <= 5 % after the first minute", rss[-1] / rss[0] - 1 <= 0.05,
              "per minute: " + ", ".join(f"{mb:.0f}" for mb in rss) + " MB"),
        check("soak: p99 within 20 % minute to minute", max(swings, default=0) <= 0.20,
              "per minute: " + ", ".join(f"{ms:.0f}" for ms in p99) + " ms (CPU time stolen by the hypervisor: "
              + ", ".join(f"{pct:.1f}" for pct in soak.steal_by_window_pct) + " %)"),
    ]
    (out / f"soak_{model}.json").write_text(json.dumps({"machine": machine.machine_info(), "model": model,
                                                        "serve_options": Server.options,
                                                        "capacity": c, "engine_ms": engine_ms,
                                                        "capacity_search": asdict(cap), "result": soak.to_json(),
                                                        "checks": checks}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--soak", type=float, default=None)
    parser.add_argument("--engine-threads", type=int, default=None, help="attn-serve --engine-threads")
    args = parser.parse_args()
    if args.engine_threads:
        Server.options = ["--engine-threads", str(args.engine_threads)]
    out = Path("bench")
    out.mkdir(exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for model in args.models:
        if args.soak:
            soak_model(model, args.soak, out)
        else:
            run_model(model, args.duration, out)


if __name__ == "__main__":
    main()
