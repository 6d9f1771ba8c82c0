"""OpenVINO backend (CPU): ``model.onnx``/``model.int8.onnx`` directly, or an IR (``model.xml``).

Precision is OpenVINO's ``INFERENCE_PRECISION_HINT``, always set explicitly
(the CPU plugin defaults to BF16 on some CPUs, which would make "fp32" a lie):
``fp32`` → f32, ``bf16`` → bf16, ``int8`` → the Q/DQ graph runs in INT8 with its
float parts in f32. ``auto`` is BF16 where OpenVINO lists BF16 among the CPU's
``OPTIMIZATION_CAPABILITIES`` **and** a BF16 GEMM measurably beats f32 on this CPU
(``bf16_probe``: some AVX512-BF16 CPUs run BF16 slower), else FP32 — and FP32 when the
artifact's own BF16 parity check (``attn-export --openvino``) failed.

Performance hint: LATENCY compiles one stream that uses every core on each
call; THROUGHPUT compiles several streams, and a call's batch is then split
into one slice per stream, run in parallel. ``hint="auto"`` picks THROUGHPUT
when the artifact's profile max batch is at least ``THROUGHPUT_MIN_BATCH``.
Compiled models are thread-safe, infer requests are not: each call borrows
requests from a pool, so one runtime serves many threads at once.
"""
from __future__ import annotations

import functools
import queue
from typing import Any, Mapping

import numpy as np

from runtimes.base import Runtime
from runtimes.dtypes import convert
from runtimes.engines import bf16_probe
from runtimes.errors import BackendUnavailableError, OptionError
from runtimes.optional import require
from runtimes.selection import AUTO
from runtimes.specs import BATCH, TensorSpec, default_output_name

DEVICE = "CPU"
HINT_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
THROUGHPUT_MIN_BATCH = 64
BF16_MIN_SPEEDUP = 1.2  # auto picks BF16 only where a BF16 GEMM is at least this much faster than f32


def _openvino() -> Any:
    return require("openvino", "engine 'openvino'", "openvino")


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One ``openvino.Core`` per process (OpenVINO recommends sharing it)."""
    return _openvino().Core()


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO says this CPU can run fast, e.g. ('BF16', 'FP32', 'INT8', ...)."""
    return tuple(core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def spec_from_port(port: Any, index: int) -> TensorSpec:
    """A TensorSpec from an OpenVINO input/output port: dynamic dim 0 is ``batch``."""
    shape = tuple(int(d.get_length()) if d.is_static else (BATCH if i == 0 else f"dim{i}")
                  for i, d in enumerate(port.get_partial_shape()))
    names = port.get_names()
    name = port.get_any_name() if names else default_output_name(index)
    return TensorSpec(name, shape, convert(port.get_element_type().get_type_name(), "openvino", "numpy"))


def split_rows(batch: int, parts: int) -> list[slice]:
    """``batch`` rows in at most ``parts`` contiguous, near-equal, non-empty slices."""
    parts = max(1, min(parts, batch))
    bounds = [round(i * batch / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


class OpenVinoRuntime(Runtime):
    """``engine="openvino"``. Options: ``threads`` (inference threads), ``hint`` (auto/latency/throughput)."""

    engine = "openvino"
    concurrent = True  # each call borrows its own infer request

    def __init__(self, path: Any, *, threads: int | None = None, hint: str = AUTO, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if self.device != "cpu":
            raise BackendUnavailableError(f"engine 'openvino' runs on device 'cpu' here, not {self.device!r}")
        if hint != AUTO and hint not in HINTS:
            raise OptionError(f"hint must be one of {[AUTO, *HINTS]}, got {hint!r}")
        self.threads, self.hint = threads, hint
        self.compiled: Any = None
        self._output_names: list[str] = []
        self._batched, self._streams = False, 1
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    @classmethod
    def resolve_precision(cls, precision: str, parity: Mapping[str, Any] | None = None) -> str:
        """``auto``: BF16 where the CPU has it and it is faster here, unless the export's BF16 parity failed."""
        if precision != AUTO:
            return precision
        bf16_failed = (parity or {}).get("openvino_bf16", {}).get("passed") is False
        if bf16_failed or "BF16" not in cpu_capabilities():
            return "fp32"
        return "bf16" if bf16_probe.measured()["bf16_speedup"] >= BF16_MIN_SPEEDUP else "fp32"

    def performance_hint(self) -> str:
        """The OpenVINO hint this runtime compiles with (``auto`` decided from the batch profile)."""
        if self.hint != AUTO:
            return HINTS[self.hint]
        return HINTS["throughput"] if (self.max_batch or 1) >= THROUGHPUT_MIN_BATCH else HINTS["latency"]

    def compile_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINT_PRECISION[self.precision],
                                  "PERFORMANCE_HINT": self.performance_hint()}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        return config

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        ov_core = core()
        try:
            model = ov_core.read_model(str(self.path))
        except RuntimeError as exc:
            raise self.unreadable("OpenVINO", exc) from None
        self.compiled = ov_core.compile_model(model, DEVICE, self.compile_config())
        inputs = tuple(spec_from_port(p, i) for i, p in enumerate(self.compiled.inputs))
        outputs = tuple(spec_from_port(p, i) for i, p in enumerate(self.compiled.outputs))
        self._output_names = [s.name for s in outputs]
        self._batched = all(s.shape and s.shape[0] == BATCH for s in (*inputs, *outputs))
        self._streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) \
            if self.performance_hint() == HINTS["throughput"] else 1
        return inputs, outputs

    @property
    def properties(self) -> dict[str, str]:
        """What OpenVINO really compiled: precision hint, performance hint, streams, threads."""
        self.open()
        keys = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")
        values = {k: self.compiled.get_property(k) for k in keys}
        return {k: v.get_type_name() if hasattr(v, "get_type_name") else str(v) for k, v in values.items()}

    def _borrow(self) -> Any:
        try:
            return self._requests.get_nowait()
        except queue.Empty:
            return self.compiled.create_infer_request()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = min(len(v) for v in feeds.values())
        slices = split_rows(batch, self._streams) if self._batched else [slice(0, None)]
        requests = [self._borrow() for _ in slices]
        try:
            for request, rows in zip(requests, slices):
                request.start_async({k: v[rows] for k, v in feeds.items()}, share_inputs=False)
            for request in requests:
                request.wait()
            parts = [[r.get_output_tensor(i).data.copy() for i in range(len(self._output_names))] for r in requests]
        finally:
            for request in requests:
                self._requests.put(request)
        return {name: np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i]
                for i, name in enumerate(self._output_names)}

    def _close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None
