"""``attn-export``: export a zoo model, a plugin's, or your own ``nn.Module`` to verified ONNX (and FP16,
INT8, OpenVINO IR, TensorRT).

Exit codes: 0 success · 2 bad input (unknown model, missing file/module/callable, bad --input/--output/
--model-arg, names that do not match forward, option, weights) or environment
(folder not writable, disk full) · 3 parity failed (files kept in MODEL/ or, when
MODEL/ holds a good export, MODEL.failed/), or with --keep-going some artifact stage failed (the rest is
published) · 4 export failed with every exporter, a tool crashed, or an engine build failed ·
130 interrupted (Ctrl-C or SIGTERM; nothing published changes).
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from exporter.checks.parity import Tolerance
from exporter.errors import ParityError
from exporter.options import ExportOptions
from runtimes.cli_support import DEFAULT_OUT, FiniteFloatRange, exit_on_errors
from runtimes.errors import AttnExportError
from runtimes.manifest import BatchProfile
from runtimes.optional import install_command


def _deprecated_rtol(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    """``--rtol X`` still works for one release: it sets --max-rel-error and says so on stderr."""
    if value is not None:
        click.echo("attn-export: warning: --rtol is deprecated; use --max-rel-error (the same number)", err=True)
        ctx.params["max_rel_error"] = value


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


EXPORT_STACK = ("torch", "torchvision", "onnx", "onnxruntime", "onnxslim", "modelopt")
INSTALL_EXPORT = install_command("export")


def require_export_stack() -> None:
    """A slim (runtime-only) install has no torch/ONNX tooling: say the one command that adds it."""
    import importlib.util

    missing = [m for m in EXPORT_STACK if importlib.util.find_spec(m) is None]
    if missing:
        raise AttnExportError(f"attn-export needs the export stack ({', '.join(missing)} missing): {INSTALL_EXPORT}")


def _batch(ctx: click.Context, param: click.Parameter, value: str) -> BatchProfile:
    try:
        return BatchProfile.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


DEFAULTS = ExportOptions()  # the one home of every default; the options below read it
FP32, FP16, INT8 = Tolerance.fp32(), Tolerance.fp16(), Tolerance.int8()


def _profile_text(batch: BatchProfile) -> str:
    return f"{batch.min}:{batch.opt}:{batch.max}"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", required=False)
@click.option("--list", "list_zoo", is_flag=True,
              help="Print the zoo and installed plugins' models (name, package, seed, inputs, parameters, GFLOPs).")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for the model's builder or callable, a Python literal (repeatable), "
                   "e.g. --model-arg num_classes=10 --model-arg depth=\"'small'\".")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE[:LOW..HIGH]]",
              help="One input of forward, in order (repeatable), when the module has no input_specs (timm: and "
                   "torchvision: models take theirs from their configuration; --input overrides it): named dims "
                   "are dynamic axes (batch first), LOW..HIGH is the half-open range of integer values, e.g. "
                   "--input image:batch,3,224,224 --input ids:batch,seq:int64:0..30522.")
@click.option("--max-dim", "max_dims", multiple=True, metavar="AXIS=SIZE",
              help="Largest size of a named axis other than batch (repeatable), e.g. --max-dim seq=512.")
@click.option("--output", "outputs", multiple=True, metavar="NAME",
              help="Output names in forward's return order (repeatable; default: the module's output_specs, "
                   "else output0..N). Their count is checked against what forward returns.")
@click.option("--name", default=None, help="Folder name under --out (default: the model or callable name).")
@click.option("--opset", default=DEFAULTS.opset, show_default=True, type=int,
              help="ONNX opset to write, exactly (13..24); the written file is checked. The default is the one that "
                   "covers the most models in the coverage sweep (docs/coverage.md). 23 and 24 hold ONNX "
                   "Attention where the model calls scaled_dot_product_attention.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder that receives OUT/MODEL/ with every artifact and manifest.json.")
@click.option("--batch", default=_profile_text(DEFAULTS.batch), show_default=True, callback=_batch,
              help="Batch profile MIN:OPT:MAX: parity runs at 1, 2, an odd size and MAX; TensorRT's profile.")
@click.option("--num-classes", default=DEFAULTS.num_classes, show_default=True, type=click.IntRange(min=1),
              help="Classifier width of a zoo or plugin model (a callable takes --model-arg num_classes=N).")
@click.option("--weights", default=None,
              help="A state_dict/checkpoint file (.safetensors, .pth, .pt or .bin; read offline, no code run), "
                   "loaded strictly into any model, or a torchvision weights name (e.g. IMAGENET1K_V1) for a zoo "
                   "backbone.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Seed for initial weights and parity inputs.")
@click.option("--redraw-zero-weights", is_flag=True,
              help="Random init only: re-draw every all-zero weight matrix (a zero-initialised classifier head, as "
                   "torchvision's ViT has) with seeded N(0, 0.02^2), so the outputs depend on the input and parity "
                   "means something; the names are recorded in the manifest. Refused with --weights.")
@click.option("--max-rel-error", "max_rel_error", default=FP32.max_rel, show_default=True,
              type=FiniteFloatRange(min=0, min_open=True),
              help="FP32 parity: the largest error allowed relative to max|reference| of the output (one number per "
                   "output, not numpy's element-wise rtol).")
@click.option("--rtol", "max_rel_error", type=FiniteFloatRange(min=0, min_open=True), hidden=True,
              expose_value=False, callback=_deprecated_rtol,
              help="Deprecated alias of --max-rel-error (removed in the next release).")
@click.option("--atol", default=None, type=FiniteFloatRange(min=0, min_open=True), help="Optional max absolute error for FP32 parity.")
@click.option("--min-cosine", default=FP32.min_cosine, show_default=True, type=FiniteFloatRange(-1, 1), help="Min cosine similarity (FP32).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim graph simplification.")
@click.option("--external-data", is_flag=True,
              help="Write every ONNX file's weights to FILE.onnx.data beside it (onnx's external data), at any "
                   "size. Always done above 2 GiB, protobuf's limit; the manifest lists, sizes and hashes the "
                   "data files, and Triton repositories carry them.")
@click.option("--no-photos", is_flag=True, help="Skip the parity check on real photographs.")
@click.option("--sample-inputs", default=None, type=click.Path(dir_okay=False),
              help="An .npz of your own inputs (arrays by input name, one batch): one more parity set, and the "
                   "FP16/INT8 calibration data unless --calib is given.")
@click.option("--exporter", default=DEFAULTS.exporter, show_default=True, type=click.Choice(["auto", "dynamo", "torchscript"]),
              help="auto: try both, the one native at --opset first (dynamo 18..24, TorchScript 13..17); a candidate "
                   "that raises or fails parity is discarded and the next tried. Dynamo below 18 is converted "
                   "down by onnx's version converter.")
@click.option("--fp16", is_flag=True,
              help="Also write model.fp16.onnx (ModelOpt AutoCast, FP32 I/O) and check it: error <= "
                   f"{FP16.max_rel:g} of max|reference|, cosine >= {FP16.min_cosine}, top-1 >= {FP16.min_top1:.0%}.")
@click.option("--int8", is_flag=True,
              help="Also write model.int8.onnx (ModelOpt Q/DQ, FP32 I/O) and check it: cosine >= "
                   f"{INT8.min_cosine}, top-1 (pooled) >= {INT8.min_top1:.0%}.")
@click.option("--eval", "eval_data", default=None, type=click.Path(exists=True, file_okay=False),
              help="Labelled images (ImageFolder: DIR/<class>/<image>, class index = sorted folder order): record "
                   "top-1, top-5 and top-1 agreement with FP32 of every artifact in parity.json and the manifest.")
@click.option("--max-accuracy-drop", default=None, type=FiniteFloatRange(min=0), metavar="POINTS",
              help="With --eval: exit 3 when FP16/INT8/TensorRT loses more than POINTS of top-1 against FP32; "
                   "widening stops at the first step within it.")
@click.option("--calib", default=None, type=click.Path(exists=True),
              help="INT8 calibration data: a folder of your own images, or an .npz of inputs by name "
                   "(default: --sample-inputs, else the bundled sample photos + noise).")
@click.option("--calib-method", default=DEFAULTS.calib_method, show_default=True, type=click.Choice(["max", "entropy"]),
              help="INT8 activation range calibration.")
@click.option("--calib-size", default=DEFAULTS.calib_size, show_default=True, type=click.IntRange(1, 4096),
              help="INT8 calibration samples (photos first, padded with seeded noise images).")
@click.option("--ort-format", is_flag=True,
              help="Also write model.ort (ONNX Runtime Mobile format) and the converter's required_operators.config "
                   "(for a reduced ONNX Runtime build), and check the .ort against PyTorch.")
@click.option("--ort-fusion", is_flag=True,
              help="Also try onnxruntime's attention fusions (onnxruntime.transformers' optimizer, onnxscript's "
                   "optimize_for_ort) on model.onnx: a fused graph that passes parity and runs at least 3% faster "
                   "at batch 1 in a one-run A/B here is written as model.fused.onnx, which engine ort then runs; "
                   "every attempt is recorded in the manifest (ort_fusion).")
@click.option("--executorch", is_flag=True,
              help="Also write model.pte (ExecuTorch, XNNPACK, batch bounded by --batch MAX) and, with --int8, "
                   "model.int8.pte (PT2E XNNPACKQuantizer), each checked through ExecuTorch's runtime "
                   f"(needs {install_command('executorch')}).")
@click.option("--openvino", is_flag=True,
              help="Also write the OpenVINO IR (model.xml/.bin) and check it at FP32, and at BF16 where the CPU has it.")
@click.option("--engine", default=None, type=click.Choice(["trt"]),
              help="Also build model.engine with TensorRT (implies --fp16; needs TensorRT and an NVIDIA GPU).")
@click.option("--workspace", default=DEFAULTS.workspace_gib, show_default=True, type=FiniteFloatRange(min=0, min_open=True), help="TensorRT workspace (GiB).")
@click.option("--timing-cache", default=None, type=click.Path(dir_okay=False),
              help="TensorRT timing cache file: loaded if present, saved after the build.")
@click.option("--triton-repo", default=None, type=click.Path(file_okay=False),
              help="Also write a Triton model repository here (config.pbtxt + 1/model.* per servable artifact).")
@click.option("--keep-going", is_flag=True,
              help="A failed artifact stage (FP16, INT8, OpenVINO, .ort, ExecuTorch, TensorRT) is recorded in the "
                   "manifest's failures and the other stages still run; the folder is published with what "
                   "passed, and the exit code is 3 naming what failed.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest(s) as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show third-party output (ModelOpt, onnxslim, torch, OpenVINO; otherwise in MODEL/export.log) "
                   "and tracebacks on errors.")
def main(model: str | None, list_zoo: bool, model_args: tuple[str, ...], inputs: tuple[str, ...],
         max_dims: tuple[str, ...], outputs: tuple[str, ...], name: str | None, opset: int, out: str,
         batch: BatchProfile, num_classes: int, weights: str | None, seed: int, redraw_zero_weights: bool,
         max_rel_error: float,
         atol: float | None,
         min_cosine: float, no_simplify: bool, external_data: bool, no_photos: bool, sample_inputs: str | None,
         exporter: str,
         fp16: bool, int8: bool, eval_data: str | None, max_accuracy_drop: float | None, calib: str | None,
         calib_method: str, calib_size: int, ort_format: bool, ort_fusion: bool, executorch: bool, openvino: bool, engine: str | None,
         workspace: float, timing_cache: str | None, triton_repo: str | None, keep_going: bool, as_json: bool,
         verbose: bool) -> None:
    """Export MODEL to ONNX with dynamic axes at exactly --opset, verify it against PyTorch with
    onnxruntime, and write OUT/MODEL/manifest.json.

    MODEL is a zoo or plugin name (see --list), `all` (every registered model), timm:NAME
    (timm.create_model), torchvision:NAME (torchvision.models.get_model), path/to/file.py:callable or
    package.module:callable (the callable returns an nn.Module; --model-arg gives its arguments). The timm:
    and torchvision: prefixes win over a module of that name: reach such a module as path/to/timm.py:fn.
    """
    from exporter.progress import stderr_printer

    signal.signal(signal.SIGTERM, _interrupt)  # a polite kill is handled like Ctrl-C
    with exit_on_errors("attn-export", output=out, write_hint="; free space or choose another --out",
                        interrupted=f"interrupted; nothing under {out}/ was changed (the unfinished export was "
                                    "discarded)", traceback=verbose):
        require_export_stack()
        if list_zoo:
            from exporter.sources.zoo_table import format_table, zoo_table

            rows = zoo_table()
            click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))
            return
        if not model:
            raise click.UsageError("give a MODEL (see --list) or `all`")
        from exporter.export_model import parse_input, parse_max_dims
        from exporter.pipeline import export
        from exporter.sources.model_source import is_callable_reference, parse_model_args
        from exporter.zoo import get_entry, list_models

        names = list_models() if model == "all" else [model]
        for n in names:
            if not is_callable_reference(n):
                get_entry(n)  # unknown names fail before any work
        if max_accuracy_drop is not None and not eval_data:
            raise click.UsageError("--max-accuracy-drop needs labelled images: add --eval DIR")
        if name and len(names) > 1:
            raise click.UsageError("--name names one export; it cannot be used with `all`")
        spec_args: dict[str, Any] = {
            "model_args": parse_model_args(model_args), "max_dims": parse_max_dims(max_dims),
            "inputs": [parse_input(i) for i in inputs] or None, "outputs": list(outputs) or None,
        }
        options = ExportOptions(
            opset=opset, batch=batch, num_classes=num_classes, weights=weights, seed=seed,
            redraw_zero_weights=redraw_zero_weights,
            tolerance=dataclasses.replace(FP32, max_rel=max_rel_error, min_cosine=min_cosine, max_abs=atol),
            simplify=not no_simplify, external_data=external_data, exporter=exporter, photos=not no_photos,
            sample_inputs=sample_inputs,
            fp16=fp16, ort_format=ort_format, ort_fusion=ort_fusion, executorch=executorch, openvino=openvino, int8=int8, eval_data=eval_data,
            max_accuracy_drop=max_accuracy_drop, calib=calib, calib_method=calib_method, calib_size=calib_size,
            engine=engine, workspace_gib=workspace, timing_cache=timing_cache, keep_going=keep_going,
            verbose=verbose,
        )
        manifests: list[dict[str, Any]] = []
        failures: list[AttnExportError] = []
        for n in names:
            try:
                manifests.append(export(n, out, name=name, options=options, printer=stderr_printer, **spec_args))
            except AttnExportError as exc:
                if len(names) == 1:
                    raise
                click.echo(f"attn-export: {n}: {exc}", err=True)
                failures.append(exc)
        if as_json:
            click.echo(json.dumps(manifests[0] if len(names) == 1 else manifests, indent=2))
        for m in manifests:
            click.echo(f"{m['model']}: ok → {out}/{m['model']}/ ({', '.join(m['artifacts'].values())})", err=True)
            for failed in m.get("failures", []):
                click.echo(f"{m['model']}: {failed['stage']}: FAILED ({failed['class']}): {failed['reason']}", err=True)
        if triton_repo and manifests:
            from serving.triton_repo import write_repository

            for entry in write_repository([Path(out) / m["model"] for m in manifests], Path(triton_repo)):
                click.echo(f"triton repository entry: {entry}", err=True)
        if failures:
            sys.exit(max(f.exit_code for f in failures))
        if any(m.get("failures") for m in manifests):
            sys.exit(ParityError.exit_code)  # --keep-going: published, but not every artifact


if __name__ == "__main__":
    main()
