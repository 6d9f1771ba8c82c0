"""Fused attention for onnxruntime (exporter/formats/ort_fusion.py): the A/B decision with injected timings, the
choice among fusers with injected parity and timings (a fused file is written only when it passes parity and
is faster), and one real export of transformer_encoder with --ort-fusion, whose manifest records what each
fuser fused, its parity and its A/B."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import runtimes
from exporter.formats import ort_fusion
from exporter.pipeline import export
from runtimes import manifest as mf
from runtimes.selection import artifact_key

from .conftest import slim_model_args
from .exports import small_options


def test_decide_keeps_only_a_median_speedup_of_3_percent() -> None:
    kept = ort_fusion.decide([10.0, 10.0, 11.0], [9.0, 9.5, 9.0])
    assert kept.kept and kept.speedup == pytest.approx(10 / 9)
    noise = ort_fusion.decide([10.0, 10.0, 10.0], [9.9, 9.8, 10.1])  # 1 %: within noise
    assert not noise.kept and noise.speedup == pytest.approx(10 / 9.9)
    one_lucky_round = ort_fusion.decide([10.0, 10.0, 10.0], [5.0, 10.5, 10.5])  # the median, not the best round
    assert not one_lucky_round.kept
    assert kept.to_json()["baseline_ms"] == 10_000.0 and kept.to_json()["fused_ms"] == 9_000.0
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        ort_fusion.decide([1.0], [1.0, 2.0])


def _tiny_model() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph)


def _fuser(counts: dict[str, int], error: Exception | None = None):
    def fuse(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
        if error:
            raise error
        model.doc_string = ",".join(counts)  # marks which fuser wrote the file
        return model, counts
    return fuse


def test_only_the_fastest_fused_graph_that_passes_parity_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ort_fusion, "FUSERS", {
        "slower": _fuser({"SkipLayerNormalization": 2}),
        "broken": _fuser({"Attention": 1}),
        "fast": _fuser({"MultiHeadAttention": 4}),
        "faster_but_wrong": _fuser({"FastGelu": 1}),
        "nothing": _fuser({}),
        "crashes": _fuser({}, RuntimeError("unsupported graph")),
    })
    speedups = {"slower": 0.97, "fast": 1.25, "faster_but_wrong": 2.0}
    failing = {"broken", "faster_but_wrong"}

    def which(path: Path) -> str:
        return next(name for name in speedups.keys() | failing if ort_fusion.candidate_path(tmp_path, name) == path)

    def time_against_plain(path: Path) -> ort_fusion.ABResult:
        return ort_fusion.decide([1.0] * 3, [1.0 / speedups[which(path)]] * 3)

    attempts, kept = ort_fusion.try_fusions(_tiny_model(), tmp_path, lambda m, p: onnx.save(m, p),
                                            lambda path: which(path) not in failing, time_against_plain)
    by_name = {a.fuser: a for a in attempts}
    assert kept == ort_fusion.candidate_path(tmp_path, "fast") and onnx.load(kept).doc_string == "MultiHeadAttention"
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name]  # every other candidate deleted
    assert by_name["fast"].why == "" and by_name["fast"].ab.kept
    assert by_name["slower"].why == "not faster: 0.970x < 1.03x" and by_name["slower"].parity
    assert by_name["broken"].why == by_name["faster_but_wrong"].why == "failed parity"
    assert by_name["faster_but_wrong"].ab is None  # never timed: parity comes first
    assert by_name["nothing"].why == "no attention or layer-norm pattern matched" and by_name["nothing"].parity is None
    assert by_name["crashes"].why == "the fuser failed: RuntimeError: unsupported graph"


def test_no_candidate_kept_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ort_fusion, "FUSERS", {"slower": _fuser({"SkipLayerNormalization": 2})})
    attempts, kept = ort_fusion.try_fusions(_tiny_model(), tmp_path, lambda m, p: onnx.save(m, p), lambda p: True,
                                            lambda p: ort_fusion.decide([1.0], [1.0]))
    assert kept is None and list(tmp_path.iterdir()) == [] and attempts[0].why.startswith("not faster")


def test_transformer_encoder_export_records_each_fusion(tmp_path) -> None:
    name = "transformer_encoder"
    manifest = export(name, tmp_path, model_args=slim_model_args(name), options=small_options(ort_fusion=True))
    tried = manifest["ort_fusion"]["tried"]
    assert set(tried) == set(ort_fusion.FUSERS)
    fused = {fuser: sum(t["fused"].values()) for fuser, t in tried.items()}
    assert max(fused.values()) > 0, tried  # a transformer encoder's layer norms and attention are matched
    for fuser, attempt in tried.items():
        if attempt["fused"]:
            assert attempt["parity"] is True, attempt
            assert attempt["ab"]["rounds"] == ort_fusion.AB_ROUNDS and attempt["ab"]["speedup"] > 0
    folder = tmp_path / name
    kept = manifest["ort_fusion"]["kept"]
    if kept:  # the A/B decided on this machine: the fused graph is what engine ort runs
        assert tried[kept]["ab"]["kept"] and manifest["parity"]["onnx_fused"]["passed"]
        assert artifact_key(manifest["artifacts"], "ort", "fp32") == "onnx_fused"
        assert any(n.domain == ort_fusion.CONTRIB_DOMAIN for n in onnx.load(folder / ort_fusion.FUSED_FILE).graph.node)
    else:
        assert not (folder / ort_fusion.FUSED_FILE).exists() and "onnx_fused" not in manifest["artifacts"]
        assert artifact_key(manifest["artifacts"], "ort", "fp32") == "onnx"
    assert not list(folder.glob(".fused.*"))  # no candidate left behind
    with runtimes.load(folder) as rt:
        assert rt.engine == "ort"
    assert mf.read_manifest(folder)["ort_fusion"] == manifest["ort_fusion"]
