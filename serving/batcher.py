"""Dynamic batching that never holds a lone request: Triton's dynamic batcher, in asyncio.

One worker per replica takes the oldest waiting request together with every request already queued
(up to ``max_requests``) and runs them as one engine call (``batching.run_batched``). A request that
finds nothing else pending runs at once. Only when other requests were pending with it — load is
arriving — does the worker wait for more: at most ``wait_s`` after the oldest one arrived, never beyond
``max_requests``, and only while they keep arriving at the pace they came in (``_deadline``). While the engine runs, new requests queue, and the next call takes them all:
under load batches form without any wait.

Each answer carries where its time went: ``queue_ms`` (arrival → its engine call started) and
``engine_ms`` (the engine call it was part of).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .batching import Answer, Arrays, run_batched


@dataclass
class Pending:
    arrays: Arrays
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Timed:
    """A caller's answer and its queue and engine time."""

    answer: Answer
    queue_ms: float
    engine_ms: float


class DynamicBatcher:
    """``await batcher.submit(arrays)`` → ``Timed``; ``run`` is the (blocking) engine call, run in a thread."""

    MIN_GAP_S = 0.001  # a burst that arrived within one event-loop turn still waits this long for its tail

    def __init__(self, run: Callable[[Arrays], Arrays], max_requests: int, wait_s: float) -> None:
        if max_requests < 1 or wait_s < 0:
            raise ValueError(f"max_requests must be >= 1 and wait_s >= 0, got {max_requests}, {wait_s}")
        self.run, self.max_requests, self.wait_s = run, max_requests, wait_s
        self._queue: asyncio.Queue[Pending] | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, arrays: Arrays) -> Timed:
        if self._queue is None:  # created in the serving event loop, on first use
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        pending = Pending(arrays, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    def _drain(self, batch: list[Pending]) -> None:
        assert self._queue is not None
        while len(batch) < self.max_requests and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _collect(self) -> list[Pending]:
        """The oldest request and all queued ones; if others were pending with it, also those still arriving."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        self._drain(batch)
        while 1 < len(batch) < self.max_requests:
            remaining = self._deadline(batch) - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
            self._drain(batch)
        return batch

    def _deadline(self, batch: Sequence[Pending]) -> float:
        """Wait for the next request no longer than ``wait_s`` after the oldest, and no longer than twice the
        mean gap between this batch's arrivals after the latest (arrivals have stopped when they fall behind
        their own pace)."""
        arrived = sorted(p.arrived for p in batch)
        pace = 2 * (arrived[-1] - arrived[0]) / (len(arrived) - 1) + self.MIN_GAP_S
        return min(arrived[0] + self.wait_s, arrived[-1] + pace)

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            started = time.perf_counter()
            try:
                answers: Sequence[Answer] = await asyncio.to_thread(run_batched, [p.arrays for p in batch], self.run)
            except Exception as exc:  # the engine failed: every caller of this batch gets the error
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            engine_ms = (time.perf_counter() - started) * 1e3
            for pending, answer in zip(batch, answers):
                if not pending.future.done():  # a caller that gave up (cancelled) is skipped
                    pending.future.set_result(Timed(answer, (started - pending.arrived) * 1e3, engine_ms))
