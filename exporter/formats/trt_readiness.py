"""TensorRT-readiness of an ONNX graph, checked on CPU in every export.

Errors: ops TensorRT's ONNX parser does not implement (from onnx-tensorrt's
operator support list) and data-dependent output shapes it cannot build.
Warnings: int64/double tensors TensorRT casts down to int32/float32.
``parsed_by`` says which TensorRT parsers take the file's opset (onnx-tensorrt's operators.md per release).
"""
from __future__ import annotations

from typing import Any

import onnx

# Not implemented by onnx-tensorrt (operators.md, TensorRT 10/11): strings, sequences, randomness, training ops.
UNSUPPORTED_OPS = frozenset({
    "StringNormalizer", "TfIdfVectorizer", "RegexFullMatch", "StringConcat", "StringSplit", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence",
    "ConcatFromSequence", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Bernoulli", "Optional", "OptionalGetElement", "OptionalHasElement", "Gradient", "Momentum", "Adagrad", "Adam",
    "Unique", "ImageDecoder", "Col2Im",
})
DATA_DEPENDENT_OPS = frozenset({"NonZero", "NonMaxSuppression", "Compress", "Unique"})
# The opsets each TensorRT release's ONNX parser takes, inclusive, from onnx-tensorrt's docs/operators.md
# ("TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset 24"; 11.2: 9-24; 11.5: 9-25).
# Unverified on GPU here.
PARSER_OPSETS = {"TensorRT 10.15": (9, 24), "TensorRT 11.2": (9, 24), "TensorRT 11.5": (9, 25)}
NARROWED_TYPES = {onnx.TensorProto.INT64: "int64 → int32", onnx.TensorProto.DOUBLE: "double → float32"}


def check(model: onnx.ModelProto) -> dict[str, Any]:
    """``{"errors": [...], "warnings": [...]}`` for ``model``; empty lists mean ready."""
    errors, warnings = [], []
    ops = {}
    for node in model.graph.node:
        ops.setdefault(node.op_type, node.name)
    for op, name in sorted(ops.items()):
        if op in UNSUPPORTED_OPS:
            errors.append(f"op {op} (e.g. node {name!r}) is not supported by TensorRT's ONNX parser")
        elif op in DATA_DEPENDENT_OPS:
            errors.append(f"op {op} (node {name!r}) has a data-dependent output shape")
    narrowed = {}
    for value in [*model.graph.input, *model.graph.output]:
        kind = NARROWED_TYPES.get(value.type.tensor_type.elem_type)
        if kind:
            narrowed.setdefault(kind, []).append(value.name)
    for init in model.graph.initializer:
        kind = NARROWED_TYPES.get(init.data_type)
        if kind:
            narrowed.setdefault(kind, []).append(init.name)
    for kind, names in narrowed.items():
        warnings.append(f"{len(names)} {kind.split()[0]} tensors (e.g. {names[0]!r}) will be cast {kind}")
    return {"errors": errors, "warnings": warnings, "parsed_by": parsed_by(_opset(model))}


def _opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def parsed_by(opset: int) -> dict[str, bool]:
    """``{release: True}`` for each TensorRT release whose ONNX parser documents ``opset`` (``PARSER_OPSETS``)."""
    return {release: low <= opset <= high for release, (low, high) in PARSER_OPSETS.items()}
