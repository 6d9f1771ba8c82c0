"""The edge tier: `pip install '.[ort]'` / `'.[openvino]'` in fresh environments, no torch, and the
example edge app giving the same answers there as in the full environment."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .exports import exported
from .slim_envs import ROOT, full_env_mb, installed_mb, slim_python

APP = ROOT / "examples" / "edge_classify.py"
EXPORT_ONLY = ("torch", "torchvision", "nvidia-modelopt", "matplotlib", "scikit-image", "onnxslim")
EXTRAS = {"ort": "onnxruntime", "openvino": "openvino"}


@pytest.fixture(scope="module", params=sorted(EXTRAS))
def slim(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, slim_python(request.param, tmp_path_factory)


def _run(python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=ROOT / "examples")


def test_slim_env_has_no_torch_and_only_its_engine(slim) -> None:
    extra, python = slim
    assert "No module named 'torch'" in _run(python, "-c", "import torch").stderr
    listed = {line.split("==")[0].lower() for line in _run(python, "-m", "pip", "freeze").stdout.splitlines()}
    assert not listed & set(EXPORT_ONLY), listed & set(EXPORT_ONLY)
    assert EXTRAS[extra] in listed and not (set(EXTRAS.values()) - {EXTRAS[extra]}) & listed
    assert installed_mb(python) < 0.15 * full_env_mb()  # the full env is ~5.6 GB with torch and CUDA


def test_attn_export_in_slim_env_names_the_install_command(slim) -> None:
    _, python = slim
    result = _run(python.parent / "attn-export", "resnet50_sa")
    assert result.returncode == 2, result.stderr
    assert "pip install 'attn-export[export]'" in result.stderr and "Traceback" not in result.stderr


def test_edge_app_in_slim_env_equals_full_env(slim, artifacts_root, tmp_path) -> None:
    extra, python = slim
    folder, _ = exported("resnet50_sa", artifacts_root)
    reports = {}
    for where, exe in (("slim", python), ("full", sys.executable)):
        out = tmp_path / f"{where}.json"
        result = _run(exe, str(APP), str(folder), "--engine", extra, "--precision", "fp32", "--json", str(out))
        assert result.returncode == 0, result.stderr
        assert "latency" not in result.stderr and "ms" in result.stdout
        reports[where] = json.loads(out.read_text())
    slim_rows, full_rows = reports["slim"]["results"], reports["full"]["results"]
    assert [r["image"] for r in slim_rows] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "ihc.jpg", "rocket.jpg"]
    for s, f in zip(slim_rows, full_rows):
        assert [t["class"] for t in s["top"]] == [t["class"] for t in f["top"]] and len(s["top"]) == 5
        a, b = np.asarray(s["logits"]), np.asarray(f["logits"])
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
        assert s["latency_ms"] > 0


def test_edge_app_user_folder_and_errors(tmp_path, artifacts_root) -> None:
    from PIL import Image

    folder, _ = exported("resnet50_sa", artifacts_root)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(photos / "grey.png")
    (photos / "notes.txt").write_text("not an image")
    result = _run(sys.executable, str(APP), str(folder), "--images", str(photos), "--top", "3")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 2 and "grey.png" in result.stdout
    result = _run(sys.executable, str(APP), str(folder), "--images", str(tmp_path / "none"))
    assert result.returncode == 2 and "image folder" in result.stderr and "does not exist" in result.stderr
    cross, _ = exported("vgg16_cross", artifacts_root)
    result = _run(sys.executable, str(APP), str(cross))
    assert result.returncode == 2 and "one [batch, 3, H, W] image input" in result.stderr
