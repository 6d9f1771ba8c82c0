"""TensorRT backend (TensorRT 10 and 11, name-based I/O API). Unverified on GPU.

Thin by design: deserialise, one execution context, an optimisation-profile
check, and (``runtimes.engines.cuda_mem``) one CUDA stream with device buffers and
pinned host staging allocated once at the profile maximum, so a call is two
async copies, ``execute_async_v3`` and one synchronisation on the same stream.
Execution contexts are not thread-safe, so the base class serialises calls.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from runtimes.base import Runtime
from runtimes.engines.cuda_mem import CudaStream
from runtimes.engines.trt_common import check_engine_compatible, cuda_device_info, import_tensorrt
from runtimes.errors import ArtifactError, BackendUnavailableError, InputSpecError
from runtimes.specs import BATCH, TensorSpec


def spec_from_engine_dims(name: str, dims: tuple[int, ...], dtype: str) -> TensorSpec:
    """TensorRT reports dynamic dims as -1: dim 0 becomes ``batch``, others ``dim<i>``."""
    shape = tuple(d if d >= 0 else (BATCH if i == 0 else f"dim{i}") for i, d in enumerate(dims))
    return TensorSpec(name, shape, dtype)


def buffer_bytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of a dense tensor of ``shape`` and numpy ``dtype``."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def check_profile(name: str, shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> None:
    """An input shape must lie inside the engine's optimisation profile."""
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
        raise InputSpecError(f"input {name!r}: shape {shape} is outside the engine profile {lo}..{hi}; "
                             "rebuild with a wider --batch")


class TrtRuntime(Runtime):
    """``engine="trt"``: a serialised TensorRT plan; ``artifact_record`` is the manifest's engine record."""

    engine = "trt"
    concurrent = False  # one IExecutionContext: calls are serialised by the base class

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if self.device != "cuda":
            raise BackendUnavailableError("engine 'trt' runs on device='cuda' only")
        self.cuda_engine: Any = None
        self.context: Any = None
        self.stream: CudaStream | None = None
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}  # name → (device pointer, pinned staging)
        self._profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}  # input → (min, max) shape

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        trt = import_tensorrt()
        gpu, cc = cuda_device_info()
        if self.artifact_record:
            check_engine_compatible(self.artifact_record, trt.__version__, cc)
        try:
            plan = self.path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read engine {self.path}: {exc.strerror}") from None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ArtifactError(f"TensorRT {trt.__version__} could not deserialise {self.path} on {gpu} (SM {cc}): "
                                "corrupt, truncated, or built by another TensorRT/GPU; rebuild with --engine trt")
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {self.path} on {gpu} "
                                          "(not enough free device memory?)")
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = spec_from_engine_dims(name, tuple(engine.get_tensor_shape(name)),
                                         np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        for spec in inputs:
            lo, _, hi = engine.get_tensor_profile_shape(spec.name, 0)
            self._profile[spec.name] = (tuple(lo), tuple(hi))
        self.cuda_engine, self.context, self.stream = engine, context, CudaStream()
        self._allocate(inputs, outputs)
        if self.max_batch is None and inputs:
            self.max_batch = self._profile[inputs[0].name][1][0]
        return tuple(inputs), tuple(outputs)

    def _allocate(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        """Device buffers and pinned staging for every tensor at the profile maximum, bound once: the
        output sizes are what the context reports with every input at its maximum shape."""
        assert self.stream is not None and self.context is not None  # set by _open
        for spec in inputs:
            self.context.set_input_shape(spec.name, self._profile[spec.name][1])
        sizes = {s.name: buffer_bytes(self._profile[s.name][1], s.dtype) for s in inputs}
        sizes.update({s.name: buffer_bytes(tuple(self.context.get_tensor_shape(s.name)), s.dtype) for s in outputs})
        for name, nbytes in sizes.items():
            self._buffers[name] = (self.stream.device_buffer(nbytes), self.stream.pinned_buffer(nbytes))
            self.context.set_tensor_address(name, self._buffers[name][0])

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        context, stream = self.context, self.stream
        assert stream is not None  # set by _open
        for name, array in feeds.items():
            check_profile(name, array.shape, *self._profile[name])
            context.set_input_shape(name, array.shape)
            device, pinned = self._buffers[name]
            staged = pinned[: array.nbytes]
            staged[:] = array.reshape(-1).view(np.uint8)
            stream.to_device(device, staged, array.nbytes)
        if not context.execute_async_v3(int(stream.handle)):
            raise ArtifactError(f"TensorRT execution of {self.path} failed")
        shapes = {}
        for spec in self._output_specs or ():
            shapes[spec.name] = tuple(context.get_tensor_shape(spec.name))
            device, pinned = self._buffers[spec.name]
            stream.to_host(pinned, device, buffer_bytes(shapes[spec.name], spec.dtype))
        stream.synchronize()
        return {spec.name: self._buffers[spec.name][1][: buffer_bytes(shapes[spec.name], spec.dtype)]
                .view(spec.dtype).reshape(shapes[spec.name]).copy() for spec in self._output_specs or ()}

    def _close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self._buffers = {}
        self.context = self.cuda_engine = self.stream = None
