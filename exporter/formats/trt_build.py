"""ONNX → TensorRT FP16 or INT8 plan, for TensorRT 10 and 11. Unverified on GPU.

Both versions build **strongly typed** networks: FP16 from the mixed-precision
``model.fp16.onnx`` (AutoCast decided which nodes stay FP32), INT8 from the
Q/DQ ``model.int8.onnx``. TensorRT 11 removed weak typing (``BuilderFlag.FP16``,
precision constraints); TensorRT 10 has ``STRONGLY_TYPED`` since 10.0 and its
10.13 docstrings deprecate the weak-typing tools, so one path serves both (NVIDIA's
10→11 migration advice) and no layer names are matched (onnx-tensorrt names its
helper layers ``<node>_<n>``, which made that matching fragile).
Everything that needs no GPU (path choice, flags, profile shapes, the manifest
record, timing-cache policy) is a plain function tested on CPU; the TensorRT
calls are few, and ``tests/test_trt_api.py`` checks each against the real
TensorRT 10.3, 10.16 and 11.4 bindings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from exporter.errors import EngineBuildError
from exporter.progress import Printer, silent
from runtimes.engines.trt_common import cuda_device_info, import_tensorrt, trt_major
from runtimes.fileio import atomic_path
from runtimes.manifest import BatchProfile
from runtimes.specs import BATCH, TensorSpec


@dataclass(frozen=True)
class BuildPath:
    """Which ONNX a precision is built from (always strongly typed: the file's types decide), and the
    engine it becomes: its manifest artifact key (a row of ``runtimes.selection``), file and report title."""

    source: str  # "onnx_fp16" (mixed-precision file) or "onnx_int8" (Q/DQ file)
    precision: str
    key: str
    file: str
    title: str


BUILD_PATHS = {
    "fp16": BuildPath("onnx_fp16", "fp16 (strongly typed, from model.fp16.onnx)", "engine", "model.engine",
                      "TensorRT engine"),
    "int8": BuildPath("onnx_int8", "int8 (strongly typed Q/DQ, from model.int8.onnx)", "engine_int8",
                      "model.int8.engine", "TensorRT INT8 engine"),
}


def choose_build_path(trt_version: str, precision: str = "fp16") -> BuildPath:
    """The build path of ``precision`` on TensorRT 10 or 11 (the same on both)."""
    if trt_major(trt_version) not in (10, 11):
        raise EngineBuildError(f"TensorRT {trt_version} is not supported: use TensorRT 10 or 11")
    return BUILD_PATHS[precision]


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


def progress_monitor(trt: Any, printer: Printer) -> Any:
    """A TensorRT ``IProgressMonitor`` that prints each top-level phase (argument order as TensorRT's
    binding documents it: ``phase_start(phase_name, parent_phase, num_steps)``)."""
    class Monitor(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                printer(f"  TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            """Nothing to report; phase_start already named it."""

    return Monitor()


def network_flags(trt: Any) -> int:
    """``create_network`` flags: STRONGLY_TYPED (TensorRT 10 needs it asked for; 11 accepts it and is
    strongly typed anyway)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def load_timing_cache(trt: Any, config: Any, path: Path | None, printer: Printer) -> None:
    """Give ``config`` the cache in ``path`` when TensorRT accepts it, else a fresh one (and say why):
    a cache from another GPU or TensorRT version is refused by ``set_timing_cache``."""
    data = path.read_bytes() if path and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):
        return
    if data:
        printer(f"  TensorRT: timing cache {path} does not fit this GPU/TensorRT; starting a fresh one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise EngineBuildError(f"TensorRT {trt.__version__} could not create a timing cache")


def build_engine(onnx_files: dict[str, Path], out: Path, inputs: Sequence[TensorSpec], batch: BatchProfile, *,
                 precision: str = "fp16", workspace_gib: float = 4.0, timing_cache: Path | None = None,
                 printer: Printer = silent) -> dict[str, Any]:
    """Build ``out`` from ``onnx_files`` (keys ``onnx_fp16``/``onnx_int8``) at ``precision`` (fp16 or
    int8), strongly typed; returns the manifest record."""
    trt = import_tensorrt()
    gpu, cc = cuda_device_info()
    path = choose_build_path(trt.__version__, precision)
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_files[path.source])):
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_files[path.source].name}",
                               [str(parser.get_error(i)) for i in range(parser.num_errors)])
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.progress_monitor = progress_monitor(trt, printer)
    profile = builder.create_optimization_profile()
    for spec in inputs:
        low, opt, high = profile_shapes(spec, batch)
        profile.set_shape(spec.name, low, opt, high)
    config.add_optimization_profile(profile)
    load_timing_cache(trt, config, timing_cache, printer)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the engine on {gpu}; "
                               "rerun with --verbose for TensorRT's log")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))
    if timing_cache:  # what the build added, not the cache as it was loaded
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_record(trt.__version__, gpu, cc, path, batch, inputs, time.perf_counter() - start, out.stat().st_size)
