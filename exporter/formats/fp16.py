"""Mixed-precision FP16 ONNX with NVIDIA ModelOpt AutoCast, widened until parity holds.

AutoCast keeps nodes in FP32 whose inputs or outputs exceed ``data_max`` on the
calibration inputs (random and real photos): each node is decided by its
measured range, reductions (ReduceMean, ReduceSum) included — a mean may be a
pooling or a variance, and the operator type does not say which. By rule we
keep in FP32 only the power and square root of a std and LayerNorm
(``FP32_OPS``: a square overflows FP16 from 256 up, and a normalisation divides
by their result), and softmaxes over many keys. AutoCast guards the top of FP16's range only; we guard the
bottom too: a node one of whose tensors lies wholly below FP16's smallest normal (6.1e-5) stays FP32
(``subnormal_rule``), since FP16 holds such values as subnormals with a few bits left (DeiT-3's class token,
initialised at 1e-6, lost 2 % through a subnormal Expand/Concat). When FP16 parity still fails,
``WIDENING_STEPS`` keeps more in FP32 — lower ``data_max``, every attention
MatMul/Softmax, then ever lower ``data_max`` — until it holds; the report says
which step was needed and why each FP32 node stayed FP32.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx

from exporter import onnx_files
from exporter.checks.widening import widen_until_parity
from exporter.errors import tool_failure
from exporter.formats import activation_memory, isolation
from exporter.formats.onnx_export import default_opset
from runtimes.errors import AttnExportError
from runtimes.specs import TensorSpec

FP32_OPS = ("Pow", "Sqrt", "LayerNormalization")
FP32_OPS_REASON = "std/LayerNorm op (Pow, Sqrt, LayerNormalization)"
FP16_SMALLEST_NORMAL = float(np.finfo(np.float16).tiny)  # 6.1e-5: below it FP16 keeps fewer than 10 bits
SUBNORMAL_REASON = "a tensor FP16 holds only as subnormals (|x| < 6.1e-5)"
LARGE_SOFTMAX_KEYS = 1024


@dataclass(frozen=True)
class WideningStep:
    """One AutoCast configuration: ``data_max`` and whether every MatMul/Softmax stays FP32."""

    name: str
    data_max: float
    attention_fp32: bool


WIDENING_STEPS = (
    WideningStep("default", data_max=512.0, attention_fp32=False),
    WideningStep("data_max=64", data_max=64.0, attention_fp32=False),
    WideningStep("attention in fp32", data_max=64.0, attention_fp32=True),
    # Randomly initialised ResNets carry large activations deep into layer4; these steps keep
    # ever more of them in FP32 (the report's fp16_nodes shows how little stays FP16).
    WideningStep("data_max=16, attention in fp32", data_max=16.0, attention_fp32=True),
    WideningStep("data_max=4, attention in fp32", data_max=4.0, attention_fp32=True),
    WideningStep("data_max=1, attention in fp32", data_max=1.0, attention_fp32=True),
)


def large_softmaxes(model: onnx.ModelProto, threshold: int = LARGE_SOFTMAX_KEYS) -> list[str]:
    """Names of Softmax nodes whose reduced axis is longer than ``threshold`` (shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    found = []
    for node in inferred.graph.node:
        if node.op_type != "Softmax":
            continue
        dims = shapes.get(node.input[0], [])
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if dims and dims[axis] > threshold:
            found.append(node.name)
    return found


def precision_report(model: onnx.ModelProto, kept_names: Mapping[str, str]) -> dict[str, Any]:
    """Count FP16 vs FP32 compute nodes of a converted model and say why each FP32 one stayed FP32."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    fp16, fp32 = 0, {}
    for node in inferred.graph.node:
        if node.op_type == "Cast" or not node.output:
            continue
        out_type = types.get(node.output[0])
        if out_type == onnx.TensorProto.FLOAT16:
            fp16 += 1
        elif out_type == onnx.TensorProto.FLOAT:
            fp32[node.name] = kept_names.get(node.name, kept_names.get(node.op_type, "AutoCast: activation range"))
    reasons: dict[str, int] = {}
    for reason in fp32.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"fp16_nodes": fp16, "fp32_nodes": len(fp32), "fp32_reasons": reasons, "fp32_node_names": sorted(fp32)}


def convert(onnx_path: Path, out_path: Path, autocast_npz_dir: str, softmaxes: Sequence[str], step: WideningStep,
            opset: int, external_data: bool = False) -> dict[str, Any]:
    """Write ``out_path`` (FP32 inputs/outputs, FP16 inside) for one widening step; returns the precision report.

    ``autocast_npz_dir`` (a temporary folder, not the user's ``--calib`` images) holds AutoCast's .npz input
    files; ``softmaxes`` names the large softmaxes kept in FP32 (both computed once by
    :func:`convert_until_parity`).
    """
    from modelopt.onnx.autocast import convert_to_mixed_precision

    kept = {op: FP32_OPS_REASON for op in FP32_OPS}
    kept.update({n: f"softmax over > {LARGE_SOFTMAX_KEYS} keys" for n in softmaxes})
    op_types = list(FP32_OPS)
    if step.attention_fp32:
        op_types += ["MatMul", "Softmax"]
        kept.update(MatMul="widened: attention in fp32", Softmax="widened: attention in fp32")
    ranges: dict[str, Any] = {}
    subnormal = subnormal_rule(ranges)
    with warnings.catch_warnings(), streaming_reference_run(ranges):
        warnings.simplefilter("ignore")
        logging.getLogger("modelopt").setLevel(logging.ERROR)
        model = convert_to_mixed_precision(
            str(onnx_path), low_precision_type="fp16", keep_io_types=True, data_max=step.data_max,
            op_types_to_exclude=op_types, nodes_to_exclude=[f"^{n}$" for n in softmaxes],
            calibration_data=autocast_npz_dir, opset=opset, providers=["cpu"], custom_rule=subnormal,
        )
    kept.update({name: SUBNORMAL_REASON for name in subnormal.kept})
    del model.graph.value_info[:]  # AutoCast's shapes are its calibration run's, not the dynamic ones
    onnx_files.save(model, out_path, external=external_data)
    return {"tool": "modelopt.onnx.autocast", "step": step.name, "data_max": step.data_max,
            "opset": default_opset(model),
            **precision_report(model, kept)}


def subnormal_rule(ranges: Mapping[str, Any]) -> Any:
    """An AutoCast rule (``NodeRuleBase``) keeping in FP32 every node with an input or output whose nonzero
    range, in ``ranges`` (the reference run's ``TensorStats``, filled before AutoCast classifies), lies below
    ``FP16_SMALLEST_NORMAL``; the names it kept are in its ``kept``."""
    from modelopt.onnx.autocast.nodeclassifier import NodeRuleBase

    class SubnormalRangeRule(NodeRuleBase):  # type: ignore[misc]
        def __init__(self) -> None:
            self.kept: list[str] = []

        def _check_inner(self, node: onnx.NodeProto) -> bool:
            tiny = any(0.0 < ranges[name].absmax < FP16_SMALLEST_NORMAL
                       for name in [*node.input, *node.output] if name in ranges)
            if tiny:
                self.kept.append(node.name)
            return tiny

    return SubnormalRangeRule()


@contextlib.contextmanager
def streaming_reference_run(ranges: dict[str, Any]) -> Iterator[None]:
    """AutoCast's reference run one sample at a time (``activation_memory.streaming_runner_class``): the same
    ranges, one sample's activations in memory instead of every calibration batch's; ``ranges`` receives
    them (for ``subnormal_rule``)."""
    from modelopt.onnx.autocast import convert as autocast_convert

    streaming = activation_memory.streaming_runner_class()

    class RecordingRunner(streaming):  # type: ignore[misc, valid-type]
        def run(self, inputs: Any = None) -> Any:
            stats = super().run(inputs)
            ranges.update(stats)
            return stats

    original = autocast_convert.ReferenceRunner
    autocast_convert.ReferenceRunner = RecordingRunner
    try:
        yield
    finally:
        autocast_convert.ReferenceRunner = original


def convert_until_parity(onnx_path: Path, out_path: Path, calibration: Sequence[Mapping[str, np.ndarray]],
                         opset: int, check: Callable[[Path], Any], accept: Callable[[Any], bool] = bool,
                         input_specs: Sequence[TensorSpec] = (), external_data: bool = False
                         ) -> tuple[dict[str, Any], Any]:
    """Convert with each ``WIDENING_STEPS`` entry until ``check(out_path)`` (a ParityReport) passes
    (``widening.widen_until_parity``); ``calibration`` is AutoCast's input sets. Refused first
    (``MemoryBudgetError``) when one sample's activations would not fit in memory; the estimate is returned
    in ``info["memory"]``. A large model converts in a worker process (``isolation``; ``info["isolated"]``)."""
    memory = activation_memory.check_fits("FP16 conversion (AutoCast's reference run)", onnx_path, input_specs, 1)
    isolate = isolation.is_large(onnx_path)
    softmaxes = large_softmaxes(onnx_files.load(onnx_path, weights=False))
    with tempfile.TemporaryDirectory() as autocast_inputs:
        for i, arrays in enumerate(calibration):
            np.savez(Path(autocast_inputs) / f"calib{i:02d}.npz", **arrays)

        def build(step: WideningStep) -> dict[str, Any]:
            what = f"FP16 conversion ({step.name})"
            try:
                return isolation.call(what, convert, onnx_path, out_path, autocast_inputs, softmaxes, step, opset,
                                      external_data, isolate=isolate)
            except AttnExportError:
                raise
            except Exception as exc:  # AutoCast raises many types; one line with the step is what users need
                raise tool_failure(what, exc) from exc

        info, report = widen_until_parity(WIDENING_STEPS, build, lambda: check(out_path), accept)
    return {**info, "memory": memory, "isolated": isolate}, report
