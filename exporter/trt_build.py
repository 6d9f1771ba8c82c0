"""ONNX → TensorRT FP16 or INT8 plan, for TensorRT 10 and 11. Unverified on GPU.

TensorRT 11 removed weak typing (``BuilderFlag.FP16``): the network is strongly
typed, so FP16 means parsing the mixed-precision ``model.fp16.onnx``.
TensorRT 10 (Jetson) parses the FP32 ``model.onnx`` with ``BuilderFlag.FP16``
and pins the layers AutoCast kept in FP32 with precision constraints.
INT8 is always built strongly typed from the Q/DQ ``model.int8.onnx``.
Everything that needs no GPU (path choice, profile shapes, the manifest
record) is a plain function tested on CPU; the TensorRT calls are few.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from runtimes._io import atomic_path
from runtimes.manifest import BatchProfile
from runtimes.specs import BATCH, TensorSpec
from runtimes.trt_common import cuda_device_info, import_tensorrt, trt_major

from .errors import EngineBuildError
from .progress import Printer, silent


@dataclass(frozen=True)
class BuildPath:
    """How a TensorRT version builds FP16: which ONNX it parses and whether it sets the FP16 flag."""

    source: str  # "onnx_fp16" (mixed-precision file), "onnx" (FP32 file) or "onnx_int8" (Q/DQ file)
    fp16_flag: bool
    precision: str
    strongly_typed: bool = False  # TensorRT 10 needs the creation flag; 11 is always strongly typed


def choose_build_path(trt_version: str, precision: str = "fp16") -> BuildPath:
    """INT8: strongly typed from the Q/DQ ONNX on 10 and 11. FP16: TensorRT ≥ 11 strongly typed from
    the FP16 ONNX; TensorRT 10 FP16 flag + FP32 constraints."""
    if trt_major(trt_version) < 10:
        raise EngineBuildError(f"TensorRT {trt_version} is not supported: use TensorRT 10 or 11")
    if precision == "int8":
        return BuildPath("onnx_int8", False, "int8 (strongly typed Q/DQ, from model.int8.onnx)", strongly_typed=True)
    if trt_major(trt_version) >= 11:
        return BuildPath("onnx_fp16", False, "fp16 (strongly typed, from model.fp16.onnx)")
    if trt_major(trt_version) == 10:
        return BuildPath("onnx", True, "fp16 (BuilderFlag.FP16, AutoCast's FP32 nodes constrained)")
    raise EngineBuildError(f"TensorRT {trt_version} is not supported: use TensorRT 10 or 11")


def profile_shapes(spec: TensorSpec, batch: BatchProfile) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input: batch from the profile, other named axes from 1 to their max."""
    def shape(which: str) -> tuple[int, ...]:
        dims = []
        for d in spec.shape:
            if isinstance(d, int):
                dims.append(d)
            elif d == BATCH:
                dims.append(getattr(batch, which))
            else:
                top = spec.max_dims.get(d, spec.example_dims.get(d, 1))
                dims.append({"min": 1, "opt": spec.example_dims.get(d, top), "max": top}[which])
        return tuple(dims)

    return shape("min"), shape("opt"), shape("max")


def engine_record(trt_version: str, gpu: str, compute_capability: str, path: BuildPath, batch: BatchProfile,
                  inputs: Sequence[TensorSpec], seconds: float, size: int) -> dict[str, Any]:
    """The manifest's ``engine`` entry: what built it, for which GPU, with which profile."""
    return {
        "tensorrt": trt_version, "gpu": gpu, "compute_capability": compute_capability,
        "precision": path.precision, "source": path.source,
        "profile": {s.name: [list(x) for x in profile_shapes(s, batch)] for s in inputs},
        "build_seconds": round(seconds, 2), "size_bytes": size,
    }


def _progress_monitor(trt: Any, printer: Printer) -> Any:
    class Monitor(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, parent_phase: str | None, phase_name: str, num_steps: int) -> None:
            printer(f"  TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            """Nothing to report; phase_start already named it."""

    return Monitor()


def network_flags(trt: Any, path: BuildPath) -> int:
    """``create_network`` flags: STRONGLY_TYPED where TensorRT 10 needs it asked for."""
    if path.strongly_typed and trt_major(trt.__version__) == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def build_engine(onnx_files: dict[str, Path], out: Path, inputs: Sequence[TensorSpec], batch: BatchProfile, *,
                 precision: str = "fp16", fp32_layers: Sequence[str] = (), workspace_gib: float = 4.0,
                 timing_cache: Path | None = None, printer: Printer = silent) -> dict[str, Any]:
    """Build ``out`` from ``onnx_files`` (keys ``onnx``/``onnx_fp16``/``onnx_int8``) at ``precision``
    (fp16 or int8); returns the manifest record."""
    trt = import_tensorrt()
    gpu, cc = cuda_device_info()
    path = choose_build_path(trt.__version__, precision)
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, path))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_files[path.source])):
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_files[path.source].name}",
                               [str(parser.get_error(i)) for i in range(parser.num_errors)])
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.progress_monitor = _progress_monitor(trt, printer)
    if path.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        keep = set(fp32_layers)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in keep:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    for spec in inputs:
        profile.set_shape(spec.name, *profile_shapes(spec, batch))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the engine on {gpu}; "
                               "rerun with --verbose for TensorRT's log")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))
    if timing_cache:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    return engine_record(trt.__version__, gpu, cc, path, batch, inputs, time.perf_counter() - start, out.stat().st_size)
