"""FLOPs per sample, counted at export for the manifest (``flops_per_sample``): what attn-bench divides by a
latency to give achieved GFLOP/s, and the ``--list`` table's GFLOPs.

Counted by ``torch.utils.flop_counter.FlopCounterMode`` on one sample (batch 1): 2 × multiply-accumulate of
convolutions, matrix products and scaled-dot-product attention; element-wise operators, normalisations and
softmax are not counted (they are memory-bound and small beside the products). A model with other named axes
(``seq``) is counted at each named size it was exported with, the example sizes and the largest
(``by_size``): its FLOPs are a function of ``seq`` that a linear model would misstate (attention is quadratic),
so attn-bench uses the count taken at the sizes it runs.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from runtimes.errors import first_line
from runtimes.specs import BATCH, TensorSpec, random_inputs

COUNTED_BY = ("torch.utils.flop_counter.FlopCounterMode at batch 1: 2 x multiply-accumulate of convolutions, "
              "matrix products and scaled-dot-product attention; element-wise, normalisation and softmax not counted")


def count(module: torch.nn.Module, specs: Sequence[TensorSpec], sizes: Mapping[str, int] | None = None
          ) -> tuple[int, dict[str, int]]:
    """FLOPs of one sample through ``module`` with the named axes at ``sizes`` (default: the specs' example
    sizes), and the same split by operator (``aten.convolution``, ``aten.mm`` …)."""
    arrays = random_inputs(specs, 1, seed=0, dims=dict(sizes or {}))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*(torch.from_numpy(arrays[s.name]) for s in specs))
    by_operator = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items() if n}
    return int(counter.get_total_flops()), dict(sorted(by_operator.items(), key=lambda kv: -kv[1]))


def named_sizes(specs: Sequence[TensorSpec]) -> list[dict[str, int]]:
    """The sizes of the named axes other than batch to count at: the example sizes, then the largest."""
    example = {axis: n for s in specs for axis, n in s.example_dims.items() if axis != BATCH}
    largest = {**example, **{axis: n for s in specs for axis, n in s.max_dims.items() if axis != BATCH}}
    return [example] if largest == example else [example, largest]


def flops_record(module: torch.nn.Module, specs: Sequence[TensorSpec]) -> dict[str, Any]:
    """The manifest's ``flops_per_sample``: ``flops`` at the example sizes (``sizes``), ``by_operator``,
    ``by_size`` where there are named axes, and ``counted_by``; ``{"error": ...}`` where the module cannot run
    under the counter."""
    try:
        counted = [(sizes, *count(module, specs, sizes)) for sizes in named_sizes(specs)]
    except Exception as exc:  # a model whose operators the counter's dispatch cannot take: say so, export anyway
        return {"error": f"{type(exc).__name__}: {first_line(exc)}", "counted_by": COUNTED_BY}
    sizes, flops, by_operator = counted[0]
    record: dict[str, Any] = {"flops": flops, "sizes": sizes, "by_operator": by_operator, "counted_by": COUNTED_BY}
    if sizes:
        record["by_size"] = [{"sizes": s, "flops": f} for s, f, _ in counted]
    return record
