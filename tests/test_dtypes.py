"""The one dtype table, checked column by column against the libraries whose names it holds."""
from __future__ import annotations

import numpy as np
import onnx
import openvino as ov
import pytest
import tritonclient.utils as triton_utils
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from runtimes.dtypes import TABLE, UnknownDTypeError, convert, lookup


@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.numpy)
def test_every_column_names_the_same_type(row) -> None:
    numpy_type = np.dtype(row.numpy)
    assert onnx.helper.tensor_dtype_to_np_dtype(row.onnx) == numpy_type
    assert ov.Type(numpy_type).get_type_name() == row.openvino
    assert triton_utils.np_to_triton_dtype(numpy_type) == row.oip
    assert triton_utils.triton_to_np_dtype(row.oip) == numpy_type
    config = text_format.Parse(f'name: "m" input [ {{ name: "x" data_type: {row.triton} dims: [ 1 ] }} ]',
                               model_config_pb2.ModelConfig())
    assert model_config_pb2.DataType.Name(config.input[0].data_type) == row.triton


def test_onnxruntime_names_match_a_real_session(tmp_path) -> None:
    """Each ``ort`` name is what onnxruntime reports for a graph input of that ONNX type."""
    import onnxruntime as ort

    inputs = [onnx.helper.make_tensor_value_info(f"x_{r.numpy}", r.onnx, [1]) for r in TABLE]
    outputs = [onnx.helper.make_tensor_value_info(f"y_{r.numpy}", r.onnx, [1]) for r in TABLE]
    nodes = [onnx.helper.make_node("Identity", [f"x_{r.numpy}"], [f"y_{r.numpy}"]) for r in TABLE]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "types", inputs, outputs),
                                   opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == [r.ort for r in TABLE]


def test_unknown_types_are_errors_naming_them() -> None:
    assert convert("FP32", "oip", "numpy") == "float32" and lookup("openvino", "boolean").numpy == "bool"
    with pytest.raises(UnknownDTypeError, match=r"'tensor\(string\)' \(ort\) is not supported; supported: tensor"):
        convert("tensor(string)", "ort", "numpy")
    with pytest.raises(UnknownDTypeError, match="'BF16' .oip."):
        convert("BF16", "oip", "numpy")
