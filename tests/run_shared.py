"""What one test run builds once and every pytest-xdist worker shares (exports, slim venvs, TensorRT
bindings): a run-wide folder, and a build-once lock so two workers never build the same thing at once."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pytest
from filelock import FileLock

T = TypeVar("T")


def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's temp folder: under pytest-xdist the parent of the workers' own folders, else the basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(marker: Path, build: Callable[[], object], load: Callable[[], T]) -> T:
    """``load()`` what the first worker to ask built with ``build()`` (then ``marker`` is written); a worker
    asking while another builds waits on ``marker``'s lock. Every worker, the builder too, gets ``load()``,
    so all see the same thing (a manifest read back from its file). A failed build writes no marker."""
    with FileLock(f"{marker}.lock"):
        if not marker.is_file():
            build()
            marker.write_text("built\n")
    return load()
