"""Edge-dialect rewrites applied before XNNPACK partitioning, each for a program ExecuTorch 1.5.1 lowered
into a file that fails, or failed to lower. Each computes what the operators it replaces compute.

**Negative padding as a crop.** PyTorch's ``constant_pad_nd`` crops where a pad is negative, and its
decomposition of ``nn.Fold`` (col2im, VOLO's outlook attention) uses that to cut its padding off.
ExecuTorch 1.5.1 runs such a pad nowhere: XNNPACK's partitioner declines it, and the portable kernel refuses
it at run time ("Padding values must be non-negative", ``method->execute() failed with error 0x12``), so timm's
volo_d1_224 lowered to a ``.pte`` that could not run. :func:`crop_negative_pads_pass` replaces each such pad
by a ``slice_copy`` per cropped axis, then a pad of the non-negative amounts, which XNNPACK takes.

**Identity clones dropped.** ``.contiguous()`` on a tensor that is already contiguous becomes a
``_clone_dim_order`` to the order the tensor has. XNNPACK's own passes remove such a clone inside a partition,
and when the clone was the partition's output its input became that output too, which XNNPACK's preprocessing
refuses ("Output node … is already in the inputs … pass through arguments", timm's halonet26t, FP32).
:func:`drop_identity_clones` removes them first, except where the clone copies a graph input.

**A shared dequantize, one per user.** PT2E's convert gives each quantized consumer its own ``dequantize``
(torchao's ``DuplicateDQPass``) but leaves one shared between consumers it did not quantize. Where such a
``dequantize`` feeds a float ``add`` (with a quantize after it) and also a path that comes back into that add
(a residual around a batch norm, timm's nextvit_small at the widest INT8 step), XNNPACK's partitioner puts the
``dequantize`` in the add's partition and the partition then depends on itself through the outside path:
"Invalid partition, found dependency cycles". :func:`duplicate_shared_dequantize` gives every user a copy
first; the copies compute the same tensor.

**A reshape's one symbolic size, inferred.** A reshape over a dynamic batch keeps the batch as a symbol
(``view_copy(x, [s0, 49, 64])``), and XNNPACK's partitioner declines every reshape with a symbolic size, though
its reshape infers one size (``-1``). On timm's coat_tiny 392 of the 987 operators left to the portable kernels
were such reshapes, each one cutting XNNPACK's partitions apart. :func:`infer_symbolic_view_sizes` writes
``-1`` where a reshape has exactly one symbolic size and none inferred: the tensor's size fixes it, so it
computes the same, and XNNPACK takes it.
"""
from __future__ import annotations

import sys
from typing import Any


def crop_amounts(pad: list[int], rank: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """``constant_pad_nd``'s ``pad`` (before/after pairs from the last axis backwards) split into the crops
    ``(axis, start, end)`` its negative amounts make (``end`` counted from the axis' end, as a negative index,
    or ``sys.maxsize``) and the same pad with those amounts at zero."""
    crops = []
    for pair in range(len(pad) // 2):
        before, after = pad[2 * pair], pad[2 * pair + 1]
        if before < 0 or after < 0:
            crops.append((rank - 1 - pair, -before if before < 0 else 0, after if after < 0 else sys.maxsize))
    return crops, [max(amount, 0) for amount in pad]


def crop_negative_pads_pass() -> Any:
    """An ExecuTorch ``ExportPass`` for ``to_edge_transform_and_lower(transform_passes=…)`` that rewrites every
    edge ``constant_pad_nd`` with a negative amount into crops and a non-negative pad (see the module)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass

    pad_op, slice_op = exir_ops.edge.aten.constant_pad_nd.default, exir_ops.edge.aten.slice_copy.Tensor

    class CropNegativePads(ExportPass):  # type: ignore[misc]
        def call_operator(self, op: Any, args: Any, kwargs: Any, meta: Any) -> Any:
            if op is not pad_op or all(amount >= 0 for amount in args[1]):
                return super().call_operator(op, args, kwargs, meta)
            source, value = args[0], (args[2] if len(args) > 2 else kwargs.get("value", 0.0))
            crops, padding = crop_amounts(list(args[1]), source.to_tensor().dim())
            for axis, start, end in crops:
                source = super().call_operator(slice_op, (source, axis, start, end, 1), {}, meta)
            if any(padding):
                source = super().call_operator(pad_op, (source, padding, value), {}, meta)
            return source

    return CropNegativePads()


def drop_identity_clones(graph_module: Any) -> Any:
    """An ExecuTorch transform pass: every ``_clone_dim_order`` whose input, computed in the graph, already has
    the asked dim order is replaced by its input (see the module)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    clone_op = exir_ops.edge.dim_order_ops._clone_dim_order.default
    dropped = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not clone_op:
            continue
        source = node.args[0]
        value = source.meta.get("val") if source.op == "call_function" else None
        order = node.kwargs.get("dim_order")
        if value is None or order is None or list(order) != list(value.dim_order()):
            continue
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        dropped += 1
    if dropped:
        graph_module.recompile()
    return PassResult(graph_module, bool(dropped))


def duplicate_shared_dequantize(graph_module: Any) -> Any:
    """An ExecuTorch transform pass: every per-tensor ``dequantize`` with several users is copied, one copy
    per user after the first (see the module)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    dequantize = exir_ops.edge.quantized_decomposed.dequantize_per_tensor.default
    copied = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not dequantize or len(node.users) < 2:
            continue
        for user in list(node.users)[1:]:
            with graph_module.graph.inserting_after(node):
                copy = graph_module.graph.node_copy(node)
            user.replace_input_with(node, copy)
            copied += 1
    if copied:
        graph_module.recompile()
    return PassResult(graph_module, bool(copied))


def infer_symbolic_view_sizes(graph_module: Any) -> Any:
    """An ExecuTorch transform pass: in every ``view_copy`` whose sizes hold exactly one symbol (a graph node: the
    batch, or an expression of it), no ``-1`` and no zero, that size becomes ``-1`` (see the module)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    view = exir_ops.edge.aten.view_copy.default
    inferred = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target is not view:
            continue
        sizes = list(node.args[1])
        symbolic = [i for i, size in enumerate(sizes) if not isinstance(size, int)]
        if len(symbolic) != 1 or any(size in (-1, 0) for size in sizes if isinstance(size, int)):
            continue
        symbol, sizes[symbolic[0]] = sizes[symbolic[0]], -1
        node.args = (node.args[0], sizes, *node.args[2:])
        _erase_unused_size_reads(graph_module.graph, symbol)
        inferred += 1
    if inferred:
        graph_module.recompile()
    return PassResult(graph_module, bool(inferred))


def _erase_unused_size_reads(graph: Any, node: Any) -> None:
    """Erase ``node`` if nothing uses it any more and it only computes a size (``sym_size`` or arithmetic on
    sizes), then the size reads it used, in turn."""
    import torch

    if node.users or node.op != "call_function" or not isinstance(node.meta.get("val"), torch.SymInt):
        return
    inputs = node.all_input_nodes
    graph.erase_node(node)
    for source in inputs:
        _erase_unused_size_reads(graph, source)
