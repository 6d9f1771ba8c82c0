"""ONNX external data (issue 30, models over 2 GiB): ``--external-data`` forces the layout a > 2 GiB model gets,
so one small transformer (two layers, dynamic ``seq``; it passes INT8 on random weights) proves every stage, the manifest, runtimes.load and the Triton repository on it; the automatic
switch above protobuf's limit is tested with the limit lowered. The 2.5 GB vit_huge_patch14_224 run is in
docs/coverage.md (scripts/coverage.py), not in CI."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import runtimes
from exporter.formats import activation_memory, int8_ort, isolation, onnx_export, ort_format
from exporter import onnx_files
from exporter.errors import ExportError, MemoryBudgetError
from runtimes import manifest as mf
from runtimes.errors import ArtifactError
from serving.triton_repo import write_repository

from exporter.pipeline import export
from runtimes.specs import random_inputs

from .conftest import slim_model_args
from .exports import small_options
from .run_shared import build_once

ONNX_KEYS = {"onnx": "model.onnx", "onnx_fp16": "model.fp16.onnx", "onnx_int8": "model.int8.onnx"}


def external_export(root: Path) -> Path:
    """transformer_encoder with every ONNX file's weights external, through every ONNX stage."""

    def export_it() -> None:
        export("transformer_encoder", root, name="external_data", model_args=slim_model_args("transformer_encoder"),
               options=small_options(external_data=True, fp16=True, int8=True, calib_size=8, openvino=True,
                                     ort_format=True))

    return build_once(root / "external_data.exported", export_it, lambda: root / "external_data")


@pytest.fixture(scope="module")
def folder(artifacts_root) -> Path:
    return external_export(artifacts_root)


def _tiny_model(values: int) -> onnx.ModelProto:
    weight = onnx.numpy_helper.from_array(np.arange(values, dtype=np.float32), "w")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [values])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [values])], [weight])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_every_onnx_file_keeps_its_weights_in_its_data_file(folder) -> None:
    manifest = mf.read_manifest(folder)
    for key, name in ONNX_KEYS.items():
        path, data = folder / name, folder / f"{name}.data"
        assert manifest["artifacts"][f"{key}_data"] == data.name
        assert manifest["files"][data.name]["size"] == data.stat().st_size > 0
        assert onnx_files.data_files(path) == [data]
        graph = onnx.load(str(path), load_external_data=False)
        external = [t for t in graph.graph.initializer if onnx.external_data_helper.uses_external_data(t)]
        inline = [t for t in graph.graph.initializer if not onnx.external_data_helper.uses_external_data(t)]
        assert len(external) >= 5, key  # patch embedding, qkv, proj, mlp, head ...
        assert all(len(t.raw_data) < onnx_files.INLINE_BELOW for t in inline), key
        assert path.stat().st_size < data.stat().st_size / 4, key  # the graph file holds no large tensor
    assert not list(folder.glob(".*"))  # no staging or temporary file left in the published folder


def test_every_stage_checked_its_file_from_external_data(folder) -> None:
    manifest = mf.read_manifest(folder)
    for key in ("onnx", "onnx_fp16", "onnx_int8", "onnx_ort", "openvino"):
        assert manifest["parity"][key]["passed"], key
    assert manifest["parity"]["onnx"]["worst"]["max_rel"] <= 1e-4
    assert manifest["int8"]["quantized_nodes"] > 0 and manifest["ort_format"]["operators"] > 5


def test_runtime_and_triton_entry_open_the_data_file(folder, tmp_path) -> None:
    """runtimes.load verifies and opens model.onnx with its data; the Triton entry links the data file beside
    1/model.onnx under its own name, and onnxruntime opening the entry gives the same numbers."""
    inputs = random_inputs(mf.input_specs(mf.read_manifest(folder)), 3, seed=5)
    with runtimes.load(folder, engine="ort") as runtime:
        expected = runtime(**inputs)["hidden"]
    entries = write_repository([folder], tmp_path / "repo")
    onnx_entry = tmp_path / "repo" / "external_data_onnx"
    assert onnx_entry in entries
    assert sorted(p.name for p in (onnx_entry / "1").iterdir()) == ["model.onnx", "model.onnx.data"]
    assert sorted(p.name for p in (tmp_path / "repo" / "external_data_fp16" / "1").iterdir()) == \
        ["model.fp16.onnx.data", "model.onnx"]
    session = ort.InferenceSession(str(onnx_entry / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["hidden"], inputs)[0]
    np.testing.assert_array_equal(got, expected)


def test_a_damaged_data_file_is_refused_by_name(folder, tmp_path) -> None:
    damaged = Path(shutil.copytree(folder, tmp_path / "damaged"))
    data = damaged / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data does not match its SHA-256"):
        runtimes.load(damaged, engine="ort")
    data.unlink()
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data is listed in the manifest but missing"):
        runtimes.load(damaged, engine="ort")


def test_over_the_protobuf_limit_goes_external_and_back_inline(tmp_path, monkeypatch) -> None:
    """With the limit lowered to 64 KiB a 256 KiB model is written external; under the real limit the same
    model is rewritten inline and the stale data file removed."""
    path = tmp_path / "model.onnx"
    monkeypatch.setattr(onnx_files, "PROTOBUF_LIMIT", 2**16)
    monkeypatch.setattr(onnx_files, "HEADROOM", 0)
    assert onnx_files.save(_tiny_model(2**16), path) == tmp_path / "model.onnx.data"
    assert path.stat().st_size < 1024 and (tmp_path / "model.onnx.data").stat().st_size == 2**18
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(onnx_files.load(path).graph.initializer[0]),
                                  np.arange(2**16, dtype=np.float32))
    monkeypatch.undo()
    assert onnx_files.save(_tiny_model(2**16), path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert path.stat().st_size > 2**18


def test_a_file_the_checker_rejects_is_never_in_place(tmp_path) -> None:
    model = _tiny_model(2**12)
    model.graph.node[0].op_type = "NoSuchOperator"
    for external in (False, True):
        with pytest.raises(ExportError, match=r"onnx.checker rejected model\.onnx: .*NoSuchOperator"):
            onnx_files.save(onnx.ModelProto.FromString(model.SerializeToString()), tmp_path / "model.onnx",
                            external=external)
        assert list(tmp_path.iterdir()) == []


def test_ort_format_refuses_what_a_flatbuffer_cannot_hold(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.onnx"
    onnx_files.save(_tiny_model(2**12), path, external=True)
    monkeypatch.setattr(ort_format, "FLATBUFFER_LIMIT", 2**14)  # the file and its data are 16 KiB and more
    with pytest.raises(ExportError, match=r"the \.ort format is one flatbuffer, which holds less than 2 GiB; "
                                          r"model\.onnx and its data are 0\.00 GiB") as refused:
        ort_format.write_ort(path, tmp_path)
    assert refused.value.failure_class == "format limit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_a_stage_that_would_not_fit_is_refused_with_class_memory(folder, monkeypatch) -> None:
    """The FP16 stage's estimate counts the activations and the weights (external data included); with less
    available than that it is refused in one line, class memory, before AutoCast runs."""
    onnx_path = folder / "model.onnx"
    weights = onnx_files.total_bytes(onnx_path)
    assert weights == (folder / "model.onnx").stat().st_size + (folder / "model.onnx.data").stat().st_size
    estimate = activation_memory.check_fits("FP16", onnx_path, mf.input_specs(mf.read_manifest(folder)), 1)
    assert estimate["weights_mb"] == round(weights / 2**20)
    assert estimate["estimated_peak_mb"] >= weights / 2**20 * activation_memory.WEIGHT_COPIES - 1
    monkeypatch.setattr(activation_memory, "available_bytes", lambda: weights)  # less than the weights' copies
    with pytest.raises(MemoryBudgetError, match=r"^FP16 would need about [\d.]+ GiB .* of weights ×6.5\) but "
                                                r"[\d.]+ GiB is available: use a smaller input size") as refused:
        activation_memory.check_fits("FP16", onnx_path, mf.input_specs(mf.read_manifest(folder)), 1)
    assert refused.value.failure_class == "memory" and "\n" not in str(refused.value)


def test_int8_that_would_not_fit_is_refused_with_class_memory_before_either_quantizer_runs(folder, tmp_path,
                                                                                     monkeypatch) -> None:
    """The INT8 stage's estimate: one sample's activations and ``INT8_WEIGHT_COPIES`` copies of the weights for
    ModelOpt, ``int8_ort.WEIGHT_COPIES`` for onnxruntime's quantizer; with less available than either needs it is
    refused in one line, class memory, and neither quantizer is called."""
    from exporter.formats import int8

    onnx_path, specs = folder / "model.onnx", mf.input_specs(mf.read_manifest(folder))
    weights = onnx_files.total_bytes(onnx_path)
    called = []
    monkeypatch.setattr(int8, "quantize", lambda *a, **k: called.append(a))
    monkeypatch.setattr(activation_memory, "available_bytes", lambda: int(weights * int8_ort.WEIGHT_COPIES))
    calib = int8.calibration_data(specs, 0, 2)
    with pytest.raises(MemoryBudgetError, match=r"^INT8 quantization \(onnxruntime's quantize_static, as "
                                                r"ModelOpt's would not fit either\) would need about [\d.]+ GiB .* "
                                                rf"of weights ×{int8_ort.WEIGHT_COPIES:g}\) but") as refused:
        int8.quantize_until_parity(onnx_path, tmp_path / "model.int8.onnx", calib, "max", 17, lambda p: None,
                                   input_specs=specs)
    assert refused.value.failure_class == "memory" and "\n" not in str(refused.value) and called == []


def test_int8_that_modelopt_could_not_hold_goes_to_onnxruntime_s_quantizer(folder, monkeypatch) -> None:
    """Memory for onnxruntime's copies of the weights but not ModelOpt's: onnxruntime quantizes, with only the
    widening steps that change its file, and the manifest's estimate is onnxruntime's."""
    from exporter.formats import int8

    onnx_path, specs = folder / "model.onnx", mf.input_specs(mf.read_manifest(folder))
    weights = onnx_files.total_bytes(onnx_path)
    between = (int8.INT8_WEIGHT_COPIES + int8_ort.WEIGHT_COPIES) / 2
    monkeypatch.setattr(activation_memory, "available_bytes", lambda: int(weights * between))
    tool, memory = int8.tool_that_fits(onnx_path, specs)
    assert tool == int8.ONNXRUNTIME and memory["estimated_peak_mb"] < weights * between / 2**20
    monkeypatch.setattr(activation_memory, "available_bytes", lambda: 64 * weights)
    assert int8.tool_that_fits(onnx_path, specs)[0] == int8.MODELOPT
    assert [s.exclude_op_types for s in int8.steps_for(int8.ONNXRUNTIME)] == [(), ("MatMul",)]
    assert int8.steps_for(int8.MODELOPT) == int8.WIDENING_STEPS


def test_a_worker_process_runs_the_call_and_its_death_is_a_memory_failure() -> None:
    assert isolation.call("pid", os.getpid, isolate=True) != os.getpid()
    assert isolation.call("pid", os.getpid, isolate=False) == os.getpid()
    with pytest.raises(MemoryBudgetError, match=r"^INT8 quantization \(default\): its worker process was killed") \
            as killed:
        isolation.call("INT8 quantization (default)", os.abort, isolate=True)
    assert killed.value.failure_class == "memory"


def test_large_models_convert_fp16_and_int8_in_a_worker(tmp_path, monkeypatch) -> None:
    """With the threshold at 0 every model counts as large: AutoCast and ModelOpt run in worker processes and
    write the same verified files."""
    monkeypatch.setattr(isolation, "ISOLATE_ABOVE", 0)
    manifest = export("transformer_encoder", tmp_path, model_args=slim_model_args("transformer_encoder"),
                      options=small_options(fp16=True, int8=True, calib_size=8, photos=False))
    assert manifest["fp16"]["isolated"] and manifest["int8"]["isolated"]
    assert manifest["parity"]["onnx_fp16"]["passed"] and manifest["parity"]["onnx_int8"]["passed"]
    assert manifest["int8"]["quantized_nodes"] > 0 and manifest["fp16"]["fp16_nodes"] > 0


def test_simplify_leaves_a_model_over_its_limit_as_exported(tmp_path, monkeypatch) -> None:
    """onnxslim holds ~9 copies of the weights: at SIMPLIFY_BELOW and above the file is checked as exported, and
    the manifest says why."""
    monkeypatch.setattr(onnx_export, "SIMPLIFY_BELOW", 1)
    manifest = export("transformer_encoder", tmp_path, model_args=slim_model_args("transformer_encoder"),
                      options=small_options(photos=False))
    assert manifest["simplify"]["skipped"].startswith("weights of 0.01 GiB, over the 9.31323e-10 GiB onnxslim")
    assert "nodes_after" not in manifest["simplify"] and manifest["parity"]["onnx"]["passed"]
