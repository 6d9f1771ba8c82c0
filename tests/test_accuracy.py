"""Accuracy users can read: attn-bench --data / --labels checked against a count made here, and a zoo model
trained on real digits, exported with --eval, whose FP16 and INT8 top-1 drops meet the goals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import runtimes
from runtimes.bench.cli import main as attn_bench
from runtimes.images import Preprocess, load_batch, sample_photo_files

from .conftest import QUARTER_C2F_CA
from .exports import exported

FP16_GOAL, INT8_GOAL = 0.3, 1.0  # points of top-1 a trained network may lose (the goals)
FP16_NODE_SHARE_GOAL = 0.9  # and the share of compute nodes FP16 must keep
TRAIN_ARGS = ["--model-arg", f"widths={QUARTER_C2F_CA['widths']}"]  # as attn-export --model-arg


def _images(tmp_path: Path) -> list[Path]:
    """The five bundled photos and seven seeded noise pictures, as files."""
    files = list(sample_photo_files())
    rng = np.random.default_rng(3)
    for i in range(7):
        path = tmp_path / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def test_attn_bench_accuracy_equals_an_independent_count(artifacts_root, tmp_path) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    files = _images(tmp_path)
    with runtimes.load(folder) as rt:
        logits = rt({"image": load_batch(files, Preprocess.default(224, 224))})["logits"]
    ranked = np.argsort(-logits, axis=1)
    # labels: even images labelled with their top-1 class, odd ones with their 3rd choice (wrong for top-1,
    # right for top-5), image 1 with a class no image is predicted as: a class with no correct prediction
    labels = np.where(np.arange(len(files)) % 2 == 0, ranked[:, 0], ranked[:, 2])
    empty = next(c for c in range(10) if c not in set(ranked[:, 0]))
    labels[1] = empty
    data = tmp_path / "data"
    for c in range(10):
        (data / str(c)).mkdir(parents=True)
    for i, (path, label) in enumerate(zip(files, labels)):
        shutil.copy(path, data / str(label) / f"{i:02d}{path.suffix}")
    want_top1 = float((ranked[:, 0] == labels).mean())
    want_top5 = float((ranked[:, :5] == labels[:, None]).any(axis=1).mean())
    assert 0 < want_top1 < 1 and want_top1 < want_top5

    result = CliRunner().invoke(attn_bench, [str(folder), "--engine", "ort", "--engine", "openvino", "--batch", "4",
                                             "--iters", "2", "--warmup", "0", "--data", str(data),
                                             "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    for row in rows:
        acc = row["accuracy"]
        assert acc["images"] == len(files) and acc["top1"] == pytest.approx(want_top1)
        assert acc["top5"] == pytest.approx(want_top5) and acc["agreement_top1"] == 1.0 and acc["images_per_s"] > 0
    assert f"{100 * want_top1:.2f}%" in result.output
    assert (tmp_path / "b.accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (data / "3" / "broken.png").write_bytes(b"not a png")
    broken = CliRunner().invoke(attn_bench, [str(folder), "--batch", "4", "--iters", "1", "--data", str(data)])
    assert broken.exit_code == 2 and f"cannot read image {data / '3' / 'broken.png'}" in broken.output


def test_attn_bench_accuracy_runs_in_the_torch_free_ort_install(artifacts_root, tmp_path, tmp_path_factory) -> None:
    import subprocess

    from .slim_envs import slim_python

    folder, _ = exported("c2f_ca", artifacts_root)
    data = tmp_path / "data"
    for i, path in enumerate(_images(tmp_path)[:4]):
        (data / str(i % 2)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / str(i % 2) / path.name)
    bench = slim_python("ort", tmp_path_factory).parent / "attn-bench"
    result = subprocess.run([str(bench), str(folder), "--batch", "2", "--iters", "1", "--warmup", "0", "--data",
                             str(data), "--json", str(tmp_path / "b.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    acc = json.loads((tmp_path / "b.json").read_text())["results"][0]["accuracy"]
    with runtimes.load(folder) as rt:
        files = sorted(data.rglob("*.*"), key=lambda p: (p.parent.name, p.name))
        predicted = rt({"image": load_batch(files, Preprocess.default(224, 224))})["logits"].argmax(1)
    labels = np.array([int(p.parent.name) for p in files])
    assert acc["images"] == 4 and acc["top1"] == pytest.approx(float((predicted == labels).mean()))


def test_labels_csv_and_its_bad_row(artifacts_root, tmp_path) -> None:
    folder, _ = exported("c2f_ca", artifacts_root)
    files = _images(tmp_path)[:4]
    good = tmp_path / "labels.csv"
    good.write_text("path,index\n" + "".join(f"{f},{i}\n" for i, f in enumerate(files)))
    result = CliRunner().invoke(attn_bench, [str(folder), "--batch", "2", "--iters", "1", "--labels", str(good),
                                             "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["accuracy"]["images"] == 4
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,index\n{files[0]},1\n{files[1]},one\n")
    result = CliRunner().invoke(attn_bench, [str(folder), "--labels", str(bad)])
    assert result.exit_code == 2 and f"{bad}:3: expected 'path,index'" in result.output


def test_trained_on_digits_then_fp16_and_int8_keep_top1(tmp_path) -> None:
    """c2f_ca (quarter width) trained on the digits for 250 steps (~135 s on 2 cores), then
    exported with --fp16 --int8 --executorch --eval: the reduced precisions (ONNX FP16 and INT8, and
    ExecuTorch's PT2E INT8 .pte on the same calibration images) within the issue's top-1 goals."""
    from exporter.cli import main as attn_export
    from exporter.training.digits import train

    run = tmp_path / "run"
    result = train("c2f_ca", run, steps=250, model_args=QUARTER_C2F_CA, printer=lambda _: None)
    assert result.val_top1 >= 0.90, result  # 98.06 % on the AMX Xeon that wrote this
    assert sorted(p.name for p in (run / "digits" / "val").iterdir()) == [str(c) for c in range(10)]
    assert sum(1 for _ in (run / "digits" / "val").rglob("*.png")) == 360

    out = tmp_path / "out"
    exported_run = CliRunner().invoke(attn_export, [
        "c2f_ca", *TRAIN_ARGS, "--num-classes", "10", "--weights", str(run / "weights.pt"), "--batch", "1:4:8",
        "--calib", str(run / "digits" / "train"), "--eval", str(run / "digits" / "val"), "--fp16", "--int8",
        "--executorch", "--max-accuracy-drop", str(INT8_GOAL), "--no-photos", "--out", str(out)])
    assert exported_run.exit_code == 0, exported_run.output
    manifest = runtimes.manifest.read_manifest(out / "c2f_ca")
    accuracy = {key: manifest["parity"][key]["accuracy"]
                for key in ("onnx", "onnx_fp16", "onnx_int8", "executorch", "executorch_int8")}
    assert accuracy["onnx"]["top1"] == pytest.approx(result.val_top1, abs=1 / 360)  # ONNX = PyTorch on the labels
    assert accuracy["onnx_fp16"]["drop_points"] <= FP16_GOAL and accuracy["onnx_int8"]["drop_points"] <= INT8_GOAL
    assert accuracy["executorch"]["drop_points"] == 0 and accuracy["executorch_int8"]["drop_points"] <= INT8_GOAL
    assert manifest["executorch_int8"]["calibration"] == manifest["int8"]["calibration"]
    assert all(a["images"] == 360 for a in accuracy.values())
    assert accuracy["onnx_fp16"]["agreement_top1"] >= 0.99
    fp16 = manifest["fp16"]
    assert fp16["fp16_nodes"] >= FP16_NODE_SHARE_GOAL * (fp16["fp16_nodes"] + fp16["fp32_nodes"]), fp16
    parity = json.loads((out / "c2f_ca" / "parity.json").read_text())
    assert parity["onnx_int8"]["accuracy"] == accuracy["onnx_int8"]
    # INT8 (calibrated on digits) is compared with PyTorch on 61 held-out digits; FP32 and FP16 on random inputs
    for key in ("onnx_int8", "executorch_int8"):
        assert [r["inputs"] for r in parity[key]["rows"]] == ["labelled b=61"]
    for key in ("onnx", "onnx_fp16"):
        assert all(r["inputs"].startswith("random") for r in parity[key]["rows"])
    assert manifest["int8"]["calibration"]["image"].startswith(f"32 photos from {run / 'digits' / 'train'}")


def test_bf16_autocast_training_saves_fp32_weights_that_reproduce_its_top1(tmp_path) -> None:
    """--bf16-autocast trains in BF16 but keeps FP32, contiguous weights: reloaded into a fresh FP32 model they
    give exactly the held-out top-1 the run printed."""
    import torch

    from exporter.training.digits import CLASSES, train, top1
    from exporter.export_model import ExportModel
    from exporter.zoo import create_model
    from runtimes.bench.labels import image_folder

    result = train("c2f_ca", tmp_path, steps=8, model_args=QUARTER_C2F_CA, bf16_autocast=True, printer=lambda _: None)
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and t.is_contiguous() for t in floats)
    model = ExportModel.of(create_model("c2f_ca", num_classes=CLASSES, **QUARTER_C2F_CA))
    model.module.load_state_dict(state)
    val = image_folder(tmp_path / "digits" / "val")
    size = model.input_specs[0].shape[2:]
    assert top1(model, load_batch(val.files, Preprocess.default(*size)), val.labels) == result.val_top1


def test_zero_init_residual_starts_resnet50_kv_attention_uniform_not_one_hot(tmp_path) -> None:
    """Why resnet50_kv trains with --zero-init-residual: from the default init its layer4 tokens give a
    near one-hot softmax (q and k get no gradient); with every block starting as the identity the attention
    starts spread over all 49 tokens. A model without ResNet blocks is refused, naming the option."""
    import torch

    from exporter.training.digits import train, zero_init_residuals
    from exporter.zoo import create_model
    from runtimes.errors import OptionError

    def attention_entropy(model: torch.nn.Module) -> float:
        with torch.inference_mode():
            tokens = model.tokens(torch.randn(2, 3, 224, 224))
            weights = model.attention.attend(tokens, tokens, tokens)[1]
        return float(-(weights * weights.clamp_min(1e-12).log()).sum(-1).mean())

    torch.manual_seed(0)
    default = create_model("resnet50_kv", num_classes=10).eval()
    zeroed = create_model("resnet50_kv", num_classes=10).eval()
    assert zero_init_residuals(zeroed) == 16  # ResNet-50: 3 + 4 + 6 + 3 bottlenecks
    assert not any(bool(b.bn3.weight.any()) for b in zeroed.backbone.modules() if hasattr(b, "bn3"))
    uniform = np.log(49)
    assert attention_entropy(default) < 0.1 * uniform  # measured 0.06 of 3.89 nats
    assert attention_entropy(zeroed) > 0.99 * uniform
    with pytest.raises(OptionError, match="c2f_ca has no ResNet blocks: zero_init_residual applies to the ResNet-50"):
        train("c2f_ca", tmp_path, steps=1, model_args=QUARTER_C2F_CA, zero_init_residual=True, printer=lambda _: None)
