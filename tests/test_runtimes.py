"""One contract suite run against every available backend (ort, torch, openvino f32, executorch here; trt with
a GPU)."""
from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import runtimes
from runtimes import machine
from runtimes.bench import reporting, timing
from runtimes.errors import ArtifactError, BackendUnavailableError, InputSpecError, RuntimeClosedError
from runtimes.specs import random_inputs

from .conftest import ENGINES, small_model, trt_usable
from .exports import exported

CONTRACT_MODELS = ["resnet50_sa", "transformer_encoder", "vgg16_cross"]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(params=CONTRACT_MODELS)
def runtime(request, engine, artifacts_root):
    folder, _ = exported(request.param, artifacts_root)
    with runtimes.load(folder, engine=engine, device="cuda" if engine == "trt" else "cpu") as rt:
        yield request.param, rt


def reference(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    model = small_model(name)
    with torch.inference_mode():
        return model(*(torch.from_numpy(arrays[s.name]) for s in model.input_specs)).numpy()


def test_outputs_match_pytorch_within_export_tolerance(runtime) -> None:
    name, rt = runtime
    arrays = random_inputs(rt.input_specs, 3, seed=11)
    out = next(iter(rt(arrays).values()))
    ref = reference(name, arrays)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-4


def test_specs_have_none_for_dynamic_dims(runtime) -> None:
    name, rt = runtime
    assert rt.inputs[0].shape[0] is None and rt.outputs[0].shape[0] is None
    if name == "vgg16_cross":
        assert [(i.name, i.shape) for i in rt.inputs] == [("image", (None, 3, 224, 224)), ("context", (None, 512, 7, 7))]


def test_bad_inputs_raise_input_spec_error(runtime) -> None:
    name, rt = runtime
    arrays = random_inputs(rt.input_specs, 2, seed=0)
    first = rt.inputs[0].name
    with pytest.raises(InputSpecError, match=f"missing \\['{first}'\\]"):
        rt({k: v for k, v in arrays.items() if k != first})
    with pytest.raises(InputSpecError, match="unexpected \\['bogus'\\]"):
        rt({**arrays, "bogus": arrays[first]})
    wrong_rank = arrays[first][0]
    with pytest.raises(InputSpecError, match=re.escape(f"input {first!r}: expected shape ") + ".*" + re.escape(f"received {wrong_rank.shape}")):
        rt({**arrays, first: wrong_rank})
    lossy = arrays[first].astype(np.float64 if arrays[first].dtype == np.float32 else np.float32)
    with pytest.raises(InputSpecError, match=f"input '{first}': expected dtype {arrays[first].dtype}, received"):
        rt({**arrays, first: lossy})
    if len(arrays) > 1:
        second = rt.inputs[1].name
        with pytest.raises(InputSpecError, match="axis 'batch' is 2"):
            rt({**arrays, second: np.concatenate([arrays[second]] * 2)})


def test_safe_cast_is_allowed(artifacts_root) -> None:
    folder, _ = exported("transformer_encoder", artifacts_root)
    with runtimes.load(folder, engine="ort") as rt:
        arrays = random_inputs(rt.input_specs, 2, seed=0)
        as_int32 = {k: v.astype(np.int32) for k, v in arrays.items()}
        np.testing.assert_array_equal(rt(as_int32)["hidden"], rt(arrays)["hidden"])


def test_chunking_above_profile_max_matches_one_call(runtime) -> None:
    name, rt = runtime
    assert rt.max_batch == 4  # the test profile 1:2:4
    arrays = random_inputs(rt.input_specs, 9, seed=5)
    chunked = next(iter(rt(arrays).values()))
    ref = reference(name, arrays)
    assert chunked.shape[0] == 9
    assert np.abs(chunked - ref).max() / np.abs(ref).max() <= 1e-4
    if rt.engine != "trt":
        unchunked = runtimes.load(rt.path, engine=rt.engine, max_batch=None)
        np.testing.assert_allclose(chunked, next(iter(unchunked(arrays).values())), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["c2f_ca", "transformer_encoder"])  # an image model, and ids + mask
def test_threads_give_the_same_results_as_serial_calls(name, engine, artifacts_root) -> None:
    folder, _ = exported(name, artifacts_root)
    with runtimes.load(folder, engine=engine, device="cuda" if engine == "trt" else "cpu") as rt:
        _threads_agree_with_serial(rt)


def _threads_agree_with_serial(rt: runtimes.Runtime) -> None:
    inputs = [random_inputs(rt.input_specs, 1 + i % 2, seed=100 + i) for i in range(20)]
    serial = [next(iter(rt(a).values())) for a in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(8):
            parallel = list(pool.map(lambda a: next(iter(rt(a).values())), inputs))
            for s, p in zip(serial, parallel):
                np.testing.assert_allclose(p, s, rtol=1e-6, atol=1e-6)


def test_close_then_call_raises(artifacts_root, engine) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    rt = runtimes.load(folder, engine=engine, device="cuda" if engine == "trt" else "cpu")
    arrays = random_inputs(rt.input_specs, 1)
    rt.close()
    with pytest.raises(RuntimeClosedError, match="closed"):
        rt(arrays)


@pytest.mark.parametrize("engine_name,file", [("ort", "model.onnx"), ("torch", "model.pt2"), ("executorch", "model.pte")])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_file_raises_artifact_error(engine_name, file, damage, artifacts_root, tmp_path) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    data = (folder / file).read_bytes()
    bad = tmp_path / file
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(ArtifactError, match="cannot load .*corrupt or truncated"):
        runtimes.load(bad, engine=engine_name)


def test_folder_and_file_errors(tmp_path, artifacts_root) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        runtimes.load(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        runtimes.load(tmp_path)
    folder, _ = exported("c2f_ca", artifacts_root)
    with pytest.raises(ArtifactError, match="model.onnx is not an artifact of engine 'torch'"):
        runtimes.load(folder / "model.onnx", engine="torch")
    with pytest.raises(ArtifactError, match="no 'engine' artifact"):
        runtimes.load(folder, engine="trt", device="cuda")


def test_positional_input_for_single_input_models(artifacts_root) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    with runtimes.load(folder, engine="ort") as rt:
        x = random_inputs(rt.input_specs, 2)["image"]
        np.testing.assert_array_equal(rt(x)["logits"], rt({"image": x})["logits"])


@pytest.mark.skipif(trt_usable(), reason="checks the error shown where TensorRT is absent")
def test_trt_without_tensorrt_names_the_install_command(artifacts_root, tmp_path) -> None:
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(BackendUnavailableError, match=r"TensorRT: tensorrt is not installed \(needs an NVIDIA GPU\); pip install .*\[trt\]"):
        runtimes.load(plan, engine="trt", device="cuda")


def test_trt_profile_and_spec_helpers() -> None:
    from runtimes.engines.trt_rt import check_profile, spec_from_engine_dims

    spec = spec_from_engine_dims("image", (-1, 3, 224, 224), "float32")
    assert spec.shape == ("batch", 3, 224, 224)
    check_profile("image", (4, 3, 224, 224), (1, 3, 224, 224), (32, 3, 224, 224))
    with pytest.raises(InputSpecError, match=r"outside the engine profile"):
        check_profile("image", (33, 3, 224, 224), (1, 3, 224, 224), (32, 3, 224, 224))


def test_engine_compatibility_check() -> None:
    from runtimes.engines.trt_common import check_engine_compatible, trt_major

    built = {"tensorrt": "10.13.3.9", "compute_capability": "8.9", "gpu": "NVIDIA L4"}
    check_engine_compatible(built, "10.13.3.9", "8.9")
    with pytest.raises(ArtifactError, match="built with TensorRT 10.13.3.9 but this is TensorRT 10.13.0.1.*exact version"):
        check_engine_compatible(built, "10.13.0.1", "8.9")  # TensorRT loads plans of its exact version only
    with pytest.raises(ArtifactError, match="built with TensorRT 10.13.3.9 but this is TensorRT 11.4"):
        check_engine_compatible(built, "11.4.0.106", "8.9")
    with pytest.raises(ArtifactError, match="compute capability 8.9 .*NVIDIA L4.* but this GPU is 9.0"):
        check_engine_compatible(built, "10.13.3.9", "9.0")
    assert trt_major("10.13.3.9") == 10 and trt_major("11.4.0.106") == 11


def test_bench_statistics_and_speedups() -> None:
    lat = np.arange(1, 101, dtype=float)  # 1..100 ms
    r = timing.summarise("ort", 8, lat)
    assert (r.p50_ms, r.mean_ms) == (50.5, 50.5) and r.p90_ms == pytest.approx(90.1) and r.p99_ms == pytest.approx(99.01)
    assert r.throughput == pytest.approx(8 * 1000 / 50.5)
    fast = timing.summarise("torch", 8, lat / 2)
    assert reporting.speedups([r, fast])[("torch", 8)] == pytest.approx(2.0)


def test_machine_line_names_the_cpu_and_only_the_isa_flags_that_matter() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
    cpu, flags = machine.cpu_model_and_flags(cpuinfo)
    assert (cpu, flags) == ("AMD EPYC 7B13", ["avx2"])
    assert machine.machine_summary({"cpu": cpu, "cores": 2, "isa": flags}) == "AMD EPYC 7B13, 2 cores, ISA avx2"
    assert machine.machine_summary({"cpu": "x", "cores": 1, "isa": []}).startswith("x, 1 cores, ISA (none of avx2 ")


def test_emulated_cpu_parity_compares_per_sample_and_says_how_to_get_qemu(tmp_path) -> None:
    import importlib.util

    script = Path(__file__).parents[1] / "scripts" / "emulated_cpu_parity.py"
    spec = importlib.util.spec_from_file_location("emulated_cpu_parity", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    native = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, 4.0]], dtype=np.float32)
    flipped = native.copy()
    flipped[1] = [4.0, 0.0, 3.0]  # second sample: cosine 24/25, argmax moves, max error 1 of max|native| 4
    assert module.compare({"out.logits": native}, {"out.logits": native}) == \
        ["logits: worst cosine 1.000000, max rel 0.000e+00, top-1 agreement 2/2"]
    assert module.compare({"out.logits": native}, {"out.logits": flipped}) == \
        ["logits: worst cosine 0.960000, max rel 2.500e-01, top-1 agreement 1/2"]
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": str(tmp_path)})  # no qemu-x86_64 on this PATH
    assert done.returncode == 1 and "apt-get install qemu-user" in done.stderr


def test_attn_bench_json_and_plot(artifacts_root, tmp_path) -> None:
    from click.testing import CliRunner

    from runtimes.bench.cli import main

    folder, _ = exported("c2f_ca", artifacts_root)
    result = CliRunner().invoke(main, [str(folder), "--engine", "ort", "--engine", "torch", "--batch", "1,2",
                                       "--iters", "3", "--warmup", "1", "--json", str(tmp_path / "b.json"),
                                       "--plot", str(tmp_path / "b.png"), "--overhead"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads((tmp_path / "b.json").read_text())
    assert [(r["engine"], r["batch"]) for r in report["results"]] == [("ort", 1), ("ort", 2), ("torch", 1), ("torch", 2)]
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and r["throughput"] > 0 for r in report["results"])
    assert report["machine"]["cores"] >= 1 and "overhead_pct" in report["overhead"]
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attn_bench_missing_folder_error(tmp_path) -> None:
    from click.testing import CliRunner

    from runtimes.bench.cli import main

    result = CliRunner().invoke(main, [str(tmp_path / "nothing_here"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no artifact folder" in result.output
    result = CliRunner().invoke(main, ["nothing_here", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'nothing_here'" in result.output and "exporting" not in result.output


def test_spin_wait_off_reaches_the_onnxruntime_session(artifacts_root) -> None:
    """``spin_wait=False`` (what attn-serve opens with) turns onnxruntime's busy-waiting threads off; the
    default leaves onnxruntime's own setting alone; the answers are the same."""
    folder, _ = exported("c2f_ca", artifacts_root)
    key = "session.intra_op.allow_spinning"
    arrays = random_inputs(small_model("c2f_ca").input_specs, 2, seed=3)
    with runtimes.load(folder, spin_wait=False) as sleeping, runtimes.load(folder) as spinning:
        assert sleeping.session.get_session_options().get_session_config_entry(key) == "0"
        with pytest.raises(RuntimeError, match="does not have configuration with key"):
            spinning.session.get_session_options().get_session_config_entry(key)
        assert np.array_equal(sleeping(arrays)["logits"], spinning(arrays)["logits"])


def test_onnxruntime_sessions_leave_out_the_pad_into_max_pool_fold(tmp_path) -> None:
    """conv, zero pad, max-pool (BiT's stem): onnxruntime's own "Pad_Fusion" folds the pad into the pool, which
    pads with -inf, and changes the result; our sessions leave that rewrite out and equal PyTorch."""
    import onnxruntime as ort

    from runtimes.engines.providers import create_session

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ConstantPad2d(1, 0.0),
                                 torch.nn.MaxPool2d(3, 2)).eval()
    x = torch.randn(1, 3, 16, 16)
    path = tmp_path / "pad_pool.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=18)
    with torch.inference_mode():
        want = module(x).numpy()

    def error(session) -> float:
        return float(np.abs(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0] - want).max())

    assert error(create_session(str(path))) < 1e-5
    assert error(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])) > 1e-2  # the upstream fold
