"""INT8 Q/DQ ONNX with NVIDIA ModelOpt's ONNX PTQ, widened until INT8 parity holds.

One file serves three engines: TensorRT builds it (explicit quantization, the
only INT8 path TensorRT 11 has), OpenVINO runs it fast on CPUs with VNNI/AMX,
onnxruntime checks it. ModelOpt writes Q/DQ at opset >= 19, so the INT8 file's
opset is ``max(--opset, 19)`` (recorded as ``int8.opset``). Inputs and outputs stay FP32; everything that is not
quantized stays FP32 (``high_precision_dtype="fp32"``).

Calibration: image inputs get the user's photos (``--calib DIR``, subfolders included, a seeded
sample of ``size`` when there are more) or the bundled sample photos, padded with seeded noise
images to ``size`` samples,
preprocessed by ``runtimes.images`` exactly as parity and edge apps do; other
inputs (token ids, cross-attention context) get seeded random data.

When parity fails, ``WIDENING_STEPS`` keeps more in float — attention MatMuls,
then everything but convolutions and GEMMs — and the report says which step
passed and which node types stayed in float.

A model whose ModelOpt run would not fit in memory (ViT-Huge on 24 GiB) is quantized by onnxruntime's own
``quantize_static`` instead (``int8_ort``: fewer copies of the weights, the same kind of file); one that neither
fits is refused before either starts.
"""
from __future__ import annotations

import collections
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from exporter import onnx_files
from exporter.checks.photos import image_size, photo_inputs, with_images
from exporter.checks.widening import widen_until_parity
from exporter.errors import ExportError, MemoryBudgetError, tool_failure
from exporter.formats import activation_memory, int8_ort, isolation
from exporter.formats.onnx_export import default_opset
from runtimes.images import Preprocess, image_files, is_image_input
from runtimes.specs import TensorSpec, random_inputs

# ModelOpt's copies of the weights while it quantizes (its loaded and graph-surgeon models, the calibration model
# with every tensor an output, onnxruntime's session, the quantized model), over one sample's activations: 8.81 on
# vit_large_patch16_224 (1,160 MB of weights; 12.9 GB peak from 0.5 GB) by scripts/int8_memory.py; ViT-Huge was
# killed at 21.2 GB (docs/coverage.md, "Models over 2 GB")
INT8_WEIGHT_COPIES = 9.0
MODELOPT, ONNXRUNTIME = "ModelOpt", "onnxruntime"  # the two quantizers (``quantize``'s ``tool``)
MODELOPT_MIN_OPSET = 19  # ModelOpt's BASE_MIN_OPSET for INT8 Q/DQ (FP16-capable scales); it upgrades below


def int8_opset(requested: int) -> int:
    """The opset the INT8 file is written at: the request, raised to ModelOpt's minimum."""
    return max(requested, MODELOPT_MIN_OPSET)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Int8Step:
    """One quantization configuration: op types ModelOpt must leave in float."""

    name: str
    exclude_op_types: tuple[str, ...]


WIDENING_STEPS = (
    Int8Step("default", ()),
    Int8Step("attention in float", ("MatMul",)),
    Int8Step("convolutions and GEMMs only", ("MatMul", "Add", "Mul", "Concat", "MaxPool", "AveragePool",
                                             "GlobalAveragePool", "Resize", "Sigmoid")),
)


@dataclass(frozen=True)
class Calibration:
    """Calibration arrays (``samples`` rows per input) and where each input's data came from."""

    arrays: dict[str, np.ndarray]
    sources: dict[str, str]
    samples: int


def spread(files: Sequence[Path], size: int, seed: int) -> list[Path]:
    """At most ``size`` of ``files``: all of them in order, or a seeded sample across every class folder."""
    if len(files) <= size:
        return list(files)
    chosen = np.random.default_rng(seed).choice(len(files), size=size, replace=False)
    return [files[i] for i in sorted(chosen)]


def calibration_data(specs: Sequence[TensorSpec], seed: int, size: int, folder: str | None = None,
                     preprocess: Preprocess | None = None) -> Calibration:
    """Photos (the user's ``folder`` or the bundled ones, through the model's ``preprocess``) for image inputs,
    seeded data elsewhere."""
    files = spread(image_files(folder), size, seed) if folder else None
    hw = image_size(specs)
    if hw is None:
        arrays = random_inputs(specs, size, seed=seed)
        return Calibration(arrays, {s.name: "seeded random" for s in specs}, size)
    photos = photo_inputs(specs, seed, files, preprocess)
    assert photos is not None  # the model has an image input
    first_image = next(s.name for s in specs if is_image_input(s))
    real = photos[first_image][:size]
    noise = np.random.default_rng(seed).standard_normal((max(0, size - len(real)), 3, *hw)).astype(np.float32)
    images = np.concatenate([real, noise])
    arrays = with_images(specs, images, seed)
    origin = f"{len(real)} photos from {folder}" if folder else f"{len(real)} bundled sample photos"
    origin += f" + {len(noise)} seeded noise images" if len(noise) else ""
    sources = {s.name: origin if is_image_input(s) else "seeded random" for s in specs}
    return Calibration(arrays, sources, len(images))


def calibration_from_arrays(arrays: Mapping[str, np.ndarray], origin: str, size: int) -> Calibration:
    """The user's own calibration arrays (``--calib FILE.npz`` or ``--sample-inputs``): the first ``size`` rows."""
    rows = min(size, len(next(iter(arrays.values()))))
    return Calibration({k: v[:rows] for k, v in arrays.items()}, {k: f"{rows} rows of {origin}" for k in arrays}, rows)


def quantization_report(model: onnx.ModelProto) -> dict[str, Any]:
    """Quantized vs total compute nodes (Q/DQ excluded) and the op types that stayed in float."""
    dequantized = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    compute = [n for n in model.graph.node if n.op_type not in QDQ_OPS]
    quantized = [n for n in compute if any(i in dequantized for i in n.input)
                 and n.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose")]
    float_types = collections.Counter(n.op_type for n in compute if n not in quantized)
    return {"quantized_nodes": len(quantized), "total_nodes": len(compute),
            "quantized_op_types": dict(collections.Counter(n.op_type for n in quantized)),
            "float_op_types": dict(float_types.most_common())}


def quantize(onnx_path: Path, out_path: Path, calib: Calibration, method: str, opset: int,
             step: Int8Step, external_data: bool = False, tool: str = MODELOPT) -> dict[str, Any]:
    """One PTQ run by ``tool`` (ModelOpt, or onnxruntime's ``quantize_static`` for models ModelOpt cannot hold in
    memory: ``int8_ort``) into ``out_path`` (atomically, ``onnx_files.save``); returns the quantization report."""
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=out_path.parent) as work:
        staged = Path(work) / "quantized" / out_path.name
        staged.parent.mkdir()
        source = onnx_files.copy(onnx_path, Path(work))  # ModelOpt rewrites its input in place (shape inference)
        try:
            if tool == MODELOPT:
                _modelopt_quantize(source, staged, calib, method, opset, step,
                                   external_data or bool(onnx_files.data_files(source)))
            else:
                int8_ort.quantize_static_qdq(source, staged, calib.arrays, method, step.exclude_op_types)
        except Exception as exc:  # both raise many types (onnxruntime, graph-surgeon, value errors)
            raise tool_failure(f"{tool} INT8 quantization", exc) from exc
        model = onnx_files.load(staged)
    written = default_opset(model)
    if tool == MODELOPT and written != int8_opset(opset):
        raise ExportError(f"ModelOpt wrote opset {written} for the INT8 file, expected {int8_opset(opset)}")
    onnx_files.save(model, out_path, external=external_data)
    return {**quantization_report(model), "opset": written, "tool": tool}


def _modelopt_quantize(source: Path, staged: Path, calib: Calibration, method: str, opset: int, step: Int8Step,
                       external: bool) -> None:
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    modelopt_quantize(str(source), quantize_mode="int8", calibration_data=calib.arrays,
                      calibration_method=method, calibration_eps=["cpu"], output_path=str(staged),
                      high_precision_dtype="fp32", op_types_to_exclude=list(step.exclude_op_types) or None,
                      opset=int8_opset(opset), use_external_data_format=external,
                      log_level="CRITICAL")  # failures raise; its GPU probe logs ERROR on a CPU machine


def tool_that_fits(onnx_path: Path, input_specs: Sequence[TensorSpec]) -> tuple[str, dict[str, Any]]:
    """ModelOpt, or onnxruntime's ``quantize_static`` when ModelOpt's copies of the weights would not fit, with the
    memory estimate of the one chosen; ``MemoryBudgetError`` when neither fits."""
    try:
        return MODELOPT, activation_memory.check_fits("INT8 quantization (ModelOpt's calibration run)", onnx_path,
                                                      input_specs, 1, INT8_WEIGHT_COPIES)
    except MemoryBudgetError:
        return ONNXRUNTIME, activation_memory.check_fits(
            "INT8 quantization (onnxruntime's quantize_static, as ModelOpt's would not fit either)", onnx_path,
            input_specs, 1, int8_ort.WEIGHT_COPIES)


def steps_for(tool: str) -> tuple[Int8Step, ...]:
    """The widening steps that give ``tool`` a different file: onnxruntime quantizes only Conv, Gemm and MatMul, so
    a step that only excludes other op types would write its last file again."""
    if tool == MODELOPT:
        return WIDENING_STEPS
    seen: set[tuple[str, ...]] = set()
    steps = []
    for step in WIDENING_STEPS:
        quantized = int8_ort.quantized_op_types(step.exclude_op_types)
        if quantized not in seen:
            seen.add(quantized)
            steps.append(step)
    return tuple(steps)


def quantize_until_parity(onnx_path: Path, out_path: Path, calib: Calibration, method: str, opset: int,
                          check: Callable[[Path], Any], accept: Callable[[Any], bool] = bool,
                          external_data: bool = False, input_specs: Sequence[TensorSpec] = ()
                          ) -> tuple[dict[str, Any], Any]:
    """Quantize with each ``WIDENING_STEPS`` entry until ``check(out_path)`` (a ParityReport) passes
    (``widening.widen_until_parity``); ``info["step"]`` names the step that passed, or the last one tried.
    ModelOpt quantizes when its copies of the weights and one sample's activations (it calibrates a dynamic batch
    one sample at a time) fit in memory, else onnxruntime's ``quantize_static`` (``info["tool"]``), else the stage
    is refused first (``MemoryBudgetError``); the estimate is ``info["memory"]``. A large model quantizes in a
    worker process (``isolation``; ``info["isolated"]``)."""
    tool, memory = tool_that_fits(onnx_path, input_specs)
    # ModelOpt patches onnxruntime's calibrators process-wide once it has run (and AutoCast's FP16 stage imports
    # it), after which onnxruntime's own quantize_static fails: that tool always gets a fresh worker process
    isolate = isolation.is_large(onnx_path) or tool == ONNXRUNTIME

    def build(step: Int8Step) -> dict[str, Any]:
        info = isolation.call(f"INT8 quantization ({step.name})", quantize, onnx_path, out_path, calib, method, opset,
                              step, external_data, tool, isolate=isolate)
        return {**info, "method": method, "samples": calib.samples, "calibration": calib.sources,
                "excluded_op_types": list(step.exclude_op_types), "isolated": isolate, "memory": memory}

    return widen_until_parity(steps_for(tool), build, lambda: check(out_path), accept)
