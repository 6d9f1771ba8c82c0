"""TensorRT backend (TensorRT 10 and 11, name-based I/O API). Unverified on GPU.

Thin by design: deserialise, one execution context, an optimisation-profile
check, device buffers and a CUDA stream. Device memory comes from torch when it
is importable, else from cuda-python; host staging uses pinned memory.
Execution contexts are not thread-safe, so the base class serialises calls.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Runtime
from .errors import ArtifactError, BackendUnavailableError, InputSpecError
from .specs import BATCH, TensorSpec
from .trt_common import check_engine_compatible, cuda_device_info, import_tensorrt


def spec_from_engine_dims(name: str, dims: tuple[int, ...], dtype: str) -> TensorSpec:
    """TensorRT reports dynamic dims as -1: dim 0 becomes ``batch``, others ``dim<i>``."""
    shape = tuple(d if d >= 0 else (BATCH if i == 0 else f"dim{i}") for i, d in enumerate(dims))
    return TensorSpec(name, shape, dtype)


def check_profile(name: str, shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> None:
    """An input shape must lie inside the engine's optimisation profile."""
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
        raise InputSpecError(f"input {name!r}: shape {shape} is outside the engine profile {lo}..{hi}; "
                             "rebuild with a wider --batch")


class _TorchDevice:
    """Device buffers and a stream from torch (pinned host staging)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def upload(self, array: np.ndarray) -> tuple[int, Any]:
        t = self.torch.from_numpy(array).pin_memory().to("cuda", non_blocking=True)
        return int(t.data_ptr()), t

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, Any]:
        t = self.torch.empty(shape, dtype=getattr(self.torch, np.dtype(dtype).name), device="cuda")
        return int(t.data_ptr()), t

    def download(self, handle: Any) -> np.ndarray:
        self.stream.synchronize()
        return handle.cpu().numpy()

    def free(self, handle: Any) -> None:
        """torch frees when the tensor is dropped."""


class _CudaPythonDevice:
    """Device buffers and a stream from cuda-python's runtime API."""

    def __init__(self) -> None:
        from cuda.bindings import runtime as cudart

        self.cudart = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())

    @staticmethod
    def _ok(result: tuple[Any, ...]) -> Any:
        err, *rest = result
        if int(err) != 0:
            raise BackendUnavailableError(f"CUDA error {err}")
        return rest[0] if rest else None

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def upload(self, array: np.ndarray) -> tuple[int, Any]:
        ptr, _ = handle = self.empty(array.shape, array.dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, self.stream))
        self._ok(self.cudart.cudaStreamSynchronize(self.stream))  # the host array may go away
        return handle

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, Any]:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self._ok(self.cudart.cudaMalloc(max(nbytes, 1))))
        return ptr, (ptr, tuple(shape), np.dtype(dtype))

    def download(self, handle: Any) -> np.ndarray:
        ptr, shape, dtype = handle
        out = np.empty(shape, dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind, self.stream))
        self._ok(self.cudart.cudaStreamSynchronize(self.stream))
        return out

    def free(self, handle: Any) -> None:
        self._ok(self.cudart.cudaFree(handle[0]))


def _device() -> Any:
    try:
        return _TorchDevice()
    except (ImportError, AssertionError, RuntimeError):
        pass
    try:
        return _CudaPythonDevice()
    except ImportError:
        raise BackendUnavailableError("engine 'trt' needs torch (CUDA) or cuda-python for device memory") from None


class TrtRuntime(Runtime):
    """``engine="trt"``: a serialised TensorRT plan; ``engine_meta`` is the manifest's engine record."""

    engine = "trt"
    concurrent = False  # one IExecutionContext: calls are serialised by the base class

    def __init__(self, path: Any, *, engine_meta: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if self.device != "cuda":
            raise BackendUnavailableError("engine 'trt' runs on device='cuda' only")
        self.engine_meta = engine_meta
        self.trt: Any = None
        self.cuda_engine: Any = None
        self.context: Any = None
        self.dev: Any = None

    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        trt = self.trt = import_tensorrt()
        gpu, cc = cuda_device_info()
        if self.engine_meta:
            check_engine_compatible(self.engine_meta, trt.__version__, cc)
        try:
            plan = self.path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read engine {self.path}: {exc.strerror}") from None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ArtifactError(f"TensorRT {trt.__version__} could not deserialise {self.path} on {gpu} (SM {cc}): "
                                "corrupt, truncated, or built by another TensorRT/GPU; rebuild with --engine trt")
        self.cuda_engine, self.context, self.dev = engine, engine.create_execution_context(), _device()
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = spec_from_engine_dims(name, tuple(engine.get_tensor_shape(name)),
                                         np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        if self.max_batch is None and inputs:
            self.max_batch = int(engine.get_tensor_profile_shape(inputs[0].name, 0)[2][0])
        return tuple(inputs), tuple(outputs)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        engine, context, dev = self.cuda_engine, self.context, self.dev
        handles = []
        try:
            for name, array in feeds.items():
                lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                check_profile(name, array.shape, tuple(lo), tuple(hi))
                context.set_input_shape(name, array.shape)
                ptr, handle = dev.upload(array)
                handles.append(handle)
                context.set_tensor_address(name, ptr)
            outputs = {}
            for spec in self._output_specs or ():
                shape = tuple(context.get_tensor_shape(spec.name))
                ptr, handle = dev.empty(shape, np.dtype(spec.dtype))
                handles.append(handle)
                outputs[spec.name] = handle
                context.set_tensor_address(spec.name, ptr)
            if not context.execute_async_v3(dev.stream_handle):
                raise ArtifactError(f"TensorRT execution of {self.path} failed")
            return {name: dev.download(handle) for name, handle in outputs.items()}
        finally:
            for handle in handles:
                dev.free(handle)

    def _close(self) -> None:
        self.context = self.cuda_engine = self.dev = None
