"""Negative padding rewritten as a crop before ExecuTorch lowers a program.

PyTorch's ``constant_pad_nd`` crops where a pad is negative, and its decomposition of ``nn.Fold`` (col2im,
VOLO's outlook attention) uses that to cut its padding off. ExecuTorch 1.5.1 runs such a pad nowhere:
XNNPACK's partitioner declines it, and the portable kernel refuses it at run time ("Padding values must be
non-negative", ``method->execute() failed with error 0x12``), so timm's volo_d1_224 lowered to a ``.pte``
that could not run. :func:`crop_negative_pads_pass` replaces each such pad by a ``slice_copy`` per cropped
axis, then a pad of the non-negative amounts, which XNNPACK takes.
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
