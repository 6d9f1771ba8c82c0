"""INT8: ModelOpt Q/DQ files for one model of each family, parity against PyTorch FP32 at the INT8
tolerances, the widening path, calibration data, and the engines that run the file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import runtimes
from exporter.formats import int8
from exporter.errors import ParityError
from exporter.checks.parity import Tolerance
from exporter.pipeline import export
from exporter.checks.references import check_file_parity, check_parity, parity_batches, reference_sets
from runtimes.errors import ArtifactError

from .conftest import FAMILIES, QUARTER_C2F_CA, small_export_model, small_model
from .exports import TEST_PROFILE, exported, small_options

_QUANTIZED: dict[str, tuple] = {}


def quantized(name: str, root) -> tuple:
    """(folder, int8 path, info, report, sets) for ``name``: its session export quantized once."""
    if name not in _QUANTIZED:
        folder, _ = exported(name, root)
        sets = reference_sets(small_export_model(name), parity_batches(TEST_PROFILE), seed=0, photos=True)
        calib = int8.calibration_data(small_model(name).input_specs, seed=7, size=8)
        out = root / "int8-steps" / f"{name}.int8.onnx"  # beside, not over, the export's own INT8 file
        out.parent.mkdir(exist_ok=True)
        info, report = int8.quantize_until_parity(
            folder / "model.onnx", out, calib, "max", 17,
            lambda path: check_file_parity(path, "ort", sets, Tolerance.int8()))
        _QUANTIZED[name] = (folder, out, info, report, sets)
    return _QUANTIZED[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_int8_parity_per_family(name, artifacts_root) -> None:
    _, out, info, report, _ = quantized(name, artifacts_root)
    assert report, report.table()
    model = onnx.load(str(out), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19 == info["opset"]
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == \
        [onnx.TensorProto.FLOAT if s.dtype == "float32" else onnx.TensorProto.INT64
         for s in small_model(name).input_specs]  # FP32 (and int64) I/O, Q/DQ inside
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert 0 < info["quantized_nodes"] < info["total_nodes"] and info["float_op_types"]
    assert report.worst["min_cosine"] >= 0.99 and report.worst["max_rel"] > 1e-4  # really quantized


def test_openvino_runs_the_int8_file(artifacts_root) -> None:
    folder, out, _, _, sets = quantized("resnet50_sa", artifacts_root)
    with runtimes.load(out, engine="openvino", precision="int8") as ov:
        assert ov.precision == "int8"
        report = check_parity(ov, sets, Tolerance.int8())
    assert report, report.table()


def test_widening_keeps_attention_in_float_when_asked(artifacts_root, tmp_path) -> None:
    """A check that also refuses quantized MatMuls (as a model whose attention cannot take INT8):
    the default step quantizes the encoder's MatMuls and fails it, the next keeps them in float and passes."""
    folder, _ = exported("transformer_encoder", artifacts_root)
    sets = reference_sets(small_export_model("transformer_encoder"), [1, 2], seed=0, photos=False)
    calib = int8.calibration_data(small_model("transformer_encoder").input_specs, seed=7, size=4)
    seen = []

    def check(path):
        report = check_file_parity(path, "ort", sets, Tolerance.int8())
        seen.append(int8.quantization_report(onnx.load(str(path)))["quantized_op_types"].get("MatMul", 0))
        return report if seen[-1] == 0 else None

    info, report = int8.quantize_until_parity(folder / "model.onnx", tmp_path / "m.int8.onnx", calib, "max", 17,
                                              check)
    assert seen[0] > 0 and seen[1] == 0 and len(seen) == 2
    assert info["step"] == "attention in float" and info["excluded_op_types"] == ["MatMul"]
    assert report and "MatMul" in info["float_op_types"]


def test_quantize_leaves_the_file_it_reads_untouched(artifacts_root, tmp_path) -> None:
    """ModelOpt's quantize rewrites the file it is given (shape inference in place): a reader of that file
    saw it 0 bytes long meanwhile. It is given a copy; the export's own file keeps its bytes and mtime."""
    import hashlib
    import os
    import shutil

    folder, _ = exported("c2f_ca", artifacts_root)
    source = Path(shutil.copyfile(folder / "model.onnx", tmp_path / "model.onnx"))
    os.utime(source, ns=(0, 0))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    calib = int8.calibration_data(small_model("c2f_ca").input_specs, seed=1, size=2)
    info = int8.quantize(source, tmp_path / "model.int8.onnx", calib, "max", 17, int8.WIDENING_STEPS[0])
    assert info["quantized_nodes"] > 0 and (tmp_path / "model.int8.onnx").stat().st_size > 0
    assert source.stat().st_mtime_ns == 0 and hashlib.sha256(source.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx", "model.onnx"]  # no work files left


def test_calibration_data_sources(tmp_path) -> None:
    photos = tmp_path / "mine"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((50, 80, 3), 40 * i, np.uint8)).save(photos / f"{i}.png")
    cross = small_model("vgg16_cross").input_specs
    calib = int8.calibration_data(cross, seed=1, size=5, folder=str(photos))
    assert calib.samples == 5 and calib.arrays["image"].shape == (5, 3, 224, 224)
    assert calib.sources == {"image": f"3 photos from {photos} + 2 seeded noise images", "context": "seeded random"}
    grey = (np.full(3, 40 / 255, np.float32) - np.array([0.485, 0.456, 0.406], np.float32)) / \
        np.array([0.229, 0.224, 0.225], np.float32)
    np.testing.assert_allclose(calib.arrays["image"][1, :, 0, 0], grey, rtol=1e-5)  # preprocessed like parity
    bundled = int8.calibration_data(small_model("c2f_ca").input_specs, seed=1, size=3)
    assert bundled.sources == {"image": "3 bundled sample photos"} and bundled.samples == 3
    tokens = int8.calibration_data(small_model("transformer_encoder").input_specs, seed=1, size=4)
    assert set(tokens.sources.values()) == {"seeded random"} and tokens.arrays["tokens"].shape[0] == 4
    sub = photos / "class_b"  # class subfolders count: the first 3 and one more, seeded, when size < files
    sub.mkdir()
    Image.fromarray(np.full((50, 80, 3), 200, np.uint8)).save(sub / "x.png")
    assert int8.calibration_data(cross, seed=1, size=4, folder=str(photos)).sources["image"] == \
        f"4 photos from {photos}"
    assert len(int8.spread(sorted(photos.rglob("*.png")), 2, seed=1)) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(ArtifactError, match="no images"):
        int8.calibration_data(cross, seed=1, size=2, folder=str(empty))


def test_export_int8_writes_manifest_and_fails_honestly(artifacts_root, tmp_path) -> None:
    """resnet50_sa: its random-weight logits are not tied (c2f_ca's are ~1e-6 apart at 10 classes, so
    its INT8 top-1 depends on the calibration draw)."""
    folder, manifest = exported("resnet50_sa", artifacts_root)  # --int8 --calib-size 8
    assert manifest["artifacts"]["onnx_int8"] == "model.int8.onnx" and manifest["status"] == "ok"
    assert manifest["int8"]["samples"] == 8 and manifest["int8"]["method"] == "max"
    assert manifest["int8"]["calibration"] == {"image": "5 bundled sample photos + 3 seeded noise images"}
    assert manifest["parity"]["onnx_int8"]["passed"]
    with runtimes.load(folder, engine="openvino", precision="int8") as rt:
        assert rt.path.name == "model.int8.onnx"
    with pytest.raises(ParityError, match="INT8 ONNX disagrees with PyTorch"):  # a cosine of 1 is unreachable
        export("c2f_ca", tmp_path / "bad", model_args=QUARTER_C2F_CA, options=small_options(
            int8=True, calib_size=2, photos=False,
            int8_tolerance=Tolerance(max_rel=None, min_cosine=1.0, min_top1=1.0)))
    bad = json.loads((tmp_path / "bad" / "c2f_ca" / "manifest.json").read_text())
    assert bad["status"] == "failed" and bad["int8"]["step"] == int8.WIDENING_STEPS[-1].name
    assert [t["step"] for t in bad["int8"]["tries"]] == [step.name for step in int8.WIDENING_STEPS]
    with pytest.raises(ArtifactError, match="status 'failed'"):
        runtimes.load(tmp_path / "bad" / "c2f_ca", engine="ort", precision="int8")


def test_int8_top1_is_pooled_over_all_samples() -> None:
    from exporter.checks.parity import ParityReport

    report = ParityReport("int8", Tolerance.int8())
    ref, flipped = np.array([[1.0, 0.9]]), np.array([[0.9, 1.0]])
    report.add("random b=1", {"logits": ref}, {"logits": flipped})  # the one sample disagrees: 0 %
    big = np.tile(np.array([[1.0, 0.5]]), (32, 1))
    report.add("random b=32", {"logits": big}, {"logits": big})
    assert report.pooled_top1 == pytest.approx(32 / 33) and report and report.worst["min_top1"] == report.pooled_top1
    report.add("random b=2", {"logits": np.tile(ref, (2, 1))}, {"logits": np.tile(flipped, (2, 1))})
    assert report.pooled_top1 == pytest.approx(32 / 35) and not report  # 91 % < 95 %


@pytest.mark.parametrize("name", ["c2f_ca", "transformer_encoder"])
def test_onnxruntime_s_quantizer_writes_a_per_channel_qdq_file_that_passes_parity(name, artifacts_root, tmp_path,
                                                                                 monkeypatch) -> None:
    """The quantizer for models ModelOpt cannot hold in memory (here: memory for 6 copies of the weights, not 9):
    a fresh worker process (ModelOpt, run before in this one, patches onnxruntime's calibrators), Q/DQ on the
    inputs of Conv, Gemm and MatMul, weights per channel, the FP32 file's opset kept, INT8 parity."""
    from exporter import onnx_files
    from exporter.formats import activation_memory

    folder, _ = exported(name, artifacts_root)
    sets = reference_sets(small_export_model(name), parity_batches(TEST_PROFILE), seed=0, photos=True)
    calib = int8.calibration_data(small_model(name).input_specs, seed=7, size=8)
    weights = onnx_files.total_bytes(folder / "model.onnx")
    monkeypatch.setattr(activation_memory, "activation_bytes_per_sample", lambda *a: 0)
    monkeypatch.setattr(activation_memory, "available_bytes", lambda: 6 * weights)
    out = tmp_path / "model.int8.onnx"
    info, report = int8.quantize_until_parity(folder / "model.onnx", out, calib, "max", 17,
                                              lambda path: check_file_parity(path, "ort", sets, Tolerance.int8()))
    model = onnx.load(str(out))
    assert info["tool"] == "onnxruntime" and info["isolated"] and info["opset"] == 17 == int8.default_opset(model)
    assert set(info["quantized_op_types"]) <= {"Conv", "Gemm", "MatMul"} and info["quantized_nodes"] > 0
    weights_of = {i.name: i for i in model.graph.initializer}
    scales = [list(weights_of[n.input[1]].dims) for n in model.graph.node if n.op_type == "DequantizeLinear"
              and n.input[0] in weights_of and weights_of[n.input[0]].data_type == onnx.TensorProto.INT8
              and len(weights_of[n.input[0]].dims) > 1]  # the weights' (not the biases') dequantization
    assert scales and all(len(dims) == 1 and dims[0] > 1 for dims in scales), scales  # one scale per channel
    assert report.worst["min_cosine"] >= Tolerance.int8().min_cosine, report.table()
    assert report.worst["max_rel"] > 1e-4  # really quantized
