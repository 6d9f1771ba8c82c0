"""Third-party output goes to ``export.log`` in the model's folder; the console keeps our stage lines and tables.

ModelOpt logs one INFO line per node it skips, the TorchScript exporter prints its whole IR graph when it
fails, onnxruntime logs kernel errors, onnx-ir prints constant-folding notes. Some of it comes from Python
(``print``, ``logging``, ``warnings``), some from C++ writing straight to file descriptors 1 and 2. While an
export runs, both descriptors and ``sys.stdout``/``sys.stderr`` point at the log; ``progress.stderr_printer``
writes to the console saved before (``progress.console``). ``-v`` (``ExportOptions.verbose``) leaves
everything on the console.

Python's ``logging.warning()`` with no handler set up calls ``basicConfig``, whose handler keeps the
``sys.stderr`` of that moment: inside an export, that log file, closed when the export ends, and every later
warning in the process then printed "--- Logging error ---" with a stack (onnxruntime's quantizer warns once per
call). While a block runs, the root logger has a handler that writes to ``sys.stderr`` as it is at each record.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, Iterator

from exporter import progress

LOG_NAME = "export.log"


class _StderrNow(logging.Handler):
    """Writes each record to ``sys.stderr`` as it is when the record comes, never to a stream it kept."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging's own policy: report through handleError, never raise into the caller
            self.handleError(record)


def _real_fd(stream: IO[str]) -> int | None:
    """The file descriptor behind ``stream``, or ``None`` (a test runner's in-memory stream)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@contextlib.contextmanager
def third_party_output_to(log_path: Path) -> Iterator[None]:
    """Send everything but our own printer's lines to ``log_path`` (appended) until the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_streams = sys.stdout, sys.stderr
    saved_console = progress.console
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
    saved_fds: list[tuple[int, int]] = []
    console: IO[str] = saved_streams[1]
    root = logging.getLogger()
    handler = _StderrNow() if not root.handlers else None  # else basicConfig would bind the log file for good
    if handler is not None:
        root.addHandler(handler)
    try:
        for fd in (1, 2):
            if _real_fd(saved_streams[fd - 1]) == fd:
                saved_fds.append((fd, os.dup(fd)))
        if any(fd == 2 for fd, _ in saved_fds):
            console = os.fdopen(os.dup(dict(saved_fds)[2]), "w", buffering=1, encoding="utf-8", errors="replace")
        for fd, _ in saved_fds:
            os.dup2(log.fileno(), fd)
        progress.console = console
        sys.stdout = sys.stderr = log
        yield
    finally:
        log.flush()
        if handler is not None:
            root.removeHandler(handler)
        sys.stdout, sys.stderr = saved_streams
        progress.console = saved_console
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)
        if console is not saved_streams[1]:
            console.close()
        log.close()


@contextlib.contextmanager
def maybe_quiet(folder: Path, verbose: bool) -> Iterator[None]:
    """``third_party_output_to(folder / export.log)`` unless ``verbose``."""
    if verbose:
        yield
        return
    with third_party_output_to(folder / LOG_NAME):
        yield
