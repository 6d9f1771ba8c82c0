"""FP16: AutoCast conversion and FP16 parity on CPU for every zoo model."""
from __future__ import annotations

import json

import onnx

from exporter.formats import fp16
from .exports import exported


def test_every_model_passes_fp16_parity(model_name, artifacts_root) -> None:
    folder, manifest = exported(model_name, artifacts_root)
    assert manifest["status"] == "ok" and manifest["artifacts"]["onnx_fp16"] == "model.fp16.onnx"
    model = onnx.load(str(folder / "model.fp16.onnx"), load_external_data=False)
    io_types = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert onnx.TensorProto.FLOAT16 not in io_types  # FP32 in and out
    info = manifest["fp16"]
    assert info["fp16_nodes"] > 0 and info["fp16_nodes"] + info["fp32_nodes"] > 0
    report = json.loads((folder / "parity.json").read_text())["onnx_fp16"]
    assert report["passed"]
    assert report["worst"]["max_rel"] <= 1e-2 and report["worst"]["min_cosine"] >= 0.999
    assert report["worst"]["min_top1"] >= 0.99
    assert len({r["batch"] for r in report["rows"]}) >= 4
    if model_name in ("resnet50_sa", "vgg16_cross_ml"):  # softmax over 56×56 = 3136 keys
        assert info["fp32_reasons"].get("softmax over > 1024 keys", 0) >= 1
    if model_name == "vgg16_msa":  # the square root of the spatial attention's std
        assert info["fp32_reasons"].get(fp16.FP32_OPS_REASON, 0) >= 1


def softmax_model(keys: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, keys])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, keys])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_large_softmax_detection() -> None:
    assert fp16.large_softmaxes(softmax_model(3136)) == ["sm"]
    assert fp16.large_softmaxes(softmax_model(49)) == []


def test_widening_stops_at_the_first_passing_step(tmp_path, monkeypatch) -> None:
    """The widening loop keeps more in FP32 until the parity check passes (here: the third step)."""
    calls = []

    class FakeReport:
        def __init__(self, ok: bool) -> None:
            self.ok, self.worst = ok, {"max_rel": 0.0 if ok else 1.0}

        def __bool__(self) -> bool:
            return self.ok

    monkeypatch.setattr(fp16, "convert", lambda src, out, calib, softmaxes, step, opset, external:
                        calls.append(step.name) or {"step": step.name, "fp32_node_names": []})
    onnx.save(softmax_model(8), str(tmp_path / "m.onnx"))
    info, report = fp16.convert_until_parity(tmp_path / "m.onnx", tmp_path / "o.onnx", [], 17,
                                             lambda path: FakeReport(len(calls) == 3))
    assert calls == [s.name for s in fp16.WIDENING_STEPS][:3] and bool(report)
    assert [t["passed"] for t in info["tries"]] == [False, False, True]


def pool_and_sum_of_squares_model() -> onnx.ModelProto:
    """x → Relu → ReduceMean (a pooling) and x → Pow 2 → ReduceSum (a sum of squares) → Add."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["r"], ["m"], name="pool", axes=[2]),  # an attribute until opset 18
             helper.make_node("Pow", ["x", "two"], ["p"], name="square"),
             helper.make_node("ReduceSum", ["p", "axes"], ["s"], name="sumsq"),
             helper.make_node("Add", ["m", "s"], ["y"], name="add")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [2]), helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_reductions_are_kept_fp32_by_measured_range_not_by_type(tmp_path) -> None:
    """The same ReduceSum is FP16 when its calibrated sums are small and FP32 when they exceed data_max (512);
    the pooling ReduceMean stays FP16 and the Pow stays FP32 by rule."""
    import numpy as np

    src = tmp_path / "m.onnx"
    onnx.save(pool_and_sum_of_squares_model(), str(src))
    x = np.random.default_rng(0).standard_normal((2, 4, 64)).astype(np.float32)
    reports = {}
    for scale in (0.5, 4.0):  # sums of squares ~16 and ~1,000 (64 values of std 0.5 and 4)
        calib = tmp_path / f"calib{scale}"
        calib.mkdir()
        np.savez(calib / "c.npz", x=scale * x)
        reports[scale] = fp16.convert(src, tmp_path / f"{scale}.onnx", str(calib), [], fp16.WIDENING_STEPS[0], 17)
    small, large = reports[0.5], reports[4.0]
    sums = {scale: float(np.square(scale * x).sum(axis=2).max()) for scale in reports}
    assert sums[0.5] < fp16.WIDENING_STEPS[0].data_max < sums[4.0]
    assert small["fp32_node_names"] == ["square"] and small["fp16_nodes"] == 4
    assert small["fp32_reasons"] == {fp16.FP32_OPS_REASON: 1}
    assert "sumsq" in large["fp32_node_names"] and "pool" not in large["fp32_node_names"]
    assert large["fp32_reasons"][fp16.FP32_OPS_REASON] == 1 and large["fp32_reasons"]["AutoCast: activation range"] >= 1


def test_a_tensor_below_fp16s_normal_range_keeps_its_nodes_fp32(tmp_path) -> None:
    """DeiT-3's class token (initialised at 1e-6) lost 2 % in FP16, where such values are subnormals: x · 1e-6
    (LayerScale's shape) into a LayerNorm, which magnifies that loss back to full scale. The Mul is kept FP32
    for its subnormal output, the Relu beside it stays FP16, and the file matches FP32 within 1e-3."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    gamma = (1e-6 * (1 + rng.random(8))).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "gamma"], ["tiny"], name="layerscale"),
             helper.make_node("LayerNormalization", ["tiny", "ones", "zeros"], ["y"], name="norm", axis=-1),
             helper.make_node("Relu", ["x"], ["r"], name="relu")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 4, 8])],
        [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(np.ones(8, np.float32), "ones"),
         numpy_helper.from_array(np.zeros(8, np.float32), "zeros")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(src))
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    (tmp_path / "calib").mkdir()
    np.savez(tmp_path / "calib" / "c.npz", x=x)
    tiny = x * gamma
    assert np.abs(tiny).max() < fp16.FP16_SMALLEST_NORMAL
    assert np.abs(tiny.astype(np.float16) - tiny).max() / np.abs(tiny).max() > 1e-3  # what FP16 would lose

    report = fp16.convert(src, tmp_path / "m.fp16.onnx", str(tmp_path / "calib"), [], fp16.WIDENING_STEPS[0], 17)
    assert report["fp32_node_names"] == ["layerscale", "norm"] and report["fp16_nodes"] == 1  # the Relu
    assert report["fp32_reasons"] == {fp16.SUBNORMAL_REASON: 1, fp16.FP32_OPS_REASON: 1}
    reference = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    converted = ort.InferenceSession(str(tmp_path / "m.fp16.onnx"),
                                     providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    assert np.abs(converted - reference).max() / np.abs(reference).max() < 1e-3
