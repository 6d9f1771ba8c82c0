"""``export()``: zoo model → weights.pt, model.pt2, model.onnx (+ fp16/int8/IR/engine), parity.json,
manifest.json, built in a staging folder and swapped in only when every check passed.

Inside the staging folder the manifest is first written with status "running"
and every artifact's size and SHA-256 are recorded as it is finished; only a
run whose checks all passed writes status "ok" and is published.
"""
from __future__ import annotations

import io
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch

import runtimes
from runtimes import manifest as mf
from runtimes._io import atomic_path, write_json
from runtimes.base import Runtime
from runtimes.errors import AttnExportError
from runtimes.manifest import BatchProfile
from runtimes.providers import cuda_usable
from runtimes.specs import BATCH, TensorSpec, random_inputs
from runtimes.trt_common import cuda_device_info, import_tensorrt

from runtimes import torch_rt
from runtimes.openvino_rt import cpu_capabilities

from . import bf16_floor, fp16, int8, onnx_export, openvino_ir, staging, trt_build, trt_readiness, trtexec
from .errors import EngineBuildError, ExportError, ParityError
from .parity import ParityReport, Tolerance
from .photos import photo_inputs
from .progress import Printer, Stages, silent
from .zoo import ZooModel, create_model

EXAMPLE_BATCH = 2  # >= 2, so no exporter can specialise the batch to 1
# TensorRT precision → (manifest artifact key, file name, what the parity report calls it)
ENGINE_ARTIFACTS = {"fp16": ("engine", "model.engine", "TensorRT engine"),
                    "int8": ("engine_int8", "model.int8.engine", "TensorRT INT8 engine")}


@dataclass
class ExportOptions:
    """Everything ``attn-export`` can be told; defaults are the CLI's."""

    opset: int = 17
    batch: BatchProfile = field(default_factory=lambda: BatchProfile(1, 8, 32))
    num_classes: int = 1000
    weights: str | None = None
    seed: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance.fp32)
    simplify: bool = True
    exporter: str = "auto"
    photos: bool = True
    fp16: bool = False
    fp16_tolerance: Tolerance = field(default_factory=Tolerance.fp16)
    openvino: bool = False  # also write the OpenVINO IR and check it (FP32, and BF16 where the CPU has it)
    int8: bool = False  # also write model.int8.onnx (ModelOpt Q/DQ) and check it with INT8 tolerances
    int8_tolerance: Tolerance = field(default_factory=Tolerance.int8)
    calib_dir: str | None = None  # the user's images for INT8 calibration (default: bundled photos)
    calib_method: str = "max"
    calib_size: int = 32
    engine: str | None = None  # "trt": also build model.engine (implies fp16); with int8 also model.int8.engine
    workspace_gib: float = 4.0
    timing_cache: str | None = None


def parity_batches(profile: BatchProfile) -> list[int]:
    """1, 2, an odd size (7, or the largest odd size ≤ max) and the profile max, deduplicated."""
    odd = min(7, profile.max if profile.max % 2 else profile.max - 1)
    return sorted({b for b in (1, 2, odd, profile.max) if profile.min <= b <= profile.max} or {profile.min})


def versions() -> dict[str, str]:
    """Versions of everything that shaped the artifacts."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("attn-export", "torch", "torchvision", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxslim", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def dynamic_shapes(specs: Sequence[TensorSpec]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic_shapes: one shared ``batch`` Dim, other named axes DYNAMIC."""
    batch = torch.export.Dim(BATCH, min=1, max=1 << 16)
    return tuple({axis: batch if name == BATCH else torch.export.Dim.DYNAMIC for axis, name in s.dynamic_axes.items()}
                 for s in specs)


def trace_program(model: ZooModel, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """torch.export with a symbolic batch; a model that specialises it fails naming the input."""
    try:
        return torch.export.export(model, example, dynamic_shapes=dynamic_shapes(model.input_specs))
    except Exception as exc:  # torch raises UserError / ConstraintViolation; re-word the common case
        text = str(exc)
        names = [s.name for s in model.input_specs]
        if "specialize" in text or "Constraints violated" in text or "batch" in text:
            raise ExportError(
                f"input {names[0]!r}: the model fixes the batch dimension to the example size {EXAMPLE_BATCH} "
                "(e.g. .view(batch_size, ...) with a Python int); use -1, flatten or unflatten"
            ) from exc
        raise ExportError(f"torch.export failed: {text.strip().splitlines()[0]}") from exc


@dataclass(frozen=True)
class ParityInputs:
    """One input set and PyTorch's outputs on it, computed once and compared with every candidate."""

    label: str
    arrays: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]


def reference_sets(model: ZooModel, batches: Sequence[int], seed: int, photos: bool) -> list[ParityInputs]:
    """Seeded random inputs at each batch size, plus real photos where the model takes images."""
    input_sets = [(f"random b={b}", random_inputs(model.input_specs, b, seed=seed + b)) for b in batches]
    photo_set = photo_inputs(model.input_specs, seed) if photos else None
    if photo_set is not None:
        input_sets.append((f"photos b={len(next(iter(photo_set.values())))}", photo_set))
    return [ParityInputs(label, arrays, model.forward_arrays(arrays)) for label, arrays in input_sets]


def check_parity(candidate: Runtime, sets: Sequence[ParityInputs], tolerance: Tolerance) -> ParityReport:
    """Compare ``candidate`` (an opened runtime) with the PyTorch reference on every input set."""
    report = ParityReport(candidate=f"{candidate.label}-{candidate.device}:{candidate.path.name}", tolerance=tolerance)
    for inputs in sets:
        report.add(inputs.label, inputs.reference, candidate(inputs.arrays))
    return report


def check_file_parity(path: Path, engine: str, sets: Sequence[ParityInputs], tolerance: Tolerance,
                      precision: str | None = None) -> ParityReport:
    """Open ``path`` with ``engine`` at ``precision`` (ort on CUDA where usable, else CPU; trt on CUDA;
    openvino on CPU) and check it."""
    device = "cuda" if engine == "trt" or (engine == "ort" and cuda_usable()) else "cpu"
    with runtimes.load(path, engine=engine, device=device, precision=precision) as candidate:
        return check_parity(candidate, sets, tolerance)


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, or raise one clear line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AttnExportError(f"output folder {folder} is not writable ({exc.strerror}); choose another with --out")


def _record(folder: Path, manifest: dict[str, Any], reports: dict[str, Any], key: str, what: str,
            report: ParityReport, batches: Sequence[int], printer: Printer, required: bool = True,
            **extra: Any) -> None:
    """Store ``report`` under ``key`` in parity.json and the manifest and print it; on failure of a
    ``required`` check mark the manifest failed and raise ``ParityError`` (exit 3). A check that is
    not required (a runtime precision such as OpenVINO BF16) is recorded, and loaders read it."""
    reports[key] = {**report.to_json(), **extra}
    write_json(folder / "parity.json", reports)
    _add_artifact(manifest, folder, "parity", folder / "parity.json")
    manifest["parity"][key] = {"passed": bool(report), "worst": report.worst, "batches": list(batches)}
    printer(report.table())
    if report or not required:
        return
    manifest.update(status=mf.STATUS_FAILED, error=f"{what} parity failed")
    mf.write_manifest(folder, manifest)
    raise ParityError(
        f"{manifest['model']}: {what} disagrees with PyTorch beyond tolerance (worst rel "
        f"{report.worst['max_rel']:.2e}, cosine {report.worst['min_cosine']:.6f}); see {folder / 'parity.json'}"
    )


def _bf16_format_floor(label: str, net: ZooModel, sets: Sequence[ParityInputs], printer: Printer) -> dict[str, Any]:
    """After a failed BF16 check: would the BF16 format itself pass on these weights? (``bf16_floor``)"""
    floor = bf16_floor.emulated_report(net, sets)
    worst = floor.worst
    verdict = ("passes, so the engine adds the error" if floor else
               "misses it too, so no BF16 engine can meet it on these weights")
    printer(f"[{label}] BF16 format alone (PyTorch, inputs/weights/module outputs rounded to bf16): worst rel "
            f"{worst['max_rel']:.2e}, cosine {worst['min_cosine']:.6f}, top1 {100 * worst['min_top1']:.0f}% — {verdict}; "
            "precision='auto' runs FP32")
    return {"passed": bool(floor), "worst": worst, "what": bf16_floor.LABEL}


def export(
    model: str | ZooModel,
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    options: ExportOptions | None = None,
    printer: Printer = silent,
) -> dict[str, Any]:
    """Export zoo model ``model`` (a name or a built ``ZooModel``) into ``out_dir/NAME/``.

    Returns the manifest. Everything is built in a staging folder (``exporter.staging``) and swapped
    in only when every check passed. Raises ``ExportError`` (exit 4) when export breaks a promise,
    ``ParityError`` (exit 3) when an artifact disagrees with PyTorch — after writing a manifest with
    status "failed" and the full report into ``NAME/`` (or ``NAME.failed/`` when ``NAME/`` holds a
    good export, which stays untouched). Ctrl-C/SIGTERM discards the staging folder.
    """
    opts = options or ExportOptions()
    exporter = onnx_export.choose_exporter(opts.opset, opts.exporter)
    label = name or (model if isinstance(model, str) else type(model).__name__.lower())
    out, target = Path(out_dir), Path(out_dir) / label
    if opts.engine == "trt":  # fail before any work when TensorRT or the GPU is missing
        import_tensorrt()
        cuda_device_info()
    stages = Stages(label, printer)
    with stages.stage("build model"):  # weights and options are checked before the folder is touched
        torch.manual_seed(opts.seed)
        net = create_model(model, num_classes=opts.num_classes, weights=opts.weights) if isinstance(model, str) \
            else model.eval()
    ensure_writable(out)
    for stale in staging.clean_stale(out, label):
        printer(f"[{label}] removed {stale.name}, left by a killed export")
    folder = staging.make_staging(out, label)
    manifest: dict[str, Any] = {
        "model": label, "status": mf.STATUS_RUNNING, "opset": opts.opset, "exporter": exporter,
        "inputs": [s.to_json() for s in net.input_specs], "outputs": [s.to_json() for s in net.output_specs],
        "batch": opts.batch.to_json(), "artifacts": {}, "files": {}, "parity": {}, "versions": versions(),
        "seed": opts.seed, "parameters": sum(p.numel() for p in net.parameters()), "timings": stages.timings,
    }
    try:
        _run_stages(folder, manifest, net, opts, exporter, stages, printer)
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
    if manifest["status"] == mf.STATUS_FAILED:
        return
    manifest.update(status=mf.STATUS_FAILED, error=str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__)
    try:
        mf.write_manifest(folder, manifest)
    except OSError:
        pass  # the disk that failed the export may refuse this too; the status stays "running"


def _add_artifact(manifest: dict[str, Any], folder: Path, key: str, path: Path) -> None:
    """List a finished artifact and record its size and SHA-256."""
    manifest["artifacts"][key] = path.name
    mf.record_file(manifest, folder, path.name)


def _run_stages(folder: Path, manifest: dict[str, Any], net: ZooModel, opts: ExportOptions, exporter: str,
                stages: Stages, printer: Printer) -> None:
    """Every export stage, in order, writing into ``folder`` (the staging folder)."""
    label = manifest["model"]
    mf.write_manifest(folder, manifest)
    example = tuple(torch.from_numpy(a) for a in random_inputs(net.input_specs, EXAMPLE_BATCH, seed=opts.seed).values())

    with stages.stage("torch.export"):
        program = trace_program(net, example)
        # serialised in memory, written by us: a full disk then raises OSError naming the file,
        # where torch's own writer raises an unhelpful RuntimeError
        weights, program_file = io.BytesIO(), io.BytesIO()
        torch.save(net.state_dict(), weights)
        torch.export.save(program, program_file, extra_files={
            torch_rt.IO_FILE: json.dumps({"outputs": [s.name for s in net.output_specs]})})
        for name, buffer in (("weights.pt", weights), ("model.pt2", program_file)):
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(buffer.getbuffer())
    _add_artifact(manifest, folder, "weights", folder / "weights.pt")
    _add_artifact(manifest, folder, "torch", folder / "model.pt2")

    onnx_path = folder / "model.onnx"
    with stages.stage(f"onnx export (opset {opts.opset}, {exporter})"):
        onnx_export.export_onnx(
            net, program, example, onnx_path, opset=opts.opset, exporter=exporter,
            input_specs=net.input_specs, output_specs=net.output_specs,
        )
    if opts.simplify:
        with stages.stage("simplify (onnxslim)"):
            before, after = onnx_export.simplify(onnx_path)
        manifest["simplify"] = {"tool": "onnxslim", "nodes_before": before, "nodes_after": after}
    _add_artifact(manifest, folder, "onnx", onnx_path)
    final_graph = onnx.load(str(onnx_path), load_external_data=False)
    if opts.simplify:  # re-check what the simplifier wrote; export_onnx checked the unsimplified file
        onnx_export.check_dynamic_axes(final_graph, net.input_specs, net.output_specs)
    manifest["onnx_nodes"] = len(final_graph.graph.node)
    manifest["trt_readiness"] = trt_readiness.check(final_graph)
    for warning in manifest["trt_readiness"]["warnings"]:
        printer(f"[{label}] TensorRT readiness: warning: {warning}")
    if opts.engine == "trt" and manifest["trt_readiness"]["errors"]:
        raise EngineBuildError("the ONNX graph is not TensorRT-ready", manifest["trt_readiness"]["errors"])

    batches = parity_batches(opts.batch)
    reports: dict[str, Any] = {}
    with stages.stage(f"parity vs onnxruntime (batches {','.join(map(str, batches))}{' + photos' if opts.photos else ''})"):
        sets = reference_sets(net, batches, opts.seed, opts.photos)
        report = check_file_parity(onnx_path, "ort", sets, opts.tolerance)
    _record(folder, manifest, reports, "onnx", "ONNX", report, batches, printer)

    if opts.openvino:
        with stages.stage("openvino IR + parity (f32, and bf16 where the CPU has it)"):
            xml_path, bin_path = openvino_ir.write_ir(onnx_path, folder / "model.xml")
            _add_artifact(manifest, folder, "openvino", xml_path)
            _add_artifact(manifest, folder, "openvino_weights", bin_path)
            report = check_file_parity(xml_path, "openvino", sets, opts.tolerance, precision="fp32")
            _record(folder, manifest, reports, "openvino", "OpenVINO IR", report, batches, printer)
            if "BF16" in cpu_capabilities():
                report = check_file_parity(xml_path, "openvino", sets, Tolerance.bf16(), precision="bf16")
                floor = {} if report else {"format_floor": _bf16_format_floor(label, net, sets, printer)}
                _record(folder, manifest, reports, "openvino_bf16", "OpenVINO IR at BF16", report, batches, printer,
                        required=False, **floor)  # precision="auto" falls back to fp32 when this failed

    if opts.fp16 or opts.engine == "trt":
        fp16_path = folder / "model.fp16.onnx"
        calibration = [random_inputs(net.input_specs, EXAMPLE_BATCH, seed=opts.seed + 1000)]
        photo_set = photo_inputs(net.input_specs, opts.seed)  # calibrate on photos even with --no-photos
        calibration += [photo_set] if photo_set is not None else []
        with stages.stage("fp16 (AutoCast, widened until parity holds)"):
            info, report = fp16.convert_until_parity(
                onnx_path, fp16_path, calibration, opts.opset,
                lambda path: check_file_parity(path, "ort", sets, opts.fp16_tolerance),
            )
        _add_artifact(manifest, folder, "onnx_fp16", fp16_path)
        manifest["fp16"] = {k: v for k, v in info.items() if k != "fp32_node_names"}
        printer(f"fp16: {info['fp16_nodes']} nodes in FP16, {info['fp32_nodes']} kept in FP32 "
                f"{info['fp32_reasons']} (step: {info['step']})")
        _record(folder, manifest, reports, "onnx_fp16", "FP16 ONNX", report, batches, printer,
                fp32_node_names=info["fp32_node_names"])

    if opts.int8:
        int8_path = folder / "model.int8.onnx"
        calib = int8.calibration_data(net.input_specs, opts.seed + 2000, opts.calib_size, opts.calib_dir)
        with stages.stage(f"int8 (ModelOpt PTQ, {opts.calib_method}, {calib.samples} samples, widened until parity)"):
            info, report = int8.quantize_until_parity(
                onnx_path, int8_path, calib, opts.calib_method, opts.opset,
                lambda path: check_file_parity(path, "ort", sets, opts.int8_tolerance),
            )
        _add_artifact(manifest, folder, "onnx_int8", int8_path)
        manifest["int8"] = info
        printer(f"int8: {info['quantized_nodes']}/{info['total_nodes']} nodes quantized (step: {info['step']}); "
                f"float: {info['float_op_types']}")
        _record(folder, manifest, reports, "onnx_int8", "INT8 ONNX", report, batches, printer)

    if opts.engine == "trt":
        for precision in ("fp16", "int8") if opts.int8 else ("fp16",):
            key, file, what = ENGINE_ARTIFACTS[precision]
            engine_path = folder / file
            with stages.stage(f"tensorrt {precision} build"):
                manifest[key] = trt_build.build_engine(
                    {source: folder / manifest["artifacts"][source] for source in ("onnx_fp16", "onnx_int8")
                     if source in manifest["artifacts"]}, engine_path, net.input_specs, opts.batch,
                    precision=precision, workspace_gib=opts.workspace_gib,
                    timing_cache=Path(opts.timing_cache) if opts.timing_cache else None, printer=printer,
                )
            source = manifest["artifacts"][trt_build.BUILD_PATHS[precision].source]
            manifest[key]["trtexec"] = " ".join(trtexec.trtexec_command(  # NVIDIA's tool, same engine, run in the folder
                Path(source), manifest[key], opts.batch.max, opts.workspace_gib))
            _add_artifact(manifest, folder, key, engine_path)
            tolerance = opts.int8_tolerance if precision == "int8" else opts.fp16_tolerance
            with stages.stage(f"tensorrt {precision} parity"):
                report = check_file_parity(engine_path, "trt", sets, tolerance, precision=precision)
            _record(folder, manifest, reports, key, what, report, batches, printer)

    manifest["status"] = mf.STATUS_OK
    mf.write_manifest(folder, manifest)
