"""Stage-by-stage progress with elapsed time, on stderr so ``--json`` stdout stays clean."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import IO, Callable, Iterator

Printer = Callable[[str], None]
console: IO[str] | None = None  # set by exporter.quiet while third-party output goes to export.log


def stderr_printer(message: str) -> None:
    """Our own lines: to the console (stderr), even while third-party output is sent to export.log."""
    print(message, file=console or sys.stderr, flush=True)


def silent(message: str) -> None:
    """A printer that drops everything (library use, tests)."""


class Stages:
    """Times named stages into ``timings`` and reports ``[model] stage … 1.2s``."""

    def __init__(self, label: str, printer: Printer = silent) -> None:
        self.label, self.printer = label, printer
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.printer(f"[{self.label}] {name} …")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
        self.printer(f"[{self.label}] {name} done in {self.timings[name]:.1f}s")
