"""How replicas batch and admit work, as plain values and functions (no KServe, no Ray: unit-testable beside
tritonclient): the options, the Ray Serve deployment options they become, and a request's timeout.

A request's timeout is, first found: the OIP ``timeout`` request parameter in microseconds (what
``tritonclient``'s ``infer(timeout=...)`` sends, as Triton reads it), the deadline a gRPC client set
(``grpc-timeout``, kept by ``overload.DeadlineServicer``), the server's ``--request-timeout-ms``; none of
them: no timeout.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

QUEUE_PER_BATCH = 4  # --max-queue's default: four engine calls' worth of requests wait, no more
RETRY_AFTER_S = 1  # what a refused client is told to wait: a full queue drains well within it
READY_HOLD_S = 1.0  # readiness stays false this long after the last refusal for a full queue (hysteresis)


def default_max_queue(max_batch: int) -> int:
    """Requests a replica holds (waiting or running): ``QUEUE_PER_BATCH`` full batches. The last of them is
    answered within about four batched engine calls, under the cap × the batch-1 engine time as long as a
    batched call costs no more per request than a lone one."""
    return QUEUE_PER_BATCH * max_batch


def queue_budget(max_queue: int | None, max_queue_ms: float | None, lone_s: float) -> tuple[float | None, str]:
    """The replica's time budget in seconds (``serving/admission.py``) and how it was set, for refusals:
    ``--max-queue-ms`` when given (0: no time cap), else ``max_queue`` × the batch-1 engine time ``lone_s``."""
    if max_queue_ms is not None:
        return (max_queue_ms / 1e3 or None), f"--max-queue-ms {max_queue_ms:g}"
    if max_queue is None:
        return None, "no time cap"
    budget_s = max_queue * lone_s
    return budget_s, (f"a {budget_s * 1e3:.0f} ms budget: --max-queue {max_queue} x the {lone_s * 1e3:.1f} ms "
                      f"batch-1 engine time; --max-queue-ms sets it")


def queue_full(held: int, cap_source: str) -> str:
    """Why a request was refused: how many requests the replica holds, and where its cap comes from."""
    return f"its queue is full ({held} requests waiting or running, {cap_source})"


def queue_full_by_time(wait: str, budget_source: str) -> str:
    """Why a request was refused by the time cap: the wait it would find (the batcher's words), and where the
    budget comes from."""
    return f"its queue is full ({wait}; {budget_source})"


@dataclass(frozen=True)
class Policy:
    """How every replica batches and admits work (attn-serve's options)."""

    max_batch: int = 8  # requests joined into one engine call
    wait_ms: float = 5.0  # the batch window while requests arrive together
    max_queue: int = QUEUE_PER_BATCH * 8  # requests a replica holds, waiting or running; beyond: refused at once
    request_timeout_s: float | None = None  # a request's timeout when it sets none
    drain_timeout_s: float = 30.0  # SIGTERM: how long accepted requests may take to be answered
    max_queue_ms: float | None = None  # the time cap (serving/admission.py); None: max_queue x batch-1 time; 0: off
    engine_threads: int | None = None  # each replica's engine threads (ort, openvino); None: every core


def ray_options(name: str, replicas: int, policy: Policy, max_replicas_per_node: int | None) -> dict[str, Any]:
    """Ray Serve deployment options: each replica holds at most ``max_queue`` requests
    (``max_ongoing_requests``), and each caller holds at most one queue more (``max_queued_requests``; beyond
    it Ray raises BackPressureError, answered 503)."""
    options: dict[str, Any] = {"name": name, "num_replicas": replicas,
                               "max_ongoing_requests": policy.max_queue,
                               "max_queued_requests": policy.max_queue}
    if max_replicas_per_node:
        options["max_replicas_per_node"] = max_replicas_per_node
    return options


GRPC_TIME_REMAINING: contextvars.ContextVar[float | None] = contextvars.ContextVar("grpc_time_remaining",
                                                                                      default=None)


def _int_parameter(value: Any) -> int | None:
    """An OIP parameter as an int: a plain JSON value (REST) or an ``InferParameter`` message (gRPC)."""
    if hasattr(value, "WhichOneof"):
        kind = value.WhichOneof("parameter_choice")
        value = getattr(value, kind) if kind else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def request_timeout_s(parameters: Any, default_s: float | None) -> float | None:
    """The request's timeout in seconds (see the module docstring for the order); ``None``: none."""
    timeout_us = _int_parameter((parameters or {}).get("timeout"))
    if timeout_us is not None and timeout_us > 0:
        return timeout_us / 1e6
    remaining = GRPC_TIME_REMAINING.get()
    if remaining is not None:
        return max(0.0, remaining)
    return default_s
