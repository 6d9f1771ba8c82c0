"""CUDA memory for the TensorRT runtime through cuda-python: one stream, device buffers and pinned host
staging allocated once, asynchronous copies on that same stream. Run on an H200 with the TensorRT
stand-in's engine computing on this stream (scripts/gpu_cuda_check.py, docs/tensorrt.md); TensorRT itself
is unverified on GPU.

One stream for copies and execution means no cross-stream race (torch's side streams do not wait for
its default stream). Everything is allocated at open, at the profile's maximum, and freed at close:
``cudaFree`` synchronises the whole device, so it never runs per call.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from runtimes.engines.trt_common import NVIDIA_INDEX
from runtimes.errors import BackendUnavailableError
from runtimes.optional import require


def _cudart() -> Any:
    return require("cuda.bindings.runtime", "engine 'trt'", "trt", index_url=NVIDIA_INDEX, note="cuda-python")


class CudaStream:
    """A CUDA stream with the buffers allocated on its behalf; ``close()`` frees them all."""

    def __init__(self) -> None:
        self.cudart = _cudart()
        self.handle = self._ok(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._device: list[int] = []
        self._host: list[int] = []

    def _ok(self, result: tuple[Any, ...], call: str) -> Any:
        err, *rest = result
        if int(err) != 0:
            raise BackendUnavailableError(f"CUDA error {err} in {call}")
        return rest[0] if rest else None

    def device_buffer(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` (at least 1), freed at ``close``."""
        ptr = int(self._ok(self.cudart.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._device.append(ptr)
        return ptr

    def pinned_buffer(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory as a uint8 array (asynchronous copies need it), freed at ``close``."""
        ptr = int(self._ok(self.cudart.cudaMallocHost(max(int(nbytes), 1)), "cudaMallocHost"))
        self._host.append(ptr)
        return np.ctypeslib.as_array((ctypes.c_uint8 * max(int(nbytes), 1)).from_address(ptr))

    def to_device(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.cudart.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, self.handle), "cudaMemcpyAsync")

    def to_host(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.cudart.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, self.handle), "cudaMemcpyAsync")

    def synchronize(self) -> None:
        self._ok(self.cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        """Free every buffer and destroy the stream (idempotent)."""
        for ptr in self._device:
            self.cudart.cudaFree(ptr)
        for ptr in self._host:
            self.cudart.cudaFreeHost(ptr)
        self._device, self._host = [], []
        if self.handle is not None:
            self.cudart.cudaStreamDestroy(self.handle)
            self.handle = None
