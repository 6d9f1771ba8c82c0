"""torch → ONNX at exactly the requested opset, with a symbolic batch axis read back
from the written file.

Two exporters, each native for some opsets: dynamo (from the torch.export program)
writes 18…24, TorchScript (tracing the module) 13…20. ``auto`` tries both, in the
order that suits the opset (``exporter_order``: the native one first); the pipeline
discards a candidate that raises or fails parity and tries the next. Below 18 dynamo's
file is written at 18 and taken down with onnx's version converter (constants folded
first), recorded as converted. Every path verifies the written opset instead of
trusting it.
"""
from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnx.version_converter
import torch

from exporter import onnx_files
from exporter.errors import UNSUPPORTED_PHRASES, ExportError
from runtimes.errors import AttnExportError
from runtimes.specs import TensorSpec

SUPPORTED_OPSETS = range(13, 25)
DYNAMO_OPSETS = range(18, 25)  # written natively by torch 2.14's dynamo exporter
TORCHSCRIPT_OPSETS = range(13, 21)
EXPORTERS = ("auto", "dynamo", "torchscript")
ATTENTION_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention")  # fused attention operators


def exporter_order(opset: int, exporter: str = "auto") -> tuple[str, ...]:
    """The exporters to try for ``opset``, in order: ``auto`` → the one native at ``opset`` first (dynamo for
    18…24, TorchScript for 13…17), then the other where it can reach ``opset``; a named one alone."""
    if opset not in SUPPORTED_OPSETS:
        raise AttnExportError(
            f"opset {opset} is not supported: choose {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}"
        )
    if exporter not in EXPORTERS:
        raise AttnExportError(f"unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if exporter == "torchscript" and opset not in TORCHSCRIPT_OPSETS:
        raise AttnExportError(f"the TorchScript exporter writes opsets {TORCHSCRIPT_OPSETS.start}.."
                              f"{TORCHSCRIPT_OPSETS.stop - 1}, not {opset}: use --exporter dynamo or auto")
    if exporter != "auto":
        return (exporter,)
    order = ("dynamo", "torchscript") if opset in DYNAMO_OPSETS else ("torchscript", "dynamo")
    return tuple(e for e in order if e == "dynamo" or opset in TORCHSCRIPT_OPSETS)


def conversion_record(exporter: str, opset: int) -> dict[str, Any]:
    """How the file reached ``opset``: written natively, or written by dynamo at 18 and converted down."""
    if exporter == "dynamo" and opset < DYNAMO_OPSETS.start:
        return {"written_at": DYNAMO_OPSETS.start, "converted_to": opset, "converter": "onnx.version_converter"}
    return {"written_at": opset}


def attention_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Fused attention operators in the graph (``Attention`` from opset 23, contrib ones), by type."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ATTENTION_OPS:
            found[node.op_type] = found.get(node.op_type, 0) + 1
    return found


def default_opset(model: onnx.ModelProto) -> int:
    """The opset of the default ONNX domain."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the ONNX model imports no default-domain opset")


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]


def rename_symbol(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a symbolic dim everywhere (inputs, outputs, value_info)."""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param == old:
                d.dim_param = new


def canonicalise_axes(model: onnx.ModelProto, input_specs: Sequence[TensorSpec]) -> None:
    """Give dynamic axes the names of the specs (the dynamo exporter writes ``s0``, ``s40`` …)."""
    inputs = {v.name: v for v in model.graph.input}
    for spec in input_specs:
        if spec.name not in inputs:
            continue
        for axis, dim in zip(spec.shape, inputs[spec.name].type.tensor_type.shape.dim):
            if isinstance(axis, str) and dim.dim_param and dim.dim_param != axis:
                rename_symbol(model, dim.dim_param, axis)


def check_dynamic_axes(
    model: onnx.ModelProto, input_specs: Sequence[TensorSpec], output_specs: Sequence[TensorSpec]
) -> dict[str, list[int | str]]:
    """Every named axis of every input and output must be symbolic with that name in the file.

    Returns ``{tensor name: dims as written}``; raises ``ExportError`` naming the tensor.
    """
    written = {v.name: v for v in [*model.graph.input, *model.graph.output]}
    shapes: dict[str, list[int | str]] = {}
    for spec in [*input_specs, *output_specs]:
        if spec.name not in written:
            raise ExportError(f"tensor {spec.name!r} is missing from the ONNX graph (has {sorted(written)})")
        dims = _dims(written[spec.name])
        shapes[spec.name] = dims
        for axis, name in spec.dynamic_axes.items():
            if axis >= len(dims) or dims[axis] != name:
                got = dims[axis] if axis < len(dims) else "nothing"
                raise ExportError(
                    f"{spec.name!r}: dim {axis} should be symbolic {name!r} but the file has {got!r}; the model "
                    "bakes that size into the graph (e.g. .view(batch_size, ...) with a Python int) — use -1, "
                    "flatten or unflatten", "baked size"
                )
    return shapes


def _explain_export_failure(exc: Exception, opset: int) -> ExportError:
    """Turn an exporter exception into one line naming the operator and the lowest opset that has it."""
    text = str(exc)
    match = re.search(r"operator '?([\w:.]+)'? to ONNX opset version (\d+)", text)
    if match:
        added = re.search(r"added in version (\d+)", text)
        if added and int(added.group(1)) < SUPPORTED_OPSETS.stop:
            fix = f"its ONNX conversion starts at opset {added.group(1)}: use --opset {added.group(1)} or higher"
        elif added:
            fix = f"its ONNX conversion starts at opset {added.group(1)}, above the {SUPPORTED_OPSETS.stop - 1} " \
                  "supported here"
        else:
            fix = f"no ONNX opset up to {SUPPORTED_OPSETS.stop - 1} has a conversion for it; replace it in the " \
                  "model, or try --exporter dynamo"
        return ExportError(f"operator {match.group(1)} has no ONNX conversion at opset {opset}: {fix}",
                           "unsupported operator")
    dispatch = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)
    if dispatch:
        return ExportError(f"operator {dispatch.group(1)} has no ONNX function in the dynamo exporter at opset "
                           f"{opset} (no ONNX opset up to {SUPPORTED_OPSETS.stop - 1} has one there); replace it "
                           "in the model", "unsupported operator")
    summary = re.search(r"## Exception summary\s+(.+)", text)  # the dynamo exporter's first line is generic
    first = summary.group(1) if summary else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = re.sub(r"<class '[\w.]+\.(\w+)'>", r"\1", re.sub(r"\x1b\[\d+m", "", first))
    unsupported = any(phrase in first.lower() for phrase in UNSUPPORTED_PHRASES)
    return ExportError(f"ONNX export at opset {opset} failed: {first[:300]}",
                       "unsupported operator" if unsupported else None)


def export_onnx(
    module: torch.nn.Module,
    program: torch.export.ExportedProgram,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    opset: int,
    exporter: str,
    input_specs: Sequence[TensorSpec],
    output_specs: Sequence[TensorSpec],
    external_data: bool = False,
) -> dict[str, list[int | str]]:
    """Write ``path`` at exactly ``opset``; check opset, symbolic axes and ``full_check``. The weights go to
    ``path``'s data file with ``external_data`` or over 2 GiB (``onnx_files.save``).

    ``exporter`` is ``dynamo`` (from the torch.export ``program``; below its native 18 written at 18 and
    converted down, see :func:`convert_opset`) or ``torchscript`` (traces ``module``). Returns the tensor
    shapes read back from the file.
    """
    input_names = [s.name for s in input_specs]
    output_names = [s.name for s in output_specs]
    with tempfile.TemporaryDirectory(prefix=".export.", dir=path.parent) as work:
        written_path = Path(work) / path.name  # over 2 GiB both exporters write their data files beside it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if exporter == "dynamo":
                    torch.onnx.export(
                        program, example_inputs, str(written_path), input_names=input_names,
                        output_names=output_names, opset_version=max(opset, DYNAMO_OPSETS.start), dynamo=True,
                        external_data=True, optimize=True, verbose=False,
                    )
                else:
                    axes = {s.name: s.dynamic_axes for s in [*input_specs, *output_specs]}
                    torch.onnx.export(
                        module, example_inputs, str(written_path), input_names=input_names,
                        output_names=output_names, opset_version=opset, dynamo=False, dynamic_axes=axes,
                        do_constant_folding=True,
                    )
        except Exception as exc:  # exporters raise many types; name the op and opset
            raise _explain_export_failure(exc, opset) from exc
        model = onnx_files.load(written_path)
    if exporter == "dynamo" and opset < DYNAMO_OPSETS.start:
        model = convert_opset(model, opset)
    written = default_opset(model)
    if written != opset:
        raise ExportError(
            f"the {exporter} exporter wrote opset {written} when {opset} was asked; "
            f"use --exporter torchscript for opset {opset}"
        )
    canonicalise_axes(model, input_specs)
    shapes = check_dynamic_axes(model, input_specs, output_specs)
    onnx_files.save(model, path, external=external_data)
    return shapes


def convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` (dynamo's, at 18) taken down to ``opset`` < 18 by onnx's version converter. Opset 18 made
    reduction axes an input; the converter needs them constant, so constants are folded first (onnxslim)."""
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folded = onnxslim.slim(model)
    _hide_unchanged_ops(folded)
    try:
        converted = onnx.version_converter.convert_version(folded, opset)
        _restore_hidden_ops(converted)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/its own errors per adapter
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ExportError(f"onnx's version converter could not take the dynamo file from opset "
                          f"{default_opset(model)} to {opset}: {first}") from exc
    _drop_reduce_noop_attribute(converted)
    return converted


_HIDDEN_DOMAIN = "attn_export.unchanged"


def _split_sizes_as_input(model: onnx.ModelProto, node: onnx.NodeProto, dims: dict[str, list[int]]) -> bool:
    """Split-18's ``num_outputs`` → an explicit ``split`` input (the only form opset 13…17 has), where the split
    axis has a static size; ``False`` where it does not."""
    count = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
    if count is None:
        return True
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    shape = dims.get(node.input[0], [])
    if not shape or not -len(shape) <= axis < len(shape) or shape[axis] <= 0:
        return False
    size = shape[axis]
    chunk = -(-size // count)
    sizes = [chunk] * (count - 1) + [size - chunk * (count - 1)]
    name = f"{node.name or node.output[0]}_split_sizes"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(sizes, np.int64), name))
    kept = [a for a in node.attribute if a.name != "num_outputs"]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.input.append(name)
    return True


def _hide_unchanged_ops(model: onnx.ModelProto) -> None:
    """Ops that onnx's converter has no 18 → 17 adapter for, but whose opset-13 form is the same node here
    (Split with sizes as an input, Pad without ``axes``, LpPool without ``ceil_mode``), moved to a private
    domain so the converter leaves them alone; :func:`_restore_hidden_ops` puts them back."""
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    hidden = False
    for node in model.graph.node:
        same = (node.op_type == "Split" and _split_sizes_as_input(model, node, dims)) or \
               (node.op_type == "Pad" and len(node.input) <= 3) or \
               (node.op_type == "LpPool" and not any(a.name == "ceil_mode" and a.i for a in node.attribute))
        if node.domain in ("", "ai.onnx") and same:
            node.domain = _HIDDEN_DOMAIN
            hidden = True
    if hidden:
        model.opset_import.append(onnx.helper.make_opsetid(_HIDDEN_DOMAIN, 1))


def _restore_hidden_ops(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.domain == _HIDDEN_DOMAIN:
            node.domain = ""
            if node.op_type == "LpPool":
                kept = [a for a in node.attribute if a.name != "ceil_mode"]
                del node.attribute[:]
                node.attribute.extend(kept)
    kept_imports = [o for o in model.opset_import if o.domain != _HIDDEN_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept_imports)


def _drop_reduce_noop_attribute(model: onnx.ModelProto) -> None:
    """The converter's 18 → 17 Reduce* adapter keeps ``noop_with_empty_axes`` (new in 18 for most reductions),
    which the checker then rejects. With axes given, or the flag 0, dropping it changes nothing."""
    for node in model.graph.node:
        if not node.op_type.startswith("Reduce") or node.op_type == "ReduceSum":  # ReduceSum has it since 13
            continue
        kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
        flag = next((a.i for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
        has_axes = any(a.name == "axes" and a.ints for a in node.attribute)
        if len(kept) != len(node.attribute) and (flag == 0 or has_axes):
            del node.attribute[:]
            node.attribute.extend(kept)


SIMPLIFY_BELOW = 2**31  # bytes of weights: onnxslim held ~9 copies of ViT-Huge's 2.35 GiB (21 GB) and was OOM-killed


def simplify(path: Path, external_data: bool = False) -> tuple[int, int] | None:
    """Simplify ``path`` in place with onnxslim; returns node counts (before, after), or ``None`` (the file left as
    exported) when its weights reach ``SIMPLIFY_BELOW``: onnxslim's copies would not fit a 24 GiB machine."""
    import onnxslim

    if onnx_files.total_bytes(path) >= SIMPLIFY_BELOW:
        return None
    model = onnx_files.load(path)
    before = len(model.graph.node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = onnxslim.slim(model)
    if default_opset(slim) != default_opset(model):
        raise ExportError("onnxslim changed the opset; re-run with --no-simplify")
    onnx_files.save(slim, path, external=external_data)
    return before, len(slim.graph.node)
