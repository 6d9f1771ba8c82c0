"""What the BF16 format alone costs a model, measured in PyTorch.

The model runs in FP32 arithmetic with its inputs, weights and every module's
output rounded to bfloat16 (8-bit mantissa) — what a BF16 engine stores, without
any engine's kernels. Its error against the FP32 reference is the floor a BF16
engine starts from: when this emulation already misses the BF16 tolerance, no
engine can meet it on these weights, and the failure belongs to the weights (for
example random weights whose attention softmax is nearly an argmax), not to the
engine. The exporter records it beside a failed OpenVINO BF16 row.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from exporter.checks.parity import ParityReport, Tolerance
from exporter.export_model import ExportModel, forward_arrays

LABEL = "pytorch-bf16-emulation"


def round_bf16(value: Any) -> Any:
    """Float tensors (also inside tuples/lists) rounded to the nearest bfloat16, kept in their dtype."""
    if torch.is_tensor(value):
        return value.to(torch.bfloat16).to(value.dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(round_bf16(v) for v in value)
    return value


@contextmanager
def bf16_rounded(model: nn.Module) -> Iterator[nn.Module]:
    """A copy of ``model`` whose weights are bfloat16 values and whose leaf modules round their outputs."""
    emulated = copy.deepcopy(model).eval()
    with torch.no_grad():
        for tensor in (*emulated.parameters(), *emulated.buffers()):
            tensor.copy_(round_bf16(tensor))
    leaves = [m for m in emulated.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: round_bf16(out)) for m in leaves]
    try:
        yield emulated
    finally:
        for hook in hooks:
            hook.remove()


def _rounded_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float inputs rounded to bfloat16 values (a BF16 engine's first step); ids and masks as they are."""
    return {k: round_bf16(torch.from_numpy(v)).numpy() for k, v in arrays.items()}


def emulated_report(model: ExportModel, sets: Sequence[Any], tolerance: Tolerance | None = None) -> ParityReport:
    """The BF16 emulation of ``model`` checked against each set's FP32 reference (``ParityInputs``)."""
    report = ParityReport(candidate=LABEL, tolerance=tolerance or Tolerance.bf16())
    names = [s.name for s in model.output_specs]
    with bf16_rounded(model.module) as emulated:
        for inputs in sets:
            report.add(inputs.label, inputs.reference,
                       forward_arrays(emulated, model.input_specs, names, _rounded_arrays(inputs.arrays)))
    return report
