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


def rss_high_water_mb() -> float:
    """The peak resident memory so far of this process, or of the largest finished worker process
    (``exporter.formats.isolation``) where that was higher, in MB (``ru_maxrss``: KiB on Linux)."""
    import resource

    return round(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
                 / 1024, 1)


class Stages:
    """Times named stages into ``timings``, records the process's peak RSS after each in ``peak_rss_mb`` (a
    high-water mark: the stage that raised it is the one that needed it), and reports ``[model] stage … 1.2s``."""

    def __init__(self, label: str, printer: Printer = silent) -> None:
        self.label, self.printer = label, printer
        self.timings: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.printer(f"[{self.label}] {name} …")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            self.peak_rss_mb[name] = rss_high_water_mb()
        self.printer(f"[{self.label}] {name} done in {self.timings[name]:.1f}s")
