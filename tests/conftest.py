"""Shared fixtures: one small (num_classes=10) instance per zoo model per session."""
from __future__ import annotations

import pytest
import torch

from exporter.export_model import ExportModel
from exporter.zoo import ZooModel, create_model, list_models
from runtimes.specs import random_inputs

TEST_CLASSES = 10

torch.set_num_threads(2)

_MODELS: dict[str, ZooModel] = {}


def small_model(name: str) -> ZooModel:
    """A cached eval-mode model with 10 classes, seeded so every run sees the same weights."""
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = create_model(name, num_classes=TEST_CLASSES)
    return _MODELS[name]


def small_export_model(name: str) -> ExportModel:
    """``small_model(name)`` with its specs checked, as the export pipeline sees it."""
    return ExportModel.of(small_model(name))


def torch_inputs(model: ZooModel, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Seeded random inputs for ``model`` at its real size, in forward order."""
    arrays = random_inputs(model.input_specs, batch, seed=seed)
    return [torch.from_numpy(arrays[s.name]) for s in model.input_specs]


def trt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


# every engine the contract and hostile suites run; trt only where TensorRT and a GPU are
ENGINES = [
    "ort",
    "torch",
    "openvino",
    "executorch",
    pytest.param("trt", marks=[pytest.mark.trt, pytest.mark.skipif(
        not trt_usable(), reason="TensorRT and an NVIDIA GPU are needed (not on this machine)")]),
]


@pytest.fixture(params=list_models())
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def artifacts_root(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("artifacts")
