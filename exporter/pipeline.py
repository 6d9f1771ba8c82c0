"""``export_module()``: any ``nn.Module`` with input/output specs → weights.pt, model.pt2, model.onnx
(+ fp16/int8/IR/engine), parity.json, manifest.json, built in a staging folder and swapped in only
when every check passed. ``export()`` does the same for a MODEL reference (a zoo or plugin name,
``file.py:callable`` or ``package.module:callable``): the CLI's path, and the same code.

Inside the staging folder the manifest is first written with status "running" and every
artifact's size and SHA-256 are recorded as it is finished; only a run whose checks all passed
writes status "ok" and is published. The work itself is the stage table of ``exporter.stages``.
"""
from __future__ import annotations

import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from exporter import quiet, staging
from exporter.checks.sample_inputs import read_npz
from exporter.context import ExportContext
from exporter.errors import failure_class
from exporter.export_model import ExportModel
from exporter.formats import onnx_export
from exporter.options import ExportOptions
from exporter.progress import Printer, Stages, silent
from exporter.sources.model_hubs import SourceModel
from exporter.sources.model_source import build_source, default_name
from exporter.sources.zero_weights import redraw_zero_weights
from exporter.stages import check_requirements, run_stages
from exporter.zoo.weights import load_weights
from runtimes import manifest as mf
from runtimes.bench.labels import image_folder
from runtimes.errors import AttnExportError, OptionError
from runtimes.images import Preprocess
from runtimes.specs import TensorSpec

__all__ = ["ExportOptions", "export", "export_module", "versions"]


def versions() -> dict[str, str]:
    """Versions of everything that shaped the artifacts."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("attn-export", "torch", "torchvision", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxslim", "executorch",
                 "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def ensure_folder_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, or raise one clear line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AttnExportError(f"output folder {folder} is not writable ({exc.strerror}); choose another with --out")


def export(
    model: str | nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    options: ExportOptions | None = None,
    printer: Printer = silent,
    model_args: Mapping[str, Any] | None = None,
    inputs: Sequence[TensorSpec] | None = None,
    outputs: Sequence[TensorSpec | str] | None = None,
    max_dims: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Export ``model`` — a zoo or plugin name, ``timm:NAME``, ``torchvision:NAME``, ``file.py:callable``,
    ``package.module:callable`` (built with ``model_args``), or a built module — into ``out_dir/NAME/``; see
    :func:`export_module`. A timm or torchvision model needs no ``inputs``: its configuration gives the image
    size and the preprocessing (``inputs`` still overrides the size)."""
    opts = options or ExportOptions()
    if isinstance(model, str):
        torch.manual_seed(opts.seed)  # the initial weights of a model without --weights
        source = build_source(model, dict(model_args or {}), opts.num_classes)
        name = name or default_name(model)
    else:
        source = SourceModel(model)
    return export_module(source.module, out_dir, inputs=inputs or source.input_specs, outputs=outputs, name=name,
                         options=opts, printer=printer, max_dims=max_dims, preprocess=source.preprocess)


def export_module(
    module: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    inputs: Sequence[TensorSpec] | None = None,
    outputs: Sequence[TensorSpec | str] | None = None,
    name: str | None = None,
    options: ExportOptions | None = None,
    printer: Printer = silent,
    max_dims: Mapping[str, int] | None = None,
    preprocess: Preprocess | None = None,
) -> dict[str, Any]:
    """Export ``module`` into ``out_dir/NAME/`` and return the manifest.

    ``inputs`` (``TensorSpec`` per ``forward`` argument, in order; default: ``module.input_specs``)
    name their dynamic axes (``"batch"`` first, then e.g. ``"seq"``, bounded by ``max_dims``);
    ``outputs`` are specs or names (default: ``module.output_specs``, else ``output0..N``, shapes read
    by running ``forward``); ``preprocess`` how image files become the image input (recorded as the manifest's
    ``preprocess``; default: a resize to the input size). ``options.weights`` loads a state_dict strictly. Everything is built in a
    staging folder (``exporter.staging``) and swapped in only when every check passed. Raises
    ``ModelSourceError`` (exit 2) for specs that do not fit the module, ``ExportError`` (exit 4) when
    export breaks a promise, ``ParityError`` (exit 3) when an artifact disagrees with PyTorch — after
    writing a manifest with status "failed" and the full report into ``NAME/`` (or ``NAME.failed/``
    when ``NAME/`` holds a good export, which stays untouched). Ctrl-C/SIGTERM discards the staging folder.
    With ``options.keep_going`` a failed artifact stage (FP16, INT8, OpenVINO, .ort, ExecuTorch, TensorRT) does
    not stop the export: the folder is published with the artifacts that passed and the manifest's
    ``failures`` lists the others (the CLI then exits 3). Third-party output goes to ``NAME/export.log``
    unless ``options.verbose``.
    """
    opts = options or ExportOptions()
    exporters = onnx_export.exporter_order(opts.opset, opts.exporter)
    label = name or type(module).__name__.lower()
    out, target = Path(out_dir), Path(out_dir) / label
    check_requirements(opts)  # fail before any work when TensorRT, the GPU or ExecuTorch is missing
    if opts.weights and opts.redraw_zero_weights:
        raise OptionError("--redraw-zero-weights is for random init: it would overwrite zeros of --weights")
    timer = Stages(label, printer)
    with timer.stage("check model"):  # weights, specs and sample files are checked before the folder is touched
        if opts.weights:
            load_weights(module, opts.weights)
        redrawn = redraw_zero_weights(module, opts.seed) if opts.redraw_zero_weights else []
        if redrawn:
            printer(f"[{label}] re-drew {len(redrawn)} all-zero weight tensor(s): {', '.join(redrawn[:4])}"
                    f"{' …' if len(redrawn) > 4 else ''}")
        model = ExportModel.of(module.eval(), inputs, outputs, max_dims, preprocess)
        samples = read_npz(opts.sample_inputs, model.input_specs) if opts.sample_inputs else None
        calib_arrays = read_npz(opts.calib, model.input_specs, "--calib") \
            if opts.calib and Path(opts.calib).suffix == ".npz" else None
        labelled = image_folder(opts.eval_data) if opts.eval_data else None
    ensure_folder_writable(out)
    for stale in staging.clean_stale(out, label):
        printer(f"[{label}] removed {stale.name}, left by a killed export")
    folder = staging.make_staging(out, label)
    manifest: dict[str, Any] = {
        "model": label, "status": mf.STATUS_RUNNING, "opset": opts.opset, "exporter": exporters[0],
        "inputs": [s.to_json() for s in model.input_specs], "outputs": [s.to_json() for s in model.output_specs],
        "batch": opts.batch.to_json(), "artifacts": {}, "files": {}, "parity": {}, "versions": versions(),
        "seed": opts.seed, "parameters": sum(p.numel() for p in module.parameters()), "timings": timer.timings,
        "peak_rss_mb": timer.peak_rss_mb, **({"redrawn_zero_weights": redrawn} if redrawn else {}),
        **({"preprocess": model.preprocess.to_json()} if model.preprocess else {}),
    }
    context = ExportContext(folder, model, opts, exporters[0], manifest, printer, timer, exporters, samples,
                            calib_arrays, labelled)
    try:
        mf.write_manifest(folder, manifest)
        with quiet.maybe_quiet(folder, opts.verbose):
            run_stages(context)
        for failed in manifest.get("failures", []):  # reasons may name the staging folder, about to be renamed
            failed["reason"] = failed["reason"].replace(str(folder), str(target))
        manifest["status"] = mf.STATUS_OK
        mf.write_manifest(folder, manifest)
    except KeyboardInterrupt:
        staging.discard(folder)
        raise
    except BaseException as exc:
        _mark_failed(folder, manifest, exc)
        where = staging.publish_failed(folder, target)
        if isinstance(exc, AttnExportError):  # its message may name the staging folder, now moved
            exc.args = tuple(str(a).replace(str(folder), str(where)) for a in exc.args)
        if where != target:
            printer(f"[{label}] the failed export is in {where}; {target} still holds the previous good export")
        raise
    staging.publish(folder, target)
    return manifest


def _mark_failed(folder: Path, manifest: dict[str, Any], exc: BaseException) -> None:
    """Write status "failed" with the error (a parity failure already did); never mask ``exc``."""
    manifest["failure_class"] = failure_class(exc)
    if manifest["status"] == mf.STATUS_FAILED:
        mf.write_manifest(folder, manifest)
        return
    manifest.update(status=mf.STATUS_FAILED, error=str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__)
    try:
        mf.write_manifest(folder, manifest)
    except OSError:
        pass  # the disk that failed the export may refuse this too; the status stays "running"
