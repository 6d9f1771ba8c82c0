"""The fastest verified artifact by measurement (issue 31): FLOPs per sample in the manifest, achieved GFLOP/s and
% of the engine's GEMM ceiling in attn-bench, and engine="auto" (choice, parity and accuracy gating, cache). Speed
goals live in scripts/bench_auto.sh, never in a timed test: the timings here are injected, or made unequal by
orders of magnitude."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import runtimes
from exporter import flops, onnx_files
from runtimes import auto_select
from runtimes.bench import ceiling, timing
from runtimes import manifest as mf
from runtimes.bench.cli import main as bench_main
from runtimes.specs import TensorSpec, random_inputs

from .exports import exported


class ConvLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_flops_of_a_conv_and_a_linear_equal_the_hand_count() -> None:
    """2 x MAC: the conv makes 8x8x8 outputs of 3x3x3 products each, the linear 10 outputs of 512 products."""
    total, by_operator = flops.count(ConvLinear(), [TensorSpec("x", ("batch", 3, 8, 8))])
    assert by_operator == {"aten.convolution": 2 * 8 * 8 * 8 * 3 * 3 * 3, "aten.addmm": 2 * 512 * 10}
    assert total == 27648 + 10240


@pytest.fixture(scope="module")
def encoder(artifacts_root) -> tuple[Path, dict]:
    return exported("transformer_encoder", artifacts_root)


def test_manifest_records_flops_per_named_size(encoder) -> None:
    """transformer_encoder has a dynamic seq: counted at the example size and the largest; attention makes the
    count grow faster than seq."""
    record = encoder[1]["flops_per_sample"]
    (small, large) = record["by_size"]
    assert record["sizes"] == small["sizes"] and record["flops"] == small["flops"] > 0
    assert large["sizes"]["seq"] > small["sizes"]["seq"]
    assert large["flops"] / small["flops"] > large["sizes"]["seq"] / small["sizes"]["seq"]
    assert set(record["by_operator"]) >= {"aten.addmm", "aten.bmm"}
    assert "2 x multiply-accumulate" in record["counted_by"]
    assert mf.flops_per_sample(encoder[1]) == record["flops"]


def test_attn_bench_json_has_gflops_and_ceiling(encoder, tmp_path) -> None:
    result = CliRunner().invoke(bench_main, [str(encoder[0]), "--batch", "2", "--iters", "3", "--warmup", "1",
                                             "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    achieved = mf.flops_per_sample(encoder[1]) * 2 / (row["mean_ms"] / 1e3) / 1e9
    assert row["gflops_per_s"] == pytest.approx(achieved, rel=1e-3)
    assert row["ceiling_gflops_per_s"] > 1 and row["ceiling_pct"] == pytest.approx(
        100 * row["gflops_per_s"] / row["ceiling_gflops_per_s"], abs=0.1)
    assert "GFLOP/s" in result.output and "% ceil" in result.output


def test_attn_bench_rounds_alternate_the_rows_and_keep_each_rows_count(encoder, tmp_path) -> None:
    """--rounds 3: every engine and batch gets a third of --iters per round, the rows taking turns (so drift hits
    them alike), and the table keeps one row per engine and batch."""
    calls: list[str] = []

    class Recording(FakeRuntime):
        label, precision, device = "", "fp32", "cpu"

        def __call__(self, feeds):
            calls.append(self.label)

    a, b = Recording(mf.input_specs(encoder[1]), 0), Recording(mf.input_specs(encoder[1]), 0)
    a.label, b.label = "a", "b"
    rows = timing.bench_alternating([(a, 1), (b, 1)], rounds=3, warmup=1, iters=6, seconds=None)
    assert [(r.engine, r.iterations) for r in rows] == [("a", 6), ("b", 6)]
    assert "".join(calls) == "a" * 3 + "b" * 3 + ("aa" + "bb") * 2  # warm-up only in the first round
    result = CliRunner().invoke(bench_main, [str(encoder[0]), "--engine", "ort", "--engine", "ort:int8",
                                             "--rounds", "2", "--batch", "1,2", "--iters", "4", "--warmup", "1",
                                             "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [(r["engine"], r["batch"], r["iterations"]) for r in table] == [
        ("ort", 1, 4), ("ort", 2, 4), ("ort:int8", 1, 4), ("ort:int8", 2, 4)]
    assert "in 2 alternating rounds" in result.output


def test_ceiling_is_measured_once_then_read_from_the_cache(monkeypatch) -> None:
    first = ceiling.ceiling("ort", "fp32", 1)
    assert first["gflops_per_s"] > 1 and first["gemm"] in {f"{n}x{n}x{n}" for n in ceiling.GEMM_SIZES}
    assert ceiling.ceiling("executorch", "fp32", 1) is None  # no GEMM for it: no ceiling
    monkeypatch.setattr(ceiling, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert ceiling.ceiling("ort", "fp32", 1) == first
    assert ceiling.ceiling("executorch", "fp32", 1) is None  # the absence is cached too


def test_gemm_files_compute_a_matmul() -> None:
    """The shipped GEMMs are what they claim: FP32 and FP16 exact to their precision, INT8 within one step."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-2, 2, (64, 32)).astype(np.float32), rng.uniform(-2, 2, (32, 16)).astype(np.float32)
    for name, dtype, tol in (("fp32", np.float32, 1e-5), ("fp16", np.float16, 2e-2), ("int8", np.float32, 0.1)):
        with runtimes.load(ceiling.GEMM_FOLDER / f"matmul_{name}.onnx", engine="ort") as rt:
            got = rt.engine_call({"a": a.astype(dtype), "b": b.astype(dtype)})["y"].astype(np.float32)
        np.testing.assert_allclose(got / np.abs(a @ b).max(), (a @ b) / np.abs(a @ b).max(), atol=tol)


class FakeRuntime:
    """A runtime whose call takes ``ms`` milliseconds: injected timings for the choice logic."""

    def __init__(self, specs, ms: float) -> None:
        self.input_specs, self.ms, self.calls = specs, ms, 0

    def __call__(self, feeds):
        self.calls += 1
        time.sleep(self.ms / 1e3)

    def close(self) -> None:
        pass


def _opener(speeds: dict[str, float], specs, opened: list[str]):
    def open_it(root, *, engine, precision, **options):
        label = f"{engine}:{precision}"
        opened.append(label)
        if label not in speeds:
            raise runtimes.BackendUnavailableError(f"{engine} is not installed here")
        return FakeRuntime(specs, speeds[label])

    return open_it


def test_auto_picks_the_fastest_and_never_a_failed_parity(encoder, tmp_path) -> None:
    """ort:fp16 is the fastest candidate; once its parity row fails it is refused, never measured, and the next
    fastest wins. A candidate that cannot open is skipped and recorded."""
    folder = Path(shutil.copytree(encoder[0], tmp_path / "encoder"))
    specs = mf.input_specs(encoder[1])
    speeds = {"ort:fp32": 6.0, "ort:fp16": 1.0, "ort:int8": 3.0, "torch:fp32": 9.0, "executorch:int8": 4.0}
    opened: list[str] = []
    choice = auto_select.choose(folder, batch=2, budget_s=0.6, opener=_opener(speeds, specs, opened))
    assert (choice.engine, choice.precision, choice.cached) == ("ort", "fp16", False)
    rows = {f"{r['engine']}:{r['precision']}": r for r in choice.table}
    assert rows["executorch:fp32"] == {"engine": "executorch", "precision": "fp32", "status": "failed to open",
                                       "reason": "executorch is not installed here"}
    assert rows["ort:fp16"]["median_ms"] < rows["ort:int8"]["median_ms"] < rows["ort:fp32"]["median_ms"]
    assert choice.seconds["measure"] < 0.6 + sum(speeds.values()) / 1e3 * 2  # the budget, plus one call each
    manifest = json.loads(mf.manifest_path(folder).read_text())
    manifest["parity"]["onnx_fp16"]["passed"] = False
    mf.write_manifest(folder, manifest)
    opened.clear()
    choice = auto_select.choose(folder, batch=2, budget_s=0.6, opener=_opener(speeds, specs, opened))
    assert (choice.engine, choice.precision) == ("ort", "int8") and "ort:fp16" not in opened
    assert {"engine": "ort", "precision": "fp16", "status": "refused",
            "reason": "parity failed (onnx_fp16)"} in choice.table


def test_auto_refuses_an_artifact_beyond_the_accuracy_budget(encoder, tmp_path) -> None:
    folder = Path(shutil.copytree(encoder[0], tmp_path / "encoder"))
    manifest = json.loads(mf.manifest_path(folder).read_text())
    manifest["parity"]["onnx_int8"]["accuracy"] = {"drop_points": 2.5}
    mf.write_manifest(folder, manifest)
    speeds = {"ort:fp32": 6.0, "ort:int8": 1.0}
    choice = auto_select.choose(folder, precision="int8", budget_s=0.2, max_accuracy_drop=3.0,
                                opener=_opener(speeds, mf.input_specs(manifest), []))
    assert (choice.engine, choice.precision) == ("ort", "int8")  # within a 3-point budget
    with pytest.raises(runtimes.ArtifactError, match=r"ort:int8 loses 2.50 points of top-1, more than 1"):
        auto_select.choose(folder, precision="int8", budget_s=0.2, opener=_opener(speeds, mf.input_specs(manifest), []))


def test_cache_key_changes_with_threads_and_batch_and_a_second_choice_runs_nothing(encoder, tmp_path) -> None:
    path = mf.manifest_path(encoder[0])
    keys = {auto_select.cache_key(path, batch, threads, "auto", 1.0) for batch in (1, 8) for threads in (None, 1, 2)}
    assert len(keys) == 6
    folder = Path(shutil.copytree(encoder[0], tmp_path / "encoder"))
    speeds = {"ort:fp32": 2.0, "torch:fp32": 4.0}
    first = auto_select.choose(folder, precision="fp32", budget_s=0.2,
                               opener=_opener(speeds, mf.input_specs(encoder[1]), []))
    opened: list[str] = []
    again = auto_select.choose(folder, precision="fp32", budget_s=0.2,
                               opener=_opener(speeds, mf.input_specs(encoder[1]), opened))
    assert again.cached and opened == [] and (again.engine, again.precision) == (first.engine, first.precision)


def test_load_auto_on_real_engines_skips_a_file_made_slow_on_purpose(encoder, tmp_path) -> None:
    """Real engines: model.onnx given 4,000 extra element-wise nodes (y + (y - y), exact) runs far slower than the
    same graph on the other FP32 engines, so auto does not choose it; runtime.choice says why."""
    folder = Path(shutil.copytree(encoder[0], tmp_path / "encoder"))
    model = onnx_files.load(folder / "model.onnx")
    output = model.graph.output[0].name
    last = model.graph.node[-1]
    last.output[0] = current = f"{output}_unslowed"
    for i in range(2000):
        model.graph.node.extend([onnx.helper.make_node("Sub", [current, current], [f"zero{i}"]),
                                 onnx.helper.make_node("Add", [current, f"zero{i}"], [f"slow{i}"])])
        current = f"slow{i}"
    model.graph.node[-1].output[0] = output
    onnx_files.save(model, folder / "model.onnx")
    manifest = json.loads(mf.manifest_path(folder).read_text())
    mf.record_file(manifest, folder, "model.onnx")
    mf.write_manifest(folder, manifest)
    with runtimes.load(folder, engine="auto", precision="fp32", batch=1, budget_s=1.5, threads=1) as rt:
        rows = {f"{r['engine']}:{r['precision']}": r for r in rt.choice.table if r["status"] == "measured"}
        assert rt.label != "ort" and "ort:fp32" in rows and len(rows) >= 2
        assert rows["ort:fp32"]["median_ms"] > min(r["median_ms"] for r in rows.values())
        assert rt.choice.reason.startswith("fastest verified artifact at batch 1, threads 1")
        assert rt(random_inputs(rt.input_specs, 1))["hidden"].shape[0] == 1


REPLICA = """
import asyncio, json, sys
from runtimes import auto_select
from runtimes.specs import random_inputs
from serving.policy import Policy
from serving.server import ReplicaCore
auto_select.DEFAULT_BUDGET_S = 1.0
core = ReplicaCore(sys.argv[1], "auto", None, Policy(3, 1.0), {})
answer = asyncio.run(core.infer(random_inputs(core.runtime.input_specs, 1, seed=3)))
print(json.dumps({"reason": core.runtime.choice.reason, "ran": [core.runtime.engine, core.runtime.precision],
                  "chose": [core.runtime.choice.engine, core.runtime.choice.precision],
                  "rows": answer["outputs"]["hidden"].shape[0]}))
"""


def test_attn_serve_replica_runs_what_auto_chose_at_its_batch(encoder) -> None:
    """attn-serve --engine auto: each replica measures at the batch its batcher joins (--max-batch). In a fresh
    interpreter: kserve's and tritonclient's OIP protos cannot share one process's descriptor pool."""
    run = subprocess.run([sys.executable, "-c", REPLICA, str(encoder[0])], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    replica = json.loads(run.stdout.strip().splitlines()[-1])
    assert replica["reason"].startswith("fastest verified artifact at batch 3,")
    assert replica["ran"] == replica["chose"] and replica["rows"] == 1
