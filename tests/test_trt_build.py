"""TensorRT build logic on CPU: path choice for 10 vs 11, profiles, records, readiness, missing TRT/GPU.

The build itself needs TensorRT and a GPU: ``test_engine_build_and_parity`` is marked and skips here.
"""
from __future__ import annotations

import sys
import types

import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from exporter import cli
from exporter.formats import trt_readiness
from exporter.errors import EngineBuildError
from exporter.formats.trt_build import choose_build_path, engine_record, profile_shapes
from exporter.zoo import create_model
from runtimes.manifest import BatchProfile
from runtimes.specs import TensorSpec

from .exports import exported


def test_one_strongly_typed_path_on_10_and_11() -> None:
    for version in ("11.4.0.106", "10.13.3.9", "10.3.0"):
        assert choose_build_path(version).source == "onnx_fp16"
        assert choose_build_path(version, "int8").source == "onnx_int8"
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
    assert record["build_seconds"] == 12.35 and record["size_bytes"] == 1024 and "strongly typed" in record["precision"]


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
    assert report["parsed_by"] == {"TensorRT 10.15": True, "TensorRT 11.2": True, "TensorRT 11.5": True}
    assert trt_readiness.parsed_by(25) == {"TensorRT 10.15": False, "TensorRT 11.2": False, "TensorRT 11.5": True}


def test_engine_trt_without_tensorrt_is_one_line_exit_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as on this machine
    result = CliRunner().invoke(cli.main, ["c2f_ca", "--engine", "trt", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "tensorrt is not installed (needs an NVIDIA GPU); pip install" in result.output and "Traceback" not in result.output
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


def test_trtexec_cross_check_command_and_parse() -> None:
    from pathlib import Path

    from exporter.formats.trtexec import throughput_items_per_s, trtexec_command

    record = {"profile": {"image": [[1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224]],
                          "context": [[1, 512, 7, 7], [8, 512, 7, 7], [32, 512, 7, 7]]}}
    argv = trtexec_command(Path("a/model.fp16.onnx"), record, 32, workspace_gib=4)
    assert argv == ["trtexec", "--onnx=a/model.fp16.onnx", "--stronglyTyped",
                    "--minShapes=image:1x3x224x224,context:1x512x7x7", "--optShapes=image:8x3x224x224,context:8x512x7x7",
                    "--maxShapes=image:32x3x224x224,context:32x512x7x7",
                    "--shapes=image:32x3x224x224,context:32x512x7x7", "--memPoolSize=workspace:4096M"]
    tokens = {"profile": {"tokens": [[1, 1], [8, 16], [32, 100]], "mask": [[1, 1], [8, 16], [32, 100]]}}
    assert "--shapes=tokens:32x100,mask:32x100" in trtexec_command(Path("m.onnx"), tokens, 32)
    sample = "[11/23/2026-10:00:00] [I] Throughput: 101.5 qps\n[I] Latency: min = 9.1 ms"
    assert throughput_items_per_s(sample, 32) == pytest.approx(3248.0)
    with pytest.raises(ValueError, match="no 'Throughput"):
        throughput_items_per_s("nothing", 32)
