"""Shared fixtures: one small (num_classes=10) instance per zoo model per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exporter.export_model import ExportModel
from exporter.zoo import ZooModel, create_model, list_models
from runtimes.specs import random_inputs

from .run_shared import run_dir

TEST_CLASSES = 10
ROOT = Path(__file__).parents[1]  # the repository
# one zoo model per family (VGG16, ResNet-50, C2f, Transformer): the per-family checks; the per-model ones
# are the shared exports, FP16, OpenVINO BF16, Triton configs and the forward checks
FAMILIES = ["vgg16_cross", "resnet50_sa", "c2f_ca", "transformer_encoder"]

# two cores: both for one process, one each for two pytest-xdist workers (scripts/test.sh)
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# pytest-xdist hands whole files to the workers in collection order (scripts/test.sh: --no-loadscope-reorder),
# so the longest files go first and the last to start are short ones. By default it orders by test count,
# which started the 390 s test_accuracy.py last and left the other worker idle for 280 s. Seconds on one
# worker (AMX Xeon, 2026-11-30): 390 340 340 300 200 140 110, then 75 65 64 56; every other file under 45.
LONGEST_FILES_FIRST = ("test_accuracy.py", "test_runtimes.py", "test_serving.py", "test_export.py",
                       "test_hostile.py", "test_openvino.py", "test_int8.py", "test_sources.py",
                       "test_mobile.py", "test_readme.py", "test_zoo.py", "test_own_model.py")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to start where ``LONGEST_FILES_FIRST`` names a file that is gone: renamed, it would start last."""
    missing = [name for name in LONGEST_FILES_FIRST if not (Path(__file__).parent / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FILES_FIRST names no such test file: {missing}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put ``LONGEST_FILES_FIRST`` first, in that order; a file's own tests keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def user_cache_in_run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GEMM ceilings and engine="auto" choices (runtimes.user_cache) go to this run's temp folder, never the
    user's ~/.cache; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("user-cache")
    os.environ["ATTN_EXPORT_CACHE"] = str(folder)
    return folder


_MODELS: dict[str, ZooModel] = {}

_WITHOUT = """
import sys
sys.modules[{package!r}] = None  # as if not installed
from {cli} import main
main({args!r})
"""


def run_cli_without(package: str, cli: str, args: list[str]) -> subprocess.CompletedProcess:
    """``cli``'s ``main(args)`` in a fresh interpreter where ``package`` cannot be imported."""
    return subprocess.run([sys.executable, "-c", _WITHOUT.format(package=package, cli=cli, args=args)],
                          capture_output=True, text=True)


SLIM_MODEL_ARGS = {
    # VGG16's 4096-wide fc6/fc7 hold 120 M of its 138 M weights: a 256-wide head (same layers, keys and init;
    # convolutions and attention untouched) makes four VGG exports ~0.5 GB of disk, not ~9 GB
    "vgg16": {"classifier_width": 256},
    # six identical encoder layers lower to ExecuTorch in ~160 s (55 XNNPACK subgraphs); two layers prove the
    # same layer, mask and embedding paths at the same vocabulary and sequence bounds
    "transformer_encoder": {"num_layers": 2},
}

# c2f_ca at a quarter width: what the tests that train it or fail it on purpose build (seconds, not minutes)
QUARTER_C2F_CA = {"widths": (16, 32, 64, 128)}


def slim_model_args(name: str) -> dict[str, int]:
    """The builder arguments every test instance of ``name`` gets (``SLIM_MODEL_ARGS``, matched by prefix);
    test_zoo counts the full-size models."""
    return next((dict(args) for prefix, args in SLIM_MODEL_ARGS.items() if name.startswith(prefix)), {})


def small_model(name: str) -> ZooModel:
    """A cached eval-mode model with 10 classes, seeded so every run sees the same weights."""
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = create_model(name, num_classes=TEST_CLASSES, **slim_model_args(name))
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
def artifacts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the run's shared exports live (``exports.exported``), one folder for every worker."""
    root = run_dir(tmp_path_factory) / "artifacts"
    root.mkdir(exist_ok=True)
    return root
