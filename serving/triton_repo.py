"""Triton Inference Server model repositories from artifact folders (GPU fleets serve ONNX and
TensorRT plans natively; what they need from us is a correct repository).

One entry per artifact Triton can serve that the folder has (the ONNX files of the ``ort`` rows and the
TensorRT plans of the engine × precision table, ``runtimes.selection``): ``<model>_onnx`` (ort fp32), ``<model>_fused`` (ort fp32 with fused attention, ``--ort-fusion``), ``<model>_fp16``,
``<model>_int8`` (onnxruntime_onnx) and
``<model>_trt``, ``<model>_trt_int8`` (tensorrt_plan). Each is ``config.pbtxt`` plus ``1/model.onnx``
(with its external data file, under its own name, when the weights are external) or ``1/model.plan``, the artifact verified against the manifest's SHA-256 before it is hard-linked (or
copied, across filesystems), and
every entry written in a temporary folder renamed into place.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from runtimes import manifest as mf
from runtimes.dtypes import convert
from runtimes.fileio import UMASK
from runtimes.specs import BATCH, TensorSpec

@dataclass(frozen=True)
class TritonBackend:
    """How Triton serves one kind of file: its platform, the file name it expects in ``1/``, and whether it
    runs on the GPU only (a TensorRT plan) or where ``--device`` says (ONNX on onnxruntime)."""

    platform: str
    file: str
    gpu_only: bool

    def kind(self, device: str) -> str:
        return "KIND_GPU" if self.gpu_only or device == "cuda" else "KIND_CPU"


# the artifact's file type → how Triton serves it; the artifact key → the entry's name suffix
BACKENDS = {".onnx": TritonBackend("onnxruntime_onnx", "model.onnx", gpu_only=False),
            ".engine": TritonBackend("tensorrt_plan", "model.plan", gpu_only=True)}
ENTRY_SUFFIX = {"onnx": "onnx", "onnx_fused": "fused", "onnx_fp16": "fp16", "onnx_int8": "int8", "engine": "trt", "engine_int8": "trt_int8"}


def _dims(spec: TensorSpec) -> list[int]:
    """Triton dims: the batch axis left out (``max_batch_size`` covers it), other named axes -1."""
    return [d if isinstance(d, int) else -1 for d in spec.shape[1:]]


def _tensors(kind: str, specs: Sequence[TensorSpec]) -> str:
    rows = [f'  {{ name: "{s.name}" data_type: {convert(s.dtype, "numpy", "triton")} dims: [ {", ".join(map(str, _dims(s)))} ] }}'
            for s in specs]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def config_pbtxt(name: str, backend: TritonBackend, manifest: Mapping[str, Any], *, instances: int = 1,
                 device: str = "cpu", queue_delay_us: int = 1000) -> str:
    """The ``config.pbtxt`` text of one repository entry."""
    inputs, outputs = mf.input_specs(manifest), mf.output_specs(manifest)
    if not all(s.shape and s.shape[0] == BATCH for s in (*inputs, *outputs)):
        raise ValueError(f"{manifest['model']}: every tensor needs a leading batch axis for Triton's batching")
    batch = manifest["batch"]
    preferred = sorted({batch["opt"], batch["max"]})
    return (f'name: "{name}"\nplatform: "{backend.platform}"\nmax_batch_size: {batch["max"]}\n'
            + _tensors("input", inputs) + _tensors("output", outputs)
            + f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
            f"  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"
            f"instance_group [ {{ count: {instances} kind: {backend.kind(device)} }} ]\n")


def write_repository(folders: Sequence[Path], out: Path, *, instances: int = 1, device: str = "cpu",
                     queue_delay_us: int = 1000) -> list[Path]:
    """Write a repository entry for every servable artifact of every folder; returns the entries."""
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        manifest = mf.read_manifest(folder)
        for key, suffix in ENTRY_SUFFIX.items():
            if not manifest["artifacts"].get(key):
                continue
            source = mf.artifact(folder, manifest, key)
            backend = BACKENDS[source.suffix]
            name = f"{manifest['model']}_{suffix}"
            text = config_pbtxt(name, backend, manifest, instances=instances, device=device,
                                queue_delay_us=queue_delay_us)
            beside = [Path(folder) / n for n in mf.companions(manifest, key)]  # verified by mf.artifact
            written.append(_write_entry(out, name, text, source, backend.file, beside))
    return written


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the repository shares the export's filesystem (a VGG16 is 528 MB; our exports replace
    files atomically, never in place, so the entry keeps the bytes it was written with), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_entry(out: Path, name: str, config: str, source: Path, file: str, beside: Sequence[Path] = ()) -> Path:
    """One entry: ``config.pbtxt`` and ``1/FILE``, with the files ``source`` opens beside itself (an ONNX file's
    external data, which it finds by its own name) under their names."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        (staging / "config.pbtxt").write_text(config)
        (staging / "1").mkdir()
        _link_or_copy(source, staging / "1" / file)
        for companion in beside:
            _link_or_copy(companion, staging / "1" / companion.name)
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        os.chmod(staging, 0o777 & ~UMASK)  # mkdtemp makes 0700
        os.replace(staging, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
