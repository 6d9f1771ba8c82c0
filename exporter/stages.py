"""The export pipeline as an ordered table of stages over one ``ExportContext``.

Each stage is ``(name, enabled(options), run(context))``: a new artifact kind is one entry here plus
one row of ``runtimes.selection``. Stages run in table order in the staging folder; each one adds
its artifacts with ``context.add_artifact`` and its checks with ``context.record_parity``.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from exporter import flops, onnx_files
from exporter.checks import bf16_floor
from exporter.checks.parity import Tolerance
from exporter.checks.photos import photo_inputs
from exporter.checks.references import compare_runs, input_independent_outputs, reference_sets
from exporter.context import ExportContext
from exporter.errors import EngineBuildError, ExportError, MemoryBudgetError, ParityError, ToolCrashError, failure_class
from exporter.formats import (
    activation_memory,
    executorch_pte,
    fp16,
    int8,
    onnx_export,
    openvino_ir,
    ort_format,
    ort_fusion,
    trt_build,
    trt_readiness,
    trtexec,
)
from exporter.options import ExportOptions
from exporter.tracing import trace_program
from runtimes.engines import torch_rt
from runtimes.engines.openvino_rt import cpu_capabilities
from runtimes.engines.trt_common import cuda_device_info, import_tensorrt
from runtimes.errors import AttnExportError, first_line
from runtimes.fileio import atomic_path
from runtimes.specs import random_inputs

EXAMPLE_BATCH = 2  # >= 2, so no exporter can specialise the batch to 1


@dataclass(frozen=True)
class Stage:
    """One step of the export: shown as ``title(context)``, run when ``enabled(options)``; ``requires``
    raises (naming the install or the device) before any stage runs when what it needs is missing."""

    name: str
    enabled: Callable[[ExportOptions], bool]
    run: Callable[[ExportContext], None]
    title: Callable[[ExportContext], str] | None = None
    requires: Callable[[], object] | None = None
    timed: bool = True  # False for a stage that times its own sub-stages (the exporter attempts)
    optional: bool = False  # an artifact stage that --keep-going may record as failed and go past
    needs: tuple[str, ...] = ()  # artifact keys an earlier optional stage must have written

    def describe(self, context: ExportContext) -> str:
        return self.title(context) if self.title else self.name


def _always(options: ExportOptions) -> bool:
    return True


def run_torch_export(ctx: ExportContext) -> None:
    """torch.export with symbolic named axes; writes weights.pt and model.pt2 (serialised in memory, so a
    full disk raises OSError naming our file, where torch's writer raises an unhelpful RuntimeError) and counts
    the FLOPs per sample (``flops.flops_record``)."""
    model = ctx.model
    arrays = random_inputs(model.input_specs, EXAMPLE_BATCH, seed=ctx.options.seed)
    ctx.example = tuple(torch.from_numpy(arrays[s.name]) for s in model.input_specs)
    ctx.program = trace_program(model.module, model.input_specs, ctx.example)
    ctx.manifest["flops_per_sample"] = flops.flops_record(model.module, model.input_specs)
    weights, program_file = io.BytesIO(), io.BytesIO()
    torch.save(model.module.state_dict(), weights)
    torch.export.save(ctx.program, program_file, extra_files={
        torch_rt.IO_FILE: json.dumps({"outputs": [s.name for s in model.output_specs]})})
    for key, name, buffer in (("weights", "weights.pt", weights), ("torch", "model.pt2", program_file)):
        with atomic_path(ctx.folder / name) as tmp:
            tmp.write_bytes(buffer.getbuffer())
        ctx.add_artifact(key, ctx.folder / name)


def run_onnx_export(ctx: ExportContext) -> None:
    assert ctx.program is not None, "the torch.export stage runs first"
    path = ctx.folder / "model.onnx"
    onnx_export.export_onnx(ctx.model.module, ctx.program, ctx.example, path, opset=ctx.options.opset,
                            exporter=ctx.exporter, input_specs=ctx.model.input_specs,
                            output_specs=ctx.model.output_specs, external_data=ctx.options.external_data)
    ctx.manifest["onnx_conversion"] = onnx_export.conversion_record(ctx.exporter, ctx.options.opset)
    ctx.add_onnx_artifact("onnx", path)


def run_simplify(ctx: ExportContext) -> None:
    counts = onnx_export.simplify(ctx.path("onnx"), ctx.options.external_data)
    if counts is None:
        reason = (f"weights of {onnx_files.total_bytes(ctx.path('onnx')) / 2**30:.2f} GiB, over the "
                  f"{onnx_export.SIMPLIFY_BELOW / 2**30:g} GiB onnxslim is given (it holds ~9 copies): the file is "
                  "checked as exported")
        ctx.manifest["simplify"] = {"tool": "onnxslim", "skipped": reason}
        ctx.printer(f"[{ctx.label}] simplify skipped: {reason}")
        return
    ctx.manifest["simplify"] = {"tool": "onnxslim", "nodes_before": counts[0], "nodes_after": counts[1]}
    ctx.add_onnx_artifact("onnx", ctx.path("onnx"))  # the file changed: record its new size and hash


def run_graph_checks(ctx: ExportContext) -> None:
    """Re-read the final file: named axes still symbolic, node count, TensorRT readiness."""
    graph = onnx_files.load(ctx.path("onnx"), weights=False)
    onnx_export.check_dynamic_axes(graph, ctx.model.input_specs, ctx.model.output_specs)
    ctx.manifest["onnx_nodes"] = len(graph.graph.node)
    ctx.manifest["attention_ops"] = onnx_export.attention_ops(graph)
    readiness = ctx.manifest["trt_readiness"] = trt_readiness.check(graph)
    for warning in readiness["warnings"]:
        ctx.printer(f"[{ctx.label}] TensorRT readiness: warning: {warning}")
    if ctx.options.builds_tensorrt and readiness["errors"]:
        raise EngineBuildError("the ONNX graph is not TensorRT-ready", readiness["errors"])


def run_onnx_parity(ctx: ExportContext) -> None:
    """PyTorch runs once per input set here; every later check reuses ``ctx.sets`` (INT8 with ``--eval``:
    ``ctx.calibrated_sets()``)."""
    if not ctx.sets:  # a later exporter attempt reuses them
        ctx.sets = reference_sets(ctx.model, ctx.batches, ctx.options.seed, ctx.options.photos, ctx.samples)
        warn_if_input_independent(ctx)
    report = ctx.check(ctx.path("onnx"), "ort", ctx.options.tolerance)
    ctx.record_parity("onnx", "ONNX", report)


def warn_if_input_independent(ctx: ExportContext) -> None:
    """Outputs that PyTorch computes the same for every checked input make every parity row hollow: recorded
    (manifest ``input_independent_outputs``) and shown, with the way out."""
    constant = input_independent_outputs(ctx.sets)
    if constant:
        ctx.manifest["input_independent_outputs"] = constant
        ctx.printer(f"[{ctx.label}] warning: output {', '.join(constant)} is the same for every checked input "
                    f"(a zero-initialised head?): parity compares constants and proves little; load trained "
                    f"weights (--weights) or, at random init, add --redraw-zero-weights")


def run_ort_format(ctx: ExportContext) -> None:
    """model.ort (ONNX Runtime Mobile) and its required_operators.config; the .ort has its own parity row."""
    ort_path, config_path, info = ort_format.write_ort(ctx.path("onnx"), ctx.folder)
    ctx.add_artifact("onnx_ort", ort_path)
    ctx.add_artifact("ort_operators", config_path)
    ctx.manifest["ort_format"] = info
    ctx.record_parity("onnx_ort", "ORT format (.ort)", ctx.check(ort_path, "ort", ctx.options.tolerance))


def run_ort_fusion(ctx: ExportContext) -> None:
    """Each fuser on model.onnx; the fastest fused graph that passes parity and wins its one-run A/B at batch 1
    becomes model.fused.onnx with its own parity row (``ort_fusion``)."""
    plain = ctx.path("onnx")
    if onnx_files.total_bytes(plain) >= onnx_export.SIMPLIFY_BELOW:
        raise ExportError("the fusers hold the whole graph in memory: not tried on a model over 2 GiB", "format limit")
    import runtimes

    feeds = random_inputs(ctx.model.input_specs, 1, seed=ctx.options.seed)
    reports = {}

    def passes(path: Path) -> bool:
        reports[path] = ctx.check(path, "ort", ctx.options.tolerance)
        return ctx.accepts(reports[path])

    with runtimes.load(plain, engine="ort") as baseline:
        def time_against_plain(path: Path) -> ort_fusion.ABResult:
            with runtimes.load(path, engine="ort") as fused:
                return ort_fusion.decide(*ort_fusion.alternate(lambda: baseline(feeds), lambda: fused(feeds)))

        attempts, kept = ort_fusion.try_fusions(onnx_files.load(plain), ctx.folder, onnx_files.save, passes,
                                                time_against_plain)
    ctx.manifest["ort_fusion"] = {"tried": {a.fuser: a.to_json() for a in attempts}, "kept": None}
    for attempt in attempts:
        ctx.printer(f"[{ctx.label}] ort fusion {attempt.fuser}: fused {attempt.fused or 'nothing'}"
                    f"{f', {attempt.ab.speedup:.3f}x at batch 1' if attempt.ab else ''}"
                    f"{f' — not kept: {attempt.why}' if attempt.why else ' — kept'}")
    if kept is not None:
        published = ctx.folder / ort_fusion.FUSED_FILE
        kept.replace(published)
        ctx.add_onnx_artifact("onnx_fused", published)
        ctx.manifest["ort_fusion"]["kept"] = next(a.fuser for a in attempts if not a.why)
        ctx.record_parity("onnx_fused", "ONNX with fused attention", reports[kept])


def _bf16_format_floor(ctx: ExportContext) -> dict[str, Any]:
    """After a failed BF16 check: would the BF16 format itself pass on these weights? (``bf16_floor``)"""
    floor = bf16_floor.emulated_report(ctx.model, ctx.sets)
    worst = floor.worst
    verdict = ("passes, so the engine adds the error" if floor else
               "misses it too, so no BF16 engine can meet it on these weights")
    ctx.printer(f"[{ctx.label}] BF16 format alone (PyTorch, inputs/weights/module outputs rounded to bf16): worst "
                f"rel {worst['max_rel']:.2e}, cosine {worst['min_cosine']:.6f}, top1 {100 * worst['min_top1']:.0f}% — "
                f"{verdict}; precision='auto' runs FP32")
    return {"passed": bool(floor), "worst": worst, "what": bf16_floor.LABEL}


def run_openvino(ctx: ExportContext) -> None:
    xml_path, bin_path = openvino_ir.write_ir(ctx.path("onnx"), ctx.folder / "model.xml")
    ctx.add_artifact("openvino", xml_path)
    ctx.add_artifact("openvino_weights", bin_path)
    report = ctx.check(xml_path, "openvino", ctx.options.tolerance, precision="fp32")
    ctx.record_parity("openvino", "OpenVINO IR", report)
    if "BF16" in cpu_capabilities():
        report = ctx.check(xml_path, "openvino", Tolerance.bf16(), precision="bf16")
        floor = {} if report else {"format_floor": _bf16_format_floor(ctx)}
        ctx.record_parity("openvino_bf16", "OpenVINO IR at BF16", report, required=False,
                          **floor)  # precision="auto" falls back to fp32 when this failed


def run_fp16(ctx: ExportContext) -> None:
    """AutoCast calibrates on random inputs, the photos (even with --no-photos) and the user's samples."""
    model, opts = ctx.model, ctx.options
    calibration = [random_inputs(model.input_specs, EXAMPLE_BATCH, seed=opts.seed + 1000)]
    photo_set = photo_inputs(model.input_specs, opts.seed, preprocess=model.preprocess)
    calibration += [photo_set] if photo_set is not None else []
    calibration += [ctx.samples] if ctx.samples else []
    path = ctx.folder / "model.fp16.onnx"
    info, report = fp16.convert_until_parity(
        ctx.path("onnx"), path, calibration, opts.opset,
        lambda candidate: ctx.check(candidate, "ort", opts.fp16_tolerance), ctx.accepts, model.input_specs,
        opts.external_data)
    ctx.add_onnx_artifact("onnx_fp16", path)
    ctx.manifest["fp16"] = {k: v for k, v in info.items() if k != "fp32_node_names"}
    ctx.printer(f"fp16: {info['fp16_nodes']} nodes in FP16, {info['fp32_nodes']} kept in FP32 "
                f"{info['fp32_reasons']} (step: {info['step']})")
    ctx.record_parity("onnx_fp16", "FP16 ONNX", report, fp32_node_names=info["fp32_node_names"])


def int8_calibration(ctx: ExportContext) -> int8.Calibration:
    """--calib (an .npz or a folder of images), else --sample-inputs, else the bundled photos / seeded data;
    made once per export and shared by the ONNX and ExecuTorch INT8 stages."""
    if ctx.calibration is None:
        opts, specs = ctx.options, ctx.model.input_specs
        if ctx.calib_arrays is not None:
            ctx.calibration = int8.calibration_from_arrays(ctx.calib_arrays, str(opts.calib), opts.calib_size)
        elif opts.calib is None and ctx.samples is not None:
            ctx.calibration = int8.calibration_from_arrays(ctx.samples, str(opts.sample_inputs), opts.calib_size)
        else:
            ctx.calibration = int8.calibration_data(specs, opts.seed + 2000, opts.calib_size, opts.calib,
                                                     ctx.model.preprocess)
    return ctx.calibration


def run_int8(ctx: ExportContext) -> None:
    opts = ctx.options
    calib = int8_calibration(ctx)
    ctx.printer(f"[{ctx.label}] int8: post-training quantization, {opts.calib_method}, {calib.samples} samples")
    path = ctx.folder / "model.int8.onnx"
    info, report = int8.quantize_until_parity(
        ctx.path("onnx"), path, calib, opts.calib_method, opts.opset,
        lambda candidate: ctx.check(candidate, "ort", opts.int8_tolerance, calibrated=True), ctx.accepts,
        opts.external_data, ctx.model.input_specs)
    ctx.add_onnx_artifact("onnx_int8", path)
    ctx.manifest["int8"] = info
    ctx.printer(f"int8 ({info['tool']}): {info['quantized_nodes']}/{info['total_nodes']} nodes quantized "
                f"(step: {info['step']}); float: {info['float_op_types']}")
    ctx.record_parity("onnx_int8", "INT8 ONNX", report)


def run_executorch(ctx: ExportContext) -> None:
    """model.pte: the module re-exported with every named axis bounded, lowered to XNNPACK, checked through
    ExecuTorch's own runtime at the FP32 tolerance."""
    model, path = ctx.model, ctx.folder / "model.pte"
    program = executorch_pte.float_program(model.module, model.input_specs, ctx.example, ctx.options.batch.max)
    info = executorch_pte.lower_to_pte(program, path, model.input_specs, model.output_specs)
    ctx.add_artifact("executorch", path)
    ctx.manifest["executorch"] = {"executorch": executorch_pte.executorch_version(), "bytes": path.stat().st_size, **info}
    _print_delegation(ctx, "executorch", info)
    ctx.record_parity("executorch", "ExecuTorch .pte", ctx.check(path, "executorch", ctx.options.tolerance))


def run_executorch_int8(ctx: ExportContext) -> None:
    """model.int8.pte: PT2E XNNPACKQuantizer on the ONNX INT8's calibration data, widened until INT8 parity; a
    step whose quantized program already misses parity when PyTorch runs it is not lowered (but the last)."""
    opts, model, path = ctx.options, ctx.model, ctx.folder / "model.int8.pte"
    calib = int8_calibration(ctx)
    info, report = executorch_pte.quantize_until_parity(
        model.module, model.input_specs, model.output_specs, ctx.example, opts.batch.max, calib.arrays, path,
        lambda candidate: ctx.check(candidate, "executorch", opts.int8_tolerance, precision="int8", calibrated=True),
        ctx.accepts, screen=lambda label, run: compare_runs(label, run, ctx.calibrated_sets(), opts.int8_tolerance))
    ctx.add_artifact("executorch_int8", path)
    ctx.manifest["executorch_int8"] = {"executorch": executorch_pte.executorch_version(), "bytes": path.stat().st_size,
                                       "calibration": calib.sources, **info}
    _print_delegation(ctx, f"executorch int8 (step: {info['step']})", info)
    ctx.record_parity("executorch_int8", "ExecuTorch INT8 .pte", report)


def _print_delegation(ctx: ExportContext, what: str, info: dict[str, Any]) -> None:
    fallback = f" {info['portable_op_types']}" if info["portable_op_types"] else ""
    ctx.printer(f"{what}: {info['xnnpack_ops']} operators on XNNPACK, {info['portable_ops']} on portable "
                f"kernels{fallback}")


def tensorrt_stage(precision: str) -> Callable[[ExportContext], None]:
    """Build and check the TensorRT engine at ``precision`` from its ONNX source (unverified on GPU here)."""

    def run(ctx: ExportContext) -> None:
        opts = ctx.options
        build = trt_build.BUILD_PATHS[precision]
        key, engine_path = build.key, ctx.folder / build.file
        sources = {k: ctx.path(k) for k in ("onnx_fp16", "onnx_int8") if k in ctx.manifest["artifacts"]}
        ctx.manifest[key] = trt_build.build_engine(
            sources, engine_path, ctx.model.input_specs, opts.batch, precision=precision,
            workspace_gib=opts.workspace_gib, timing_cache=Path(opts.timing_cache) if opts.timing_cache else None,
            printer=ctx.printer)
        source = ctx.manifest["artifacts"][build.source]
        ctx.manifest[key]["trtexec"] = " ".join(trtexec.trtexec_command(  # NVIDIA's tool, same engine, in the folder
            Path(source), ctx.manifest[key], opts.batch.max, opts.workspace_gib))
        ctx.add_artifact(key, engine_path)
        calibrated = precision == "int8"
        report = ctx.check(engine_path, opts.engine, opts.int8_tolerance if calibrated else opts.fp16_tolerance,
                           precision=precision, calibrated=calibrated)
        ctx.record_parity(key, build.title, report)

    return run


def run_fp32_onnx(ctx: ExportContext) -> None:
    """The FP32 ONNX through each exporter of ``ctx.exporters`` in turn (``onnx_export.exporter_order``): export,
    simplify, graph checks and parity. A candidate that raises or fails parity is discarded and the next
    tried; every attempt goes into the manifest's ``exporter_attempts`` with its one-line reason. When all
    fail: ``ParityError`` (exit 3) if some file was written and failed parity, else ``ExportError`` (exit 4),
    with one line per exporter."""
    attempts: list[dict[str, Any]] = ctx.manifest.setdefault("exporter_attempts", [])
    failures: list[AttnExportError] = []
    for exporter in ctx.exporters:
        ctx.exporter = ctx.manifest["exporter"] = exporter
        try:
            run_stages(ctx, FP32_ONNX_STAGES)
        except (ExportError, ParityError) as exc:
            failures.append(exc)
            reason = re.sub(r"; see \S+parity\.json", "", first_line(exc))  # the next attempt rewrites that file
            attempts.append({"exporter": exporter, "passed": False, "reason": reason,
                             "failed_at": "parity" if isinstance(exc, ParityError) else "export"})
            if exporter != ctx.exporters[-1]:
                ctx.printer(f"[{ctx.label}] {exporter} exporter discarded: {reason}; trying the next")
                ctx.reset_after_failed_attempt("onnx")
            continue
        attempts.append({"exporter": exporter, "passed": True, **ctx.manifest.get("onnx_conversion", {})})
        return
    lines = "".join(f"\n  - {a['exporter']}: {a['reason']}" for a in attempts)
    if len(failures) == 1:
        raise failures[0]
    if any(isinstance(f, ParityError) for f in failures):  # a file was written: its report says by how much
        raise ParityError(f"{ctx.label}: every exporter failed at opset {ctx.options.opset} (the last file's "
                          f"report: see {ctx.folder / 'parity.json'}):{lines}")
    raise ExportError(f"{ctx.label}: every exporter failed at opset {ctx.options.opset}:{lines}")


def _tensorrt_and_gpu() -> None:
    import_tensorrt()
    cuda_device_info()


FP32_ONNX_STAGES: tuple[Stage, ...] = (
    Stage("onnx export", _always, run_onnx_export,
          lambda ctx: f"onnx export (opset {ctx.options.opset}, {ctx.exporter})"),
    Stage("simplify (onnxslim)", lambda o: o.simplify, run_simplify),
    Stage("graph checks", _always, run_graph_checks),
    Stage("parity vs onnxruntime", _always, run_onnx_parity,
          lambda ctx: f"parity vs onnxruntime (batches {','.join(map(str, ctx.batches))}"
                      f"{' + photos' if ctx.options.photos else ''}{' + samples' if ctx.samples else ''})"),
)

STAGES: tuple[Stage, ...] = (
    Stage("torch.export", _always, run_torch_export),
    Stage("fp32 onnx (each exporter until one passes parity)", _always, run_fp32_onnx, timed=False),
    Stage("ort fused attention (fusers, parity, one-run A/B)", lambda o: o.ort_fusion, run_ort_fusion,
          optional=True),
    Stage("ort mobile format (.ort) + parity", lambda o: o.ort_format, run_ort_format, optional=True),
    Stage("openvino IR + parity (f32, and bf16 where the CPU has it)", lambda o: o.openvino, run_openvino,
          requires=openvino_ir.require_openvino, optional=True),
    Stage("fp16 (AutoCast, widened until parity holds)", lambda o: o.fp16 or o.builds_tensorrt, run_fp16,
          optional=True),
    Stage("int8 (ModelOpt PTQ)", lambda o: o.int8, run_int8,
          lambda ctx: f"int8 (ModelOpt PTQ, {ctx.options.calib_method}, widened until parity)", optional=True),
    Stage("executorch .pte (XNNPACK) + parity", lambda o: o.executorch, run_executorch,
          requires=executorch_pte.executorch_version, optional=True),
    Stage("executorch int8 .pte (PT2E XNNPACKQuantizer) + parity", lambda o: o.executorch and o.int8,
          run_executorch_int8, requires=executorch_pte.executorch_version, optional=True),
    Stage("tensorrt fp16 build + parity", lambda o: o.builds_tensorrt, tensorrt_stage("fp16"),
          requires=_tensorrt_and_gpu, optional=True, needs=("onnx_fp16",)),
    Stage("tensorrt int8 build + parity", lambda o: o.builds_tensorrt and o.int8, tensorrt_stage("int8"),
          requires=_tensorrt_and_gpu, optional=True, needs=("onnx_int8",)),
)


def check_requirements(options: ExportOptions, stages: Sequence[Stage] = STAGES) -> None:
    """Fail before any work when an enabled stage's engine, package or device is missing."""
    for stage in stages:
        if stage.requires and stage.enabled(options):
            stage.requires()


def run_stage(ctx: ExportContext, stage: Stage) -> None:
    """Run one stage (timed unless it times itself). An exception that is not one of ours — a third-party tool
    crashing inside the stage — becomes ``ToolCrashError`` naming the stage, in one line; ``MemoryError``
    becomes ``MemoryBudgetError``."""
    try:
        if not stage.timed:
            stage.run(ctx)
            return
        with ctx.timer.stage(stage.describe(ctx)):
            stage.run(ctx)
            activation_memory.return_freed_memory()  # the next stage starts from what this one keeps
    except (AttnExportError, OSError):
        raise  # ours, or the environment's (a full disk: exit 2 naming the file)
    except MemoryError as exc:
        raise MemoryBudgetError(f"{stage.name}: out of memory ({first_line(exc)})") from exc
    except Exception as exc:  # onnxslim, ModelOpt, OpenVINO, ExecuTorch and onnxruntime raise their own types
        raise ToolCrashError(f"{stage.name} failed: {type(exc).__name__}: {first_line(exc)}") from exc


def run_stages(ctx: ExportContext, stages: Sequence[Stage] = STAGES) -> None:
    """Every enabled stage, in order, each timed into the manifest's ``timings``. With ``--keep-going`` an
    optional (artifact) stage that fails is recorded in the manifest's ``failures`` and its files removed, and
    the stages after it still run (those that need its artifact are recorded as skipped)."""
    for stage in stages:
        if not stage.enabled(ctx.options):
            continue
        missing = [k for k in stage.needs if k not in ctx.manifest["artifacts"]]
        if missing:  # only under --keep-going: the stage that writes them failed
            ctx.record_failure(stage.name, "skipped", f"needs {', '.join(missing)}, which failed")
            continue
        if not (ctx.options.keep_going and stage.optional):
            run_stage(ctx, stage)
            continue
        before = dict(ctx.manifest["artifacts"])
        try:
            run_stage(ctx, stage)
        except (ExportError, ParityError, EngineBuildError) as exc:
            ctx.discard_stage_artifacts(before)
            ctx.record_failure(stage.name, failure_class(exc), first_line(exc))
