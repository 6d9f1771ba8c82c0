"""The manifest: one JSON per exported model folder, read and written only here.

Keys other tools rely on: ``model``, ``status`` (``"ok"`` only when every
stage passed), ``opset``, ``inputs``/``outputs`` (``{name, shape, dtype}``, the
dynamic batch dim written ``"batch"``), ``batch`` (``{min, opt, max}``),
``artifacts`` (file names relative to the folder: ``weights``, ``torch``,
``onnx``, ``onnx_fp16``, ``engine``), ``parity``, ``versions``, ``timings``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._io import write_json
from .errors import ArtifactError
from .specs import TensorSpec

MANIFEST = "manifest.json"
REQUIRED_KEYS = ("model", "status", "opset", "inputs", "outputs", "batch", "artifacts", "parity", "versions")
STATUS_OK, STATUS_FAILED, STATUS_RUNNING = "ok", "failed", "running"


@dataclass(frozen=True)
class BatchProfile:
    """The batch range an artifact was built and checked for (TensorRT's optimisation profile)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {self.min}:{self.opt}:{self.max}")

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"1:8:32"`` → BatchProfile(1, 8, 32)."""
        try:
            lo, opt, hi = (int(p) for p in text.split(":"))
        except ValueError:
            raise ValueError(f"batch profile must be MIN:OPT:MAX integers, got {text!r}") from None
        return cls(lo, opt, hi)

    def to_json(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


def manifest_path(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / MANIFEST


def write_manifest(folder: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Atomically write ``data`` as the folder's manifest."""
    path = manifest_path(folder)
    write_json(path, dict(data))
    return path


def read_manifest(folder: str | os.PathLike[str], *, require_ok: bool = True) -> dict[str, Any]:
    """Read and validate a folder's manifest; by default refuse one whose export did not pass."""
    path = manifest_path(folder)
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {folder}: run `attn-export MODEL --out DIR` to create the folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); re-run attn-export") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ArtifactError(f"{path} lacks keys {missing}; it was not written by this attn-export, re-export")
    if require_ok and data["status"] != STATUS_OK:
        raise ArtifactError(
            f"{path} has status {data['status']!r}: the export did not pass"
            f"{' (' + data['error'] + ')' if data.get('error') else ''}; fix it and re-run attn-export"
        )
    return data


def input_specs(manifest: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(s) for s in manifest["inputs"])


def output_specs(manifest: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(s) for s in manifest["outputs"])


def artifact(folder: str | os.PathLike[str], manifest: Mapping[str, Any], key: str) -> Path:
    """Absolute path of artifact ``key`` (``onnx``, ``torch``, ``engine`` …), which must exist."""
    name = manifest["artifacts"].get(key)
    if not name:
        raise ArtifactError(f"{folder} has no {key!r} artifact; re-export with the option that writes it")
    path = Path(folder) / name
    if not path.is_file():
        raise ArtifactError(f"{path} is listed in the manifest but missing; re-run attn-export")
    return path
