"""OIP v2 REST binary tensors are parsed without a detour through Python lists, and bad sizes are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("kserve")
from kserve.errors import InvalidInput  # noqa: E402

from serving.binary_rest import BinaryTensorDataPlane, parse_binary_request  # noqa: E402


def _body(*tensors: tuple[str, np.ndarray], extra: dict | None = None) -> tuple[bytes, int]:
    header = {"id": "r1", "inputs": [
        {"name": name, "shape": list(a.shape), "datatype": {"float32": "FP32", "int64": "INT64"}[a.dtype.name],
         "parameters": {"binary_data_size": a.nbytes}} for name, a in tensors], **(extra or {})}
    head = json.dumps(header).encode()
    return head + b"".join(a.tobytes() for _, a in tensors), len(head)


def test_binary_inputs_come_back_bit_exact_and_stay_binary() -> None:
    image = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ids = np.arange(10, dtype=np.int64).reshape(2, 5)
    body, length = _body(("image", image), ("tokens", ids), extra={"outputs": [{"name": "logits"}]})
    request = parse_binary_request(body, length, "m")
    assert request.id == "r1" and [o.name for o in request.request_outputs] == ["logits"]
    got = {t.name: t.as_numpy() for t in request.inputs}
    assert np.array_equal(got["image"], image) and got["image"].dtype == np.float32
    assert np.array_equal(got["tokens"], ids) and got["tokens"].dtype == np.int64
    assert all(t.data is None for t in request.inputs)  # never converted to a list


@pytest.mark.parametrize("mutate, phrase", [
    (lambda b, n: (b[:-4], n), "fits the 764 bytes"),                     # body shorter than declared
    (lambda b, n: (b.replace(b'"binary_data_size": 768', b'"binary_data_size": 764')[:-4], n), "needs 768"),
    (lambda b, n: (b, len(b) + 1), "outside the body"),
    (lambda b, n: (b.replace(b'"FP32"', b'"FP99"'), n), "numeric datatype"),
    (lambda b, n: (b.replace(b"[1, 3, 8, 8]", b"[1, -3, 8, 8]"), n + 1), "non-negative integers"),
    (lambda b, n: (b"{oops" + b[5:], n), "Unrecognized request format"),
])
def test_lying_binary_requests_are_refused_naming_the_problem(mutate, phrase) -> None:
    body, length = _body(("image", np.zeros((1, 3, 8, 8), np.float32)))  # 768 bytes of FP32
    with pytest.raises(InvalidInput, match=phrase):
        parse_binary_request(*mutate(body, length), "m")


def test_the_data_plane_uses_the_binary_parser_only_for_binary_bodies() -> None:
    plane = BinaryTensorDataPlane(model_registry=None)
    body, length = _body(("image", np.ones((1, 3, 8, 8), np.float32)))
    request = plane.decode_inference_request(body, {"Inference-Header-Content-Length": str(length)}, "m")
    assert request.inputs[0].data is None and request.inputs[0].as_numpy().sum() == 192
    with pytest.raises(InvalidInput, match="must be an integer, got 'x'"):
        plane.decode_inference_request(body, {"inference-header-content-length": "x"}, "m")
