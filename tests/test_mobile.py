"""ONNX Runtime's mobile format: attn-export --ort-format writes model.ort and required_operators.config, the
.ort has its own parity row, and runtimes (also the torch-free [ort] install) run it equal to PyTorch."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

import runtimes
from exporter.pipeline import export
from runtimes.specs import random_inputs

from .conftest import small_model
from .exports import TEST_PROFILE, small_options
from .slim_envs import slim_python

MODELS = ("c2f_ca", "transformer_encoder")


@pytest.fixture(scope="module")
def ort_exports(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ort_format")
    return {name: (root / name, export(name, root, options=small_options(ort_format=True, photos=False)))
            for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_ort_format_has_its_own_passing_parity_row(name, ort_exports) -> None:
    folder, manifest = ort_exports[name]
    assert manifest["artifacts"]["onnx_ort"] == "model.ort"
    assert manifest["artifacts"]["ort_operators"] == "required_operators.config"
    report = json.loads((folder / "parity.json").read_text())["onnx_ort"]
    assert report["passed"] and report["worst"]["max_rel"] <= 1e-4 and report["candidate"].endswith("model.ort")
    assert set(runtimes.verify(folder)) >= {"model.ort", "required_operators.config"}
    config = (folder / "required_operators.config").read_text().splitlines()
    assert "# - model.ort" in config and not any("staging" in line for line in config)
    ops = {op for line in config if not line.startswith("#") for op in line.split(";")[2].split(",")}
    assert manifest["ort_format"]["operators"] == len(ops) > 3
    assert ("Conv" in ops or "FusedConv" in ops) if name == "c2f_ca" else ("MatMul" in ops or "FusedMatMul" in ops)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 3, TEST_PROFILE.max, TEST_PROFILE.max + 3])
def test_ort_file_equals_pytorch_at_every_batch(name, batch, ort_exports) -> None:
    """The .ort keeps the dynamic batch: 1, odd, the profile max, and above it."""
    folder, _ = ort_exports[name]
    model = small_model(name)
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    arrays = random_inputs(model.input_specs, batch, seed=batch, dims={"seq": 9})
    with torch.inference_mode():
        want = model(*(torch.from_numpy(arrays[s.name]) for s in model.input_specs))
    want = (want if isinstance(want, tuple) else (want,))[0].numpy()
    with runtimes.load(folder / "model.ort") as rt:
        got = rt(arrays)[rt.outputs[0].name]
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


SLIM_SCRIPT = """
import sys
import numpy as np
import runtimes
model, image, out = sys.argv[1:]
with runtimes.load(model) as rt:
    np.save(out, rt({"image": np.load(image)})["logits"])
assert "torch" not in sys.modules
"""


def test_ort_file_runs_in_the_torch_free_ort_install(ort_exports, tmp_path_factory, tmp_path) -> None:
    folder, _ = ort_exports["c2f_ca"]
    python = slim_python("ort", tmp_path_factory.getbasetemp())
    image = np.random.default_rng(4).standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = subprocess.run([str(python), "-c", SLIM_SCRIPT, str(folder / "model.ort"), str(tmp_path / "image.npy"),
                             str(tmp_path / "out.npy")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with runtimes.load(folder) as rt:
        want = rt({"image": image})["logits"]
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (2, 10) and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
