"""Serve exported models through torch, onnxruntime or TensorRT with numpy in and out.

``import runtimes`` imports neither torch nor tensorrt; each backend imports its
engine when it is opened, and a missing one raises naming the install command.

    import runtimes
    with runtimes.load("artifacts/vgg16_cross", engine="ort") as rt:
        logits = rt({"image": image, "context": context})["logits"]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import manifest as mf
from .base import Runtime, TensorInfo
from .errors import ArtifactError, BackendUnavailableError, InputSpecError, RuntimeClosedError

ENGINES = ("ort", "torch", "trt")
_ARTIFACT_KEY = {"ort": "onnx", "torch": "torch", "trt": "engine"}
_SUFFIX_ENGINE = {".onnx": "ort", ".pt2": "torch", ".engine": "trt", ".plan": "trt"}

__all__ = ["ENGINES", "Runtime", "TensorInfo", "load", "InputSpecError", "ArtifactError",
           "BackendUnavailableError", "RuntimeClosedError"]


def _backend(engine: str) -> type[Runtime]:
    if engine == "ort":
        from .ort_rt import OrtRuntime as cls
    elif engine == "torch":
        from .torch_rt import TorchRuntime as cls  # type: ignore[assignment]
    elif engine == "trt":
        from .trt_rt import TrtRuntime as cls  # type: ignore[assignment]
    else:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return cls


def load(path: str | os.PathLike[str], engine: str = "ort", device: str = "cpu", **options: Any) -> Runtime:
    """Open an artifact folder (its manifest picks the file, specs and batch profile) or a single
    ``.onnx`` / ``.pt2`` / ``.engine``/``.plan`` file, and return an opened ``Runtime``.

    ``options`` go to the backend (ort: ``threads``, ``optimization``; all: ``max_batch``).
    """
    target = Path(path)
    backend = _backend(engine)
    if target.is_dir():
        manifest = mf.read_manifest(target)
        file = mf.artifact(target, manifest, _ARTIFACT_KEY[engine])
        options.setdefault("max_batch", manifest["batch"]["max"])
        if engine == "trt":
            options.setdefault("engine_meta", manifest.get("engine"))
        runtime = backend(file, device=device, input_specs=mf.input_specs(manifest),
                          output_specs=mf.output_specs(manifest), **options)
    elif target.is_file():
        wanted = _SUFFIX_ENGINE.get(target.suffix)
        if wanted != engine:
            raise ArtifactError(f"{target.name} is not an artifact of engine {engine!r}"
                                f"{f' (it is for {wanted!r})' if wanted else ''}")
        runtime = backend(target, device=device, **options)
    else:
        raise ArtifactError(f"{target} does not exist: give an artifact folder or an .onnx/.pt2/.engine file")
    return runtime.open()
