"""INT8 Q/DQ with onnxruntime's ``quantize_static`` alone, for models whose ModelOpt run would not fit in memory.

ModelOpt's INT8 wraps this same call and holds about 9 copies of the weights around it (its loaded and
graph-surgeon models, its GEMV-detection session, the post-processing re-import: ``exporter/formats/int8.py``);
on ViT-Huge (2.35 GiB) that is more than a 24 GiB machine has. Called directly, ``quantize_static`` holds
``WEIGHT_COPIES`` (its shape-inferred model, the calibration session over the augmented copy, the quantized
model), and its MinMax calibration keeps only a ReduceMin/ReduceMax pair per tensor, one sample at a time.

The file has what ModelOpt's has for TensorRT's explicit quantization: Q/DQ, symmetric INT8 activations and
per-channel symmetric INT8 weights on the inputs of Conv, Gemm and MatMul (less a widening step's exclusions),
biases left as they are. Not ModelOpt's placement extras (GEMV detection, its rules for residual adds), and the
opset stays the FP32 file's (ModelOpt raises it to 19); the report records which tool wrote the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from exporter.formats import activation_memory

# peak resident memory of quantize_static beyond one sample's activations (×2 for onnxruntime), in copies of the
# weights: 2.89 on vit_base_patch16_224 (330 MB; 2.19 GB peak from 0.54 GB), where ModelOpt's took 11.7 (5.09 GB),
# by scripts/int8_memory.py --samples 8 [--tool onnxruntime] (docs/coverage.md, "Models over 2 GB"); 4 leaves room
WEIGHT_COPIES = 4.0
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")


def quantized_op_types(exclude_op_types: Sequence[str]) -> tuple[str, ...]:
    """The op types whose inputs get Q/DQ once a widening step's exclusions are taken out."""
    return tuple(t for t in QUANTIZED_OP_TYPES if t not in exclude_op_types)


def _reader(arrays: Mapping[str, np.ndarray]) -> object:
    """onnxruntime's ``CalibrationDataReader`` over ``arrays``, one sample (batch 1) at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class OneSampleAtATime(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._rows = iter(activation_memory.sample_rows(arrays))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._rows, None)

    return OneSampleAtATime()


def quantize_static_qdq(onnx_path: Path, out_path: Path, arrays: Mapping[str, np.ndarray], method: str,
                        exclude_op_types: Sequence[str]) -> None:
    """Write the Q/DQ file of ``onnx_path`` to ``out_path`` (weights as external data beside it), calibrated on
    ``arrays`` with ``method`` ("max": MinMax, symmetric; "entropy")."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(onnx_path), str(out_path), _reader(arrays), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(quantized_op_types(exclude_op_types)),
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    use_external_data_format=True,
                    calibrate_method=CalibrationMethod.Entropy if method == "entropy" else CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "QDQDisableWeightAdjustForInt32Bias": True})
