"""A queue bounded in time as well as in requests: refuse a request at once when the replica, at the pace it
keeps under its present load, would not answer it within a latency budget.

A count cap (``--max-queue``) bounds latency only as long as each request costs what it costs alone. Under
overload on shared cores it does not: the same cores also read and refuse the surplus requests, the engine
slows, and a full queue of 32 takes twice as long to drain as it did unloaded (docs/benchmarks.md#overload).
So each replica also measures its pace — seconds per request, the median over the engine calls it has just
made, counting the time between calls that the work around them took — and admits a request only while

    (requests held + its own batch) × seconds per request ≤ budget

(the request rides in a batch behind every request it finds; its own batch is priced at the largest of the
replica's last ``PACE_CALLS`` engine calls, since requests arriving after it join that batch as they joined
those, and at a full batch, of at most ``--max-queue`` requests, before any call was measured; an idle
replica always admits). The default budget is the issue-32
bound, ``--max-queue`` × the batch-1 engine time measured when the replica starts; ``--max-queue-ms`` sets
it, 0 turns it off. Unloaded, the pace is the batch-1 time or better (batching), so the time cap admits at
least as much as the count cap, and only overload makes it the tighter one.

The pace is a median, not a mean: on two shared cores one engine call in a few dozen takes 3-6x its usual
time (a garbage collection, the load generator's turn). A moving mean jumped with it (c2f_ca at 0.8 x C on a
Zen 3: 36-42 ms per request against the 14.3 ms batch-1 time, and requests refused with 3-5 ahead); the
median of the last ``PACE_CALLS`` calls ignores a lone slow call and follows a slowdown that lasts within
half of them. Pricing the request's own batch at a full one whatever the load refused requests at 0.8 x C on
a slow minute (8 held + a batch of 8 at 29 ms per request: 469 ms against the 447 ms budget) while that
load's calls took one to three requests; under overload the calls are full and the price is the same.

Admission prices a queue that is answered seconds later, and on two shared cores the engine slows for seconds
at a time under overload: resnet50_mhsa at 2 x C over HTTP on a Zen 3, the slowest 1 % of answers spent 1,850
ms queued + 622 ms in a batch of 8 (78 ms per request against the 55-63 ms the pace had priced), p99 2,366 ms
against the 1,810 ms bound. So the budget is also enforced where it can no longer be wrong by more than one
call: when a batch forms, a request whose wait so far plus that call, priced at the slowest of the last
``PACE_CALLS`` calls per request (``Pace.slowest_s``), would end past the budget is refused then
(``late_for_budget``), before the engine computes it — Triton's queue policy with a default timeout and
``timeout_action`` REJECT. A request that found the replica idle is never late, as it is always admitted: a
budget under one call must not refuse everything.

The batch-1 time is the fastest of ``LONE_CALLS`` calls after ``LONE_WARMUP``: noise only adds to a call, and
their median at start was 54 ms in one start and 70 ms in the next on the same Zen 3 (resnet50_mhsa, 55 ms
measured through the server afterwards), which moved the budget by 30 %.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from runtimes.bench.timing import time_calls

PACE_CALLS = 7  # engine calls in the moving median of seconds per request
LONE_CALLS = 7  # batch-1 calls timed at start (the fastest), after LONE_WARMUP untimed ones
LONE_WARMUP = 3


class Pace:
    """Seconds per request of one replica: the median over its last ``PACE_CALLS`` engine calls (seeded with
    the batch-1 time measured at start, which the first calls then push out), and how many requests those
    calls took."""

    def __init__(self, seconds_per_request: float | None = None) -> None:
        self._samples: deque[float] = deque(maxlen=PACE_CALLS)
        self._call_sizes: deque[int] = deque(maxlen=PACE_CALLS)
        if seconds_per_request is not None:
            self._samples.append(seconds_per_request)

    @property
    def seconds_per_request(self) -> float | None:
        return float(np.median(self._samples)) if self._samples else None

    @property
    def slowest_s(self) -> float | None:
        """The slowest seconds per request of the last ``PACE_CALLS`` calls: what the next call may cost."""
        return max(self._samples, default=None)

    def observe(self, seconds: float, requests: int) -> None:
        """One engine call of ``requests`` requests that took ``seconds`` since the replica was last free."""
        self._samples.append(seconds / max(1, requests))
        self._call_sizes.append(max(1, requests))

    def answered_within_s(self, held: int, max_batch: int, max_queue: int | None = None) -> float | None:
        """How long a request arriving now may take, at this pace, behind ``held`` requests and in a batch as
        large as the largest of the last calls (before any, ``max_batch``; a batch is taken from the requests
        held, so it is never larger than ``max_queue``); ``None`` before any engine call was measured."""
        if self.seconds_per_request is None:
            return None
        batch = max(self._call_sizes, default=max_batch)
        batch = min(batch, max_batch) if max_queue is None else min(batch, max_batch, max_queue)
        return (held + batch) * self.seconds_per_request


def over_budget(pace: Pace, held: int, max_batch: int, budget_s: float | None,
                max_queue: int | None = None) -> str | None:
    """Why a request arriving now is refused by the time cap, or ``None`` when it is admitted. An idle replica
    (``held`` 0) always admits: its request runs at once, and there is no queue to bound."""
    if budget_s is None or held == 0:
        return None
    expected = pace.answered_within_s(held, max_batch, max_queue)
    if expected is None or expected <= budget_s:
        return None
    return (f"{held} requests ahead would keep it about {expected * 1e3:.0f} ms at the present "
            f"{pace.seconds_per_request * 1e3:.1f} ms per request, over the {budget_s * 1e3:.0f} ms budget")


def late_for_budget(pace: Pace, waited_s: float, batch: int, budget_s: float | None) -> str | None:
    """Why a request that has waited ``waited_s`` is refused as its batch of ``batch`` forms, or ``None``: its
    answer, one call priced at the slowest recent pace away, would come after the budget."""
    if budget_s is None or pace.slowest_s is None:
        return None
    ends = waited_s + batch * pace.slowest_s
    if ends <= budget_s:
        return None
    return (f"it waited {waited_s * 1e3:.0f} ms and its batch of {batch} would answer it about {ends * 1e3:.0f} ms "
            f"after it arrived, over the {budget_s * 1e3:.0f} ms budget")


def lone_call_seconds(call: Callable[[], object], calls: int = LONE_CALLS, warmup: int = LONE_WARMUP) -> float:
    """The fastest wall time of ``calls`` calls after ``warmup`` untimed ones: the batch-1 engine time."""
    return float(np.min(time_calls(call, warmup=warmup, iters=calls, seconds=None))) / 1e3
