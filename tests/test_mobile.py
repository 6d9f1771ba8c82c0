"""Phones and boards: attn-export --ort-format writes model.ort and required_operators.config, --executorch writes
model.pte (and with --int8 model.int8.pte); each has its own parity row, and runtimes run each equal to PyTorch
(the .ort also in the torch-free [ort] install). The files come from the shared session exports
(``exports.EXTRA_ARTIFACTS``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import runtimes
from runtimes.bench.cli import main as attn_bench
from runtimes.specs import random_inputs

from .conftest import run_cli_without, small_model
from .exports import TEST_PROFILE, exported
from .slim_envs import slim_python

MODELS = ("c2f_ca", "transformer_encoder")  # .ort: an image model, and ids + mask
PTE_MODELS = ("c2f_ca", "resnet50_sa", "transformer_encoder")
PTE_INT8_MODELS = ("resnet50_sa", "transformer_encoder")  # c2f_ca's INT8 on trained weights: test_accuracy


@pytest.fixture(scope="module")
def ort_exports(artifacts_root) -> dict:
    return {name: exported(name, artifacts_root) for name in MODELS}


def pytorch(name: str, folder: Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of ``name`` with the export's own weights."""
    model = small_model(name)
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    with torch.inference_mode():
        want = model(*(torch.from_numpy(arrays[s.name]) for s in model.input_specs))
    return (want if isinstance(want, tuple) else (want,))[0].numpy()


# operators each .ort must list: the plain ones and the com.microsoft fusions onnxruntime made before saving
ORT_FORMAT_OPS = {"c2f_ca": {"Conv", "FusedConv", "ReduceMean", "Split"},
                  "transformer_encoder": {"MatMul", "FusedMatMul", "SkipLayerNormalization", "Softmax"}}


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
    assert ORT_FORMAT_OPS[name] <= ops  # the .ort holds onnxruntime's optimised graph: its fused kernels too


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 3, TEST_PROFILE.max, TEST_PROFILE.max + 3])
def test_ort_file_equals_pytorch_at_every_batch(name, batch, ort_exports) -> None:
    """The .ort keeps the dynamic batch: 1, odd, the profile max, and above it."""
    folder, _ = ort_exports[name]
    arrays = random_inputs(small_model(name).input_specs, batch, seed=batch, dims={"seq": 9})
    want = pytorch(name, folder, arrays)
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
    python = slim_python("ort", tmp_path_factory)
    image = np.random.default_rng(4).standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = subprocess.run([str(python), "-c", SLIM_SCRIPT, str(folder / "model.ort"), str(tmp_path / "image.npy"),
                             str(tmp_path / "out.npy")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with runtimes.load(folder) as rt:
        want = rt({"image": image})["logits"]
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (2, 10) and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


# ----- ExecuTorch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PTE_MODELS)
def test_pte_has_a_passing_parity_row_and_its_delegation_counts(name, artifacts_root) -> None:
    from executorch.version import __version__

    folder, manifest = exported(name, artifacts_root)
    row = manifest["parity"]["executorch"]
    assert row["passed"] and row["worst"]["max_rel"] <= 1e-4 and row["batches"] == [1, 2, 3, 4]
    report = json.loads((folder / "parity.json").read_text())["executorch"]
    assert report["candidate"].startswith("executorch") and report["candidate"].endswith("model.pte")
    info = manifest["executorch"]
    assert info["executorch"] == __version__ and info["bytes"] == (folder / "model.pte").stat().st_size
    assert info["xnnpack_ops"] > 10 and info["xnnpack_subgraphs"] >= 1
    assert info["portable_ops"] == sum(info["portable_op_types"].values())
    assert "model.pte" in runtimes.verify(folder)


def test_ort_file_is_converted_without_the_pad_into_max_pool_fold(tmp_path) -> None:
    """conv, zero pad, max-pool (BiT's stem): the ``.ort`` converter bakes its optimisations into the file, and its
    "Pad_Fusion" would fold the pad into the pool (which pads with -inf); written by ``write_ort`` the file, run
    with no further optimisation, equals PyTorch, and the converter's sessions are as they were afterwards."""
    import onnxruntime as ort

    from exporter.formats.ort_format import write_ort

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ConstantPad2d(1, 0.0),
                                 torch.nn.MaxPool2d(3, 2)).eval()
    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(module, (x,), str(tmp_path / "model.onnx"), dynamo=False, opset_version=18)
    session_type = ort.InferenceSession
    ort_path, _, _ = write_ort(tmp_path / "model.onnx", tmp_path)
    assert ort.InferenceSession is session_type
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(ort_path), options, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        want = module(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - want).max() < 1e-5


def test_c2f_ca_names_the_operators_xnnpack_left_to_portable_kernels(artifacts_root) -> None:
    """Coordinate attention pools over one axis (mean.dim) and splits its output: XNNPACK takes neither."""
    _, manifest = exported("c2f_ca", artifacts_root)
    fallback = manifest["executorch"]["portable_op_types"]
    assert fallback["mean_dim"] == 9 and fallback["split_with_sizes_copy"] == 4  # 4 CA blocks x 2 pools + head
    assert manifest["executorch"]["portable_ops"] >= 21


@pytest.mark.parametrize("name", PTE_INT8_MODELS)
def test_int8_pte_is_quantized_smaller_and_passes_int8_parity(name, artifacts_root) -> None:
    folder, manifest = exported(name, artifacts_root)
    row, info = manifest["parity"]["executorch_int8"], manifest["executorch_int8"]
    assert row["passed"] and row["worst"]["min_cosine"] >= 0.99 and row["worst"]["max_rel"] > 1e-4  # really INT8
    assert info["step"] == "default" and info["tries"][0]["passed"] and info["samples"] == 8
    assert info["calibration"] == manifest["int8"]["calibration"]  # the same data as the ONNX INT8
    assert info["bytes"] < 0.5 * manifest["executorch"]["bytes"]


class _Verdict:
    """A stand-in parity report: truthy when it passes, with the ``worst`` every report has."""

    def __init__(self, passed: bool) -> None:
        self.passed, self.worst = passed, {"min_cosine": 1.0 if passed else 0.9}

    def __bool__(self) -> bool:
        return self.passed


def test_a_step_its_simulation_rejects_is_not_lowered_but_the_last_always_is() -> None:
    """The ExecuTorch INT8 widening screens each step's quantized program in PyTorch before lowering it: a
    rejected step costs no lowering, the file's own check still decides every step lowered, and the last step
    is always written and checked."""
    from exporter.checks.widening import widen_until_parity
    from exporter.formats.executorch_pte import WIDENING_STEPS

    first, second, last = (s.name for s in WIDENING_STEPS)
    lowered: list[str] = []

    def run(simulation: dict[str, bool], file: dict[str, bool]) -> dict:
        lowered.clear()
        info, report = widen_until_parity(WIDENING_STEPS, lambda step: lowered.append(step.name) or {},
                                          lambda: _Verdict(file[lowered[-1]]), bool,
                                          lambda step: _Verdict(simulation[step.name]))
        return {**info, "passed": bool(report)}

    info = run({first: False, second: True}, {second: False, last: True})  # the simulation passed, the file not
    assert lowered == [second, last] and info["step"] == last and info["passed"]
    assert [(t["step"], t["passed"], t.get("screened", False)) for t in info["tries"]] == [
        (first, False, True), (second, False, False), (last, True, False)]
    info = run({first: False, second: False}, {last: False})  # random init: only the last file is made
    assert lowered == [last] and not info["passed"] and len(info["tries"]) == 3
    info = run({first: True}, {first: True})  # trained weights: the first step, one lowering
    assert lowered == [first] and info["step"] == first and len(info["tries"]) == 1



def test_a_lowering_that_crashes_fails_its_step_and_the_next_is_tried() -> None:
    """nextvit_small's first INT8 lowering crashed in XNNPACK's partitioner ("Invalid partition, found
    dependency cycles"): a crash fails that step (its reason recorded) while a wider step is left; at the last
    step it is the stage's failure."""
    from exporter.checks.widening import widen_until_parity
    from exporter.errors import ToolCrashError, tool_failure
    from exporter.formats.executorch_pte import WIDENING_STEPS

    first, second, last = (s.name for s in WIDENING_STEPS)
    cycles = AssertionError("Invalid partition, found dependency cycles")

    def build(crashes: set[str]):
        def run(step) -> dict:
            if step.name in crashes:
                raise tool_failure("ExecuTorch lowering", cycles)
            return {"built": step.name}
        return run

    info, report = widen_until_parity(WIDENING_STEPS, build({first}), lambda: _Verdict(True), bool,
                                      build_failures=(ToolCrashError,))
    assert info["built"] == second and info["step"] == second and bool(report)
    reason = "ExecuTorch lowering failed: AssertionError: Invalid partition, found dependency cycles"
    assert info["tries"][0] == {"step": first, "passed": False, "worst": None, "error": reason}
    with pytest.raises(ToolCrashError, match="dependency cycles"):
        widen_until_parity(WIDENING_STEPS, build({first, second, last}), lambda: _Verdict(True), bool,
                           build_failures=(ToolCrashError,))
    with pytest.raises(ToolCrashError):  # without build_failures (the ONNX stages): the first crash is final
        widen_until_parity(WIDENING_STEPS, build({first}), lambda: _Verdict(True), bool)


def test_the_stage_names_the_step_whose_lowering_crashed(tmp_path, monkeypatch) -> None:
    """Every step lowered (no screen) and every lowering crashing: the stage fails once, at the last step, and
    its one line says which step that was."""
    from exporter.errors import ToolCrashError, tool_failure
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    lowered: list[int] = []

    def crash(program, *args):
        lowered.append(len(program.graph.nodes))
        raise tool_failure("ExecuTorch lowering", AssertionError("Invalid partition, found dependency cycles"))

    monkeypatch.setattr(pte, "lower_to_pte", crash)
    torch.manual_seed(0)
    specs, outputs = [TensorSpec("x", ("batch", 16))], [TensorSpec("y", ("batch", 10))]
    calibration = {"x": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)}
    with pytest.raises(ToolCrashError) as info:
        pte.quantize_until_parity(_ConcatBiasQkv().eval(), specs, outputs, (torch.randn(2, 16),), 4, calibration,
                                  tmp_path / "model.int8.pte", lambda path: None)
    assert len(lowered) == len(pte.WIDENING_STEPS) == 3
    assert str(info.value) == ("ExecuTorch lowering failed: AssertionError: Invalid partition, found dependency cycles "
                               "(widening step 3/3: convolutions and linears only, first and last in float)")
    assert not (tmp_path / "model.int8.pte").exists()

class _ConcatBiasQkv(torch.nn.Module):
    """EVA-02's attention input: ``F.linear`` with a bias the graph concatenates at every call, then a plain
    linear."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(16, 48, bias=False)
        self.q_bias, self.v_bias = torch.nn.Parameter(torch.randn(16)), torch.nn.Parameter(torch.randn(16))
        self.register_buffer("k_bias", torch.zeros(16), persistent=False)
        self.proj = torch.nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return self.proj(torch.nn.functional.linear(x, self.qkv.weight, bias))


def test_a_layer_with_a_computed_bias_stays_float_and_the_int8_pte_lowers_and_runs(tmp_path) -> None:
    """Quantized, the computed-bias layer (which XNNPACK does not take) left a per-channel dequantize for the
    runtime wheel, which has no such kernel: lowering failed with "Missing out variants" (eva02_tiny). Now it
    stays float on the portable kernels, the plain linear is quantized and delegated, and the file runs."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module = _ConcatBiasQkv().eval()
    specs, outputs = [TensorSpec("x", ("batch", 16))], [TensorSpec("y", ("batch", 10))]
    graph = pte.bounded_program(module, specs, (torch.randn(2, 16),), 4).module().graph
    assert pte.computed_weight_nodes(graph) == {"linear"}  # the qkv; "linear_1" (proj) holds its weights
    calibration = {"x": np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)}
    unfolded = pte.bounded_program(module, specs, (torch.randn(2, 16),), 4).module()  # as a bias from the input
    program = pte.quantize_pt2e(module, specs, (torch.randn(2, 16),), 4, calibration, pte.WIDENING_STEPS[0],
                                captured=unfolded)
    report = pte.lower_to_pte(program, tmp_path / "model.int8.pte", specs, outputs)
    assert report["portable_op_types"] == {"addmm": 1} and report["xnnpack_ops"] >= 1
    x = calibration["x"][:3]
    with runtimes.load(tmp_path / "model.int8.pte", engine="executorch") as rt:
        got = rt({"x": x})["y"]
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 10) and np.abs(got - want).max() <= 0.05 * np.abs(want).max()  # INT8 of proj only


class _StandardizedConv(torch.nn.Module):
    """NF-ResNet's ``ScaledStdConv2d``: the weight standardized (a ``batch_norm`` over it) at every call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.gain = torch.nn.Parameter(torch.full((8, 1, 1, 1), 1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.nn.functional.batch_norm(self.conv.weight.reshape(1, 8, -1), None, None,
                                                weight=(self.gain * 27 ** -0.5).view(-1), training=True,
                                                momentum=0.0, eps=1e-6).reshape_as(self.conv.weight)
        return torch.nn.functional.conv2d(x, weight, self.conv.bias, padding=1).mean((2, 3))


def test_computed_weights_are_folded_so_xnnpack_takes_the_layer_in_fp32_and_int8(tmp_path) -> None:
    """A standardized convolution's weight, computed from parameters, is folded into a constant: XNNPACK takes the
    convolution (unfolded it stays on the portable kernels), FP32 and INT8, and both files equal PyTorch. A
    program without computed weights is left as it is."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module, example = _StandardizedConv().eval(), (torch.randn(2, 3, 8, 8),)
    specs, outputs = [TensorSpec("x", ("batch", 3, 8, 8))], [TensorSpec("y", ("batch", 8))]
    unfolded = pte.bounded_program(module, specs, example, 4)
    plain = pte.bounded_program(_NormedLinear().eval(), [TensorSpec("x", ("batch", 8))], (torch.randn(2, 8),), 4)
    assert pte.fold_computed_weights(plain) is plain
    before = pte.lower_to_pte(unfolded, tmp_path / "unfolded.pte", specs, outputs)
    after = pte.lower_to_pte(pte.float_program(module, specs, example, 4), tmp_path / "model.pte", specs, outputs)
    assert "convolution" in before["portable_op_types"] and "convolution" not in after["portable_op_types"]
    calibration = {"x": np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)}
    program = pte.quantize_pt2e(module, specs, example, 4, calibration, pte.WIDENING_STEPS[0])
    int8 = pte.lower_to_pte(program, tmp_path / "model.int8.pte", specs, outputs)
    assert "convolution" not in int8["portable_op_types"]
    x = calibration["x"][:3]
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
    for name, tolerance in (("model.pte", 1e-5), ("model.int8.pte", 0.05)):
        with runtimes.load(tmp_path / name, engine="executorch") as rt:
            got = rt({"x": x})["y"]
        assert got.shape == (3, 8) and np.abs(got - want).max() <= tolerance * np.abs(want).max(), name


def test_global_pooling_stays_float_at_every_int8_step() -> None:
    """ExecuTorch 1.5.1's XNNPACK computed fastvit_sa12's quantized global pool (after a GELU, which stays float)
    wrong at batch > 1. At every step, even the default, the pool now takes the GELU's float output with no
    quantize-dequantize pair before it, while the convolution before them is quantized at the default step."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    specs = [TensorSpec("x", ("batch", 3, 8, 8))]
    calibration = {"x": np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)}
    for step in pte.WIDENING_STEPS:
        graph = pte.quantize_pt2e(module, specs, (torch.randn(2, 3, 8, 8),), 4, calibration, step).graph
        source = {node.name: str(node.args[0].target) for node in graph.nodes
                  if node.op == "call_function" and isinstance(node.args[0], torch.fx.Node)}
        (pool,) = [name for name in source if name.startswith("adaptive_avg_pool2d")]
        assert "gelu" in source[pool], (step.name, source[pool])
        (conv,) = [name for name in source if name.startswith("conv2d")]
        assert ("dequantize" in source[conv]) != step.float_ends, (step.name, source[conv])


class _PatchMerging(torch.nn.Module):
    """swinv2's patch merging after a residual add: add → pad → reshape/permute/flatten → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.mix, self.reduction, self.head = torch.nn.Linear(8, 8), torch.nn.Linear(32, 16), torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(x)
        x = torch.nn.functional.pad(x, (0, 0, 0, 2, 0, 2))
        batch, height, width, channels = x.shape
        x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.head(self.reduction(x).mean((1, 2)))


def test_a_pad_after_a_quantized_add_runs_on_the_portable_kernels_and_the_int8_pte_loads(tmp_path) -> None:
    """Delegated, the pad between the quantized add and the quantized view chain made XNNPACK's runtime refuse
    the file at load ("Failed to create StaticConstantPad node", swinv2_tiny's second step). Left to the portable
    kernels, the file loads and computes what PyTorch's simulation of the same quantized program does."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module = _PatchMerging().eval()
    specs, outputs = [TensorSpec("x", ("batch", 4, 4, 8))], [TensorSpec("y", ("batch", 10))]
    calibration = {"x": np.random.default_rng(0).standard_normal((8, 4, 4, 8)).astype(np.float32)}
    program = pte.quantize_pt2e(module, specs, (torch.randn(2, 4, 4, 8),), 4, calibration, pte.WIDENING_STEPS[0])
    report = pte.lower_to_pte(program, tmp_path / "model.int8.pte", specs, outputs)
    assert report["portable_op_types"].get("constant_pad_nd") == 1 and report["xnnpack_ops"] >= 3
    x = calibration["x"][:3]
    with runtimes.load(tmp_path / "model.int8.pte", engine="executorch") as rt:
        got = rt({"x": x})["y"]
    want = pte.simulate(program.module(), specs, outputs, 4)({"x": x})["y"]
    assert got.shape == (3, 10) and np.abs(got - want).max() <= 0.02 * np.abs(want).max()


def test_negative_pad_amounts_become_crops_and_a_non_negative_pad() -> None:
    from exporter.formats.edge_rewrites import crop_amounts

    assert crop_amounts([-1, -1, -1, -1], 4) == ([(3, 1, -1), (2, 1, -1)], [0, 0, 0, 0])
    assert crop_amounts([2, -3, 0, 0, -1, 1], 3) == ([(2, 0, -3), (0, 1, sys.maxsize)], [2, 0, 0, 0, 0, 1])
    assert crop_amounts([1, 2], 2) == ([], [1, 2])


class _FoldBack(torch.nn.Module):
    """VOLO's outlook attention in small: unfold, scale, fold back; PyTorch's fold decomposition crops its
    padding with a negative ``constant_pad_nd``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = torch.nn.functional.unfold(x, 3, padding=1)
        return torch.nn.functional.fold(columns * 0.5, (8, 8), 3, padding=1)


def test_a_fold_lowers_to_a_pte_that_runs_and_matches_pytorch(tmp_path) -> None:
    """The portable kernel refused fold's negative pad at run time (error 0x12, volo_d1_224's .pte): it is now
    lowered as crops, and the file computes PyTorch's fold at batch sizes 1 and 3."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    module = _FoldBack().eval()
    specs, outputs = [TensorSpec("x", ("batch", 4, 8, 8))], [TensorSpec("y", ("batch", 4, 8, 8))]
    program = pte.bounded_program(module, specs, (torch.randn(2, 4, 8, 8),), 4)
    report = pte.lower_to_pte(program, tmp_path / "model.pte", specs, outputs)
    assert "constant_pad_nd" not in report["portable_op_types"]
    assert report["portable_op_types"]["slice_copy_tensor"] == 2
    x = np.random.default_rng(0).standard_normal((3, 4, 8, 8)).astype(np.float32)
    with runtimes.load(tmp_path / "model.pte", engine="executorch") as rt, torch.inference_mode():
        for batch in (1, 3):
            want = module(torch.from_numpy(x[:batch])).numpy()
            assert np.abs(rt({"x": x[:batch]})["y"] - want).max() <= 1e-5 * np.abs(want).max()


class _SharedDequantize(torch.nn.Module):
    """One dequantize read by two consumers PT2E left in float, as nextvit_small's residual around its MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = torch.ops.quantized_decomposed
        q = ops.quantize_per_tensor(x, 0.05, 0, -128, 127, torch.int8)
        d = ops.dequantize_per_tensor(q, 0.05, 0, -128, 127, torch.int8)
        return d + torch.relu(d) * 2


def test_a_shared_dequantize_gets_one_copy_per_user() -> None:
    from executorch.exir import EdgeCompileConfig, to_edge
    from executorch.exir.dialects._ops import ops as exir_ops

    from exporter.formats.edge_rewrites import duplicate_shared_dequantize

    x = torch.randn(3, 16)
    edge = to_edge(torch.export.export(_SharedDequantize(), (x,)),
                   compile_config=EdgeCompileConfig(_check_ir_validity=False)).exported_program()
    dequantize = exir_ops.edge.quantized_decomposed.dequantize_per_tensor.default

    def readers() -> list[int]:
        return sorted(len(n.users) for n in edge.graph_module.graph.nodes if n.target is dequantize)

    want = edge.module()(x)
    assert readers() == [2]
    assert duplicate_shared_dequantize(edge.graph_module).modified
    assert readers() == [1, 1] and torch.equal(edge.module()(x), want)
    assert not duplicate_shared_dequantize(edge.graph_module).modified  # nothing left to copy


def test_halo_attention_lowers_to_a_pte_that_matches_pytorch(tmp_path) -> None:
    """timm's HaloAttn (halonet26t's attention): a reshape of its unfolded windows is an identity clone, which
    XNNPACK removed inside a partition whose output it was ("Output node … is already in the inputs", the
    lowering failed). With identity clones dropped first, the file lowers and computes PyTorch's output."""
    from timm.layers.halo_attn import HaloAttn

    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module = HaloAttn(16, num_heads=2, block_size=4, halo_size=1).eval()
    specs, outputs = [TensorSpec("x", ("batch", 16, 8, 8))], [TensorSpec("y", ("batch", 16, 8, 8))]
    program = pte.bounded_program(module, specs, (torch.randn(2, 16, 8, 8),), 4)
    report = pte.lower_to_pte(program, tmp_path / "model.pte", specs, outputs)
    assert report["xnnpack_subgraphs"] >= 1 and "clone_dim_order" not in str(report["portable_op_types"])
    x = np.random.default_rng(0).standard_normal((3, 16, 8, 8)).astype(np.float32)
    with runtimes.load(tmp_path / "model.pte", engine="executorch") as rt, torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
        assert np.abs(rt({"x": x})["y"] - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("kernel,padding,converted", [((3, 3, 1), (1, 1, 0), True), ((1, 3, 3), (0, 1, 1), True),
                                                       ((3, 1, 2), (1, 0, 0), True), ((3, 3, 3), (1, 1, 1), False)])
def test_a_depth_one_conv3d_becomes_the_same_conv2d(kernel, padding, converted) -> None:
    """A 3-D convolution 1 wide (stride 1, no padding) along any spatial axis is replaced, in a copy, by a 2-D
    one over the other two axes with that axis in the batch: the same output. Any other stays as it is."""
    from exporter.formats.conv3d_as_conv2d import AxisBatchedConv2d, conv3d_as_conv2d

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv3d(2, 4, kernel, padding=padding)).eval()
    replaced = conv3d_as_conv2d(module)
    assert isinstance(replaced[0], AxisBatchedConv2d) == converted and (replaced is module) != converted
    assert isinstance(module[0], torch.nn.Conv3d)  # the caller's module is left as it was
    x = torch.randn(3, 2, 5, 6, 7)
    with torch.inference_mode():
        torch.testing.assert_close(replaced(x), module(x))


def test_a_lambda_layer_lowers_to_a_pte_that_matches_pytorch(tmp_path) -> None:
    """timm's LambdaLayer (lambda_resnet26t) computes its position term with an ``nn.Conv3d`` of kernel r × r × 1,
    which ExecuTorch ran nowhere (the portable kernel refused the 5-D input, error 0x12); as a 2-D convolution
    it is delegated and the file computes PyTorch's output."""
    from timm.layers.lambda_layer import LambdaLayer

    from exporter.formats import executorch_pte as pte
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module = LambdaLayer(16, dim_out=16, r=3, num_heads=2, dim_head=4).eval()
    specs, outputs = [TensorSpec("x", ("batch", 16, 8, 8))], [TensorSpec("y", ("batch", 16, 8, 8))]
    program = pte.bounded_program(module, specs, (torch.randn(2, 16, 8, 8),), 4)
    report = pte.lower_to_pte(program, tmp_path / "model.pte", specs, outputs)
    assert "convolution" not in report["portable_op_types"] and report["xnnpack_ops"] >= 1
    x = np.random.default_rng(0).standard_normal((3, 16, 8, 8)).astype(np.float32)
    with runtimes.load(tmp_path / "model.pte", engine="executorch") as rt, torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
        assert np.abs(rt({"x": x})["y"] - want).max() <= 1e-5 * np.abs(want).max()


class _RepMixerLike(torch.nn.Module):
    """A conv-bn pair (which prepare_pt2e folds) and, as in fastvit's RepMixer, a batch norm after an add, with no
    convolution before it: the graph keeps a batch norm, so convert_pt2e tries its QAT folding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.mixer = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return self.head(self.mixer(y + x.mean(1, keepdim=True)).mean((2, 3)))


def test_ptq_convert_skips_the_qat_folding_and_gives_the_same_graph_and_outputs() -> None:
    """convert_ptq against torchao's own convert_pt2e on copies of one calibrated graph: the QAT conv-bn folding,
    the slow part on fastvit_sa12, finds nothing to fold in a post-training graph."""
    import copy

    from torchao.quantization.pt2e import quantize_pt2e

    from exporter.formats import executorch_pte as pte
    from exporter.formats.ptq_convert import convert_ptq
    from runtimes.specs import TensorSpec

    torch.manual_seed(0)
    module = _RepMixerLike().eval()
    for norm in (module.bn, module.mixer):  # statistics that are not the identity
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
    specs = [TensorSpec("x", ("batch", 3, 8, 8))]
    x = torch.randn(3, 3, 8, 8)
    captured = pte.bounded_program(module, specs, (x[:2],), 4).module()
    prepared = quantize_pt2e.prepare_pt2e(captured, pte._quantizer(pte.WIDENING_STEPS[0], captured.graph))
    prepared(x)
    assert any("batch_norm" in str(n.target) for n in prepared.graph.nodes)  # the fold is attempted here
    ours, theirs = convert_ptq(copy.deepcopy(prepared)), quantize_pt2e.convert_pt2e(copy.deepcopy(prepared))
    assert ours.code == theirs.code
    assert torch.equal(ours(x), theirs(x))


def test_partition_order_moves_only_the_nodes_out_of_order_and_computes_the_same() -> None:
    """ExecuTorch's per-partition re-ordering, done in place: a node placed before its input moves after it, the
    rest keep their order, the module computes the same; an ordered graph is left as it is (no new code); inside
    the context ExecuTorch calls the variant that leaves the code alone, and the original is back after."""
    from executorch.exir import lowered_backend_module

    from exporter.formats import partition_order

    class Chain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.relu(x)
            b = a * 2
            c = torch.sin(x)
            return b + c

    module = torch.fx.symbolic_trace(Chain())
    x = torch.randn(3, 4)
    expected = module(x)
    ordered = [n.name for n in module.graph.nodes]
    code = module.code
    assert partition_order.sort_in_place(module).code is code  # already in order: nothing moved, no codegen
    relu, mul = (n for n in module.graph.nodes if n.name in ("relu", "mul"))
    relu.prepend(mul)  # mul now comes before its input relu
    assert [n.name for n in module.graph.nodes] != ordered
    partition_order.sort_in_place(module)
    assert [n.name for n in module.graph.nodes] == ordered
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)
    original = lowered_backend_module.legalize_graph
    with partition_order.in_place_partition_order():
        assert lowered_backend_module.legalize_graph is partition_order.sort_for_partitioning
    assert lowered_backend_module.legalize_graph is original
    relu.prepend(mul)
    code = module.code
    partition_order.sort_for_partitioning(module)  # sorted, the code left as it was
    assert [n.name for n in module.graph.nodes] == ordered and module.code is code


def test_shared_provenance_keeps_every_chain_and_copies_none_of_it() -> None:
    """Under ``shared_provenance`` two rounds of decompositions record the same ``from_node`` chains (pass, node
    and target at every level) as without it, but a later program's chains hold the earlier program's
    ``NodeSource`` objects themselves instead of deep copies; the patch is undone on exit."""
    from torch.fx import traceback as fx_traceback

    from exporter.formats.fx_provenance import shared_provenance

    def chain(sources: list) -> list:
        return [(s.pass_name, s.node_info.name, s.node_info.target, chain(s.from_node)) for s in sources]

    def depth(sources: list) -> int:
        return max((1 + depth(s.from_node) for s in sources), default=0)

    def objects(program: torch.export.ExportedProgram) -> set[int]:
        found: set[int] = set()
        pending = [s for n in program.graph.nodes for s in n.meta.get("from_node", [])]
        while pending:
            source = pending.pop()
            found.add(id(source))
            pending.extend(source.from_node)
        return found

    class SiluTwice(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.silu(x) * 2

    program = torch.export.export(SiluTwice(), (torch.randn(2, 3),))
    original = fx_traceback.NodeSource.__init__
    first = program.run_decompositions()
    copied = first.run_decompositions()
    with shared_provenance():
        shared_first = program.run_decompositions()
        shared = shared_first.run_decompositions()
    assert fx_traceback.NodeSource.__init__ is original
    assert [chain(n.meta.get("from_node", [])) for n in shared.graph.nodes] == \
        [chain(n.meta.get("from_node", [])) for n in copied.graph.nodes]
    assert max(depth(n.meta.get("from_node", [])) for n in shared.graph.nodes) == 4  # two rounds, two levels each
    assert not objects(first) & objects(copied)  # torch's own: every level deep-copied
    assert objects(shared_first) <= objects(shared)  # shared: the earlier program's chains themselves


class _NormedLinear(torch.nn.Module):
    """A linear and a layer norm over a dynamic batch: the default table decomposes the norm, and the graph
    holds ``sym_size`` nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x)).reshape(x.shape[0], -1)


def test_needless_decomposition_is_told_apart_and_changes_nothing() -> None:
    """``decomposes_nothing``: not for the training IR (even with an empty table), not while the default table
    still has work; yes for the empty table on functional ATen, and once only ``sym_size`` (in the table, but
    decomposing into itself) is left; those calls, run anyway, give back the same operators."""
    from executorch.exir.tracer import _default_decomposition_table

    from exporter.formats.needless_decompositions import decomposes_nothing

    def targets(program: torch.export.ExportedProgram) -> list[str]:
        return [str(n.target) for n in program.graph.nodes if n.op == "call_function"]

    table = _default_decomposition_table()
    training = torch.export.export(_NormedLinear().eval(), (torch.randn(2, 8),),
                                   dynamic_shapes=({0: torch.export.Dim("batch", max=4)},))
    functional = training.run_decompositions({})
    assert not decomposes_nothing(training, table) and not decomposes_nothing(training, {})
    assert decomposes_nothing(functional, {}) and targets(functional.run_decompositions({})) == targets(functional)
    assert "aten.layer_norm.default" in targets(functional) and not decomposes_nothing(functional, table)
    decomposed = functional.run_decompositions(table)
    assert "aten.sym_size.int" in targets(decomposed) and "aten.layer_norm.default" not in targets(decomposed)
    assert decomposes_nothing(decomposed, table)
    assert targets(decomposed.run_decompositions(table)) == targets(decomposed)


def test_needless_decomposition_skipped_in_lowering_and_the_pte_is_the_same(tmp_path, monkeypatch) -> None:
    """``lower_to_pte`` skips one decomposition of a dynamic-batch program (``decompose_once`` left out: it
    leaves more to skip, tested below), and writes the same bytes as a lowering that runs every one."""
    import contextlib

    from exporter.formats import executorch_pte, needless_decompositions
    from runtimes.specs import BATCH, TensorSpec

    specs, outputs = (TensorSpec("x", (BATCH, 8)),), (TensorSpec("y", (BATCH, 8)),)
    skipped: list[int] = []

    @contextlib.contextmanager
    def counted():
        with needless_decompositions.skip_needless_decompositions() as calls:
            yield calls
        skipped.append(len(calls))

    def lowered(name: str, leave_out: tuple[str, ...] = ()) -> bytes:
        torch.manual_seed(0)
        program = executorch_pte.bounded_program(_NormedLinear().eval(), specs, (torch.randn(2, 8),), 4)
        executorch_pte.lower_to_pte(program, tmp_path / name, specs, outputs, leave_out)
        return (tmp_path / name).read_bytes()

    monkeypatch.setitem(executorch_pte.LOWERING_WORKAROUNDS, "needless_decompositions", counted)
    with_skip = lowered("skip.pte", leave_out=("decompose_once",))
    assert skipped == [1]
    assert with_skip == lowered("every.pte", leave_out=("decompose_once", "needless_decompositions"))
    assert skipped == [1]


def test_decomposed_once_then_executorch_decomposes_nothing_and_the_pte_is_the_same(tmp_path, monkeypatch) -> None:
    """``decompose_once`` functionalizes and decomposes a training-IR program in one call, after which all three
    of ExecuTorch's decompositions are skipped as needless; the ``.pte`` has the same bytes as one lowered
    without it. Not for a program already in ATen, nor without a partitioner."""
    import contextlib

    from exporter.formats import decompose_once, executorch_pte, needless_decompositions
    from runtimes.specs import BATCH, TensorSpec

    specs, outputs = (TensorSpec("x", (BATCH, 8)),), (TensorSpec("y", (BATCH, 8)),)
    counts: dict[str, list[int]] = {"once": [], "skipped": []}

    def counting(name: str, workaround):
        @contextlib.contextmanager
        def counted():
            with workaround() as calls:
                yield calls
            counts[name].append(len(calls))
        return counted

    def program() -> torch.export.ExportedProgram:
        torch.manual_seed(0)
        return executorch_pte.bounded_program(_NormedLinear().eval(), specs, (torch.randn(2, 8),), 4)

    def lowered(name: str, leave_out: tuple[str, ...] = ()) -> bytes:
        executorch_pte.lower_to_pte(program(), tmp_path / name, specs, outputs, leave_out)
        return (tmp_path / name).read_bytes()

    monkeypatch.setitem(executorch_pte.LOWERING_WORKAROUNDS, "decompose_once",
                        counting("once", decompose_once.decompose_once))
    monkeypatch.setitem(executorch_pte.LOWERING_WORKAROUNDS, "needless_decompositions",
                        counting("skipped", needless_decompositions.skip_needless_decompositions))
    once = lowered("once.pte")
    assert counts == {"once": [1], "skipped": [3]}
    assert once == lowered("twice.pte", leave_out=("decompose_once",))
    assert counts == {"once": [1], "skipped": [3, 1]}
    partitioner = executorch_pte.xnnpack_partitioner()
    assert decompose_once.applies(program(), [partitioner])
    assert not decompose_once.applies(program().run_decompositions({}), [partitioner])
    assert not decompose_once.applies(program(), [])


@pytest.mark.parametrize("name,precision", [(n, "fp32") for n in PTE_MODELS] + [(n, "int8") for n in PTE_INT8_MODELS])
@pytest.mark.parametrize("batch", [1, 3, TEST_PROFILE.max, TEST_PROFILE.max + 3])
def test_pte_equals_pytorch_at_every_batch(name, precision, batch, artifacts_root) -> None:
    """1, odd, the bound and above it: the batch above the .pte's bound is chunked, never ExecuTorch's 0x10."""
    folder, _ = exported(name, artifacts_root)
    arrays = random_inputs(small_model(name).input_specs, batch, seed=batch, dims={"seq": 9})
    want = pytorch(name, folder, arrays)
    with runtimes.load(folder, engine="executorch", precision=precision) as rt:
        assert rt.max_batch == TEST_PROFILE.max and rt.path.name == f"model{'.int8' if precision == 'int8' else ''}.pte"
        got = rt(arrays)[rt.output_specs[0].name]
    assert got.shape == want.shape
    if precision == "fp32":
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    else:
        cosine = (got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want))
        assert cosine >= 0.99


@pytest.mark.parametrize("engine", ["torch", "executorch"])
def test_read_only_input_is_copied_for_torch_and_answers_the_same(engine, artifacts_root) -> None:
    """A served request's tensor is a read-only np.frombuffer view: torch.from_numpy would warn ("not
    writable", once per process), so the torch-based engines copy exactly those and share the rest."""
    import torch

    from runtimes.engines.torch_rt import from_numpy

    image = random_inputs(small_model("c2f_ca").input_specs, 2, seed=3)["image"]
    read_only = np.frombuffer(image.tobytes(), np.float32).reshape(image.shape)
    assert not read_only.flags.writeable
    assert from_numpy(torch, read_only).data_ptr() != read_only.ctypes.data  # copied
    assert from_numpy(torch, image).data_ptr() == image.ctypes.data  # shared
    folder, _ = exported("c2f_ca", artifacts_root)
    with runtimes.load(folder, engine=engine) as rt:
        np.testing.assert_array_equal(rt({"image": read_only})["logits"], rt({"image": image})["logits"])


def test_lone_pte_opens_with_its_own_specs_and_bound(artifacts_root) -> None:
    """No manifest: names, the named seq axis, its maximum and the batch bound come from the file."""
    folder, _ = exported("transformer_encoder", artifacts_root)
    with runtimes.load(folder / "model.pte", engine="executorch") as rt:
        assert [s.name for s in rt.input_specs] == ["tokens", "mask"] and rt.input_specs[0].shape == ("batch", "seq")
        assert rt.input_specs[0].max_dims == {"seq": 100} and rt.max_batch == TEST_PROFILE.max
        assert [s.name for s in rt.output_specs] == ["hidden"] and rt.output_specs[0].shape == ("batch", "seq", 256)
        arrays = random_inputs(rt.input_specs, 6, seed=1, dims={"seq": 11})
        got = rt(arrays)["hidden"]
    assert got.shape[:2] == (6, 11)
    assert np.abs(got - pytorch("transformer_encoder", folder, arrays)).max() <= 1e-4 * np.abs(got).max()


def test_attn_bench_runs_executorch_fp32_and_int8(artifacts_root, tmp_path) -> None:
    folder, _ = exported("resnet50_sa", artifacts_root)
    result = CliRunner().invoke(attn_bench, [str(folder), "--engine", "ort", "--engine", "executorch:fp32",
                                             "--engine", "executorch:int8", "--batch", "2", "--iters", "2",
                                             "--warmup", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("ort", "fp32"), ("executorch", "fp32"),
                                                              ("executorch:int8", "int8")]
    assert all(r["p50_ms"] > 0 and r["batch"] == 2 and r["iterations"] == 2 for r in rows)


def test_edge_app_runs_the_pte_equal_to_onnxruntime(artifacts_root, tmp_path) -> None:
    folder, _ = exported("resnet50_sa", artifacts_root)
    app = Path(__file__).parents[1] / "examples" / "edge_classify.py"
    reports = {}
    for engine in ("ort", "executorch"):
        out = tmp_path / f"{engine}.json"
        result = subprocess.run([sys.executable, str(app), str(folder), "--engine", engine, "--json", str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        reports[engine] = json.loads(out.read_text())
    assert reports["executorch"]["engine"] == "executorch"
    for a, b in zip(reports["executorch"]["results"], reports["ort"]["results"]):
        assert np.abs(np.asarray(a["logits"]) - np.asarray(b["logits"])).max() <= 1e-4 * np.abs(b["logits"]).max()


def test_missing_executorch_names_the_extra(artifacts_root, tmp_path) -> None:
    """attn-export fails before any work (nothing written), runtimes.load names the extra too: exit 2 both."""
    folder, _ = exported("c2f_ca", artifacts_root)
    runs = {
        "export": ("exporter.cli", ["c2f_ca", "--num-classes", "10", "--executorch", "--out", str(tmp_path / "out")]),
        "bench": ("runtimes.bench.cli", [str(folder), "--engine", "executorch", "--iters", "1"]),
    }
    for what, (module, args) in runs.items():
        result = run_cli_without("executorch", module, args)
        assert result.returncode == 2, (what, result.stderr)
        assert "pip install 'attn-export[executorch]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


class _ConvBatchNormCat(torch.nn.Module):
    """A convolution and its batch norm (XNNPACK fuses them), a concatenation and a linear, over a dynamic batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(16, 4)
        self.norm.running_mean.uniform_(-1, 1)
        self.norm.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm(self.conv(x)))
        return self.fc(torch.cat([y, y * 2], 1).mean((2, 3)))


def test_only_passes_that_edit_in_call_or_rewrite_operators_can_skip_their_retrace() -> None:
    """A pass whose re-trace is a plain copy (it overrides ``call`` only) or that rewrites operator by operator
    (``call_operator``, with or without ``call``) may skip it; one with another per-node hook, ``ExportPass``
    itself (run for its re-trace) and a pass that is no ExportPass may not."""
    from executorch.exir.pass_base import ExportPass
    from torch.fx.passes.infra.pass_base import PassBase

    from exporter.formats.unchanged_retraces import may_skip_retrace

    class EditsInCall(ExportPass):
        def call(self, graph_module):  # type: ignore[no-untyped-def]
            return super().call(graph_module)

    class EditsWhileRetracing(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            return super().call_operator(op, args, kwargs, meta)

    class Inherits(EditsWhileRetracing):
        def call(self, graph_module):  # type: ignore[no-untyped-def]
            return super().call(graph_module)

    class RenamesInputs(ExportPass):
        def placeholder(self, name, arg, meta):  # type: ignore[no-untyped-def]
            return super().placeholder(name, arg, meta)

    class Plain(PassBase):
        def call(self, graph_module):  # type: ignore[no-untyped-def]
            return None

    passes = (EditsInCall, EditsWhileRetracing, Inherits, RenamesInputs, ExportPass, Plain)
    assert [may_skip_retrace(p) for p in passes] == [True, True, True, False, False, False]


def _edge_relu_module() -> torch.fx.GraphModule:
    """``relu(x) * 2`` in ExecuTorch's edge dialect."""
    from executorch.exir import to_edge

    class Relu(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) * 2

    return to_edge(torch.export.export(Relu(), (torch.randn(2, 4),))).exported_program().graph_module


def _operator_passes() -> dict[str, type]:
    """ExportPasses that rewrite operator by operator: one that hands every operator on, one that swaps relu for
    sigmoid, one that adds an operator after each relu, one that changes a keyword argument, one that raises."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass

    edge = exir_ops.edge.aten
    relu, sigmoid, neg = edge.relu.default, edge.sigmoid.default, edge.neg.default

    class HandsOn(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            return super().call_operator(op, tuple(args), dict(kwargs), meta)

    class ReluToSigmoid(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            return super().call_operator(sigmoid if op == relu else op, args, kwargs, meta)

    class NegatesRelu(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            out = super().call_operator(op, args, kwargs, meta)
            return super().call_operator(neg, (out,), {}, meta) if op == relu else out

    class AddsKeyword(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            return super().call_operator(op, args, {**kwargs, "extra": 1} if op == relu else kwargs, meta)

    class Raises(ExportPass):
        def call_operator(self, op, args, kwargs, meta):  # type: ignore[no-untyped-def]
            raise RuntimeError("not replayable")

    return {p.__name__: p for p in (HandsOn, ReluToSigmoid, NegatesRelu, AddsKeyword, Raises)}


def test_dry_run_tells_a_pass_that_would_rewrite_an_operator_from_one_that_would_not() -> None:
    """``rewrites_nothing`` is true only for the pass that hands every operator on unchanged (a rebuilt tuple and
    dict of the same arguments included), and leaves ``ExportPass.call_operator`` as it found it."""
    from executorch.exir.pass_base import _ExportPassBase

    from exporter.formats.rewrite_dry_run import rewrites_nothing

    original = _ExportPassBase.call_operator
    module = _edge_relu_module()
    answers = {name: rewrites_nothing(pass_type(), module) for name, pass_type in _operator_passes().items()}
    assert answers == {"HandsOn": True, "ReluToSigmoid": False, "NegatesRelu": False, "AddsKeyword": False,
                       "Raises": False}
    assert _ExportPassBase.call_operator is original


def test_an_operator_pass_with_nothing_to_rewrite_is_not_retraced() -> None:
    """Inside ``skip_unchanged_retraces`` the pass that hands every operator on gets the same module back,
    unmodified; the one that swaps relu for sigmoid is re-traced and swaps it."""
    from executorch.exir.dialects._ops import ops as exir_ops

    from exporter.formats.unchanged_retraces import skip_unchanged_retraces

    passes = _operator_passes()
    idle, edited = _edge_relu_module(), _edge_relu_module()
    with skip_unchanged_retraces() as skipped:
        idle_result, edited_result = passes["HandsOn"]()(idle), passes["ReluToSigmoid"]()(edited)
    assert skipped == ["HandsOn"]
    assert idle_result.graph_module is idle and not idle_result.modified
    targets = [n.target for n in edited_result.graph_module.graph.nodes]
    assert exir_ops.edge.aten.sigmoid.default in targets and exir_ops.edge.aten.relu.default not in targets


def test_a_pass_that_edited_nothing_is_not_retraced_and_one_that_edited_is() -> None:
    """Inside ``skip_unchanged_retraces``: a pass that left its graph as it was gets the same module back,
    unmodified; a pass that replaced an operator is re-traced (a new module, the new operator's metadata); outside,
    every pass re-traces again."""
    from executorch.exir import to_edge
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass

    from exporter.formats.unchanged_retraces import skip_unchanged_retraces

    class ReluToSigmoid(ExportPass):
        def __init__(self, edit: bool) -> None:
            super().__init__()
            self.edit = edit

        def call(self, graph_module):  # type: ignore[no-untyped-def]
            for node in graph_module.graph.nodes:
                if self.edit and node.target == exir_ops.edge.aten.relu.default:
                    node.target = exir_ops.edge.aten.sigmoid.default
            graph_module.recompile()
            return super().call(graph_module)

    class Relu(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) * 2

    def module() -> torch.fx.GraphModule:
        return to_edge(torch.export.export(Relu(), (torch.randn(2, 4),))).exported_program().graph_module

    idle, edited = module(), module()
    with skip_unchanged_retraces() as skipped:
        idle_result, edited_result = ReluToSigmoid(edit=False)(idle), ReluToSigmoid(edit=True)(edited)
    assert skipped == ["ReluToSigmoid"]
    assert idle_result.graph_module is idle and not idle_result.modified
    assert edited_result.graph_module is not edited and edited_result.modified
    sigmoid = [n for n in edited_result.graph_module.graph.nodes if n.target == exir_ops.edge.aten.sigmoid.default]
    assert len(sigmoid) == 1 and sigmoid[0].meta["val"].shape == (2, 4)
    outside = module()
    assert ReluToSigmoid(edit=False)(outside).graph_module is not outside


def test_skipped_retraces_lower_to_the_same_pte(tmp_path, monkeypatch) -> None:
    """``lower_to_pte`` skips the re-traces of XNNPACK passes that edited nothing (not the batch-norm fusion where it
    fused), and writes the same bytes as a lowering that re-traces after every pass."""
    import contextlib

    from exporter.formats import executorch_pte, unchanged_retraces
    from runtimes.specs import BATCH, TensorSpec

    specs, outputs = (TensorSpec("x", (BATCH, 3, 10, 10)),), (TensorSpec("y", (BATCH, 4)),)
    skipped: list[str] = []

    @contextlib.contextmanager
    def recorded():
        with unchanged_retraces.skip_unchanged_retraces() as names:
            yield names
        skipped.extend(names)

    def lowered(name: str, leave_out: tuple[str, ...] = ()) -> bytes:
        torch.manual_seed(0)
        program = executorch_pte.bounded_program(_ConvBatchNormCat().eval(), specs, (torch.randn(2, 3, 10, 10),), 4)
        executorch_pte.lower_to_pte(program, tmp_path / name, specs, outputs, leave_out)
        return (tmp_path / name).read_bytes()

    monkeypatch.setitem(executorch_pte.LOWERING_WORKAROUNDS, "unchanged_retraces", recorded)
    with_skips = lowered("skip.pte")
    # two partitions (the mean stays on the portable kernels): the fusion edits the first and skips the second
    assert skipped.count("Conv1dUnsqueezePass") == 2 and skipped.count("FuseBatchNormPass") == 1
    # operator passes with nothing to rewrite, per partition (dry run) and over the whole program
    assert skipped.count("DimOrderOpsRevertPass") == 2 and "LegalizePortableDimOrderPass" in skipped
    assert with_skips == lowered("every.pte", leave_out=("unchanged_retraces",))


def test_the_screened_module_computes_what_its_export_lowered_computes() -> None:
    """The widening screens each step on the converted module and exports only the step it lowers: at every step
    the converted module and its export answer bit for bit the same."""
    from exporter.formats import executorch_pte as pte
    from runtimes.specs import BATCH, TensorSpec

    specs, outputs = (TensorSpec("x", (BATCH, 3, 10, 10)),), (TensorSpec("y", (BATCH, 4)),)
    torch.manual_seed(0)
    module, example = _ConvBatchNormCat().eval(), (torch.randn(2, 3, 10, 10),)
    calibration = {"x": np.random.default_rng(0).standard_normal((8, 3, 10, 10)).astype(np.float32)}
    x = {"x": np.random.default_rng(1).standard_normal((7, 3, 10, 10)).astype(np.float32)}
    for step in pte.WIDENING_STEPS:
        converted = pte.quantized_module(module, specs, example, 4, calibration, step)
        exported = pte.bounded_program(converted, specs, example, 4).module()
        screened, lowered = (pte.simulate(m, specs, outputs, 4)(x)["y"] for m in (converted, exported))
        assert screened.shape == (7, 4) and np.array_equal(screened, lowered)


class _GatedLoop(torch.nn.Module):
    """Paths that leave XNNPACK (a layer norm, global max) and come back: merging their partitions would make
    cycles, so the partitioner must refuse some merges."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.conv2, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 1), torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        gate = torch.nn.functional.layer_norm(y.mean((2, 3)), (8,))[:, :, None, None]
        return self.fc((self.conv2(y) + y * torch.sigmoid(gate)).amax((2, 3)))


def test_the_faster_merge_check_answers_as_executorchs_own(tmp_path, monkeypatch) -> None:
    """Every merge XNNPACK's partitioner weighs while lowering a graph with paths out of XNNPACK and back is
    answered by ``merge_check.can_merge`` and by ExecuTorch's own check alike, refusals included."""
    from executorch.exir.backend.canonical_partitioners import group_partitioner

    from exporter.formats import executorch_pte, merge_check
    from runtimes.specs import BATCH, TensorSpec

    answers: list[tuple[bool, bool]] = []
    original = group_partitioner.GroupBasedPartitioner._can_merge_partitions

    def both(self, first, second, partitions_by_id):  # type: ignore[no-untyped-def]
        answers.append((original(self, first, second, partitions_by_id),
                        merge_check.can_merge(self, first, second, partitions_by_id)))
        return answers[-1][0]

    monkeypatch.setattr(group_partitioner.GroupBasedPartitioner, "_can_merge_partitions", both)
    specs, outputs = (TensorSpec("x", (BATCH, 3, 10, 10)),), (TensorSpec("y", (BATCH, 4)),)
    torch.manual_seed(0)
    program = executorch_pte.bounded_program(_GatedLoop().eval(), specs, (torch.randn(2, 3, 10, 10),), 4)
    executorch_pte.lower_to_pte(program, tmp_path / "gated.pte", specs, outputs, leave_out=("merge_check",))
    assert len(answers) >= 10 and all(ours == theirs for theirs, ours in answers)
    assert sum(not theirs for theirs, _ in answers) >= 3  # refusals were asked, not only easy merges
    with merge_check.fast_merge_checks():
        assert group_partitioner.GroupBasedPartitioner._can_merge_partitions is merge_check.can_merge
    assert group_partitioner.GroupBasedPartitioner._can_merge_partitions is both


def test_leaving_out_an_unknown_lowering_workaround_is_refused_by_name() -> None:
    """``faster_lowering(leave_out=…)`` names the work-arounds it knows when asked to leave out another."""
    from exporter.formats import executorch_pte

    with pytest.raises(ValueError, match="no lowering work-around named \\['retraces'\\]; known: .*merge_check"):
        with executorch_pte.faster_lowering(leave_out=("retraces",)):
            pass


class _TokenReshapes(torch.nn.Module):
    """Reshapes over a dynamic batch: by the batch, by an expression of it, and one already inferred (``-1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.relu(self.fc(x)).reshape(x.shape[0], 2, 4)
        flat = (tokens * 2).reshape(x.shape[0] * 2, 4)
        return torch.sigmoid(flat).reshape(x.shape[0], -1)


def test_a_reshape_by_the_batch_goes_to_xnnpack_and_computes_the_same(tmp_path, monkeypatch) -> None:
    """The two reshapes with one symbolic size get ``-1`` and go to XNNPACK (the one that already infers a size
    stays symbolic and portable); the ``.pte`` equals PyTorch at batches 1 and 3, and without the rewrite all
    three stay on the portable kernels."""
    from executorch.exir.pass_base import PassResult

    from exporter.formats import executorch_pte
    from runtimes.specs import BATCH, TensorSpec

    specs, outputs = (TensorSpec("x", (BATCH, 8)),), (TensorSpec("y", (BATCH, 8)),)
    torch.manual_seed(0)
    module = _TokenReshapes().eval()
    program = executorch_pte.bounded_program(module, specs, (torch.randn(2, 8),), 4)
    info = executorch_pte.lower_to_pte(program, tmp_path / "views.pte", specs, outputs)
    assert info["portable_op_types"].get("view_copy") == 1
    with runtimes.load(tmp_path / "views.pte", engine="executorch") as runtime:
        for batch in (1, 3):
            x = torch.randn(batch, 8)
            with torch.no_grad():
                expected = module(x).numpy()
            np.testing.assert_allclose(runtime(x=x.numpy())["y"], expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(executorch_pte, "infer_symbolic_view_sizes", lambda module: PassResult(module, False))
    plain = executorch_pte.lower_to_pte(program, tmp_path / "plain.pte", specs, outputs)
    assert plain["portable_op_types"].get("view_copy") == 3
