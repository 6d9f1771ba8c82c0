"""What attn-serve answers when it cannot take more work, on both protocols.

- ``Unavailable``: the model's queue is full, or the server is draining (``Draining``, which also closes
  the REST connection). REST ``503`` with ``Retry-After``, gRPC ``UNAVAILABLE`` (Triton's REJECT, Ray
  Serve's BackPressureError).
- ``DeadlineExceeded``: the request's timeout passed while it waited; REST ``504``, gRPC
  ``DEADLINE_EXCEEDED``. The engine never computed it.

``DeadlineServicer`` keeps a gRPC client's deadline for ``policy.request_timeout_s``.
"""
from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException
from kserve.protocol.grpc import server as kserve_grpc_server
from kserve.protocol.grpc.servicer import InferenceServicer

from .policy import GRPC_TIME_REMAINING, RETRY_AFTER_S


class Unavailable(GrpcException):
    """Refused without queueing: the queue is full or the server drains."""

    status_code = StatusCode.UNAVAILABLE


class Draining(Unavailable):
    """Refused because the server is shutting down: REST also closes the connection, so the client does not
    reuse a keep-alive connection the server is about to close."""


class DeadlineExceeded(GrpcException):
    """The request's timeout passed before its engine call started."""

    status_code = StatusCode.DEADLINE_EXCEEDED


async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S), **({"Connection": "close"} if isinstance(exc, Draining) else {})}
    return JSONResponse({"error": exc.details}, 503, headers=headers)


async def _deadline_exceeded(_: Request, exc: DeadlineExceeded) -> JSONResponse:
    return JSONResponse({"error": exc.details}, 504)


def add_rest_handlers(app: Any) -> None:
    """503 + Retry-After and 504 on KServe's FastAPI app (gRPC maps ``GrpcException`` itself)."""
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(DeadlineExceeded, _deadline_exceeded)


class DeadlineServicer(InferenceServicer):
    """KServe's servicer, keeping the client's gRPC deadline (``grpc-timeout`` is not in the metadata KServe
    hands on) for the request's task."""

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's method name)
        GRPC_TIME_REMAINING.set(context.time_remaining())
        return await super().ModelInfer(request, context)


def use_deadline_servicer() -> None:
    """Make KServe's gRPC server build ``DeadlineServicer`` (its servicer class is looked up at start)."""
    kserve_grpc_server.InferenceServicer = DeadlineServicer
