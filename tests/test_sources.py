"""Real backbones by name (timm:, torchvision:), their preprocessing carried to every image decoder, the
exporter fallback, opsets 13-24, --keep-going and no traceback (issue 30). Models are built small through
--model-arg (depth=2, num_classes=10) at their real input size; the full sweep is scripts/coverage.py."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import runtimes
from exporter import cli
from exporter.formats import fp16, ort_format
from exporter.checks import references
from exporter.checks.parity import Tolerance
from exporter.errors import tool_failure
from exporter.sources.model_hubs import build_timm, build_torchvision, hub_reference
from exporter.sources.model_source import default_name
from runtimes import manifest as mf
from runtimes.errors import ArtifactError
from runtimes.bench.cli import main as bench_main
from runtimes.images import Preprocess, load_batch, sample_photo_files

from .exports import TEST_PROFILE
from .run_shared import build_once

HERE = Path(__file__).parent
PROFILE = f"{TEST_PROFILE.min}:{TEST_PROFILE.opt}:{TEST_PROFILE.max}"
FALLBACK = f"{HERE}/user_models/fallback.py"
CONTEXT_INPUTS = ["--input", "query:batch,8,16", "--input", "context:batch,seq,16", "--max-dim", "seq=32"]
# six small timm and torchvision models, each at its own input size and preprocessing (no --input)
HUB_MODELS = {
    "vit_tiny": ["timm:vit_tiny_patch16_224", "--model-arg", "depth=2"],
    "eva02_tiny": ["timm:eva02_tiny_patch14_224", "--model-arg", "depth=2"],  # RoPE: only dynamo exports it
    "mobilevit_xxs": ["timm:mobilevit_xxs"],  # 256 px, bicubic, crop 0.9
    "efficientformerv2_s0": ["timm:efficientformerv2_s0"],
    "mobilenet_v3_small": ["torchvision:mobilenet_v3_small"],  # squeeze-excitation gates
    "efficientnet_b0": ["torchvision:efficientnet_b0"],
}


def run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, args)
    return result.exit_code, result.output


def hub_export(key: str, root: Path) -> Path:
    """``HUB_MODELS[key]`` exported once per run (FP32 ONNX, 10 classes, batch 1:2:4) at opset 17, like the shared
    zoo exports; the other CLI tests here run at the default, 18."""

    def export_it() -> None:
        code, output = run_cli([*HUB_MODELS[key], "--model-arg", "num_classes=10", "--name", key, "--batch",
                                PROFILE, "--opset", "17", "--out", str(root)])
        assert code == 0, output

    return build_once(root / f"{key}.exported", export_it, lambda: root / key)


@pytest.mark.parametrize("key", list(HUB_MODELS))
def test_hub_model_exports_by_name_without_input(key, artifacts_root) -> None:
    folder = hub_export(key, artifacts_root)
    manifest = mf.read_manifest(folder)
    spec = manifest["inputs"][0]
    size = manifest["preprocess"]["size"]
    assert spec["shape"] == ["batch", 3, *size] and len(manifest["inputs"]) == 1
    assert manifest["parity"]["onnx"]["passed"] and manifest["parity"]["onnx"]["worst"]["max_rel"] <= 1e-4
    assert "input_independent_outputs" not in manifest  # the pass compared outputs that move with the input
    assert manifest["outputs"][0]["shape"] == ["batch", 10]
    rows = json.loads((folder / "parity.json").read_text())["onnx"]["rows"]
    assert any(r["inputs"].startswith("photos") for r in rows)  # real photos at the model's own size


def test_timm_preprocessing_is_recorded_and_equals_timms_transform(artifacts_root) -> None:
    """mobilevit_xxs: 256 px, bicubic, crop 0.9 recorded; our numpy/Pillow pipeline equals timm's own eval
    transform (torchvision ops) on the bundled photos."""
    from timm.data import create_transform, resolve_data_config
    import timm

    manifest = mf.read_manifest(hub_export("mobilevit_xxs", artifacts_root))
    record = manifest["preprocess"]
    assert record["size"] == [256, 256] and record["interpolation"] == "bicubic" and record["crop_pct"] == 0.9
    assert record["resize"] == "shorter side 284"
    ours = load_batch(sample_photo_files(), Preprocess.from_json(record))
    transform = create_transform(**resolve_data_config({}, model=timm.create_model("mobilevit_xxs")))
    theirs = np.stack([transform(Image.open(p).convert("RGB")).numpy() for p in sample_photo_files()])
    assert ours.shape == theirs.shape == (5, 3, 256, 256)
    assert np.abs(ours - theirs).max() < 1e-5
    plain = load_batch(sample_photo_files(), Preprocess.default(256, 256))
    assert np.abs(plain - theirs).max() > 0.5  # the recorded preprocessing is not the default resize


def test_attn_bench_data_uses_the_recorded_preprocessing(artifacts_root, tmp_path) -> None:
    """attn-bench --data on mobilevit_xxs: the top-1 of an independent count (PyTorch with the exported weights,
    fed through timm's own transform) — which the default bilinear resize does not reproduce."""
    from timm.data import create_transform, resolve_data_config
    import timm

    folder = hub_export("mobilevit_xxs", artifacts_root)
    files = sample_photo_files()
    for i, photo in enumerate(files):  # five photos, each labelled with a class
        (tmp_path / "data" / str(i)).mkdir(parents=True)
        (tmp_path / "data" / str(i) / photo.name).write_bytes(photo.read_bytes())
    result = CliRunner().invoke(bench_main, [str(folder), "--data", str(tmp_path / "data"), "--batch", "1",
                                             "--seconds", "0.2", "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    measured = json.loads((tmp_path / "bench.json").read_text())["results"][0]["accuracy"]
    model = timm.create_model("mobilevit_xxs", num_classes=10)
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    transform = create_transform(**resolve_data_config({}, model=model))
    labelled = sorted((p for p in (tmp_path / "data").rglob("*.jpg")), key=lambda p: p.parent.name)
    with torch.inference_mode():
        logits = model.eval()(torch.stack([transform(Image.open(p).convert("RGB")) for p in labelled])).numpy()
    labels = np.array([int(p.parent.name) for p in labelled])
    assert measured["top1"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    with runtimes.load(folder) as rt:
        spec = rt.input_specs[0]
        assert rt.image_preprocess(spec) == Preprocess.from_json(mf.read_manifest(folder)["preprocess"])
        recorded = rt({spec.name: load_batch(labelled, rt.image_preprocess(spec))})["output0"]
        plain = rt({spec.name: load_batch(labelled, Preprocess.default(256, 256))})["output0"]
    np.testing.assert_allclose(recorded, logits, rtol=1e-3, atol=1e-4)
    assert np.abs(plain - logits).max() > 10 * np.abs(recorded - logits).max()


def test_torchvision_size_and_preprocessing_come_from_its_weights() -> None:
    """efficientnet_b1's DEFAULT weights (IMAGENET1K_V2) are evaluated at 240 px after a 255 px resize: no --input
    needed, and nothing is downloaded (the weights' metadata is in torchvision)."""
    source = build_torchvision("efficientnet_b1", {"num_classes": 10})
    assert source.input_specs[0].shape == ("batch", 3, 240, 240) and source.input_specs[0].name == "x"
    assert source.preprocess.interpolation == "bilinear" and source.preprocess.shorter_side == 255
    vit = build_timm("vit_tiny_patch16_224", {"depth": 1, "img_size": 160})  # img_size overrides the config
    assert vit.input_specs[0].shape == ("batch", 3, 160, 160) and vit.preprocess.height == 160


def test_prefixes_win_and_name_the_folder() -> None:
    assert hub_reference("timm:vit_tiny_patch16_224") == ("timm", "vit_tiny_patch16_224")
    assert hub_reference("torchvision:swin_t") == ("torchvision", "swin_t")
    assert hub_reference("timm.models:create_model") is None  # a dotted module path stays a callable
    assert default_name("timm:vit_tiny_patch16_224") == "vit_tiny_patch16_224"


@pytest.mark.parametrize("args, phrase", [
    (["timm:no_such_model_xyz"], "timm has no model 'no_such_model_xyz'"),
    (["torchvision:no_such_model"], "torchvision has no model 'no_such_model'"),
    (["timm:vit_tiny_patch16_224", "--model-arg", "depth='two'"], "timm.create_model(model_name="),
    (["timm:vit_tiny_patch16_224", "--weights", "missing.safetensors"], "weights file missing.safetensors does not"),
])
def test_hub_model_errors_are_one_line_exit_2(args, phrase, tmp_path) -> None:
    code, output = run_cli([*args, "--out", str(tmp_path)])
    assert code == 2 and phrase in output and "Traceback" not in output, output


def test_safetensors_weights_load_offline(tmp_path) -> None:
    from safetensors.torch import save_file

    model = build_timm("vit_tiny_patch16_224", {"depth": 1, "num_classes": 10}).module
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "trained.safetensors"))
    code, output = run_cli(["timm:vit_tiny_patch16_224", "--model-arg", "depth=1", "--model-arg", "num_classes=10",
                            "--weights", str(tmp_path / "trained.safetensors"), "--batch", PROFILE, "--no-photos",
                            "--out", str(tmp_path / "out")])
    assert code == 0, output
    written = torch.load(tmp_path / "out" / "vit_tiny_patch16_224" / "weights.pt", weights_only=True)
    assert all(torch.equal(written[k], state[k]) for k in state)


def test_dynamo_only_model_passes_at_17_through_the_converter_and_at_18(artifacts_root, tmp_path) -> None:
    """EVA-02 (RoPE; its SDPA gets a tensor is_causal when traced): TorchScript fails, dynamo is recorded."""
    manifest = mf.read_manifest(hub_export("eva02_tiny", artifacts_root))
    assert manifest["opset"] == 17 and manifest["exporter"] == "dynamo"
    first, second = manifest["exporter_attempts"]
    assert first["exporter"] == "torchscript" and not first["passed"] and first["failed_at"] == "export"
    assert "is_causal" in first["reason"]
    assert second == {"exporter": "dynamo", "passed": True, "written_at": 18, "converted_to": 17,
                      "converter": "onnx.version_converter"}
    code, output = run_cli([f"{FALLBACK}:GroupedQueryAttention", "--input", "tokens:batch,8,16", "--batch", PROFILE,
                            "--opset", "18", "--out", str(tmp_path)])
    assert code == 0, output
    gqa = mf.read_manifest(tmp_path / "GroupedQueryAttention")
    assert gqa["exporter_attempts"] == [{"exporter": "dynamo", "passed": True, "written_at": 18}]


def test_baked_size_is_discarded_on_parity_and_dynamo_recorded(tmp_path) -> None:
    """MultiheadAttention over a second input with a dynamic seq: TorchScript bakes seq into a Reshape, the
    engine raises at another seq (a failed row, not a crash), the next exporter passes."""
    for opset in ("17", "18"):
        code, output = run_cli([f"{FALLBACK}:ContextAttention", *CONTEXT_INPUTS, "--batch", PROFILE, "--opset", opset,
                                "--name", f"ctx{opset}", "--out", str(tmp_path)])
        assert code == 0, output
        manifest = mf.read_manifest(tmp_path / f"ctx{opset}")
        assert manifest["exporter"] == "dynamo" and manifest["opset"] == int(opset)
        model = onnx.load(str(tmp_path / f"ctx{opset}" / "model.onnx"))
        assert [d.dim_param for d in model.graph.input[1].type.tensor_type.shape.dim[:2]] == ["batch", "seq"]
    attempts = mf.read_manifest(tmp_path / "ctx17")["exporter_attempts"]
    assert [(a["exporter"], a["passed"]) for a in attempts] == [("torchscript", False), ("dynamo", True)]
    assert attempts[0]["failed_at"] == "parity" and "Reshape" in attempts[0]["reason"]


def test_engine_error_during_parity_is_a_failed_row_and_exit_3(tmp_path) -> None:
    code, output = run_cli([f"{FALLBACK}:ContextAttention", *CONTEXT_INPUTS, "--batch", PROFILE, "--exporter",
                            "torchscript", "--out", str(tmp_path)])
    assert code == 3 and "Traceback" not in output, output
    assert "the engine raised during the parity check" in output.splitlines()[-1]
    report = json.loads((tmp_path / "ContextAttention" / "parity.json").read_text())["onnx"]
    failed = [r for r in report["rows"] if r["error"]]
    assert len(failed) == 1 and "seq=" in failed[0]["inputs"] and failed[0]["max_abs"] == float("inf")
    assert re.search(r"Reshape node.*requested shape.*inputs query \[2, 8, 16\], context \[2, \d+, 16\]",
                     failed[0]["error"])
    assert all(r["error"] is None and r["max_rel"] < 1e-4 for r in report["rows"] if r not in failed)
    failed_manifest = mf.read_manifest(tmp_path / "ContextAttention", require_ok=False)
    assert failed_manifest["status"] == "failed" and failed_manifest["failure_class"] == "parity"


@pytest.mark.parametrize("opset", [21, 22, 23, 24])
def test_opsets_above_20_are_written_exactly(opset, tmp_path) -> None:
    """vit_tiny at 21-24 (dynamo only); 23 and 24 hold ONNX Attention for SDPA and onnxruntime runs it."""
    code, output = run_cli(["timm:vit_tiny_patch16_224", "--model-arg", "depth=1", "--model-arg", "num_classes=10",
                            "--opset", str(opset), "--batch", PROFILE, "--no-photos", "--out", str(tmp_path)])
    assert code == 0, output
    manifest = mf.read_manifest(tmp_path / "vit_tiny_patch16_224")
    model = onnx.load(str(tmp_path / "vit_tiny_patch16_224" / "model.onnx"))
    assert manifest["opset"] == opset and {o.domain: o.version for o in model.opset_import}[""] == opset
    assert manifest["attention_ops"] == ({"Attention": 1} if opset >= 23 else {})
    assert manifest["parity"]["onnx"]["worst"]["max_rel"] <= 1e-4


def test_torchscript_above_20_is_refused(tmp_path) -> None:
    code, output = run_cli(["c2f_ca", "--opset", "21", "--exporter", "torchscript", "--out", str(tmp_path)])
    assert code == 2 and "TorchScript exporter writes opsets 13..20, not 21" in output


def _crash(*args, **kwargs):
    raise RuntimeError("converter exploded\nsecond line")


def test_keep_going_publishes_what_passed_and_records_the_crash(tmp_path, monkeypatch) -> None:
    """A third-party crash in the .ort stage: without --keep-going one line, exit 4, class tool crash; with it
    the FP16 file is published, the failure recorded, exit 3."""
    monkeypatch.setattr(ort_format, "write_ort", _crash)
    args = [f"{FALLBACK}:GroupedQueryAttention", "--input", "tokens:batch,8,16", "--batch", PROFILE, "--opset", "18",
            "--ort-format", "--fp16"]
    code, output = run_cli([*args, "--out", str(tmp_path / "plain")])
    assert code == 4 and "Traceback" not in output
    assert output.splitlines()[-1] == ("attn-export: error: ort mobile format (.ort) + parity failed: RuntimeError: "
                                       "converter exploded")
    assert mf.read_manifest(tmp_path / "plain" / "GroupedQueryAttention", require_ok=False)["failure_class"] == \
        "tool crash"
    code, output = run_cli([*args, "--keep-going", "--out", str(tmp_path / "kept")])
    assert code == 3, output
    folder = tmp_path / "kept" / "GroupedQueryAttention"
    manifest = mf.read_manifest(folder)  # status ok: what is published passed
    assert manifest["failures"] == [{"stage": "ort mobile format (.ort) + parity", "class": "tool crash",
                                     "reason": "ort mobile format (.ort) + parity failed: RuntimeError: converter "
                                               "exploded"}]
    assert manifest["parity"]["onnx_fp16"]["passed"] and (folder / "model.fp16.onnx").is_file()
    assert "onnx_ort" not in manifest["artifacts"] and not (folder / "model.ort").exists()
    assert runtimes.verify(folder)


def test_unopenable_file_of_our_own_stage_is_a_failed_step_not_exit_2(tmp_path, monkeypatch) -> None:
    """AutoCast writing a file onnxruntime refuses: every widening step fails its check, the stage fails with
    exit 3 naming the engine's refusal; never 'corrupt file, re-run'."""

    def unopenable(onnx_path, out_path, *args, **kwargs):
        out_path.write_bytes(b"\x08\x07not an onnx model")
        return {"step": args[2].name, "fp16_nodes": 0, "fp32_nodes": 0, "fp32_reasons": {}, "fp32_node_names": []}

    monkeypatch.setattr(fp16, "convert", unopenable)
    code, output = run_cli([f"{FALLBACK}:GroupedQueryAttention", "--input", "tokens:batch,8,16", "--batch", PROFILE,
                            "--opset", "18", "--fp16", "--out", str(tmp_path)])
    assert code == 3 and "Traceback" not in output, output
    assert "ort cannot open the file" in output.splitlines()[-1] and "re-run" not in output.splitlines()[-1]
    failed = mf.read_manifest(tmp_path / "GroupedQueryAttention", require_ok=False)
    assert [t["step"] for t in failed["fp16"]["tries"]] == [s.name for s in fp16.WIDENING_STEPS]
    assert all("ort cannot open the file" in t["error"] for t in failed["fp16"]["tries"])  # each try says why
    assert failed["failure_class"] == "parity"


def test_an_engine_that_dies_opening_a_file_is_caught_in_a_child_process(tmp_path) -> None:
    """The probe opens a file as the parity check would, in a child: a death by signal comes back as a one-line
    EngineCrash naming the signal; a file that opens, a child that raises and a child that outlives the timeout
    give None (the in-process open then decides)."""
    from onnx import TensorProto, helper

    from exporter.checks.crash_probe import OPEN_PROBE, crash_on_open

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = tmp_path / "model.fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    with runtimes.load(path, engine="ort") as rt:  # the file opens, so the probe's None means it opened there too
        assert rt.input_specs[0].shape == ("batch", 4)
    assert crash_on_open(path, "ort", "cpu") is None
    segfault = OPEN_PROBE.replace("os._exit(0)", "import signal; os.kill(os.getpid(), signal.SIGSEGV)")
    crash = crash_on_open(path, "ort", "cpu", probe=segfault)
    assert crash is not None and str(crash).startswith("it died of SIGSEGV opening the file"), crash
    assert crash_on_open(path, "ort", "cpu", probe="raise SystemExit(1)") is None
    assert crash_on_open(path, "ort", "cpu", probe="import time; time.sleep(30)", timeout_s=1.0) is None


def test_a_widening_step_whose_file_crashes_the_engine_fails_and_the_next_one_is_tried(tmp_path, monkeypatch) -> None:
    """onnxruntime 1.31 segfaulted creating a session for AutoCast's first FP16 files of torchvision's ViT-B/16
    (its NchwcTransformer) and took the export down. Now the first step's file "crashes" (the probe says so):
    that step fails with the signal in its try, the next step is built and passes, and the export exits 0."""
    from exporter import context
    from exporter.checks.crash_probe import EngineCrash

    probed: list[str] = []

    def first_fp16_file_crashes(path, engine, device):
        probed.append(path.name)
        return EngineCrash("it died of SIGSEGV opening the file") if probed.count("model.fp16.onnx") == 1 else None

    monkeypatch.setattr(context, "crash_on_open", first_fp16_file_crashes)
    code, output = run_cli([f"{FALLBACK}:GroupedQueryAttention", "--input", "tokens:batch,8,16", "--batch", PROFILE,
                            "--opset", "18", "--fp16", "--out", str(tmp_path)])
    assert code == 0 and "Traceback" not in output, output
    tries = mf.read_manifest(tmp_path / "GroupedQueryAttention")["fp16"]["tries"]
    assert not tries[0]["passed"] and "died of SIGSEGV" in tries[0]["error"], tries[0]
    assert tries[-1]["passed"] and len(tries) >= 2 and "error" not in tries[-1]
    assert "model.onnx" not in probed  # the FP32 file our exporter wrote is opened in process only


def test_verbose_differs_only_in_third_party_lines(tmp_path) -> None:
    """The same export with and without -v: the console lines of the default run (stdout and stderr), in order,
    are the -v run's minus third-party output (here the TorchScript exporter's IR dump, which it prints on
    stdout when it fails on this model, first at opset 17); the default run's export.log has it."""

    def console(extra: list[str], out: Path) -> list[str]:
        run = subprocess.run([sys.executable, "-m", "exporter.cli", f"{FALLBACK}:GroupedQueryAttention", "--input",
                              "tokens:batch,8,16", "--batch", PROFILE, "--opset", "17", "--no-photos", "--out",
                              str(out), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert run.returncode == 0, run.stdout
        return [re.sub(r"\d+\.\d+s$|[\d.]+e[-+]\d+", "#", line) for line in run.stdout.splitlines()]

    quiet, verbose = console([], tmp_path), console(["-v"], tmp_path)  # the same folder: the same "ok →" line
    extra = list(verbose)
    for line in quiet:  # every default line appears in -v, in the same order
        assert line in extra, line
        extra = extra[extra.index(line) + 1:]
    third_party = [line for line in verbose if line not in quiet]
    assert any("Torch IR graph at exception" in line for line in third_party)
    assert not any(line.startswith("[GroupedQueryAttention]") for line in third_party)
    assert not (tmp_path / "GroupedQueryAttention" / "export.log").exists()  # -v: nothing withheld
    console([], tmp_path)
    assert "Torch IR graph at exception" in (tmp_path / "GroupedQueryAttention" / "export.log").read_text()


def test_a_library_warning_in_one_export_goes_to_its_log_and_not_to_a_closed_one(tmp_path, monkeypatch,
                                                                                   capfd) -> None:
    """``logging.warning`` with no handler set up (onnxruntime's quantizer does this) called ``basicConfig``
    inside the first export, which kept that export's log file; in the next export every warning printed
    "--- Logging error ---" with a stack. Each block's warnings go to its own log, and nothing else is printed."""
    import logging

    from exporter import quiet

    monkeypatch.setattr(logging.root, "handlers", [])
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        with quiet.third_party_output_to(tmp_path / name / quiet.LOG_NAME):
            logging.warning("pre-process before quantization (%s)", name)
    assert [(tmp_path / n / quiet.LOG_NAME).read_text().count("pre-process before quantization") for n in
            ("first", "second")] == [1, 1]
    assert "(second)" in (tmp_path / "second" / quiet.LOG_NAME).read_text()
    printed = capfd.readouterr()
    assert "Logging error" not in printed.err + printed.out and logging.root.handlers == []


def test_deit3_fp16_file_runs_at_every_batch_size_and_passes(tmp_path) -> None:
    """AutoCast writes the shapes of its calibration run into the FP16 file (value_info); onnxruntime then
    re-used a LayerNormalization buffer of the wrong size at other batch sizes and raised. And DeiT-3's class
    token, initialised at 1e-6, is subnormal in FP16: every widening step missed rel 1e-2 (3.0e-2 at the widest)
    until nodes of such tensors stayed FP32. A one-block DeiT-3 at 64 px: every FP16 parity row has numbers
    and the first step passes."""
    code, output = run_cli(["timm:deit3_small_patch16_224", "--model-arg", "depth=1", "--model-arg", "img_size=64",
                            "--model-arg", "num_classes=10", "--batch", PROFILE, "--no-photos", "--fp16",
                            "--out", str(tmp_path)])
    assert code == 0, output
    rows = json.loads((tmp_path / "deit3_small_patch16_224" / "parity.json").read_text())["onnx_fp16"]["rows"]
    assert {r["batch"] for r in rows} == {1, 2, 3, 4}
    assert all(r["error"] is None and r["max_rel"] < 1e-2 for r in rows), rows
    report = mf.read_manifest(tmp_path / "deit3_small_patch16_224")["fp16"]
    assert [t["step"] for t in report["tries"]] == ["default"]
    assert report["fp32_reasons"][fp16.SUBNORMAL_REASON] >= 1 and report["fp16_nodes"] > report["fp32_nodes"]


@pytest.mark.parametrize("text, expected", [
    ("Check 'unconverted_ops_types.size() == 0' failed: OpenVINO does not support the following ONNX operations: "
     "Col2Im\nmore", "unsupported operator"),
    ("Exception from src/core/shape_inference.cpp:42: Incompatible broadcast shapes [3,4] and [5]", "tool crash"),
    ("[ERROR] No conversion rule found for operations: aten::frobnicate\nSummary", "unsupported operator"),
    ("Operator aten::_upsample_bicubic2d_aa is not supported by XNNPACK\nat", "unsupported operator"),
])
def test_a_third_party_failure_is_one_line_with_its_class(text, expected) -> None:
    """OpenVINO, the .ort converter, ExecuTorch, AutoCast and ModelOpt failures: 'what failed: Type: first line',
    class unsupported operator where the tool says so."""
    failure = tool_failure("OpenVINO's conversion of model.onnx", RuntimeError(text))
    assert str(failure) == f"OpenVINO's conversion of model.onnx failed: RuntimeError: {text.splitlines()[0]}"
    assert failure.failure_class == expected


def test_coverage_sweep_leaves_out_the_stages_asked_and_reads_the_rest() -> None:
    """scripts/coverage.py --without fp16 --without int8: those flags leave the pipeline, their artifacts (and
    ExecuTorch INT8, which needs --int8) read 'not run', and the others are read from the manifest."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("coverage_script", HERE.parent / "scripts" / "coverage.py")
    coverage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coverage)
    without = ["fp16", "int8"]
    assert coverage.pipeline_flags(without) == ["--keep-going", "--openvino", "--ort-format", "--executorch"]
    worst = {"max_rel": 1e-6, "min_cosine": 1.0, "min_top1": 1.0}
    manifest = {"status": "ok", "model": "m", "failures": [],
                "parity": {key: {"passed": True, "worst": worst} for key in ("onnx", "openvino", "onnx_ort")},
                "artifacts": {"onnx": "model.onnx", "openvino": "model.xml", "onnx_ort": "model.ort"}}
    run = {"timed_out": False, "killed": False, "last_line": "m: ok"}
    rows = coverage.artifact_rows(manifest, run, without)
    assert {k for k, r in rows.items() if r["passed"]} == {"onnx", "openvino", "onnx_ort"}
    assert {k for k, r in rows.items() if r.get("class") == "not run"} == {"onnx_fp16", "onnx_int8", "executorch_int8"}
    assert rows["executorch"]["passed"] is False and rows["executorch"]["class"] == "not reached"


def test_an_engine_refusing_a_file_our_stage_wrote_quotes_the_engine_not_our_re_export_advice(tmp_path) -> None:
    """The runtime's ArtifactError tells a user to re-export a corrupt file; for a file an export stage has just
    written (halonet26t's INT8 .pte) the failed row carries only the engine's own reason."""
    path = tmp_path / "model.int8.onnx"
    path.write_bytes(b"\x08\x07not an onnx model")
    with pytest.raises(ArtifactError) as refused:
        runtimes.load(path, engine="ort")
    assert "re-run" in str(refused.value)  # what a user opening a damaged file is told
    sets = [references.ParityInputs("b1", {"x": np.zeros((1, 2), np.float32)}, {"y": np.zeros((1, 3), np.float32)})]
    report = references.unopenable_report(path, "ort", refused.value, sets, Tolerance(1e-3, 0.99, 0.9))
    [error] = report.errors
    assert error.startswith("ort cannot open the file: ") and "re-run" not in error and "corrupt" not in error
    assert refused.value.reason.split(":")[0] in error and len(error) < 400
    assert not report and [row.batch for row in report.rows] == [1]
