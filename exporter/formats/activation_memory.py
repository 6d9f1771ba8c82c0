"""Bounded memory for calibration runs that record every intermediate tensor.

ModelOpt AutoCast decides each node's precision from the range of every tensor in the graph on the
calibration inputs. Its reference run (``ReferenceRunner.run``) keeps every intermediate tensor of every
calibration batch until the end, then reduces them to an absmax, min and max: on a DINOv2 ViT-S/14 at 518 px
(1,370 tokens) that was over 23 GB, and the kernel killed the export. ``StreamingReferenceRunner`` gives
AutoCast the same statistics computed one sample at a time, so memory is one sample's activations.

Before a stage that records activations runs, ``check_fits`` estimates that peak from the graph's shapes
(shape inference at batch 1) and the size of the weights, and refuses with ``MemoryBudgetError`` (class
``memory``) in one line when it would not fit in the memory this machine has available, instead of being killed.
"""
from __future__ import annotations

import ctypes
import gc
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from exporter import onnx_files
from exporter.errors import MemoryBudgetError
from runtimes.specs import TensorSpec

ORT_OVERHEAD = 2.0  # onnxruntime's arena and the runner's copies, over the activations themselves (measured below)
# AutoCast's copies of the weights during the stage (its model, the sanitised and reference-run copies, onnxruntime's
# session, the converted model): on vit_huge_patch14_224 (2.35 GiB) the stage went from 3.5 to 22.8 GB resident,
# 19.3 GB of which 3.1 GiB is the activation term above: 6.3x the weights
WEIGHT_COPIES = 6.5
_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
          onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT64: 8, onnx.TensorProto.INT32: 4,
          onnx.TensorProto.BOOL: 1, onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1}


def return_freed_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc ``malloc_trim``): after a stage
    that built a multi-GB protobuf or tensor copy, the freed pages otherwise stay in this process's RSS, and the
    next stage's third-party tool (AutoCast, ModelOpt) starts from that much less available memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        pass


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); elsewhere the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def activation_bytes_per_sample(path: Path, input_specs: Sequence[TensorSpec]) -> int:
    """Bytes of every tensor the graph computes for one sample: the inputs' named axes fixed (batch 1, the
    others at their example size), shapes inferred, sizes summed."""
    model = onnx_files.load(path, weights=False)
    sizes = {"batch": 1, **{a: n for s in input_specs for a, n in s.example_dims.items()}}
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = sizes.get(dim.dim_param, 1)
    inferred = onnx.shape_inference.infer_shapes(model)
    total = 0
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim]
        total += int(np.prod(dims, dtype=np.int64)) * _BYTES.get(tensor.elem_type, 4)
    return total


def check_fits(stage: str, path: Path, input_specs: Sequence[TensorSpec], samples: int,
               weight_copies: float = WEIGHT_COPIES) -> dict[str, Any]:
    """Refuse ``stage`` (``MemoryBudgetError``) when ``samples`` samples' activations, with onnxruntime's
    overhead, plus ``weight_copies`` copies of the weights (AutoCast's ``WEIGHT_COPIES`` unless told) exceed the
    available memory; returns the estimate for the manifest."""
    per_sample = activation_bytes_per_sample(path, input_specs)
    weights = onnx_files.total_bytes(path)
    activations = int(per_sample * samples * ORT_OVERHEAD)
    needed, available = activations + int(weights * weight_copies), available_bytes()
    estimate = {"activation_mb_per_sample": round(per_sample / 2**20, 1), "samples_held": samples,
                "weights_mb": round(weights / 2**20), "estimated_peak_mb": round(needed / 2**20),
                "available_mb": round(available / 2**20)}
    if needed > available:
        raise MemoryBudgetError(
            f"{stage} would need about {needed / 2**30:.1f} GiB ({activations / 2**30:.1f} GiB of activations: "
            f"{samples} sample(s) × {per_sample / 2**30:.2f} GiB, ×{ORT_OVERHEAD:g} for onnxruntime; "
            f"{weights / 2**30:.2f} GiB of weights ×{weight_copies:g}) but {available / 2**30:.1f} GiB is "
            "available: use a smaller input size or a machine with more memory")
    return estimate


def sample_rows(arrays: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """``arrays`` as one feed per sample (batch 1, contiguous)."""
    count = len(next(iter(arrays.values())))
    return [{k: np.ascontiguousarray(v[i:i + 1]) for k, v in arrays.items()} for i in range(count)]


def streaming_runner_class() -> type:
    """A ``ReferenceRunner`` whose ``run`` streams: one sample through onnxruntime at a time (one batch where
    the graph fixes the batch size; every tensor marked as an output, as AutoCast's own run does), each reduced
    at once to ``TensorStats`` (absmax, min, max, shape), so AutoCast classifies nodes on the same ranges
    without holding them all."""
    from modelopt.onnx.autocast.referencerunner import ReferenceRunner, TensorStats

    class StreamingReferenceRunner(ReferenceRunner):  # type: ignore[misc]
        def run(self, inputs: Any = None) -> OrderedDict:
            import copy

            from modelopt.onnx import utils as onnx_utils
            from polygraphy import constants
            from polygraphy.backend.onnx import ModifyOutputs

            model = copy.deepcopy(self.model)
            onnx_utils.clear_stale_value_info(model)
            runners, temp_dir = self._get_ort_runner(ModifyOutputs(model, outputs=constants.MARK_ALL))
            stats: OrderedDict = OrderedDict()
            sliceable = all(i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param
                            for i in model.graph.input)  # a fixed batch size must be fed whole
            try:
                with runners[0] as runner:
                    for batch in self._load_inputs(inputs):
                        arrays = {k: batch[k] for k in batch}
                        for feed in sample_rows(arrays) if sliceable else [arrays]:
                            for name, value in [*feed.items(), *runner.infer(feed).items()]:
                                _update(stats, name, np.asarray(value), TensorStats)
            finally:
                if temp_dir is not None:
                    temp_dir.cleanup()
            return stats

    return StreamingReferenceRunner


def _update(stats: OrderedDict, name: str, value: np.ndarray, tensor_stats: type) -> None:
    if value.size == 0:
        low = high = absmax = 0.0
    else:
        low, high = float(value.min()), float(value.max())
        absmax = max(abs(low), abs(high))
    seen = stats.get(name)
    if seen is None:
        stats[name] = tensor_stats(absmax=absmax, min_val=low, max_val=high, shape=value.shape)
    else:
        seen.absmax, seen.min_val, seen.max_val = max(seen.absmax, absmax), min(seen.min_val, low), \
            max(seen.max_val, high)
