"""Real attn-serve servers for the serving tests: started as processes on free loopback ports, once per
test module, stopped with SIGTERM (which must stop every process they started, Ray included)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[1]
TWO_NODE = Path(__file__).parent / "two_node_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server: its process, ports, log file and the PIDs of everything it started."""

    proc: subprocess.Popen
    http: int
    grpc: int
    log: Path
    children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: bytes, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post_json(self, path: str, payload: dict) -> tuple[int, dict]:
        status, body = self.post(path, json.dumps(payload).encode())
        return status, json.loads(body or b"{}")


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def start(args: list[str], log: Path, models: list[str], *, script: Path | None = None, timeout: float = 300) -> Server:
    """Start ``attn-serve ARGS`` (or ``script ARGS``) and wait until every model answers ready."""
    http, grpc = free_port(), free_port()
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "serving.cli"]
    out = open(log, "w")
    proc = subprocess.Popen([*command, *args, "--http-port", str(http), "--grpc-port", str(grpc)], cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    server = Server(proc, http, grpc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"attn-serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if all(server.get(f"/v2/models/{m}/ready")[0] == 200 for m in models):
                server.children = _descendants(proc.pid)
                return server
        except OSError:
            pass
        time.sleep(1)
    stop(server)
    raise RuntimeError(f"attn-serve was not ready within {timeout} s:\n{log.read_text()[-4000:]}")


def stop(server: Server, timeout: float = 30) -> float:
    """SIGTERM, then wait; returns the seconds it took (the caller asserts the bound)."""
    import psutil

    started = time.monotonic()
    server.children = sorted(set(server.children) | set(_descendants(server.proc.pid)))
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
    alive = [p for p in server.children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    while alive and time.monotonic() - started < timeout:
        time.sleep(0.5)
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    for pid in alive:  # never leave processes behind, even when the test is about to fail
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.children = alive
    return time.monotonic() - started
