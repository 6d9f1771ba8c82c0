"""build_engine and TrtRuntime run end to end on CPU against the recording stand-in (trt_standin.py).

The expected sequences are TensorRT's documented workflow (Python API docs, "The Python API" guide):
Logger → Builder → create_network(1 << STRONGLY_TYPED) → OnnxParser.parse_from_file →
create_builder_config → set_memory_pool_limit(WORKSPACE) → optimisation profile (set_shape min/opt/max,
add_optimization_profile) → timing cache (create_timing_cache, set_timing_cache → bool) →
build_serialized_network; and Runtime → deserialize_cuda_engine → create_execution_context →
set_input_shape / set_tensor_address → execute_async_v3(stream) with the copies on that stream.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from exporter.errors import EngineBuildError
from exporter.formats.trt_build import build_engine
from runtimes.errors import ArtifactError, BackendUnavailableError
from runtimes.manifest import BatchProfile
from runtimes.specs import TensorSpec
from runtimes.engines.trt_rt import TrtRuntime

from .trt_standin import CLASSES, FakeCudart, Log, execute_on_host, fake_tensorrt

ROOT = Path(__file__).resolve().parents[1]

VERSIONS = ["11.4.0.106", "10.16.1.11", "10.3.0"]
IMAGE_SPEC = TensorSpec("image", ("batch", 3, 224, 224))


def install(monkeypatch, version: str, **kwargs) -> tuple[Log, FakeCudart]:
    log = Log()
    cudart = FakeCudart(log)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, log, **kwargs))
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the GPU is the stand-in's
    return log, cudart


def _build(tmp_path, precision: str = "fp16", **kwargs):
    source = tmp_path / ("model.fp16.onnx" if precision == "fp16" else "model.int8.onnx")
    source.write_bytes(b"onnx")
    printed: list[str] = []
    record = build_engine({f"onnx_{precision}": source}, tmp_path / "model.engine", [IMAGE_SPEC], BatchProfile(1, 2, 4),
                          precision=precision, workspace_gib=2, printer=printed.append, **kwargs)
    return record, source, printed


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_sequence_is_strongly_typed_with_profile_and_cache(version, precision, tmp_path, monkeypatch) -> None:
    log, _ = install(monkeypatch, version)
    cache = tmp_path / "timing.cache"
    record, source, _ = _build(tmp_path, precision, timing_cache=cache)
    strongly_typed = 1 << (0 if version.startswith("11") else 1)  # the enum's value in each version
    shapes = ((1, 3, 224, 224), (2, 3, 224, 224), (4, 3, 224, 224))
    assert log == [
        ("Logger", "WARNING"), ("Builder",), ("create_network", strongly_typed), ("OnnxParser",),
        ("parse_from_file", str(source)), ("create_builder_config",), ("set_memory_pool_limit", 0, 2 << 30),
        ("progress_monitor", "IProgressMonitor"), ("create_optimization_profile",), ("set_shape", "image", *shapes),
        ("add_optimization_profile", {"image": shapes}), ("create_timing_cache", b""),
        ("set_timing_cache", b"", False, True), ("build_serialized_network",), ("get_timing_cache",),
        ("ITimingCache.serialize",),
    ]
    assert (tmp_path / "model.engine").read_bytes() == b"PLAN"
    assert cache.read_bytes() == b"CACHE[]+this build"  # the config's cache after the build is what is saved
    assert record["tensorrt"] == version and record["precision"].startswith(f"{precision} (strongly typed")
    assert record["profile"] == {"image": [list(s) for s in shapes]} and record["compute_capability"] == "9.0"


def test_a_foreign_timing_cache_is_replaced_with_a_fresh_one(tmp_path, monkeypatch) -> None:
    log, _ = install(monkeypatch, "11.4.0.106")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"FOREIGN")
    _, _, printed = _build(tmp_path, timing_cache=cache)
    cache_calls = [c for c in log if "timing_cache" in c[0]]
    assert cache_calls == [("create_timing_cache", b"FOREIGN"), ("set_timing_cache", b"FOREIGN", False, False),
                           ("create_timing_cache", b""), ("set_timing_cache", b"", False, True),
                           ("get_timing_cache",)]
    assert any("does not fit this GPU/TensorRT; starting a fresh one" in p for p in printed)
    assert cache.read_bytes() == b"CACHE[]+this build"  # never the foreign cache written back unchanged


def test_a_kept_timing_cache_is_reused(tmp_path, monkeypatch) -> None:
    log, _ = install(monkeypatch, "10.16.1.11")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"MINE")
    _build(tmp_path, timing_cache=cache)
    assert ("set_timing_cache", b"MINE", False, True) in log and cache.read_bytes() == b"CACHE[MINE]+this build"


def test_parser_errors_are_all_collected(tmp_path, monkeypatch) -> None:
    install(monkeypatch, "11.4.0.106", parse_ok=False)
    with pytest.raises(EngineBuildError) as info:
        _build(tmp_path)
    assert "node_0: unsupported operator" in str(info.value) and "node_1: unsupported operator" in str(info.value)


def _engine_file(tmp_path, content: bytes = b"PLAN"):
    plan = tmp_path / "model.engine"
    plan.write_bytes(content)
    return plan


def test_runtime_allocates_once_and_copies_on_the_execution_stream(tmp_path, monkeypatch) -> None:
    log, cudart = install(monkeypatch, "11.4.0.106")
    rt = TrtRuntime(_engine_file(tmp_path), device="cuda").open()
    opened = list(log)
    image_bytes, logits_bytes = 4 * 3 * 4 * 4 * 4, 4 * CLASSES * 4  # float32 at the profile max (batch 4)
    assert [c for c in opened if c[0] in ("cudaMalloc", "cudaMallocHost")] == [
        ("cudaMalloc", image_bytes), ("cudaMallocHost", image_bytes),
        ("cudaMalloc", logits_bytes), ("cudaMallocHost", logits_bytes)]
    assert opened.index(("set_input_shape", "image", (4, 3, 4, 4))) < opened.index(("get_tensor_shape", "logits"))
    bound = {c[1]: c[2] for c in opened if c[0] == "set_tensor_address"}
    device_ptrs = [p for p, b in cudart.memory.items()][::2]  # cudaMalloc'd buffers, in allocation order
    assert set(bound) == {"image", "logits"} and sorted(bound.values()) == sorted(device_ptrs)
    assert rt.max_batch == 4 and [i.name for i in rt.inputs] == ["image"]

    log.clear()
    image = np.random.default_rng(0).standard_normal((3, 3, 4, 4)).astype(np.float32)
    logits = rt({"image": image})["logits"]
    expected = image.reshape(3, -1).sum(1)[:, None] * np.arange(1, CLASSES + 1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)  # the right bytes reached the right addresses
    stream = cudart.stream
    assert log == [
        ("set_input_shape", "image", (3, 3, 4, 4)),
        ("cudaMemcpyAsync", "HostToDevice", 3 * 3 * 4 * 4 * 4, stream),
        ("execute_async_v3", int(stream)),
        ("get_tensor_shape", "logits"),
        ("cudaMemcpyAsync", "DeviceToHost", 3 * CLASSES * 4, stream),
        ("cudaStreamSynchronize", stream),
    ]  # no allocation, no free, one stream for copies and execution, one synchronisation

    log.clear()
    big = np.ones((9, 3, 4, 4), np.float32)  # above the profile max: chunked by the base class
    assert rt({"image": big})["logits"].shape == (9, CLASSES)
    assert log.names().count("execute_async_v3") == 3 and "cudaMalloc" not in log.names()

    log.clear()
    rt.close()
    assert sorted(log.names()) == ["cudaFree", "cudaFree", "cudaFreeHost", "cudaFreeHost", "cudaStreamDestroy"]


def test_runtime_refuses_what_it_cannot_run(tmp_path, monkeypatch) -> None:
    install(monkeypatch, "11.4.0.106", context_ok=False)
    with pytest.raises(BackendUnavailableError, match="could not create an execution context"):
        TrtRuntime(_engine_file(tmp_path), device="cuda").open()
    install(monkeypatch, "11.4.0.106")
    with pytest.raises(ArtifactError, match="could not deserialise"):
        TrtRuntime(_engine_file(tmp_path, b"BAD"), device="cuda").open()
    built = {"tensorrt": "11.4.0.100", "compute_capability": "9.0"}
    with pytest.raises(ArtifactError, match="built with TensorRT 11.4.0.100 but this is TensorRT 11.4.0.106.*exact"):
        TrtRuntime(_engine_file(tmp_path), device="cuda", artifact_record=built).open()
    with pytest.raises(ArtifactError, match="'pixels'"):  # the manifest says otherwise than the engine
        TrtRuntime(_engine_file(tmp_path), device="cuda",
                   input_specs=[TensorSpec("pixels", ("batch", 3, 4, 4))]).open()
    with pytest.raises(ArtifactError, match="float16"):
        TrtRuntime(_engine_file(tmp_path), device="cuda",
                   input_specs=[TensorSpec("image", ("batch", 3, 4, 4), "float16")]).open()


def _gpu_cuda_check():
    spec = importlib.util.spec_from_file_location("gpu_cuda_check", ROOT / "scripts" / "gpu_cuda_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_cuda_check_runs_standalone_in_its_dry_run(tmp_path) -> None:
    """scripts/gpu_cuda_check.py (run on a lent GPU) keeps working: its CPU dry run passes as a script."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "scripts/gpu_cuda_check.py", "--dry-run", "--json", str(report)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["outputs"]["exact_by_batch"] == {"1": True, "5": True, "32": True, "40": True}
    assert result["threads"] == {"ok": True, "calls": 100, "wrong": 0}
    assert "(1, 3, 223, 224)" in result["refusal"]["error"]


def test_gpu_cuda_check_fails_when_an_output_is_wrong(monkeypatch) -> None:
    """The check can fail: an engine that drops the last image of a batch is caught at every batch but 1."""
    module = _gpu_cuda_check()

    def drops_last(shapes, addresses, stream_handle):
        batch, *chw = shapes["image"]
        execute_on_host({"image": (max(batch - 1, 1), *chw)}, addresses, stream_handle)

    monkeypatch.setattr(module, "execute_on_host", drops_last)
    report = module.run(dry_run=True, delay=0)
    assert report["ok"] is False
    assert report["outputs"]["exact_by_batch"] == {1: True, 5: False, 32: False, 40: False}
