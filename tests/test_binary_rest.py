"""OIP v2 REST binary tensors are read into numpy without a detour through Python lists, and bodies
that lie about their sizes are refused naming the input. (The KServe side, server.BinaryTensorDataPlane,
runs in tests/test_serving.py against a real server: KServe cannot be imported beside tritonclient.grpc.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

from serving.binary_rest import BinaryRequestError, parse_binary_body


def _body(*tensors: tuple[str, np.ndarray], extra: dict | None = None) -> tuple[bytes, int]:
    header = {"id": "r1", "inputs": [
        {"name": name, "shape": list(a.shape), "datatype": {"float32": "FP32", "int64": "INT64"}[a.dtype.name],
         "parameters": {"binary_data_size": a.nbytes}} for name, a in tensors], **(extra or {})}
    head = json.dumps(header).encode()
    return head + b"".join(a.tobytes() for _, a in tensors), len(head)


def test_binary_inputs_come_back_bit_exact() -> None:
    image = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ids = np.arange(10, dtype=np.int64).reshape(2, 5)
    body, length = _body(("image", image), ("tokens", ids), extra={"outputs": [{"name": "logits"}]})
    header, inputs = parse_binary_body(body, length)
    assert header["id"] == "r1" and header["outputs"] == [{"name": "logits"}]
    got = {i.spec["name"]: i.array for i in inputs}
    assert np.array_equal(got["image"], image) and got["image"].dtype == np.float32
    assert np.array_equal(got["tokens"], ids) and got["tokens"].dtype == np.int64
    assert all(i.data is None for i in inputs)


def test_json_data_inputs_pass_through_beside_binary_ones() -> None:
    head = json.dumps({"inputs": [{"name": "mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 0]},
                                  {"name": "x", "shape": [1], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 4}}]}).encode()
    _, inputs = parse_binary_body(head + np.float32(2.5).tobytes(), len(head))
    assert inputs[0].data == [1, 0] and inputs[0].array is None and inputs[1].array.tolist() == [2.5]


@pytest.mark.parametrize("mutate, phrase", [
    (lambda b, n: (b[:-4], n), "fits the 764 bytes"),  # body shorter than declared
    (lambda b, n: (b.replace(b'"binary_data_size": 768', b'"binary_data_size": 764')[:-4], n), "needs 768"),
    (lambda b, n: (b, len(b) + 1), "outside the body"),
    (lambda b, n: (b.replace(b'"FP32"', b'"FP99"'), n), "numeric datatype"),
    (lambda b, n: (b.replace(b"[1, 3, 8, 8]", b"[1, -3, 8, 8]"), n + 1), "non-negative integers"),
    (lambda b, n: (b"{oops" + b[5:], n), "Unrecognized request format"),
])
def test_lying_binary_requests_are_refused_naming_the_problem(mutate, phrase) -> None:
    body, length = _body(("image", np.zeros((1, 3, 8, 8), np.float32)))  # 768 bytes of FP32
    with pytest.raises(BinaryRequestError, match=phrase):
        parse_binary_body(*mutate(body, length))
