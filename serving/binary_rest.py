"""Binary tensors over OIP v2 REST without a detour through Python lists.

KServe 0.21 reads a REST request that uses the binary tensor extension (JSON header, then raw
bytes; what tritonclient.http sends by default) and then converts each binary tensor into a Python
list of numbers (``set_data_from_numpy(..., binary_data=False)``): ~70 ms for one 3×224×224 image
on this project's 2-core machine, more than resnet50_sa's own inference at batch 1. This data plane
parses the same request format but keeps binary tensors binary, and checks their sizes, so a
request that lies about ``binary_data_size`` is refused with a message that says which input.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.utils.numpy_codec import to_np_dtype

HEADER_LENGTH = "inference-header-content-length"


def _binary_input(spec: dict[str, Any], payload: memoryview, model_name: str) -> InferInput:
    """One input of the JSON header whose data follows as ``binary_data_size`` raw bytes."""
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    dtype = to_np_dtype(datatype) if isinstance(datatype, str) else None
    if not isinstance(name, str) or not isinstance(shape, list) or dtype is None or datatype == "BYTES":
        raise InvalidInput(f"model {model_name!r}: input {name!r} needs a name, a shape and a numeric datatype "
                           f"to be sent as binary data (got datatype {datatype!r}, shape {shape!r})")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {shape} must be a list of non-negative integers")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(payload) != expected:
        raise InvalidInput(f"input {name!r}: binary_data_size {len(payload)} bytes, but shape {shape} of "
                           f"{datatype} needs {expected}")
    tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=spec.get("parameters"))
    tensor.set_data_from_numpy(np.frombuffer(payload, dtype=dtype).reshape(shape), binary_data=True)
    return tensor


def parse_binary_request(body: bytes, json_length: int, model_name: str) -> InferRequest:
    """An OIP v2 REST request body (JSON header of ``json_length`` bytes, then binary tensors)."""
    if not 0 < json_length <= len(body):
        raise InvalidInput(f"Inference-Header-Content-Length {json_length} is outside the body's {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Unrecognized request format: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("the JSON header of an inference request needs an 'inputs' list")
    raw, start, inputs = memoryview(body), json_length, []
    for spec in header["inputs"]:
        if not isinstance(spec, dict):
            raise InvalidInput("each entry of 'inputs' must be an object")
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if "data" in spec:
            tensor = InferInput(name=spec.get("name"), shape=spec.get("shape"), datatype=spec.get("datatype"),
                                parameters=spec.get("parameters"))
            tensor.data = spec["data"]
        elif isinstance(size, int) and 0 <= size <= len(body) - start:
            tensor = _binary_input(spec, raw[start:start + size], model_name)
            start += size
        else:
            raise InvalidInput(f"input {spec.get('name')!r}: neither 'data' nor a binary_data_size that fits the "
                               f"{len(body) - start} bytes left in the body")
        inputs.append(tensor)
    outputs = header.get("outputs")
    requested = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in outputs] \
        if isinstance(outputs, list) else None
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=header.get("id"),
                        parameters=header.get("parameters"), request_outputs=requested)


class BinaryTensorDataPlane(DataPlane):
    """KServe's data plane, with binary REST tensors parsed by ``parse_binary_request``."""

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        length = {k.lower(): v for k, v in (headers or {}).items()}.get(HEADER_LENGTH)
        if isinstance(body, bytes) and length is not None:
            if not length.strip().isdigit():
                raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {length!r}")
            return parse_binary_request(body, int(length), model_name)
        return super().decode_inference_request(body, headers, model_name)
