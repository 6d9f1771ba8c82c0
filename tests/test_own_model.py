"""Your own backbone through the whole pipeline: three modules that are not in the zoo, reached the three ways
a user would (file.py:callable, package.module:callable, the Python API), a plugin package installed for
the test, and every error a user's module can meet, by exit code and key phrase."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import runtimes
from exporter import cli
from exporter.export_model import ExportModel, infer_output_specs, parse_input
from exporter.errors import ModelSourceError
from runtimes.errors import OptionError
from exporter.sources.model_source import parse_model_args
from runtimes.specs import TensorSpec, random_inputs

from .exports import TEST_PROFILE, exported_own_model, sample_inputs_file
from .run_shared import build_once
from .user_models.mobilenet import build as build_mobilenet
from .user_models.two_input import ImageText
from .user_models.vit import tiny_vit

HERE = Path(__file__).parent
ROOT = HERE.parent
PROFILE = f"{TEST_PROFILE.min}:{TEST_PROFILE.opt}:{TEST_PROFILE.max}"
# MobileNetV3 at random init has nearly tied logits, so its INT8 top-1 agreement over the 15 parity samples
# depends on the seed (2 classes, seeds 0-3: 100, 100, 93, 100 %); seed 0 is fixed, as every export here is.
CLI_MODELS: dict[str, tuple[list[str], Callable[[], nn.Module]]] = {
    "mobilenet": ([f"{HERE}/user_models/mobilenet.py:build", "--model-arg", "num_classes=2", "--input",
                   "x:batch,3,224,224", "--output", "logits", "--fp16", "--int8", "--openvino"],
                  lambda: build_mobilenet(num_classes=2)),
    "vit": (["tests.user_models.vit:tiny_vit", "--model-arg", "depth=2", "--input", "patches:batch,seq,48",
             "--max-dim", "seq=64", "--output", "logits", "--output", "tokens", "--fp16"], lambda: tiny_vit(depth=2)),
}
OWN_MODELS = [*CLI_MODELS, "image_text"]


def own_export(key: str, root: Path) -> Path:
    """The folder of ``key``, exported once per run (CLI for the first two, Python API for image_text)."""
    if key == "image_text":
        return exported_own_model(root)[0]

    def export_it() -> None:
        args, _ = CLI_MODELS[key]
        result = CliRunner().invoke(cli.main, [*args, "--name", key, "--batch", PROFILE, "--out", str(root)])
        assert result.exit_code == 0, result.output

    return build_once(root / f"{key}.exported", export_it, lambda: root / key)


def pytorch_module(key: str, folder: Path) -> nn.Module:
    """The same module, with the weights the export wrote: the independent reference."""
    module = ImageText() if key == "image_text" else CLI_MODELS[key][1]()
    module.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    return module.eval()


def test_python_api_with_sample_inputs_records_them(artifacts_root) -> None:
    _, manifest = exported_own_model(artifacts_root)
    assert manifest["inputs"][1] == {"name": "ids", "shape": ["batch", "seq"], "dtype": "int64",
                                     "value_range": [0, 1000], "example_dims": {"seq": 16}, "max_dims": {"seq": 32}}
    rows = json.loads((artifacts_root / "image_text" / "parity.json").read_text())["onnx"]["rows"]
    labels = {r["inputs"] for r in rows}
    assert "samples b=3" in labels and "random b=2 seq=21" in labels and "photos b=5" in labels
    assert manifest["int8"]["calibration"] == {"image": f"3 rows of {sample_inputs_file(artifacts_root)}",
                                               "ids": f"3 rows of {sample_inputs_file(artifacts_root)}"}


@pytest.mark.parametrize("key", OWN_MODELS)
def test_own_model_parity_reports_pass(key, artifacts_root) -> None:
    folder = own_export(key, artifacts_root)
    manifest = runtimes.manifest.read_manifest(folder)
    reports = json.loads((folder / "parity.json").read_text())
    required = {"mobilenet": {"onnx", "onnx_fp16", "onnx_int8", "openvino"}, "vit": {"onnx", "onnx_fp16"},
                "image_text": {"onnx", "onnx_fp16", "onnx_int8"}}[key]
    assert required <= set(reports) and all(reports[k]["passed"] for k in required), \
        {k: r["worst"] for k, r in reports.items()}
    assert all(manifest["parity"][k]["passed"] for k in required)
    assert reports["onnx"]["worst"]["max_rel"] <= 1e-4 and reports["onnx_fp16"]["worst"]["max_rel"] <= 1e-2


@pytest.mark.parametrize("key", OWN_MODELS)
def test_own_model_named_dims_are_symbolic_in_the_file(key, artifacts_root) -> None:
    folder = own_export(key, artifacts_root)
    manifest = runtimes.manifest.read_manifest(folder)
    for file in ("model.onnx", "model.fp16.onnx"):
        graph = onnx.load(str(folder / file), load_external_data=False).graph
        written = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                   for v in [*graph.input, *graph.output]}
        for spec in [*manifest["inputs"], *manifest["outputs"]]:
            assert written[spec["name"]] == spec["shape"], (file, spec["name"], written[spec["name"]])
    named = {d for spec in [*manifest["inputs"], *manifest["outputs"]] for d in spec["shape"] if isinstance(d, str)}
    assert named == ({"batch", "seq"} if key != "mobilenet" else {"batch"})


@pytest.mark.parametrize("key", OWN_MODELS)
@pytest.mark.parametrize("engine", ["ort", "openvino", "torch"])
def test_own_model_runtimes_equal_pytorch(key, engine, artifacts_root) -> None:
    folder = own_export(key, artifacts_root)
    module = pytorch_module(key, folder)
    specs = runtimes.manifest.input_specs(runtimes.manifest.read_manifest(folder))
    arrays = random_inputs(specs, 3, seed=21, dims={"seq": 7})
    with torch.inference_mode():
        out = module(*(torch.from_numpy(arrays[s.name]) for s in specs))
    want = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    with runtimes.load(folder, engine=engine) as rt:
        got = rt(arrays)
        assert list(got) == [s.name for s in rt.outputs]
    for reference, candidate in zip(want, got.values()):
        assert candidate.shape == reference.shape
        assert np.abs(candidate - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize("key", OWN_MODELS)
def test_attn_bench_runs_on_an_own_model_folder(key, artifacts_root, tmp_path) -> None:
    from runtimes.bench.cli import main as attn_bench

    folder = own_export(key, artifacts_root)
    result = CliRunner().invoke(attn_bench, [str(folder), "--engine", "ort", "--engine", "openvino", "--batch",
                                             "1,3", "--iters", "3", "--warmup", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [(r["engine"], r["batch"]) for r in rows] == [("ort", 1), ("ort", 3), ("openvino", 1), ("openvino", 3)]
    assert all(r["p50_ms"] > 0 and r["throughput"] > 0 for r in rows)


def test_output_specs_are_read_by_running_forward() -> None:
    specs = (TensorSpec("patches", ("batch", "seq", 48), example_dims={"seq": 16}),)
    logits, tokens = infer_output_specs(tiny_vit(), specs, ["logits", "tokens"])
    assert logits.shape == ("batch", 10) and tokens.shape == ("batch", "seq", 64)
    assert [s.name for s in infer_output_specs(tiny_vit(), specs, None)] == ["output0", "output1"]


def test_tensorrt_profile_covers_every_named_axis() -> None:
    """--engine trt (unverified on GPU) builds its optimisation profile from the same specs."""
    from exporter.export_model import complete_input_specs
    from exporter.formats.trt_build import profile_shapes
    from runtimes.manifest import BatchProfile

    (spec,) = complete_input_specs([parse_input("patches:batch,seq,48")], {"seq": 64})
    assert profile_shapes(spec, BatchProfile(1, 2, 4)) == ((1, 1, 48), (2, 16, 48), (4, 64, 48))


def test_triton_repository_for_an_own_model(artifacts_root, tmp_path) -> None:
    from serving.triton_repo import write_repository

    folder, manifest = exported_own_model(artifacts_root)
    entries = write_repository([folder], tmp_path / "repo")
    assert sorted(e.name for e in entries) == ["image_text_fp16", "image_text_int8", "image_text_onnx"]
    config = (tmp_path / "repo" / "image_text_onnx" / "config.pbtxt").read_text()
    assert 'name: "ids"' in config and "TYPE_INT64" in config and "dims: [ -1 ]" in config


def test_input_and_model_arg_syntax() -> None:
    spec = parse_input("ids:batch,seq:int64:0..30522")
    assert (spec.name, spec.shape, spec.dtype, spec.value_range) == ("ids", ("batch", "seq"), "int64", (0, 30522))
    assert parse_input("image:batch,3,224,224").shape == ("batch", 3, 224, 224)
    assert parse_model_args(["num_classes=10", "name='a'", "sizes=[1, 2]"]) == \
        {"num_classes": 10, "name": "a", "sizes": [1, 2]}
    for bad in ("ids", "ids:batch,-1", "ids:batch:int7", "ids:batch:int64:5..5", "x:batch:float32:0..3"):
        with pytest.raises(ModelSourceError, match="--input"):
            parse_input(bad)


def test_forward_signature_is_checked_before_tracing() -> None:
    with pytest.raises(ModelSourceError, match=r"input names \['image', 'tokens'\] do not match "
                                               r"ImageText\.forward\(image, ids\)"):
        ExportModel.of(ImageText(), [TensorSpec("image", ("batch", 3, 64, 64)), TensorSpec("tokens", ("batch", "seq"),
                                                                                          "int64", (0, 10))])


class ZeroHead(nn.Module):
    """A conv trunk under a zero-initialised classifier (as torchvision's ViT): its logits are 0 for any image."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 5)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def test_constant_outputs_are_flagged_and_redrawn_weights_make_parity_mean_something(tmp_path) -> None:
    from exporter.options import ExportOptions
    from exporter.pipeline import export

    spec = [TensorSpec("x", ("batch", 3, 32, 32))]
    printed: list[str] = []
    opts = ExportOptions(opset=17, batch=TEST_PROFILE, photos=False)
    hollow = export(ZeroHead(), tmp_path, name="hollow", options=opts, inputs=spec, printer=printed.append)
    assert hollow["input_independent_outputs"] == ["output0"] and "redrawn_zero_weights" not in hollow
    assert hollow["parity"]["onnx"]["worst"]["max_rel"] == 0.0  # what a pass on constants looks like
    assert any("output0 is the same for every checked input" in line for line in printed)
    redrawn = export(ZeroHead(), tmp_path, name="redrawn", inputs=spec,
                     options=dataclasses.replace(opts, redraw_zero_weights=True))
    assert redrawn["redrawn_zero_weights"] == ["head.weight"] and "input_independent_outputs" not in redrawn
    assert 0.0 < redrawn["parity"]["onnx"]["worst"]["max_rel"] <= 1e-4
    weights = torch.load(tmp_path / "redrawn" / "weights.pt", weights_only=True)["head.weight"]
    assert 0.01 < float(weights.std()) < 0.04  # N(0, 0.02^2), written with the export
    with pytest.raises(OptionError, match="--redraw-zero-weights"):
        export(ZeroHead(), tmp_path, name="refused", inputs=spec,
               options=dataclasses.replace(opts, redraw_zero_weights=True, weights=str(tmp_path / "w.pt")))


def test_input_independence_compares_samples_of_one_shape() -> None:
    from exporter.checks.references import ParityInputs, input_independent_outputs

    def sets(*refs: np.ndarray) -> list[ParityInputs]:
        return [ParityInputs(f"s{i}", {}, {"y": r}) for i, r in enumerate(refs)]

    row = np.array([[1.0, -2.0, 3.0]])
    moving = np.arange(12.0).reshape(3, 4)
    assert input_independent_outputs(sets(np.repeat(row, 2, 0), row, moving)) == []  # of two shapes, one moves
    assert input_independent_outputs(sets(np.repeat(row, 2, 0), row, np.zeros((3, 4)))) == ["y"]
    assert input_independent_outputs(sets(np.repeat(row, 2, 0), row + 1e-3)) == []
    assert input_independent_outputs(sets(row)) == []  # one sample cannot show dependence


# ---- a plugin package, installed into a folder the test puts on PYTHONPATH ----

PLUGIN_SOURCE = {
    "pyproject.toml": """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-backbones"
version = "1.0"

[project.entry-points."attn_export.models"]
acme = "acme_backbones"
""",
    "acme_backbones/__init__.py": """import torch
from torch import nn

from exporter.zoo import register_model
from runtimes.specs import TensorSpec


class AcmeNet(nn.Module):
    input_specs = (TensorSpec("image", ("batch", 3, 32, 32)),)

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Sigmoid())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, image):
        x = torch.relu(self.conv(image))
        return self.fc((x * self.gate(x)).mean((2, 3)))


@register_model(seed="acme", summary="squeeze-excitation toy")
def acme_se(num_classes=1000):
    return AcmeNet(num_classes)
""",
}


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """pip-install the plugin (no dependencies, no network) into a folder; return that folder."""
    src, target = tmp_path_factory.mktemp("acme_src"), tmp_path_factory.mktemp("acme_site")
    for name, text in PLUGIN_SOURCE.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True)
    return target


def _attn_export(args: list[str], pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-m", "exporter.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_plugin_shows_in_list_and_exports(plugin_path, tmp_path) -> None:
    listed = _attn_export(["--list", "--json"], plugin_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["acme_se"]["package"] == "acme-backbones" and rows["c2f_ca"]["package"] == "attn-export"
    assert rows["acme_se"]["parameters"] == 8 * 3 * 9 + 8 + 8 * 8 + 8 + 8 * 1000 + 1000
    done = _attn_export(["acme_se", "--num-classes", "5", "--batch", PROFILE, "--out", str(tmp_path)], plugin_path)
    assert done.returncode == 0, done.stderr
    manifest = runtimes.manifest.read_manifest(tmp_path / "acme_se")
    assert manifest["outputs"] == [{"name": "output0", "shape": ["batch", 5], "dtype": "float32"}]
    assert manifest["parity"]["onnx"]["passed"] and manifest["parity"]["onnx"]["worst"]["max_rel"] <= 1e-4


def test_plugin_name_clashing_with_the_zoo_is_an_error_naming_both(plugin_path, tmp_path) -> None:
    clash = tmp_path / "clash"
    init = plugin_path / "acme_backbones" / "__init__.py"
    (clash / "acme_backbones").mkdir(parents=True)
    (clash / "acme_backbones" / "__init__.py").write_text(init.read_text().replace("def acme_se(", "def c2f_ca("))
    for entry in plugin_path.iterdir():
        if entry.name != "acme_backbones":
            os.symlink(entry, clash / entry.name)
    result = _attn_export(["--list"], clash)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model 'c2f_ca' of acme-backbones clashes with 'c2f_ca' of attn-export" in result.stderr


# ---- every error of a user's module: exit code and key phrase ----

BAD_MODELS = '''
import torch
from torch import nn


class Baked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(x.view(2, -1))


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class Bessel(nn.Module):
    def forward(self, x):
        return torch.special.bessel_j0(x)


class GridSample(nn.Module):
    def forward(self, x):
        grid = torch.zeros(x.shape[0], 4, 4, 2)
        return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def baked():
    return Baked()


def branchy():
    return Branchy()


def bessel():
    return Bessel()


def grid_sample():
    return GridSample()


def not_a_module():
    return 42


def two_outputs():
    return nn.Identity()
'''


def line_of(code: str) -> int:
    """The line of ``code`` in BAD_MODELS, as the error must name it."""
    return next(i for i, line in enumerate(BAD_MODELS.splitlines(), 1) if code in line)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "bad_models.py"
    path.write_text(BAD_MODELS)
    return path


def _run(args: list[str], out: Path) -> Any:
    return CliRunner().invoke(cli.main, [*args, "--out", str(out), "--batch", PROFILE, "--no-photos"])


@pytest.mark.parametrize("args,phrase", [
    (["{dir}/missing.py:build"], "model file {dir}/missing.py does not exist"),
    (["no_such_pkg_xyz.models:build"], "module 'no_such_pkg_xyz.models' cannot be imported"),
    (["{file}:nothing_here"], "has no callable 'nothing_here'"),
    (["{file}:not_a_module"], "returned int, not a torch.nn.Module"),
    (["{file}:branchy", "--input", "x"], "--input 'x': expected NAME:SHAPE"),
    (["{file}:branchy", "--input", "x:batch,3", "--model-arg", "depth"], "--model-arg 'depth': expected KEY=VALUE"),
    (["{file}:branchy", "--input", "x:batch,3", "--model-arg", "depth=small"], "is not a Python literal"),
    (["{file}:branchy", "--input", "image:batch,3"], "input names ['image'] do not match Branchy.forward(x)"),
    (["{file}:two_outputs", "--input", "input:batch,3", "--output", "a", "--output", "b"],
     "2 output names given (a, b) but Identity.forward returns 1 tensors"),
    (["{file}:branchy"], "Branchy has no input_specs"),
    (["{file}:branchy", "--input", "x:3,batch"], "the first dim must be 'batch'"),
])
def test_model_source_errors_exit_2_in_one_line(args, phrase, bad_models, tmp_path) -> None:
    fill = {"dir": str(tmp_path), "file": str(bad_models)}
    result = _run([a.format(**fill) for a in args], tmp_path)
    assert result.exit_code == 2, result.output
    assert phrase.format(**fill) in result.output and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("attn-export: error:")]
    assert len(errors) == 1 and phrase.format(**fill) in errors[0]  # one line (progress lines aside)


@pytest.mark.parametrize("args,phrases", [
    (["{file}:baked", "--input", "x:batch,3,4"],
     ["input 'x': the model fixes the 'batch' dimension",
      f"{{file}}:{line_of('x.view(2, -1)')} `return self.fc(x.view(2, -1))`"]),
    (["{file}:branchy", "--input", "x:batch,3"],
     [f"data-dependent control flow at {{file}}:{line_of('x.sum() > 0')} `if x.sum() > 0:`",
      "Could not guard on data-dependent expression"]),
    (["{file}:grid_sample", "--input", "x:batch,3,4,4", "--opset", "13"],
     ["operator aten::grid_sampler has no ONNX conversion at opset 13", "use --opset 16 or higher"]),
    (["{file}:bessel", "--input", "x:batch,3"],
     ["operator aten::special_bessel_j0 has no ONNX conversion at opset 18", "no ONNX opset up to 24",
      "dynamo: operator prims.bessel_j0 has no ONNX function in the dynamo exporter"]),
])
def test_export_failures_exit_4_naming_the_cause(args, phrases, bad_models, tmp_path) -> None:
    result = _run([a.format(file=bad_models) for a in args], tmp_path)
    assert result.exit_code == 4, result.output
    for phrase in phrases:
        assert phrase.format(file=bad_models) in result.output
    assert "Traceback" not in result.output
