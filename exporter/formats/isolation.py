"""Third-party conversions of large models in a child process, so what they hold goes back to the system.

AutoCast and ModelOpt's INT8 quantizer hold many copies of a model's weights (AutoCast: 19.3 GB on a 2.35 GiB
ViT-Huge), and
part of that stays referenced inside them after they return: the FP16 stage left the export at 12.3 GB resident,
and the INT8 stage after it was killed by the kernel at 24.3 GB. Above ``ISOLATE_ABOVE`` bytes of weights, each
conversion runs in a fresh (spawned) worker process: its memory is returned when it exits, and when the kernel
kills it the stage fails with class ``memory`` in one line instead of taking the export down. Smaller models
convert in process (a worker costs seconds of imports).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, TypeVar

from exporter import onnx_files
from exporter.errors import MemoryBudgetError

T = TypeVar("T")
ISOLATE_ABOVE = 1 << 30  # bytes of ONNX weights from which conversions run in a worker process


def is_large(onnx_path: Path) -> bool:
    """Whether the ONNX file's weights (with its data file) reach ``ISOLATE_ABOVE``: convert it in a worker."""
    return onnx_files.total_bytes(onnx_path) >= ISOLATE_ABOVE


def call(what: str, fn: Callable[..., T], *args: Any, isolate: bool, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, in a spawned worker process when ``isolate`` (``fn`` and its arguments must
    pickle; its exceptions come back as they were raised). A worker that dies (the kernel's OOM killer) raises
    ``MemoryBudgetError`` naming ``what``."""
    if not isolate:
        return fn(*args, **kwargs)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool as exc:
            raise MemoryBudgetError(f"{what}: its worker process was killed (by the kernel, out of memory?) after "
                                    "the export's own checks let it start; use a machine with more memory") from exc
