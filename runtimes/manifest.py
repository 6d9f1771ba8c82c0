"""The manifest: one JSON per exported model folder, read, validated and written only here.

Keys other tools rely on: ``model``, ``status`` (``"ok"`` only when every
stage passed), ``opset``, ``inputs``/``outputs`` (``{name, shape, dtype}``, the
dynamic batch dim written ``"batch"``), ``batch`` (``{min, opt, max}``),
``artifacts`` (file names relative to the folder: ``weights``, ``torch``,
``onnx``, ``onnx_fp16``, ``onnx_int8``, ``openvino``, ``engine`` …), ``files``
(``{name: {size, sha256}}`` of every artifact, written as each is finished),
``parity``, ``versions``, ``timings``, ``preprocess`` (how an image file becomes the image input:
``runtimes.images.Preprocess``; absent in manifests written before it, which then get the default).

A manifest is untrusted input: :func:`validate` checks types, ranges, a
consistent batch profile and that every artifact path is a plain relative
name that stays inside the folder (no symlinks), and ``artifact`` verifies
size and SHA-256 before a file is opened. Every violation is an
``ArtifactError`` naming the field or file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from runtimes.dtypes import NUMPY_NAMES
from runtimes.errors import ArtifactError
from runtimes.fileio import write_json
from runtimes.images import Preprocess
from runtimes.specs import TensorSpec

HASH_CHUNK = 1 << 22

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
    validate(data, path)
    if require_ok and data["status"] != STATUS_OK:
        raise ArtifactError(
            f"{path} has status {data['status']!r}: the export did not pass"
            f"{' (' + data['error'] + ')' if data.get('error') else ''}; fix it and re-run attn-export"
        )
    return data


def _fail(path: Path, field: str, problem: str) -> ArtifactError:
    return ArtifactError(f"{path}: field {field!r} {problem}; the manifest is damaged or hand-edited, re-export")


def _check_tensors(data: Mapping[str, Any], key: str, path: Path) -> None:
    tensors = data[key]
    if not isinstance(tensors, list) or (key == "inputs" and not tensors):
        raise _fail(path, key, "must be a non-empty list of {name, shape, dtype}")
    for i, t in enumerate(tensors):
        where = f"{key}[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise _fail(path, where, "needs a non-empty string 'name'")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d > 0) or (isinstance(d, str) and d)
                for d in shape):
            raise _fail(path, f"{where}.shape", f"must list positive ints or axis names, got {shape!r}")
        if t.get("dtype", "float32") not in NUMPY_NAMES:
            raise _fail(path, f"{where}.dtype", f"must be one of {NUMPY_NAMES}, got {t.get('dtype')!r}")
        vr = t.get("value_range")
        if vr is not None and not (isinstance(vr, list) and len(vr) == 2 and all(isinstance(v, int) for v in vr)
                                   and vr[0] < vr[1]):
            raise _fail(path, f"{where}.value_range", f"must be [low, high) integers, got {vr!r}")
        for sub in ("example_dims", "max_dims"):
            dims = t.get(sub, {})
            if not isinstance(dims, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                     for v in dims.values()):
                raise _fail(path, f"{where}.{sub}", f"must map axis names to positive ints, got {dims!r}")


def safe_name(name: Any, field: str, path: Path) -> str:
    """An artifact file name: a plain relative name with no directory part (so it stays in the folder)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or os.path.isabs(name) or "\0" in name:
        raise _fail(path, field, f"must be a plain file name inside the folder, got {name!r}")
    return name


def validate(data: Any, path: Path) -> None:
    """Raise ``ArtifactError`` naming the first field that is missing, mistyped or out of range."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} is not a JSON object; re-export")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ArtifactError(f"{path} lacks keys {missing}; it was not written by this attn-export, re-export")
    if data["status"] not in (STATUS_OK, STATUS_FAILED, STATUS_RUNNING):
        raise _fail(path, "status", f"must be ok, failed or running, got {data['status']!r}")
    if not isinstance(data["model"], str) or not isinstance(data["opset"], int):
        raise _fail(path, "model/opset", "must be a string and an integer")
    batch = data["batch"]
    if not isinstance(batch, dict) or not all(isinstance(batch.get(k), int) and not isinstance(batch.get(k), bool)
                                              for k in ("min", "opt", "max")):
        raise _fail(path, "batch", f"must be {{min, opt, max}} integers, got {batch!r}")
    try:
        BatchProfile(batch["min"], batch["opt"], batch["max"])
    except ValueError as exc:
        raise _fail(path, "batch", str(exc)) from None
    _check_tensors(data, "inputs", path)
    _check_tensors(data, "outputs", path)
    if not isinstance(data["artifacts"], dict):
        raise _fail(path, "artifacts", "must map artifact keys to file names")
    for key, name in data["artifacts"].items():
        safe_name(name, f"artifacts.{key}", path)
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise _fail(path, "files", "must map file names to {size, sha256}")
    for name, entry in files.items():
        safe_name(name, f"files.{name}", path)
        if not (isinstance(entry, dict) and isinstance(entry.get("size"), int) and entry["size"] >= 0
                and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
            raise _fail(path, f"files.{name}", f"must be {{size, sha256}}, got {entry!r}")
    if not isinstance(data["parity"], dict):
        raise _fail(path, "parity", "must be an object")


def fingerprint(path: Path) -> dict[str, Any]:
    """``{size, sha256}`` of a file, read in chunks (a 530 MB VGG artifact hashes in about a second)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def record_file(manifest: dict[str, Any], folder: str | os.PathLike[str], name: str) -> None:
    """Store the fingerprint of ``folder/name`` in the manifest as the file is finished."""
    manifest.setdefault("files", {})[name] = fingerprint(Path(folder) / name)


def verify_file(folder: Path, manifest: Mapping[str, Any], name: str) -> Path:
    """The path of ``name`` after checking it is a regular file inside ``folder`` (no symlink) whose size
    and SHA-256 equal the manifest's record; raises ``ArtifactError`` naming it otherwise."""
    path = folder / safe_name(name, name, folder / MANIFEST)
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symlink; artifacts must be regular files inside the folder, re-export")
    if not path.is_file():
        raise ArtifactError(f"{path} is listed in the manifest but missing; re-export")
    record = manifest.get("files", {}).get(name)
    if record is None:
        raise ArtifactError(f"{path} has no size/SHA-256 record in the manifest (written by an older attn-export?); "
                            "re-export, or load with verify=False")
    size = path.stat().st_size
    if size != record["size"]:
        raise ArtifactError(f"{path} is {size} bytes but the manifest recorded {record['size']}: the file is "
                            "truncated or was replaced; re-export")
    if fingerprint(path)["sha256"] != record["sha256"]:
        raise ArtifactError(f"{path} does not match its SHA-256 in the manifest: the file is corrupt or was "
                            "replaced; re-export")
    return path


def input_specs(manifest: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(s) for s in manifest["inputs"])


def output_specs(manifest: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(s) for s in manifest["outputs"])


def flops_per_sample(manifest: Mapping[str, Any]) -> int | None:
    """FLOPs of one sample at the example sizes (the sizes attn-bench's inputs have), or ``None``: a manifest
    written before FLOPs were counted, or a model the counter could not run."""
    flops = (manifest.get("flops_per_sample") or {}).get("flops")
    return int(flops) if isinstance(flops, (int, float)) and flops > 0 else None


def preprocess(manifest: Mapping[str, Any]) -> Preprocess | None:
    """The model's recorded image preprocessing, or ``None`` (no image input, or an older manifest)."""
    record = manifest.get("preprocess")
    return Preprocess.from_json(record) if record else None


# files an artifact opens beside itself: the IR's .bin, an ONNX file's external data (``KEY_data``, written
# above 2 GiB or with --external-data)
COMPANIONS = {"openvino": ("openvino_weights",), "onnx": ("onnx_data",), "onnx_fp16": ("onnx_fp16_data",),
              "onnx_int8": ("onnx_int8_data",)}


def companions(manifest: Mapping[str, Any], key: str) -> list[str]:
    """The file names artifact ``key`` opens beside itself, as the manifest lists them."""
    return [manifest["artifacts"][k] for k in COMPANIONS.get(key, ()) if k in manifest["artifacts"]]


def artifact(folder: str | os.PathLike[str], manifest: Mapping[str, Any], key: str, *, verify: bool = True) -> Path:
    """Path of artifact ``key`` (``onnx``, ``torch``, ``engine`` …) after checking it (and its companion
    files, e.g. the IR's ``.bin``) against the manifest's size and SHA-256; ``verify=False`` checks only
    that the files exist."""
    root = Path(folder)
    name = manifest["artifacts"].get(key)
    if not name:
        raise ArtifactError(f"{folder} has no {key!r} artifact; re-export with the option that writes it")
    for extra in (name, *companions(manifest, key)):
        if verify:
            verify_file(root, manifest, extra)
        elif not (root / safe_name(extra, extra, root / MANIFEST)).is_file():
            raise ArtifactError(f"{root / extra} is listed in the manifest but missing; re-export")
    return root / name
