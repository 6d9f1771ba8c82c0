"""OpenVINO: BF16 parity for every zoo model, the IR written by --openvino, precision and hint choice."""
from __future__ import annotations

import json

import numpy as np
import pytest

import runtimes
import runtimes.engines.openvino_rt
from runtimes.engines import bf16_probe
from exporter.checks.bf16_floor import emulated_report
from exporter.checks.parity import Tolerance
from exporter.checks.references import check_parity, parity_batches, reference_sets
from runtimes.errors import OptionError
from runtimes.engines.openvino_rt import OpenVinoRuntime, cpu_capabilities, split_rows
from runtimes.specs import random_inputs

from .conftest import run_cli_without, small_export_model, small_model
from .exports import TEST_PROFILE, exported, small_options

HAS_BF16 = "BF16" in cpu_capabilities()
# Measured (README): with random weights these three are so sensitive that PyTorch itself, in FP32
# arithmetic with only its inputs, weights and module outputs rounded to bf16, misses the BF16
# tolerance (worst rel 2.7e-2 to 4.4e-2): no BF16 engine can meet it on these weights.
BF16_FORMAT_BOUND = {"resnet50_axial", "resnet50_kv", "resnet50_mhsa"}
# OpenVINO BF16 may add at most this factor to the format's own error. Measured 0.83-1.64: the floor itself
# moves with PyTorch's FP32 summation order on these near-argmax models (resnet50_mhsa 3.9e-2 on one torch
# thread, 5.4e-2 on two, AMD EPYC Zen 4, 2026-11-30), so the bound covers that spread, not just one draw.
ENGINE_OVER_FORMAT = 2.0


@pytest.mark.skipif(not HAS_BF16, reason="OpenVINO lists no BF16 among this CPU's capabilities")
def test_bf16_parity_for_every_zoo_model(model_name, artifacts_root) -> None:
    """OpenVINO BF16 meets the BF16 tolerance on every model where the BF16 format itself can."""
    folder, _ = exported(model_name, artifacts_root)
    model = small_export_model(model_name)
    sets = reference_sets(model, parity_batches(TEST_PROFILE), seed=3, photos=True)
    with runtimes.load(folder, engine="openvino", precision="bf16") as rt:
        assert rt.precision == "bf16" and rt.properties["INFERENCE_PRECISION_HINT"] == "bf16"
        report = check_parity(rt, sets, Tolerance.bf16())
    assert report.worst["max_rel"] > 0  # it really ran in BF16: FP32 would be ~1e-6 of here
    floor = emulated_report(model, sets)
    assert bool(floor) == (model_name not in BF16_FORMAT_BOUND), floor.table()
    if model_name in BF16_FORMAT_BOUND:
        assert not report and report.worst["max_rel"] <= ENGINE_OVER_FORMAT * floor.worst["max_rel"], \
            (report.table(), floor.table())
    else:
        assert report, report.table()


def test_bf16_emulation_rounds_weights_inputs_and_module_outputs() -> None:
    import torch

    from exporter.checks.bf16_floor import bf16_rounded, round_bf16

    assert round_bf16(torch.tensor([1 + 2**-9, 3.0], dtype=torch.float32)).tolist() == [1.0, 3.0]
    assert round_bf16(torch.tensor([7])).dtype == torch.int64  # ids and masks stay as they are
    model = small_model("resnet50_sa")
    with bf16_rounded(model) as emulated:
        weight = emulated.backbone.conv1.weight
        assert torch.equal(weight, weight.to(torch.bfloat16).float()) and emulated is not model
        out = emulated.backbone.conv1(torch.randn(1, 3, 32, 32))
        assert torch.equal(out, out.to(torch.bfloat16).float())
    assert not torch.equal(model.backbone.conv1.weight, model.backbone.conv1.weight.to(torch.bfloat16).float())


@pytest.mark.skipif(not HAS_BF16, reason="OpenVINO lists no BF16 among this CPU's capabilities")
def test_failed_bf16_export_records_the_format_floor_and_auto_runs_fp32(tmp_path) -> None:
    from exporter.pipeline import export

    manifest = export("resnet50_kv", tmp_path, options=small_options(openvino=True, photos=False))
    parity = json.loads((tmp_path / "resnet50_kv" / "parity.json").read_text())
    assert manifest["status"] == "ok" and not parity["openvino_bf16"]["passed"]
    floor = parity["openvino_bf16"]["format_floor"]
    assert floor["passed"] is False and floor["worst"]["max_rel"] > 2e-2
    with runtimes.load(tmp_path / "resnet50_kv", engine="openvino", precision="auto") as rt:
        assert rt.precision == "fp32"


def test_fp32_is_forced_even_where_openvino_defaults_to_bf16(artifacts_root) -> None:
    folder, _ = exported("resnet50_sa", artifacts_root)
    with runtimes.load(folder, engine="openvino") as rt:
        assert rt.precision == "fp32" and rt.properties["INFERENCE_PRECISION_HINT"] == "f32"
    with runtimes.load(folder, engine="openvino", precision="auto") as rt:
        assert rt.precision == ("bf16" if HAS_BF16 and bf16_probe.measured()["bf16_speedup"] >= 1.2 else "fp32")
    with pytest.raises(OptionError, match="no precision 'fp16'.*choose one of"):
        runtimes.load(folder, engine="openvino", precision="fp16")


@pytest.mark.parametrize("capabilities, speedup, bf16_passed, expected", [
    (("FP32", "BF16"), 2.3, None, "bf16"),    # Zen 4-like: BF16 GEMM 2.3x faster, no parity record
    (("FP32", "BF16"), 2.3, True, "bf16"),
    (("FP32", "BF16"), 2.3, False, "fp32"),   # the export's BF16 parity failed
    (("FP32", "BF16"), 0.6, True, "fp32"),    # AVX512-BF16 without AMX on Intel: BF16 is slower
    (("FP32", "BF16"), 1.19, None, "fp32"),   # not clearly faster
    (("FP32", "INT8"), 9.0, None, "fp32"),    # OpenVINO does not list BF16
])
def test_auto_precision_needs_bf16_listed_faster_and_not_failed(monkeypatch, capabilities, speedup, bf16_passed,
                                                                expected) -> None:
    import runtimes.engines.openvino_rt as ov_rt

    monkeypatch.setattr(ov_rt, "cpu_capabilities", lambda: capabilities)
    monkeypatch.setattr(bf16_probe, "measured", lambda: {"bf16_speedup": speedup})
    parity = None if bf16_passed is None else {"openvino_bf16": {"passed": bf16_passed}}
    assert OpenVinoRuntime.resolve_precision("auto", parity) == expected
    assert OpenVinoRuntime.resolve_precision("bf16", parity) == "bf16"  # an explicit choice is kept


@pytest.mark.skipif(not HAS_BF16, reason="OpenVINO lists no BF16 among this CPU's capabilities")
def test_bf16_gemm_probe_measures_both_precisions() -> None:
    result = bf16_probe.gemm_speedup(runtimes.engines.openvino_rt.core(), size=256, repeats=3)
    assert result["size"] == 256 and result["f32_gflops"] > 1 and result["bf16_gflops"] > 1
    assert result["bf16_speedup"] == pytest.approx(result["bf16_gflops"] / result["f32_gflops"], rel=0.02)


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

    from runtimes.bench.cli import main

    folder, _ = exported("c2f_ca", artifacts_root)
    result = CliRunner().invoke(main, [str(folder), "--engine", "ort", "--engine", "openvino:f32", "--engine",
                                       "openvino:auto", "--batch", "1", "--iters", "2", "--warmup", "1",
                                       "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    auto_bf16 = OpenVinoRuntime.resolve_precision("auto") == "bf16"
    assert [(r["engine"], r["precision"]) for r in report["results"]] == [
        ("ort", "fp32"), ("openvino", "fp32"), ("openvino:bf16", "bf16") if auto_bf16 else ("openvino", "fp32")]
    assert isinstance(report["machine"]["isa"], list) and "openvino" in report["machine"]
    assert "BF16" in report["machine"]["openvino_cpu_capabilities"] or not HAS_BF16
    if HAS_BF16:  # the BF16 ceiling of this CPU is reported beside its ISA flags
        assert report["machine"]["openvino_bf16_gemm"]["bf16_speedup"] > 0
        assert auto_bf16 == (report["machine"]["openvino_bf16_gemm"]["bf16_speedup"] >= 1.2)
    bad = CliRunner().invoke(main, [str(folder), "--engine", "ort:bf16"])
    assert bad.exit_code == 2 and "no precision 'bf16'" in bad.output


def test_missing_openvino_fails_export_before_any_work(tmp_path) -> None:
    result = run_cli_without("openvino", "exporter.cli", ["c2f_ca", "--num-classes", "10", "--openvino",
                                                          "--out", str(tmp_path / "out")])
    assert result.returncode == 2, result.stderr
    assert "pip install 'attn-export[openvino]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
