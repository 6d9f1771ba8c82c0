"""OpenVINO: BF16 parity for every zoo model, the IR written by --openvino, precision and hint choice."""
from __future__ import annotations

import json

import numpy as np
import pytest

import runtimes
from exporter.parity import Tolerance
from exporter.pipeline import check_parity, parity_batches, reference_sets
from runtimes.errors import OptionError
from runtimes.openvino_rt import OpenVinoRuntime, cpu_capabilities, split_rows
from runtimes.specs import random_inputs

from .conftest import small_model
from .exports import TEST_PROFILE, exported, small_options

HAS_BF16 = "BF16" in cpu_capabilities()
# Measured (README): with random weights the layer4 attention of these three sees activations up to
# ~3.6e4 and softmax logits up to ~4.5e3, where BF16's 8-bit mantissa is too coarse; OpenVINO
# offers no per-node FP32 override from Python. Strict: the mark fails the run if one starts passing.
BF16_OUT_OF_TOLERANCE = {
    "resnet50_axial": "worst rel 2.3e-02 > 2e-02 (cosine 0.99978)",
    "resnet50_kv": "worst rel 3.7e-02 > 2e-02 (cosine 0.99962)",
    "resnet50_mhsa": "worst rel 6.5e-02 > 2e-02, cosine 0.99866 < 0.999",
}


@pytest.mark.skipif(not HAS_BF16, reason="OpenVINO lists no BF16 among this CPU's capabilities")
def test_bf16_parity_for_every_zoo_model(model_name, artifacts_root, request) -> None:
    if model_name in BF16_OUT_OF_TOLERANCE:
        request.applymarker(pytest.mark.xfail(strict=True, reason=BF16_OUT_OF_TOLERANCE[model_name]))
    folder, _ = exported(model_name, artifacts_root)
    sets = reference_sets(small_model(model_name), parity_batches(TEST_PROFILE), seed=3, photos=True)
    with runtimes.load(folder, engine="openvino", precision="bf16") as rt:
        assert rt.precision == "bf16" and rt.properties["INFERENCE_PRECISION_HINT"] == "bf16"
        report = check_parity(rt, sets, Tolerance.bf16())
    assert report, report.table()
    assert report.worst["max_rel"] > 0  # it really ran in BF16: FP32 would be ~1e-6 of here


def test_fp32_is_forced_even_where_openvino_defaults_to_bf16(artifacts_root) -> None:
    folder, _ = exported("resnet50_sa", artifacts_root)
    with runtimes.load(folder, engine="openvino") as rt:
        assert rt.precision == "fp32" and rt.properties["INFERENCE_PRECISION_HINT"] == "f32"
    with runtimes.load(folder, engine="openvino", precision="auto") as rt:
        assert rt.precision == ("bf16" if HAS_BF16 else "fp32")
    with pytest.raises(OptionError, match="no precision 'fp16'.*choose one of"):
        runtimes.load(folder, engine="openvino", precision="fp16")


def test_throughput_hint_splits_the_batch_and_gives_the_same_answer(artifacts_root) -> None:
    folder, _ = exported("resnet50_sa", artifacts_root)
    arrays = random_inputs(small_model("resnet50_sa").input_specs, 5, seed=2)
    with runtimes.load(folder, engine="openvino", hint="latency") as lat, \
            runtimes.load(folder, engine="openvino", hint="throughput") as thr:
        assert lat.properties["PERFORMANCE_HINT"] == "LATENCY" and thr.properties["PERFORMANCE_HINT"] == "THROUGHPUT"
        np.testing.assert_allclose(thr(arrays)["logits"], lat(arrays)["logits"], rtol=1e-5, atol=1e-6)
    assert OpenVinoRuntime(folder / "model.onnx", max_batch=4).performance_hint() == "LATENCY"
    assert OpenVinoRuntime(folder / "model.onnx", max_batch=64).performance_hint() == "THROUGHPUT"


def test_split_rows() -> None:
    assert split_rows(5, 2) == [slice(0, 2), slice(2, 5)]
    assert split_rows(1, 4) == [slice(0, 1)]  # never an empty slice
    assert [s.stop - s.start for s in split_rows(32, 3)] == [11, 10, 11]
    assert split_rows(8, 1) == [slice(0, 8)]


def test_export_openvino_ir_has_its_own_parity_rows(tmp_path) -> None:
    from exporter.pipeline import export

    manifest = export("c2f_ca", tmp_path, options=small_options(openvino=True))
    folder = tmp_path / "c2f_ca"
    assert manifest["artifacts"]["openvino"] == "model.xml" and (folder / "model.bin").stat().st_size > 1e6
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["openvino"]["passed"] and parity["openvino"]["worst"]["max_rel"] <= 1e-4
    assert parity["openvino"]["candidate"].endswith("model.xml")
    if HAS_BF16:
        assert parity["openvino_bf16"]["passed"] and parity["openvino_bf16"]["tolerance"]["max_rel"] == 2e-2
    with runtimes.load(folder, engine="openvino") as rt:
        assert rt.path.name == "model.xml"  # the table prefers the IR when the folder has one
    assert not list(folder.glob(".openvino.*"))


def test_attn_bench_reports_precision_and_isa(artifacts_root, tmp_path) -> None:
    from click.testing import CliRunner

    from runtimes.cli import main

    folder, _ = exported("c2f_ca", artifacts_root)
    result = CliRunner().invoke(main, [str(folder), "--engine", "ort", "--engine", "openvino:f32", "--engine",
                                       "openvino:auto", "--batch", "1", "--iters", "2", "--warmup", "1",
                                       "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert [(r["engine"], r["precision"]) for r in report["results"]] == [
        ("ort", "fp32"), ("openvino", "fp32"), ("openvino:bf16", "bf16") if HAS_BF16 else ("openvino", "fp32")]
    assert isinstance(report["machine"]["isa"], list) and "openvino" in report["machine"]
    assert "BF16" in report["machine"]["openvino_cpu_capabilities"] or not HAS_BF16
    bad = CliRunner().invoke(main, [str(folder), "--engine", "ort:bf16"])
    assert bad.exit_code == 2 and "no precision 'bf16'" in bad.output
