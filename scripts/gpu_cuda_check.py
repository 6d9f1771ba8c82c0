"""The CUDA half of the TensorRT runtime, on a real GPU: ``TrtRuntime``'s cuda-python stream, device
buffers and pinned host staging (runtimes/engines/cuda_mem.py), driven through the recording TensorRT
stand-in (tests/trt_standin.py) whose engine computes on the GPU, on the stream the runtime hands to
``execute_async_v3`` (CuPy). TensorRT itself does not run here: its libraries are not in the device
image, so the engine half stays unverified on GPU.

Every check is a number that can fail:
- outputs are bit-equal to the host's (integer-valued images, so any summation order is exact) at
  several batch sizes, one above the profile maximum (chunked);
- stream order: the engine first keeps the GPU busy (``--delay-matmuls``), yet the outputs are still
  exact; a control copy on a second, non-blocking stream, synchronised alone, must read stale bytes,
  which proves the delay is long enough for a missing ordering to show;
- threads: one runtime shared by four threads, every answer exact;
- device memory: open takes what the profile maximum needs, close gives it back, 20 open/close cycles
  leak nothing (cudaMemGetInfo);
- an input outside the profile is refused with InputSpecError.
It also times a call at batch 1 and at the profile maximum, and host-to-device copies from pinned and
from pageable memory (informational, one run).

``--dry-run`` runs the checks that need no device on CPU against the stand-in's FakeCudart; the suite
runs it, so the script stays working between the sessions that are lent a GPU.
Usage on a GPU machine (PyTorch, CuPy and cuda-bindings installed; no TensorRT needed):
    PYTHONPATH=. python3 scripts/gpu_cuda_check.py --json gpu_cuda_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np

from runtimes.engines.trt_rt import TrtRuntime
from runtimes.errors import InputSpecError
from tests.trt_standin import CLASSES, Execute, FakeCudart, Log, execute_on_host, expected_logits, fake_tensorrt

CHW = (3, 224, 224)
PROFILE = (1, 8, 32)
IMAGE = ("image", (-1, *CHW), [(b, *CHW) for b in PROFILE])
BATCHES = (1, 5, 32, 40)  # 40: above the profile maximum, so the base class runs it in two chunks
MiB = 1 << 20


def images(batch: int, seed: int) -> np.ndarray:
    """Integer-valued float32 images: their sums (≤ 150,528 × 7 × 10 < 2^24) are exact in any order."""
    return np.random.default_rng(seed).integers(0, 8, (batch, *CHW)).astype(np.float32)


def exact(logits: np.ndarray, image: np.ndarray) -> bool:
    return logits.shape == (len(image), CLASSES) and bool(np.array_equal(logits.astype(np.float64),
                                                                          expected_logits(image)))


class GpuEngine:
    """The stand-in engine's computation on the GPU, enqueued on the runtime's stream: ``delay`` large
    matrix products first (the GPU stays busy while the host goes on), then the logits."""

    def __init__(self, delay: int) -> None:
        import cupy as cp

        self.cp, self.delay = cp, delay
        self.busy = cp.ones((4096, 4096), cp.float32)
        self.scratch = cp.empty_like(self.busy)
        self.weights = cp.arange(1, CLASSES + 1, dtype=cp.float32)
        cp.cuda.Device().synchronize()

    def array(self, address: int, shape: tuple[int, ...]) -> Any:
        cp = self.cp
        memory = cp.cuda.UnownedMemory(address, int(np.prod(shape)) * 4, None)
        return cp.ndarray(shape, cp.float32, cp.cuda.MemoryPointer(memory, 0))

    def __call__(self, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int], stream_handle: int) -> None:
        cp = self.cp
        batch = shapes["image"][0]
        with cp.cuda.ExternalStream(stream_handle):
            for _ in range(self.delay):
                cp.matmul(self.busy, self.busy, out=self.scratch)
            image = self.array(addresses["image"], (batch, int(np.prod(shapes["image"])) // batch))
            logits = self.array(addresses["logits"], (batch, CLASSES))
            cp.multiply(image.sum(axis=1)[:, None], self.weights, out=logits)


def stand_in_modules(execute: Execute, cudart: Any | None) -> dict[str, types.ModuleType]:
    """``tensorrt`` replaced by the stand-in; with ``cudart`` (dry run) cuda-python's runtime too."""
    modules: dict[str, Any] = {"tensorrt": fake_tensorrt("10.16.1.11", Log(), image=IMAGE, execute=execute)}
    if cudart is not None:
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart  # type: ignore[attr-defined]
        cuda = types.ModuleType("cuda")
        cuda.bindings = bindings  # type: ignore[attr-defined]
        modules.update({"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart})
    return modules


def check_outputs(rt: TrtRuntime) -> dict[str, Any]:
    results = {b: exact(rt({"image": image})["logits"], image) for b, image in ((b, images(b, b)) for b in BATCHES)}
    return {"ok": all(results.values()), "exact_by_batch": results}


def check_threads(rt: TrtRuntime, threads: int = 4, calls: int = 25) -> dict[str, Any]:
    wrong: list[int] = []

    def work(index: int) -> None:
        for call in range(calls):
            image = images(1 + (index + call) % PROFILE[-1], 1000 * index + call)
            if not exact(rt({"image": image})["logits"], image):
                wrong.append(index)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"ok": not wrong, "calls": threads * calls, "wrong": len(wrong)}


def check_refusal(rt: TrtRuntime) -> dict[str, Any]:
    try:
        rt({"image": np.zeros((1, 3, 223, 224), np.float32)})
    except InputSpecError as exc:
        return {"ok": True, "error": str(exc)}
    return {"ok": False, "error": None}


def free_bytes(cudart: Any) -> int:
    err, free, _ = cudart.cudaMemGetInfo()
    assert int(err) == 0, f"cudaMemGetInfo: {err}"
    return int(free)


def check_race_control(rt: TrtRuntime, cudart: Any) -> dict[str, Any]:
    """Run the engine by hand and copy its output on a second non-blocking stream synchronised alone:
    the copy must see stale bytes, else the delay is too short to expose a missing stream order."""
    image = images(2, 77)
    err, other = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    assert int(err) == 0
    stream, context = rt.stream, rt.context
    device_in, staged_in = rt._buffers["image"]
    device_out, _ = rt._buffers["logits"]
    context.set_input_shape("image", image.shape)
    staged_in[: image.nbytes] = image.reshape(-1).view(np.uint8)
    stream.to_device(device_in, staged_in[: image.nbytes], image.nbytes)
    context.execute_async_v3(int(stream.handle))
    racy = np.zeros((2, CLASSES), np.float32)
    cudart.cudaMemcpyAsync(racy.ctypes.data, device_out, racy.nbytes,
                           cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, other)
    cudart.cudaStreamSynchronize(other)
    stream.synchronize()
    cudart.cudaStreamDestroy(other)
    return {"ok": not exact(racy, image), "racy_copy_matched": exact(racy, image)}


def check_memory(open_runtime: Callable[[], TrtRuntime], cudart: Any) -> dict[str, Any]:
    needed = PROFILE[-1] * int(np.prod(CHW)) * 4 + PROFILE[-1] * CLASSES * 4
    before = free_bytes(cudart)
    rt = open_runtime()
    taken = before - free_bytes(cudart)
    rt.close()
    returned = free_bytes(cudart) - (before - taken)
    for _ in range(20):
        open_runtime().close()
    leaked = before - free_bytes(cudart)
    return {"ok": needed <= taken <= needed + 16 * MiB and abs(leaked) <= 2 * MiB,
            "needed_mib": round(needed / MiB, 2), "taken_at_open_mib": round(taken / MiB, 2),
            "returned_at_close_mib": round(returned / MiB, 2), "after_20_cycles_mib": round(leaked / MiB, 2)}


def median_ms(call: Callable[[], Any], repeats: int = 50) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def timings(rt: TrtRuntime, cudart: Any) -> dict[str, Any]:
    feeds = {b: {"image": images(b, 5)} for b in (1, PROFILE[-1])}
    out: dict[str, Any] = {f"call_ms_batch_{b}": median_ms(lambda feed=feed: rt(feed)) for b, feed in feeds.items()}
    nbytes = PROFILE[-1] * int(np.prod(CHW)) * 4
    device, pinned = rt._buffers["image"]
    pageable = np.ones(nbytes, np.uint8)
    for name, host in (("pinned", pinned), ("pageable", pageable)):
        def copy(host: np.ndarray = host) -> None:
            rt.stream.to_device(device, host, nbytes)
            rt.stream.synchronize()
        out[f"h2d_gb_per_s_{name}"] = round(nbytes / (median_ms(copy, 20) * 1e-3) / 1e9, 1)
    return out


def run(dry_run: bool, delay: int) -> dict[str, Any]:
    if dry_run:
        cudart: Any = FakeCudart(Log())
        execute: Any = execute_on_host
    else:
        from cuda.bindings import runtime as cudart

        execute = GpuEngine(delay)
    modules = stand_in_modules(execute, cudart if dry_run else None)
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(sys.modules, modules):
        plan = Path(folder) / "model.engine"
        plan.write_bytes(b"PLAN")

        def open_runtime() -> TrtRuntime:
            return TrtRuntime(plan, device="cuda").open()

        mode = "dry run (FakeCudart, host engine)" if dry_run else "GPU (cuda-python, CuPy engine)"
        report: dict[str, Any] = {"mode": mode}
        if not dry_run:
            from runtimes.engines.trt_common import cuda_device_info

            report["gpu"], report["compute_capability"] = cuda_device_info()
            report["memory"] = check_memory(open_runtime, cudart)
        with open_runtime() as rt:
            report["outputs"] = check_outputs(rt)
            report["threads"] = check_threads(rt)
            report["refusal"] = check_refusal(rt)
            if not dry_run:
                report["stream_order_control"] = check_race_control(rt, cudart)
                execute.delay = 0
                report["timings"] = timings(rt, cudart)
    report["ok"] = all(v["ok"] for v in report.values() if isinstance(v, dict) and "ok" in v)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only: FakeCudart and the host engine")
    parser.add_argument("--delay-matmuls", type=int, default=10,
                        help="4096² float32 matrix products the GPU engine runs before its output (default 10)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    report = run(args.dry_run, args.delay_matmuls)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
