"""Dynamic batching that never holds a lone request, with a bounded queue and deadlines: Triton's dynamic
batcher and its queue policy, in asyncio.

One worker per replica takes the oldest waiting request together with every request already queued
(up to ``max_requests``) and runs them as one engine call (``batching.run_batched``). A request that
finds nothing else pending runs at once. Only when other requests were pending with it — load is
arriving — does the worker wait for more: at most ``wait_s`` after the oldest one arrived, never beyond
``max_requests``, and only while they keep arriving at the pace they came in (``_deadline``). While the engine runs, new requests queue, and the next call takes them all:
under load batches form without any wait.

Overload (Triton's ``max_queue_size`` with ``timeout_action`` REJECT): a replica holds at most ``max_queue``
requests, waiting or in its engine call; one more is refused at once (``QueueFull``) instead of growing the
queue and everyone's latency. Counting the running call too bounds what a request can find ahead of it, so
its latency stays under ``max_queue`` × the per-request engine time — while a request costs what it costs
alone. ``budget_s`` also bounds the queue in time (``serving/admission.py``): a request that the replica, at
the pace it keeps under its present load, would not answer within the budget is refused at once too, and one
that its batch, as it forms, could no longer answer within the budget is refused then, uncomputed. A
request may carry a timeout: if it passes while the request still waits, the request leaves the
queue (``DeadlineExpired``) and the engine never computes it. A request already in an engine call is
answered, whatever its deadline.

Each answer carries where its time went: ``queue_ms`` (arrival → its engine call started) and
``engine_ms`` (the engine call it was part of).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .admission import Pace, late_for_budget, over_budget
from .batching import Answer, Arrays, run_batched


class QueueFull(Exception):
    """The replica already holds ``max_queue`` requests, or as many as it can answer within its time budget:
    this one is refused without queueing. ``by_time``: the time budget refused it."""

    def __init__(self, held: int, over_time: str | None = None) -> None:
        super().__init__(over_time or f"{held} requests are already waiting or running")
        self.held, self.by_time = held, over_time is not None


class DeadlineExpired(Exception):
    """The request's timeout passed while it waited in the queue; the engine never computed it."""


@dataclass(eq=False)
class Pending:
    arrays: Arrays
    future: asyncio.Future
    deadline: float | None = None  # perf_counter seconds; None: no timeout
    arrived: float = field(default_factory=time.perf_counter)
    queued: bool = True  # counted in ``DynamicBatcher.waiting``
    started: bool = False  # part of an engine call: it will be answered
    found_queue: bool = False  # the replica held other requests when it arrived (else it is never late)


@dataclass(frozen=True)
class Timed:
    """A caller's answer and its queue and engine time."""

    answer: Answer
    queue_ms: float
    engine_ms: float


class DynamicBatcher:
    """``await batcher.submit(arrays, timeout_s)`` → ``Timed``; ``run`` is the (blocking) engine call, run in a
    thread. ``waiting``: requests waiting for an engine call now; ``running``: those in the current call."""

    MIN_GAP_S = 0.001  # a burst that arrived within one event-loop turn still waits this long for its tail

    def __init__(self, run: Callable[[Arrays], Arrays], max_requests: int, wait_s: float,
                 max_queue: int | None = None, budget_s: float | None = None, pace: Pace | None = None) -> None:
        if max_requests < 1 or wait_s < 0 or (max_queue is not None and max_queue < 1) or (budget_s or 0) < 0:
            raise ValueError(f"max_requests and max_queue must be >= 1 and wait_s, budget_s >= 0, got "
                             f"{max_requests}, {max_queue}, {wait_s}, {budget_s}")
        self.run, self.max_requests, self.wait_s, self.max_queue = run, max_requests, wait_s, max_queue
        self.budget_s = budget_s or None  # 0: no time cap
        self.pace = pace or Pace()
        self.waiting = 0
        self.running = 0
        self._free_since = 0.0  # perf_counter when the last engine call ended
        self._queue: asyncio.Queue[Pending] | None = None
        self._worker: asyncio.Task | None = None

    @property
    def held(self) -> int:
        """Requests this replica holds: waiting or in the running engine call (what ``max_queue`` caps)."""
        return self.waiting + self.running

    async def submit(self, arrays: Arrays, timeout_s: float | None = None) -> Timed:
        """Queue one request and wait for its answer; ``QueueFull`` at once when the queue is at its cap,
        ``DeadlineExpired`` when ``timeout_s`` passes before its engine call starts."""
        if self._queue is None:  # created in the serving event loop, on first use
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        if self.max_queue is not None and self.held >= self.max_queue:
            raise QueueFull(self.held)
        over_time = over_budget(self.pace, self.held, self.max_requests, self.budget_s, self.max_queue)
        if over_time:
            raise QueueFull(self.held, over_time)
        now = time.perf_counter()
        pending = Pending(arrays, asyncio.get_running_loop().create_future(),
                          None if timeout_s is None else now + timeout_s, now, found_queue=self.held > 0)
        self.waiting += 1
        self._queue.put_nowait(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except asyncio.TimeoutError:
            if pending.started:  # its engine call is running: the answer is on its way
                return await pending.future
            self._leave_queue(pending)
            pending.future.cancel()
            raise DeadlineExpired(f"its timeout of {timeout_s * 1e3:.0f} ms passed while it waited") from None
        except asyncio.CancelledError:  # the caller went away: never compute it
            if not pending.started:
                self._leave_queue(pending)
                pending.future.cancel()
            raise

    def _leave_queue(self, pending: Pending) -> None:
        if pending.queued:
            pending.queued = False
            self.waiting -= 1

    def _take(self, pending: Pending, batch: list[Pending]) -> None:
        """Move a queued request into the forming batch, unless it already left the queue (timed out)."""
        if pending.queued:
            self._leave_queue(pending)
            batch.append(pending)

    def _drain(self, batch: list[Pending]) -> None:
        assert self._queue is not None
        while len(batch) < self.max_requests and not self._queue.empty():
            self._take(self._queue.get_nowait(), batch)

    async def _collect(self) -> list[Pending]:
        """The oldest request and all queued ones; if others were pending with it, also those still arriving."""
        assert self._queue is not None
        batch: list[Pending] = []
        while not batch:
            self._take(await self._queue.get(), batch)
        self._drain(batch)
        while 1 < len(batch) < self.max_requests:
            remaining = self._deadline(batch) - time.perf_counter()
            if remaining <= 0:
                break
            try:
                self._take(await asyncio.wait_for(self._queue.get(), remaining), batch)
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

    def _still_awaited(self, batch: list[Pending], now: float) -> list[Pending]:
        """The requests of a formed batch that someone still waits for, whose deadline has not passed, and
        that its call can still answer within the budget (``admission.late_for_budget``; refused otherwise,
        unless it found the replica idle: as at admission, an idle replica's request always runs)."""
        live = []
        for pending in batch:
            if pending.future.done():  # timed out or cancelled while the batch formed
                continue
            if pending.deadline is not None and pending.deadline <= now:
                pending.future.set_exception(DeadlineExpired("its timeout passed while its batch formed"))
                continue
            live.append(pending)
        kept = []
        for pending in live:
            why = late_for_budget(self.pace, now - pending.arrived, len(live), self.budget_s) \
                if pending.found_queue else None
            if why:
                pending.future.set_exception(QueueFull(self.held, why))
            else:
                pending.started = True
                kept.append(pending)
        return kept

    async def _work(self) -> None:
        while True:
            batch = self._still_awaited(await self._collect(), time.perf_counter())
            if not batch:
                continue
            started = time.perf_counter()
            self.running = len(batch)
            try:
                answers: Sequence[Answer] = await asyncio.to_thread(run_batched, [p.arrays for p in batch], self.run)
            except Exception as exc:  # the engine failed: every caller of this batch gets the error
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            finally:
                self.running = 0
            ended = time.perf_counter()
            # the replica's pace: from when it was last free (or the oldest request came) to this answer
            self.pace.observe(ended - max(self._free_since, min(p.arrived for p in batch)), len(batch))
            self._free_since = ended
            engine_ms = (ended - started) * 1e3
            for pending, answer in zip(batch, answers):
                if not pending.future.done():  # a caller that gave up (cancelled) is skipped
                    pending.future.set_result(Timed(answer, (started - pending.arrived) * 1e3, engine_ms))
