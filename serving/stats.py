"""Per-model inference statistics in the shape of Triton's statistics extension
(``GET /v2/models/<name>/stats``): success and failure counts with their cumulative time, and the
cumulative nanoseconds of each part of a request — ``queue`` (waiting in the replica for an engine
call), ``compute_input`` (request tensors → numpy, and the hop to the replica), ``compute_infer``
(the engine call) and ``compute_output`` (numpy → response tensors). Beside Triton's parts, what overload
did: ``refused`` (503 / UNAVAILABLE: the queue was full or the server drained) and ``timed_out`` (504 /
DEADLINE_EXCEEDED: dropped from the queue, never computed), and ``drained``, the accepted requests answered
after a drain began.

Counted in the front process for the requests that reach ``ArtifactModel``; a body KServe itself
cannot parse is refused before that and is not counted.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

PARTS = ("success", "fail", "refused", "timed_out", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class ModelStats:
    """Cumulative counts and nanoseconds of one model; ``record_*`` are thread-safe."""

    name: str
    counts: dict[str, list[int]] = field(default_factory=lambda: {p: [0, 0] for p in PARTS})
    inference_count: int = 0  # rows answered
    execution_count: float = 0.0  # engine calls: each request adds 1 / (requests in its call)
    last_inference_ms: int = 0
    drained: int = 0  # accepted requests answered after the drain began
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _add(self, part: str, ms: float) -> None:
        self.counts[part][0] += 1
        self.counts[part][1] += int(ms * 1e6)

    def record_success(self, split_ms: dict[str, float], total_ms: float, rows: int, batch_requests: int) -> None:
        with self._lock:
            self._add("success", total_ms)
            self._add("queue", split_ms["queue_ms"])
            self._add("compute_input", split_ms["decode_ms"] + split_ms["hop_ms"])
            self._add("compute_infer", split_ms["engine_ms"])
            self._add("compute_output", split_ms["encode_ms"])
            self.inference_count += rows
            self.execution_count += 1 / max(1, batch_requests)
            self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, total_ms: float) -> None:
        with self._lock:
            self._add("fail", total_ms)

    def record_refused(self, total_ms: float) -> None:
        with self._lock:
            self._add("refused", total_ms)

    def record_timed_out(self, total_ms: float) -> None:
        with self._lock:
            self._add("timed_out", total_ms)

    def record_drained(self) -> None:
        with self._lock:
            self.drained += 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"name": self.name, "version": "1", "last_inference": self.last_inference_ms,
                    "inference_count": self.inference_count, "execution_count": round(self.execution_count),
                    "drained": self.drained,
                    "inference_stats": {p: {"count": c, "ns": ns} for p, (c, ns) in self.counts.items()}}
