"""Open a file a converter wrote in a child process first, so an engine that crashes on it fails one check.

onnxruntime 1.31's CPU graph optimiser (its ``NchwcTransformer``, run at ``ORT_ENABLE_ALL``) segfaults creating
a session for the FP16 files AutoCast writes of torchvision's ViT-B/16: in process that killed the whole export
(exit 139, nothing kept). Opened here first, the crash is that file's verdict — a failed widening step — and
the export goes on.

The child is a fresh interpreter started by ``subprocess`` (vfork + exec, nothing of the export's threads or
locks carried over), with no pipes to fill, a timeout, and ``os._exit`` after the open so no interpreter
teardown can hang it. Only a death by signal is a verdict: an exception or a timeout in the child is left to
the in-process open, which reports it as it always has.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

OPEN_PROBE = ("import os, sys, runtimes\n"
              "runtimes.load(sys.argv[1], engine=sys.argv[2], device=sys.argv[3]).open()\n"
              "os._exit(0)\n")
PROBE_TIMEOUT_S = 300.0  # a session for ViT-Huge's FP16 file opens in ~30 s on 2 cores


class EngineCrash(RuntimeError):
    """The engine killed its process while opening a file (a segfault in its graph optimiser)."""


def crash_on_open(path: Path, engine: str, device: str, probe: str = OPEN_PROBE,
                  timeout_s: float = PROBE_TIMEOUT_S) -> EngineCrash | None:
    """An ``EngineCrash`` naming the signal when opening ``path`` with ``engine`` on ``device`` kills a child
    process; None when the child opens it, raises, or outlives ``timeout_s``."""
    try:
        result = subprocess.run([sys.executable, "-c", probe, str(path), engine, device],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:  # killed by run(); the in-process open decides
        return None
    if result.returncode >= 0:
        return None
    try:
        signal_name = signal.Signals(-result.returncode).name
    except ValueError:
        signal_name = f"signal {-result.returncode}"
    return EngineCrash(f"it died of {signal_name} opening the file (in a child process; the export went on)")
