"""The one dtype table: numpy ↔ ONNX ↔ onnxruntime ↔ OpenVINO ↔ Open Inference Protocol ↔ Triton config.

Every backend, the manifest, the exporter's ``--input`` parser and the serving code translate types
through :func:`lookup`; a type outside the table is an error naming it and the column, never a silent
float32.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from runtimes.errors import ArtifactError


@dataclass(frozen=True)
class DType:
    """One element type under each name it goes by."""

    numpy: str  # numpy dtype name: what TensorSpec, the manifest and runtimes use
    onnx: int  # onnx.TensorProto data type
    ort: str  # onnxruntime NodeArg.type
    openvino: str  # openvino Type.get_type_name()
    oip: str  # Open Inference Protocol (KServe v2 / Triton) datatype
    triton: str  # Triton config.pbtxt data_type


TABLE: tuple[DType, ...] = (
    DType("float32", 1, "tensor(float)", "f32", "FP32", "TYPE_FP32"),
    DType("float16", 10, "tensor(float16)", "f16", "FP16", "TYPE_FP16"),
    DType("float64", 11, "tensor(double)", "f64", "FP64", "TYPE_FP64"),
    DType("int64", 7, "tensor(int64)", "i64", "INT64", "TYPE_INT64"),
    DType("int32", 6, "tensor(int32)", "i32", "INT32", "TYPE_INT32"),
    DType("int16", 5, "tensor(int16)", "i16", "INT16", "TYPE_INT16"),
    DType("int8", 3, "tensor(int8)", "i8", "INT8", "TYPE_INT8"),
    DType("uint8", 2, "tensor(uint8)", "u8", "UINT8", "TYPE_UINT8"),
    DType("uint16", 4, "tensor(uint16)", "u16", "UINT16", "TYPE_UINT16"),
    DType("uint32", 12, "tensor(uint32)", "u32", "UINT32", "TYPE_UINT32"),
    DType("uint64", 13, "tensor(uint64)", "u64", "UINT64", "TYPE_UINT64"),
    DType("bool", 9, "tensor(bool)", "boolean", "BOOL", "TYPE_BOOL"),
)
COLUMNS = tuple(f.name for f in fields(DType))
NUMPY_NAMES = tuple(d.numpy for d in TABLE)


class UnknownDTypeError(ArtifactError):
    """A tensor type outside the table (a file, a manifest or a request uses a type attn-export does not)."""


def lookup(column: str, value: object) -> DType:
    """The row whose ``column`` (one of ``COLUMNS``) equals ``value``; ``UnknownDTypeError`` names both."""
    if column not in COLUMNS:
        raise ValueError(f"no dtype column {column!r}; columns: {COLUMNS}")
    for row in TABLE:
        if getattr(row, column) == value:
            return row
    known = ", ".join(str(getattr(row, column)) for row in TABLE)
    raise UnknownDTypeError(f"tensor type {value!r} ({column}) is not supported; supported: {known}")


def convert(value: object, source: str, target: str) -> object:
    """``value`` named in column ``source``, named in column ``target`` (e.g. ``convert("FP32", "oip", "numpy")``)."""
    return getattr(lookup(source, value), target)
