"""Write runtimes/bench/gemm_models/*.onnx: the GEMMs attn-bench times as each engine's ceiling (runtimes.bench.ceiling).

Tiny files (no weights: both operands are inputs) shipped with runtimes, so a slim install without the onnx
package can measure its ceiling. Re-run after changing them: python scripts/make_gemm_models.py
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parents[1] / "runtimes" / "gemm_models"
OPSET = 17


def _io(name: str, dtype: int, dims: list[str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


def matmul(dtype: int) -> onnx.ModelProto:
    """y = a @ b in ``dtype``."""
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "gemm", [_io("a", dtype, ["m", "k"]), _io("b", dtype, ["k", "n"])],
                              [_io("y", dtype, ["m", "n"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="attn-export")


def matmul_qdq() -> onnx.ModelProto:
    """y = dq(q(a)) @ dq(q(b)): FP32 in and out, INT8 Q/DQ on both operands, the pattern an INT8 Q/DQ export holds
    and that onnxruntime and OpenVINO run as an integer GEMM."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    nodes = []
    for x in ("a", "b"):
        nodes += [helper.make_node("QuantizeLinear", [x, "scale", "zero"], [f"{x}_q"]),
                  helper.make_node("DequantizeLinear", [f"{x}_q", "scale", "zero"], [f"{x}_dq"])]
    nodes.append(helper.make_node("MatMul", ["a_dq", "b_dq"], ["y"]))
    graph = helper.make_graph(nodes, "gemm_int8", [_io("a", TensorProto.FLOAT, ["m", "k"]),
                                                    _io("b", TensorProto.FLOAT, ["k", "n"])],
                              [_io("y", TensorProto.FLOAT, ["m", "n"])], [scale, zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="attn-export")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, model in (("fp32", matmul(TensorProto.FLOAT)), ("fp16", matmul(TensorProto.FLOAT16)),
                        ("int8", matmul_qdq())):
        model.ir_version = 8  # readable by every onnxruntime and OpenVINO we support
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(OUT / f"matmul_{name}.onnx"))


if __name__ == "__main__":
    main()
