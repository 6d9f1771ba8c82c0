"""Run-wide exports: each zoo model exported once (opset 17 + FP16, 10 classes, batch 1:2:4) by the first
test worker that needs it and shared by the export, runtime and FP16 tests of every worker; the models the
engine suites run also carry the files of the other engines (``EXTRA_ARTIFACTS``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.pipeline import ExportOptions, export
from runtimes.manifest import BatchProfile, read_manifest

from .conftest import slim_model_args
from .run_shared import build_once

TEST_PROFILE = BatchProfile(1, 2, 4)
_DONE: dict[str, dict[str, Any]] = {}
# beyond ONNX + FP16: what the contract, hostile and mobile suites open (c2f_ca lowers to ExecuTorch with
# portable fallbacks; resnet50_sa and transformer_encoder pass INT8 on random weights, c2f_ca's tied logits do not)
EXTRA_ARTIFACTS: dict[str, dict[str, Any]] = {
    "c2f_ca": {"executorch": True, "ort_format": True},
    "vgg16_cross": {"executorch": True},
    "resnet50_sa": {"executorch": True, "ort_format": True, "int8": True, "calib_size": 8},
    "transformer_encoder": {"executorch": True, "ort_format": True, "int8": True, "calib_size": 8},
}


def small_options(opset: int = 17, **kw: Any) -> ExportOptions:
    return ExportOptions(opset=opset, batch=TEST_PROFILE, num_classes=10, **kw)


def exported(name: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of ``name`` exported at opset 17 under ``root``, once per run."""
    if name not in _DONE:
        _DONE[name] = build_once(root / f"{name}.exported", lambda: export(
            name, root, model_args=slim_model_args(name),
            options=small_options(fp16=True, **EXTRA_ARTIFACTS.get(name, {}))), lambda: read_manifest(root / name))
    return root / name, _DONE[name]


def sample_inputs_file(folder: Path) -> Path:
    """An .npz of the two-input model's inputs (3 rows, seq 9): the user's --sample-inputs."""
    import numpy as np

    path = folder / "samples.npz"

    def write() -> None:
        rng = np.random.default_rng(11)
        np.savez(path, image=rng.standard_normal((3, 3, 64, 64)).astype(np.float32),
                 ids=rng.integers(0, 1000, size=(3, 9)).astype(np.int64))

    return build_once(path.with_suffix(".written"), write, lambda: path)


def exported_own_model(root: Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of the two-input user model (image + int64 ids), exported once per run through
    the Python API with --sample-inputs, FP16 and INT8 (shared by the own-model and serving tests)."""
    import torch

    from exporter.pipeline import export_module
    from runtimes.specs import TensorSpec

    from .user_models.two_input import VOCAB, ImageText

    def export_it() -> dict[str, Any]:
        torch.manual_seed(0)
        inputs = [TensorSpec("image", ("batch", 3, 64, 64)), TensorSpec("ids", ("batch", "seq"), "int64", (0, VOCAB))]
        return export_module(
            ImageText(), root, inputs=inputs, outputs=["logits"], name="image_text", max_dims={"seq": 32},
            options=small_options(fp16=True, int8=True, sample_inputs=str(sample_inputs_file(root))))

    if "image_text" not in _DONE:
        _DONE["image_text"] = build_once(root / "image_text.exported", export_it,
                                         lambda: read_manifest(root / "image_text"))
    return root / "image_text", _DONE["image_text"]
