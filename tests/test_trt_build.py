"""TensorRT build logic on CPU: path choice for 10 vs 11, profiles, records, readiness, missing TRT/GPU.

The build itself needs TensorRT and a GPU: ``test_engine_build_and_parity`` is marked and skips here.
"""
from __future__ import annotations

import sys
import types

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from exporter import cli, trt_readiness
from exporter.errors import EngineBuildError
from exporter.trt_build import choose_build_path, engine_record, profile_shapes
from exporter.zoo import create_model
from runtimes.errors import BackendUnavailableError
from runtimes.manifest import BatchProfile
from runtimes.specs import TensorSpec

from .exports import exported


def test_trt11_builds_strongly_typed_from_fp16_onnx_and_trt10_uses_the_flag() -> None:
    p11 = choose_build_path("11.4.0.106")
    assert (p11.source, p11.fp16_flag) == ("onnx_fp16", False)
    p10 = choose_build_path("10.13.3.9")
    assert (p10.source, p10.fp16_flag) == ("onnx", True)
    with pytest.raises(EngineBuildError, match="TensorRT 8.6.1 is not supported"):
        choose_build_path("8.6.1")


def test_profile_shapes_for_images_and_sequences() -> None:
    image = create_model("c2f_ca", num_classes=10).input_specs[0]
    assert profile_shapes(image, BatchProfile(1, 8, 32)) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    tokens = create_model("transformer_encoder").input_specs[0]
    assert profile_shapes(tokens, BatchProfile(2, 4, 16)) == ((2, 1), (4, 16), (16, 100))


def test_engine_record_holds_what_the_runtime_checks() -> None:
    spec = TensorSpec("image", ("batch", 3, 224, 224))
    record = engine_record("10.13.3.9", "NVIDIA L4", "8.9", choose_build_path("10.13.3.9"), BatchProfile(1, 8, 32),
                           [spec], 12.345, 1024)
    assert record["tensorrt"] == "10.13.3.9" and record["compute_capability"] == "8.9"
    assert record["profile"] == {"image": [[1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224]]}
    assert record["build_seconds"] == 12.35 and record["size_bytes"] == 1024 and "BuilderFlag.FP16" in record["precision"]


def test_readiness_of_zoo_exports_and_of_a_bad_graph(artifacts_root) -> None:
    folder, manifest = exported("transformer_encoder", artifacts_root)
    ready = manifest["trt_readiness"]
    assert ready["errors"] == [] and any("int64" in w for w in ready["warnings"])
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["i"], name="nz"), helper.make_node("Unique", ["x"], ["u"], name="uq")],
        "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, [1, None]),
         helper.make_tensor_value_info("u", TensorProto.DOUBLE, [None])],
    )
    report = trt_readiness.check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert any("NonZero" in e and "data-dependent" in e for e in report["errors"])
    assert any("Unique" in e and "not supported" in e for e in report["errors"])
    assert any("double" in w for w in report["warnings"]) and any("int64" in w for w in report["warnings"])


def test_engine_trt_without_tensorrt_is_one_line_exit_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as on this machine
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--engine", "trt", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "TensorRT is not installed: pip install" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c2f_ca").exists()  # nothing written


def test_engine_trt_without_gpu_says_so(tmp_path, monkeypatch) -> None:
    """Only the version string is faked: a TensorRT module with no GPU behind it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.4.0.106"))
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--engine", "trt", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no CUDA GPU found" in result.output


def _trt_and_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.trt
@pytest.mark.skipif(not _trt_and_gpu(), reason="TensorRT and an NVIDIA GPU are needed (not on this machine)")
def test_engine_build_and_parity(tmp_path) -> None:
    from exporter.pipeline import export

    from .exports import small_options

    manifest = export("c2f_ca", tmp_path, options=small_options(engine="trt"))
    assert manifest["status"] == "ok" and manifest["parity"]["engine"]["passed"]
    assert manifest["engine"]["profile"]["image"][2][0] == 4
