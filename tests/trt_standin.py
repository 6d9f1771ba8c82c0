"""A recording stand-in for ``tensorrt`` and ``cuda.bindings.runtime``, to run ``build_engine`` and
``TrtRuntime`` end to end on CPU and assert what TensorRT and CUDA would receive.

It is not a stub that returns success: device memory is real host memory (``ctypes``), copies really
move bytes, and the fake engine computes its output from the bytes at the addresses it was given
(``logits[b, k] = (k + 1) * sum(image[b])``), so wrong sizes, offsets, addresses or shapes give wrong
numbers. Enum values and signatures follow the real bindings (checked by test_trt_api.py); the
expected call sequences in test_trt_standin.py are written from TensorRT's Python API documentation.
"""
from __future__ import annotations

import ctypes
import types
from typing import Any, Callable

import numpy as np

Call = tuple[Any, ...]


class Log(list):
    """Every call, in order, as a tuple ``(name, *arguments)``."""

    def names(self) -> list[str]:
        return [c[0] for c in self]


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


class FakeCudart:
    """cuda-python's runtime API over host memory."""

    class cudaMemcpyKind:  # noqa: N801 (cuda-python's names)
        cudaMemcpyHostToDevice = "HostToDevice"
        cudaMemcpyDeviceToHost = "DeviceToHost"

    def __init__(self, log: Log) -> None:
        self.log = log
        self.memory: dict[int, Any] = {}
        self.stream = FakeStream(0x5EA)

    def _alloc(self, call: str, nbytes: int) -> tuple[int, int]:
        buffer = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buffer)] = buffer
        self.log.append((call, nbytes))
        return 0, ctypes.addressof(buffer)

    def cudaGetDeviceCount(self) -> tuple[int, int]:  # noqa: N802
        return 0, 1

    def cudaGetDeviceProperties(self, index: int) -> tuple[int, Any]:  # noqa: N802
        return 0, types.SimpleNamespace(name=b"Stand-in GPU", major=9, minor=0)

    def cudaStreamCreate(self) -> tuple[int, FakeStream]:  # noqa: N802
        self.log.append(("cudaStreamCreate",))
        return 0, self.stream

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:  # noqa: N802
        return self._alloc("cudaMalloc", nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple[int, int]:  # noqa: N802
        return self._alloc("cudaMallocHost", nbytes)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> tuple[int]:  # noqa: N802
        ctypes.memmove(dst, src, nbytes)
        self.log.append(("cudaMemcpyAsync", kind, nbytes, stream))
        return (0,)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[int]:  # noqa: N802
        self.log.append(("cudaStreamSynchronize", stream))
        return (0,)

    def cudaFree(self, ptr: int) -> tuple[int]:  # noqa: N802
        self.log.append(("cudaFree", ptr))
        return (0,)

    def cudaFreeHost(self, ptr: int) -> tuple[int]:  # noqa: N802
        self.log.append(("cudaFreeHost", ptr))
        return (0,)

    def cudaStreamDestroy(self, stream: Any) -> tuple[int]:  # noqa: N802
        self.log.append(("cudaStreamDestroy", stream))
        return (0,)


IMAGE = ("image", (-1, 3, 4, 4), [(1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4)])
CLASSES = 10

# The engine's computation: (input shapes, tensor addresses, stream handle) → writes the logits.
Execute = Callable[[dict[str, tuple[int, ...]], dict[str, int], int], None]


def execute_on_host(shapes: dict[str, tuple[int, ...]], addresses: dict[str, int], stream_handle: int) -> None:
    """``logits[b, k] = (k + 1) * sum(image[b])`` read from and written to host addresses (FakeCudart's memory)."""
    batch = shapes["image"][0]
    count = int(np.prod(shapes["image"]))
    image = np.ctypeslib.as_array((ctypes.c_float * count).from_address(addresses["image"]))
    logits = np.ctypeslib.as_array((ctypes.c_float * (batch * CLASSES)).from_address(addresses["logits"]))
    logits[:] = (image.reshape(batch, -1).sum(1)[:, None] * np.arange(1, CLASSES + 1)).ravel()


def expected_logits(image: np.ndarray) -> np.ndarray:
    """What every stand-in engine computes, in float64 on the host."""
    return image.reshape(len(image), -1).astype(np.float64).sum(1)[:, None] * np.arange(1, CLASSES + 1)


def fake_tensorrt(version: str, log: Log, *, timing_cache_accepts: bytes | None = None, parse_ok: bool = True,
                  context_ok: bool = True, image: tuple[Any, ...] = IMAGE,
                  execute: Execute = execute_on_host) -> types.ModuleType:
    """A ``tensorrt`` module of ``version`` whose objects append every call to ``log``.

    ``timing_cache_accepts``: serialized caches ``set_timing_cache`` accepts (default: any but
    b"FOREIGN", which stands for a cache from another GPU). ``image``: the engine's input (name,
    dims with -1 for batch, profile min/opt/max). ``execute``: the engine's computation, on the host
    by default; scripts/gpu_cuda_check.py passes one that runs on a real GPU stream."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0 if version.startswith("11") else 1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT")
    trt.nptype = lambda dtype: np.float32

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str) -> None:
            log.append(("Logger", severity))

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            log.append(("ITimingCache.serialize",))
            return b"CACHE[" + self.data + b"]+this build"

    class Config:
        def __init__(self) -> None:
            self.cache: TimingCache | None = None

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            log.append(("set_memory_pool_limit", pool, size))

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "progress_monitor":
                log.append(("progress_monitor", type(value).__mro__[1].__name__))
            object.__setattr__(self, name, value)

        def add_optimization_profile(self, profile: Any) -> int:
            log.append(("add_optimization_profile", profile.shapes))
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            log.append(("create_timing_cache", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            accepted = cache.data != b"FOREIGN" if timing_cache_accepts is None else cache.data in timing_cache_accepts
            log.append(("set_timing_cache", cache.data, ignore_mismatch, accepted))
            if accepted:
                self.cache = cache
            return accepted

        def get_timing_cache(self) -> TimingCache:
            log.append(("get_timing_cache",))
            assert self.cache is not None
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            log.append(("set_shape", name, tuple(low), tuple(opt), tuple(high)))
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Network:
        pass

    class Builder:
        def __init__(self, logger: Logger) -> None:
            log.append(("Builder",))

        def create_network(self, flags: int) -> Network:
            log.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            log.append(("create_builder_config",))
            return Config()

        def create_optimization_profile(self) -> Profile:
            log.append(("create_optimization_profile",))
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            log.append(("build_serialized_network",))
            return b"PLAN"

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network: Network, logger: Logger) -> None:
            log.append(("OnnxParser",))

        def parse_from_file(self, path: str) -> bool:
            log.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, index: int) -> str:
            return f"node_{index}: unsupported operator"

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            log.append(("set_input_shape", name, tuple(shape)))
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            log.append(("get_tensor_shape", name))
            return (self.shapes["image"][0], CLASSES) if name == "logits" else self.shapes[name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            log.append(("set_tensor_address", name, ptr))
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            log.append(("execute_async_v3", stream_handle))
            execute(self.shapes, self.addresses, stream_handle)
            return True

    class Engine:
        num_io_tensors = 2
        _names = ("image", "logits")

        def get_tensor_name(self, index: int) -> str:
            return self._names[index]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return image[1] if name == "image" else (-1, CLASSES)

        def get_tensor_dtype(self, name: str) -> str:
            return trt.DataType.FLOAT

        def get_tensor_mode(self, name: str) -> str:
            return trt.TensorIOMode.INPUT if name == "image" else trt.TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            log.append(("get_tensor_profile_shape", name, profile))
            return image[2]

        def create_execution_context(self) -> Context | None:
            log.append(("create_execution_context",))
            return Context() if context_ok else None

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            log.append(("Runtime",))

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            log.append(("deserialize_cuda_engine", bytes(plan)))
            return None if plan.startswith(b"BAD") else Engine()

    for cls in (Logger, IProgressMonitor, Builder, OnnxParser, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt
