"""Session-wide exports: each zoo model exported once (opset 17 + FP16, 10 classes, batch 1:2:4)
and shared by the export, runtime and FP16 tests; the models the engine suites run also carry the
files of the other engines (``EXTRA_ARTIFACTS``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.pipeline import ExportOptions, export
from runtimes.manifest import BatchProfile

from .conftest import slim_model_args

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
    """(folder, manifest) of ``name`` exported at opset 17 under ``root``, once per session."""
    if name not in _DONE:
        _DONE[name] = export(name, root, model_args=slim_model_args(name),
                             options=small_options(fp16=True, **EXTRA_ARTIFACTS.get(name, {})))
    return root / name, _DONE[name]


def sample_inputs_file(folder: Path) -> Path:
    """An .npz of the two-input model's inputs (3 rows, seq 9): the user's --sample-inputs."""
    import numpy as np

    path = folder / "samples.npz"
    if not path.is_file():
        rng = np.random.default_rng(11)
        np.savez(path, image=rng.standard_normal((3, 3, 64, 64)).astype(np.float32),
                 ids=rng.integers(0, 1000, size=(3, 9)).astype(np.int64))
    return path


def exported_own_model(root: Path) -> tuple[Path, dict[str, Any]]:
    """(folder, manifest) of the two-input user model (image + int64 ids), exported once per session through
    the Python API with --sample-inputs, FP16 and INT8 (shared by the own-model and serving tests)."""
    import torch

    from exporter.pipeline import export_module
    from runtimes.specs import TensorSpec

    from .user_models.two_input import VOCAB, ImageText

    if "image_text" not in _DONE:
        torch.manual_seed(0)
        inputs = [TensorSpec("image", ("batch", 3, 64, 64)), TensorSpec("ids", ("batch", "seq"), "int64", (0, VOCAB))]
        _DONE["image_text"] = export_module(
            ImageText(), root, inputs=inputs, outputs=["logits"], name="image_text", max_dims={"seq": 32},
            options=small_options(fp16=True, int8=True, sample_inputs=str(sample_inputs_file(root))))
    return root / "image_text", _DONE["image_text"]
