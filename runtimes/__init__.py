"""Serve exported models through onnxruntime, OpenVINO, TensorRT, ExecuTorch or torch with numpy in and out.

``import runtimes`` imports no engine; each backend imports its engine when it
is opened, and a missing one raises naming the install command. Which file an
engine runs at which precision is decided in one table, ``runtimes.selection``.

Layout: the public API and what every layer shares at the top (``load``, ``base.Runtime``, ``selection``,
``specs``, ``dtypes``, ``manifest``, ``errors``, ``fileio``, ``optional``, ``user_cache``, ``machine``,
``images``, ``auto_select``, ``cli_support``); one module per engine in ``runtimes.engines``; attn-bench in
``runtimes.bench``.

Layering (tests/test_layering.py checks each rule): ``runtimes`` is the bottom layer (numpy and one engine),
and no module of it imports torch when imported; it imports neither ``exporter`` nor ``serving``, except
attn-bench's one lazy call of the exporter (``runtimes.bench.cli``, to export a zoo model that has no folder
yet). ``exporter`` and ``serving`` import its modules, never a ``runtimes._private`` name.

    import runtimes
    with runtimes.load("artifacts/vgg16_cross", engine="openvino", precision="bf16") as rt:
        logits = rt({"image": image, "context": context})["logits"]
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from runtimes import manifest as mf
from runtimes.base import Runtime, TensorInfo
from runtimes.errors import ArtifactError, BackendUnavailableError, InputSpecError, OptionError, RuntimeClosedError
from runtimes.selection import (
    AUTO,
    BACKENDS,
    ENGINES,
    PRECISIONS,
    SUFFIX_ENGINES,
    artifact_key,
    canonical_precision,
    check_engine,
    default_device,
    normalise_precision,
)

__all__ = ["ENGINES", "PRECISIONS", "Runtime", "TensorInfo", "load", "verify", "InputSpecError", "ArtifactError",
           "BackendUnavailableError", "RuntimeClosedError"]


def verify(folder: str | os.PathLike[str]) -> list[str]:
    """Check every file the manifest of ``folder`` records (size and SHA-256, no symlinks, nothing outside
    the folder); returns the names checked, raises ``ArtifactError`` naming the first bad one."""
    root = Path(folder)
    manifest = mf.read_manifest(root, require_ok=False)
    names = list(manifest.get("files", {}))
    missing = [n for n in manifest["artifacts"].values() if n not in names]
    if missing:
        raise ArtifactError(f"{root}: {missing} have no size/SHA-256 record in the manifest; re-export")
    for name in names:
        mf.verify_file(root, manifest, name)
    return names


def backend(engine: str) -> type[Runtime]:
    """The Runtime class of ``engine``, imported on first use."""
    module, _, name = BACKENDS[check_engine(engine)].partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module), name)
    return cls


def load(path: str | os.PathLike[str], engine: str = "ort", device: str | None = None, precision: str | None = None,
         *, verify: bool = True, **options: Any) -> Runtime:
    """Open an artifact folder (its manifest picks the file, specs and batch profile) or a single
    ``.onnx`` / ``.ort`` / ``.xml`` / ``.pt2`` / ``.pte`` / ``.engine``/``.plan`` file, and return an opened ``Runtime``.

    ``engine="auto"`` (a folder only) measures every verified artifact of the folder on this machine and opens
    the fastest (``runtimes.auto_select``; ``precision`` then filters the candidates; ``batch``, ``budget_s`` and
    ``max_accuracy_drop`` tune the measurement); ``runtime.choice`` says what was measured and why it won.
    ``device`` defaults to the engine's own (``trt``: cuda; the others: cpu; ``runtimes.selection.DEVICES``).
    ``precision`` (``fp32``, ``fp16``, ``bf16``, ``int8`` or ``auto``; default: the engine's) picks
    the artifact through ``runtimes.selection``; ``runtime.precision`` says which one ran.
    In a folder, the file (and its companions) is checked against the manifest's size and SHA-256
    before it is opened (``verify=False`` skips the hash, e.g. for a read-only image already checked;
    a single file has no manifest to check against). ``options`` go to the backend
    (all: ``max_batch``, ``check_finite``, ``spin_wait``; ort/openvino: ``threads``; ort: ``optimization``;
    openvino: ``hint``).
    """
    target = Path(path)
    if engine == AUTO:
        return _load_fastest(target, device, precision, verify=verify, **options)
    cls = backend(engine)
    device = device or default_device(engine)
    wanted = normalise_precision(precision, engine)
    if target.is_dir():
        manifest = mf.read_manifest(target)
        wanted = cls.resolve_precision(wanted, manifest["parity"])
        key = artifact_key(manifest["artifacts"], engine, wanted)
        file = mf.artifact(target, manifest, key, verify=verify)
        options.setdefault("max_batch", manifest["batch"]["max"])
        options.setdefault("artifact_record", manifest.get(key))
        options.setdefault("preprocess", mf.preprocess(manifest))
        runtime = cls(file, device=device, precision=wanted, input_specs=mf.input_specs(manifest),
                      output_specs=mf.output_specs(manifest), **options)
    elif target.is_file():
        engines = SUFFIX_ENGINES.get(target.suffix, ())
        if engine not in engines:
            raise ArtifactError(f"{target.name} is not an artifact of engine {engine!r}"
                                f"{f' (it is for {engines[0]!r})' if engines else ''}")
        runtime = cls(target, device=device, precision=wanted, **options)  # the runtime resolves auto
    else:
        raise ArtifactError(f"{target} does not exist: give an artifact folder or an .onnx/.ort/.xml/.pt2/.pte/.engine file")
    return runtime.open()


def _load_fastest(target: Path, device: str | None, precision: str | None, *, verify: bool,
                  batch: int = 1, budget_s: float | None = None, max_accuracy_drop: float | None = None,
                  **options: Any) -> Runtime:
    """``load(folder, engine="auto")``: ``auto_select.choose`` then the chosen engine at its precision."""
    from runtimes import auto_select

    if not target.is_dir():
        raise OptionError(f"engine='auto' chooses among the artifacts of a folder; {target} is not one")
    if device not in (None, "cpu"):
        raise OptionError("engine='auto' measures on the CPU; name an engine to run on cuda")
    engine_options = {k: v for k, v in options.items() if k in auto_select.ENGINE_OPTIONS}
    choice = auto_select.choose(
        target, batch=batch, threads=engine_options.pop("threads", None), precision=canonical_precision(precision),
        verify=verify, **engine_options,
        budget_s=auto_select.DEFAULT_BUDGET_S if budget_s is None else budget_s,
        max_accuracy_drop=auto_select.DEFAULT_MAX_ACCURACY_DROP if max_accuracy_drop is None else max_accuracy_drop)
    runtime = load(target, engine=choice.engine, precision=choice.precision, verify=verify,
                   **auto_select.options_for(choice.engine, options))
    runtime.choice = choice
    return runtime
