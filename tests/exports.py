"""Session-wide exports: each zoo model exported once (opset 17 + FP16, 10 classes, batch 1:2:4)
and shared by the export, runtime and FP16 tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.pipeline import ExportOptions, export
from runtimes.manifest import BatchProfile

TEST_PROFILE = BatchProfile(1, 2, 4)
_DONE: dict[str, dict[str, Any]] = {}


def small_options(opset: int = 17, **kw: Any) -> ExportOptions:
    return ExportOptions(opset=opset, batch=TEST_PROFILE, num_classes=10, **kw)


def exported(name: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of ``name`` exported at opset 17 under ``root``, once per session."""
    if name not in _DONE:
        _DONE[name] = export(name, root, options=small_options(fp16=True))
    return root / name, _DONE[name]
