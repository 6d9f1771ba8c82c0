"""ExecuTorch ``.pte`` for phones and boards: XNNPACK-delegated, FP32 and PT2E INT8.

torch.export again, with every named axis bounded (batch by the profile max, other axes by their
``max_dims``): ExecuTorch plans memory for the upper bound, so an unbounded axis cannot be lowered.
The program is lowered with ``to_edge_transform_and_lower`` and the ``XnnpackPartitioner``; what
XNNPACK does not take runs on ExecuTorch's portable kernels, and :func:`delegation` counts both.

The tensor specs travel inside the ``.pte`` as a constant method (``runtimes.engines.executorch_rt.IO_METHOD``,
JSON bytes as a uint8 tensor), so a lone ``.pte`` opens with its names, dynamic axes and bounds.

INT8 is PT2E with ``XNNPACKQuantizer`` (symmetric, per-channel weights, static activations),
calibrated on the same arrays as the ONNX INT8. ``WIDENING_STEPS`` keeps more in float when parity
(or, with ``--eval``, the accuracy drop) fails, as the ONNX INT8 steps do: first the stem and the
classifier, then also every element-wise operator.

Why ``_check_ir_validity=False``: with executorch 1.5.1 the edge IR validity check specialises a
bounded batch to the example's size on c2f_ca (its coordinate-attention ``mean``/``split``), so the
``.pte`` refuses every other batch. Parity at batch 1, an odd batch and the max proves the lowered
graph instead.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from exporter.checks.widening import widen_until_parity
from exporter.errors import ExportError, ToolCrashError, tool_failure
from exporter.export_model import forward_arrays
from exporter.formats.conv3d_as_conv2d import conv3d_as_conv2d
from exporter.formats.decompose_once import decompose_once
from exporter.formats.edge_rewrites import (
    crop_negative_pads_pass,
    drop_identity_clones,
    duplicate_shared_dequantize,
    infer_symbolic_view_sizes,
)
from exporter.formats.fx_provenance import shared_provenance
from exporter.formats.merge_check import fast_merge_checks
from exporter.formats.needless_decompositions import skip_needless_decompositions
from exporter.formats.partition_order import in_place_partition_order
from exporter.formats.ptq_convert import convert_ptq
from exporter.formats.unchanged_retraces import skip_unchanged_retraces
from runtimes.engines.executorch_rt import IO_METHOD
from runtimes.fileio import atomic_path
from runtimes.optional import require
from runtimes.specs import BATCH, TensorSpec

# graph plumbing and INT8 Q/DQ, not compute: left out of the counts (as Q/DQ nodes are in the ONNX INT8 report)
BOOKKEEPING_OPS = ("getitem", "sym_size")
QDQ_PREFIX = "quantized_decomposed_"


def executorch_version() -> str:
    """The installed ExecuTorch version; exit 2 naming the extra when it is missing."""
    return str(require("executorch.version", "--executorch", "executorch").__version__)


def bounded_shapes(specs: Sequence[TensorSpec], max_batch: int) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic shapes with an upper bound on every named axis (one ``Dim`` per name)."""
    dims: dict[str, Any] = {}
    for spec in specs:
        for name in spec.dynamic_axes.values():
            bound = max_batch if name == BATCH else spec.max_dims.get(name)
            if bound is None:
                raise ExportError(f"ExecuTorch plans memory for an upper bound, and axis {name!r} of input "
                                  f"{spec.name!r} has none: pass --max-dim {name}=N")
            dims.setdefault(name, torch.export.Dim(name, min=1, max=bound))
    return tuple({axis: dims[name] for axis, name in s.dynamic_axes.items()} for s in specs)


def io_constant(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> torch.Tensor:
    """The specs as JSON bytes in a uint8 tensor: what ``IO_METHOD`` returns."""
    text = json.dumps({"inputs": [s.to_json() for s in inputs], "outputs": [s.to_json() for s in outputs]})
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def delegation(edge_program: Any) -> dict[str, Any]:
    """Compute operators XNNPACK took versus those left to the portable kernels, by operator."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    taken, fallback = collections.Counter(), collections.Counter()
    for op, counts in info.delegation_by_operator.items():
        if op in BOOKKEEPING_OPS or op.startswith(QDQ_PREFIX):
            continue
        name = op.removeprefix("aten_").removesuffix("_default")
        taken[name] += counts.delegated
        fallback[name] += counts.non_delegated
    return {"xnnpack_ops": sum(taken.values()), "portable_ops": sum(fallback.values()),
            "xnnpack_subgraphs": info.num_delegated_subgraphs,
            "portable_op_types": dict(sorted((k, v) for k, v in fallback.items() if v))}


def xnnpack_partitioner() -> Any:
    """ExecuTorch's ``XnnpackPartitioner`` with every default config, but a constant pad whose input is
    dequantized is left to the portable kernels.

    Why: with ExecuTorch 1.5.1, a pad between a quantized operator and a quantized view chain (swinv2's patch
    merging: quantized add → pad → reshape/permute/flatten → quantized linear) lowers, then the file fails to
    load: XNNPACK's runtime refuses the pad ("Failed to create StaticConstantPad node … xnn_status_invalid_parameter",
    "Init failed for backend XnnpackBackend: 0x1"), so each such widening step cost a lowering for nothing. XNNPACK
    takes the pad in FP32 only; on the portable kernel it computes the same float pad."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import ConstantPadConfig
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.quant_utils import is_dequant

    class FloatInputPadConfig(ConstantPadConfig):  # type: ignore[misc]
        def check_constraints(self, node: torch.fx.Node, ep: torch.export.ExportedProgram) -> bool:
            source = node.args[0]
            if isinstance(source, torch.fx.Node) and is_dequant(source):
                return False
            return bool(super().check_constraints(node, ep))

    configs = [FloatInputPadConfig if c is ConstantPadConfig else c for c in ALL_PARTITIONER_CONFIGS]
    return XnnpackPartitioner(configs=configs)


# ExecuTorch's lowering (to_executorch included) with work-arounds where its time goes, each restoring the original
# on exit, each with a test that the ``.pte`` stays the same (times: coat_tiny, docs/coverage.md): the
# per-partition re-ordering done in place, its code left alone (244 → 145 s), torch.fx provenance shared (62 → 51 s
# on vit_tiny), a decomposition with nothing to do skipped, passes that edited nothing, or whose dry run found no
# operator to rewrite, not re-traced (203 → 150 s on an INT8 step; the dry run 113 → 79 s), the partitioner's
# cycle check asked from the smaller side (157 → 146 s) and the program functionalized and decomposed in one
# trace, ExecuTorch's two calls then skipped as needless (145 → 113 s; without needless_decompositions it only
# adds a trace)
LOWERING_WORKAROUNDS: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "partition_order": in_place_partition_order,
    "fx_provenance": shared_provenance,
    "needless_decompositions": skip_needless_decompositions,
    "unchanged_retraces": skip_unchanged_retraces,
    "merge_check": fast_merge_checks,
    "decompose_once": decompose_once,
}


@contextlib.contextmanager
def faster_lowering(leave_out: Collection[str] = ()) -> Iterator[None]:
    """Every one of ``LOWERING_WORKAROUNDS`` but those named in ``leave_out`` (to measure one against ExecuTorch's
    own: ``scripts/lowering_ab.py``)."""
    unknown = set(leave_out) - set(LOWERING_WORKAROUNDS)
    if unknown:
        raise ValueError(f"no lowering work-around named {sorted(unknown)}; known: {sorted(LOWERING_WORKAROUNDS)}")
    with contextlib.ExitStack() as stack:
        for name, workaround in LOWERING_WORKAROUNDS.items():
            if name not in leave_out:
                stack.enter_context(workaround())
        yield


def lower_to_pte(program: torch.export.ExportedProgram, out_path: Path, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], leave_out: Collection[str] = ()) -> dict[str, Any]:
    """XNNPACK-lower ``program`` (after the ``edge_rewrites``, with :func:`faster_lowering` but ``leave_out``) and
    write ``out_path`` atomically; returns the delegation report."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    try:
        with faster_lowering(leave_out):
            edge = to_edge_transform_and_lower(
                program,
                transform_passes=[crop_negative_pads_pass(), drop_identity_clones, duplicate_shared_dequantize,
                                  infer_symbolic_view_sizes],
                partitioner=[xnnpack_partitioner()],
                constant_methods={IO_METHOD: io_constant(inputs, outputs)},
                compile_config=EdgeCompileConfig(_check_ir_validity=False))  # see the module docstring
            report = delegation(edge)
            buffer = edge.to_executorch().buffer
    except Exception as exc:  # ExecuTorch raises many types (export, lowering, memory planning)
        raise tool_failure("ExecuTorch lowering", exc) from exc
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buffer)
    return report


def bounded_program(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...],
                    max_batch: int) -> torch.export.ExportedProgram:
    """``module`` exported with every named axis bounded (see :func:`bounded_shapes`), its depth-one 3-D
    convolutions as 2-D ones (``conv3d_as_conv2d``: ExecuTorch runs no 3-D convolution)."""
    return torch.export.export(conv3d_as_conv2d(module), example, dynamic_shapes=bounded_shapes(specs, max_batch))


def float_program(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...],
                  max_batch: int) -> torch.export.ExportedProgram:
    """:func:`bounded_program` of the float ``module``, with weights its layers compute from parameters folded into
    constants where it has any (:func:`fold_computed_weights`): the program lowered to FP32 and quantized to INT8."""
    return fold_computed_weights(bounded_program(module, specs, example, max_batch))


def fold_computed_weights(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` through ExecuTorch's ``constant_prop_pass`` where a weighted layer's weight or bias is computed
    in the graph (a weight standardization: NF-ResNets' ``ScaledStdConv2d``, BiT's ``StdConv2d``; EVA-02's qkv
    bias); else ``program`` itself. XNNPACK takes only constant weights, so such layers ran on the portable
    kernels: nf_ecaresnet26's 29 convolutions, its batch-2 run 17.8 s; folded, 0.17 s, outputs the same (max abs
    2.6e-7). Only such programs: the pass folds every constant subgraph, and a float program only (the weights'
    quantize/dequantize pairs of an INT8 program are what XNNPACK matches)."""
    if not computed_weight_nodes(program.graph, held=("get_attr", "placeholder")):  # parameters are lifted inputs
        return program
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(program)


@dataclass(frozen=True)
class PteInt8Step:
    """One PT2E configuration: aten operators ``XNNPACKQuantizer`` must leave in float, and whether the first
    and last weighted layers (the stem and the classifier) stay in float too."""

    name: str
    float_ops: tuple[str, ...] = ()
    float_ends: bool = False


ELEMENTWISE = ("add", "mul", "cat")
WEIGHTED = ("conv1d", "conv2d", "conv_transpose2d", "linear")
# float at every step: ExecuTorch 1.5.1's XNNPACK computed fastvit_sa12's quantized adaptive_avg_pool2d (after
# a GELU left in float) right at batch 1 and wrong in most rows at other batches (cosine 0.02-0.39, while
# PyTorch's simulation of the same program stayed at 0.9997; floated: 0.9998 at batches 1-8), so each step's
# file failed until the last; small modules with the same tail did not reproduce it
ALWAYS_FLOAT = ("adaptive_avg_pool2d",)
# each step keeps in float everything the one before did, and more
WIDENING_STEPS = (
    PteInt8Step("default"),
    PteInt8Step("first and last layers in float", float_ends=True),
    PteInt8Step("convolutions and linears only, first and last in float", ELEMENTWISE, float_ends=True),
)


def _op(node: Any) -> str:
    return getattr(node.target, "__name__", "").split(".")[0]


def computed_weight_nodes(graph: torch.fx.Graph, held: Sequence[str] = ("get_attr",)) -> set[str]:
    """Weighted layers whose weight or bias the graph computes instead of holding (EVA-02's qkv bias is
    ``cat(q_bias, zeros, v_bias)`` at every call). XNNPACK delegates only layers with constant weights, so
    such a layer runs on the portable kernels, and its quantized weight's ``dequantize_per_channel`` with it:
    a kernel the ExecuTorch runtime wheel does not have (lowering fails with "Missing out variants"). ``held``:
    the node kinds a held weight comes from (``placeholder`` too in an exported program, whose parameters are
    lifted to inputs)."""
    def computed(arg: Any) -> bool:
        return isinstance(arg, torch.fx.Node) and arg.op not in held

    return {n.name for n in graph.nodes if n.op == "call_function" and _op(n) in WEIGHTED
            and any(computed(arg) for arg in n.args[1:3])}


def _float_ops(step: PteInt8Step) -> list[str]:
    """The aten operators ``step`` leaves in float, ``ALWAYS_FLOAT`` included."""
    return [*step.float_ops, *(op for op in ALWAYS_FLOAT if op not in step.float_ops)]


def _quantizer(step: PteInt8Step, graph: torch.fx.Graph) -> Any:
    """``XNNPACKQuantizer`` (symmetric, per-channel) that skips ``step``'s operators and, with ``float_ends``,
    the first and last weighted layers of ``graph``: the layers whose INT8 error every later one inherits
    (the stem) or that decides the class (the classifier), as ModelOpt and TensorRT users commonly do. Layers
    with computed weights (:func:`computed_weight_nodes`) and ``ALWAYS_FLOAT`` operators stay in float at every
    step."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from exporter.formats.histogram_search import with_fast_histograms  # torchao: installed with ExecuTorch

    weighted = [n.name for n in graph.nodes if n.op == "call_function" and _op(n) in WEIGHTED]
    floats = computed_weight_nodes(graph) | ({weighted[0], weighted[-1]} if step.float_ends and weighted else set())
    float_ops = _float_ops(step)
    config = with_fast_histograms(get_symmetric_quantization_config(is_per_channel=True))
    quantizer = XNNPACKQuantizer().set_global(config)
    quantizer.set_filter_function(lambda node: _op(node) not in float_ops and node.name not in floats)
    return quantizer


def _rows(arrays: Mapping[str, np.ndarray], names: Sequence[str], chunk: int) -> Iterator[tuple[torch.Tensor, ...]]:
    total = len(arrays[names[0]])
    for start in range(0, total, chunk):
        yield tuple(torch.from_numpy(np.ascontiguousarray(arrays[n][start:start + chunk])) for n in names)


def quantized_module(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...],
                     max_batch: int, calibration: Mapping[str, np.ndarray], step: PteInt8Step,
                     captured: torch.fx.GraphModule | None = None) -> torch.fx.GraphModule:
    """PT2E INT8 of ``module``: annotate (``step``), calibrate on ``calibration`` in chunks of at most
    ``max_batch`` rows, and convert; the module PyTorch runs with Q/DQ as reference kernels. ``captured``:
    ``module`` already through ``float_program(...).module()``, which ``prepare_pt2e`` then changes (pass a copy)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    if captured is None:
        captured = float_program(module, specs, example, max_batch).module()
    prepared = prepare_pt2e(captured, _quantizer(step, captured.graph))
    with torch.no_grad():
        for rows in _rows(calibration, [s.name for s in specs], max_batch):
            prepared(*rows)
    return convert_ptq(prepared)


def quantize_pt2e(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...],
                  max_batch: int, calibration: Mapping[str, np.ndarray], step: PteInt8Step,
                  captured: torch.fx.GraphModule | None = None) -> torch.export.ExportedProgram:
    """:func:`quantized_module` exported with the same bounds: the program XNNPACK lowers."""
    converted = quantized_module(module, specs, example, max_batch, calibration, step, captured)
    return bounded_program(converted, specs, example, max_batch)


Run = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def simulate(quantized: nn.Module, specs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
             max_batch: int) -> Run:
    """The ``quantized`` module (:func:`quantized_module`, or a quantized program's ``.module()``) run by PyTorch,
    its Q/DQ as reference kernels, on numpy inputs, in chunks of at most ``max_batch`` rows as the ``.pte`` runs
    them: what the file will compute, without lowering it."""
    names = [o.name for o in outputs]

    def run(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = len(next(iter(arrays.values())))
        chunks = [forward_arrays(quantized, specs, names, {k: v[start:start + max_batch] for k, v in arrays.items()})
                  for start in range(0, total, max_batch)]
        return {name: np.concatenate([c[name] for c in chunks]) for name in names}

    return run


def quantize_until_parity(module: nn.Module, specs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                          example: tuple[torch.Tensor, ...], max_batch: int, calibration: Mapping[str, np.ndarray],
                          out_path: Path, check: Callable[[Path], Any], accept: Callable[[Any], bool] = bool,
                          screen: Callable[[str, Run], Any] | None = None) -> tuple[dict[str, Any], Any]:
    """``model.int8.pte`` widened step by step (``widening.widen_until_parity``) until ``check`` passes.
    ``screen(label, run)`` first checks each step's quantized program run by PyTorch (:func:`simulate`), and a
    step it rejects is not lowered (but the last): XNNPACK lowering is the stage's cost (~110 s a step on
    vit_tiny_patch16_224), the simulation a few seconds. A step is exported for lowering only when it is lowered
    (~10 s on coat_tiny): the screen runs the converted module, which computes what its export does."""
    quantized: dict[str, torch.fx.GraphModule] = {}
    captured: list[torch.fx.GraphModule] = []  # one torch.export for every step: a copy costs ~0.5 s, an export ~5

    def module_of(step: PteInt8Step) -> torch.fx.GraphModule:
        if step.name not in quantized:  # the screen's module is the one lowered: one PT2E run per step
            quantized.clear()
            if not captured:
                captured.append(float_program(module, specs, example, max_batch).module())
            quantized[step.name] = quantized_module(module, specs, example, max_batch, calibration, step,
                                                    copy.deepcopy(captured[0]))
        return quantized[step.name]

    def build(step: PteInt8Step) -> dict[str, Any]:
        try:
            program = bounded_program(module_of(step), specs, example, max_batch)
            report = lower_to_pte(program, out_path, specs, outputs)
        except ToolCrashError as exc:  # which step crashed: earlier ones may have been screened out, or crashed too
            number = WIDENING_STEPS.index(step) + 1
            raise ToolCrashError(f"{exc} (widening step {number}/{len(WIDENING_STEPS)}: {step.name})",
                                 exc.failure_class) from exc
        return {**report, "quantizer": "XNNPACKQuantizer (symmetric, per-channel)", "float_ops": _float_ops(step),
                "float_ends": step.float_ends, "samples": len(next(iter(calibration.values())))}

    def screened(step: PteInt8Step) -> Any:
        assert screen is not None
        return screen(f"pt2e-pytorch:{step.name}", simulate(module_of(step), specs, outputs, max_batch))

    return widen_until_parity(WIDENING_STEPS, build, lambda: check(out_path), accept,
                              screened if screen is not None else None, build_failures=(ToolCrashError,))
