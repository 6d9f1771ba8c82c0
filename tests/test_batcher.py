"""serving.batcher.DynamicBatcher without a server: a lone request never waits for a batch, a burst is one
engine call, requests arriving during an engine call form the next one, and each caller gets its rows; the
queue cap refuses at once, so does the time cap once the replica's measured pace says a request would wait
past the budget, and again as its batch forms if the engine slowed since; a request whose timeout passes in
the queue never reaches the engine."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.admission import PACE_CALLS, Pace, late_for_budget, lone_call_seconds, over_budget
from serving.batcher import DeadlineExpired, DynamicBatcher, QueueFull


class Engine:
    """Doubles its input; records the rows of every call; each call takes ``seconds``."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds, self.calls = seconds, []
        self.lock = threading.Lock()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.calls.append(len(feeds["x"]))
        time.sleep(self.seconds)
        return {"y": feeds["x"] * 2}


def _x(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), value, np.float32)}


def test_a_lone_request_runs_at_once_even_with_a_long_wait() -> None:
    engine = Engine()
    batcher = DynamicBatcher(engine, max_requests=8, wait_s=0.5)

    async def one() -> tuple[float, object]:
        start = time.perf_counter()
        timed = await batcher.submit(_x(1.0))
        return time.perf_counter() - start, timed

    took, timed = asyncio.run(one())
    assert took < 0.1 and timed.queue_ms < 50  # nowhere near the 500 ms window
    assert engine.calls == [1] and timed.answer.batch_requests == 1
    np.testing.assert_array_equal(timed.answer.outputs["y"], np.full((1, 3), 2.0, np.float32))


def test_a_burst_is_one_engine_call_and_each_caller_gets_its_rows() -> None:
    engine = Engine()
    batcher = DynamicBatcher(engine, max_requests=8, wait_s=0.5)

    async def burst() -> list:
        return await asyncio.gather(*(batcher.submit(_x(float(i), rows=1 + i % 2)) for i in range(5)))

    start = time.perf_counter()
    answers = asyncio.run(burst())
    assert time.perf_counter() - start < 0.3  # arrivals stopped: it did not sit out the 500 ms window
    assert engine.calls == [7] and all(t.answer.batch_requests == 5 and t.answer.batch_rows == 7 for t in answers)
    for i, timed in enumerate(answers):
        np.testing.assert_array_equal(timed.answer.outputs["y"], np.full((1 + i % 2, 3), 2.0 * i, np.float32))


def test_requests_arriving_during_an_engine_call_form_the_next_call() -> None:
    engine = Engine(seconds=0.2)
    batcher = DynamicBatcher(engine, max_requests=4, wait_s=0.0)

    async def staggered() -> list:
        first = asyncio.ensure_future(batcher.submit(_x(0.0)))
        await asyncio.sleep(0.05)  # the first call is running
        later = [asyncio.ensure_future(batcher.submit(_x(float(i)))) for i in range(1, 7)]
        return await asyncio.gather(first, *later)

    answers = asyncio.run(staggered())
    assert engine.calls == [1, 4, 2]  # queued while busy, joined up to max_requests, the rest next
    assert answers[1].queue_ms >= 100  # it waited for the busy engine, not for a batch window
    assert [t.answer.batch_requests for t in answers] == [1, 4, 4, 4, 4, 2, 2]


def test_an_engine_error_reaches_every_caller_of_that_call_and_the_next_call_works() -> None:
    calls = []

    def engine(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(feeds["x"]))
        if len(calls) == 1:
            raise RuntimeError("engine fell over")
        return {"y": feeds["x"]}

    batcher = DynamicBatcher(engine, max_requests=4, wait_s=0.0)

    async def run() -> list:
        failed = await asyncio.gather(batcher.submit(_x(1.0)), batcher.submit(_x(2.0)), return_exceptions=True)
        return [*failed, await batcher.submit(_x(3.0))]

    first, second, third = asyncio.run(run())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError) and "fell over" in str(first)
    np.testing.assert_array_equal(third.answer.outputs["y"], _x(3.0)["x"])


@pytest.mark.parametrize("max_requests,wait_s,max_queue,budget_s",
                         [(0, 0.0, None, None), (4, -1.0, None, None), (4, 0.0, 0, None), (4, 0.0, 8, -1.0)])
def test_bad_settings_are_refused(max_requests, wait_s, max_queue, budget_s) -> None:
    with pytest.raises(ValueError, match="max_requests and max_queue must be >= 1"):
        DynamicBatcher(Engine(), max_requests, wait_s, max_queue, budget_s)


def test_the_pace_is_a_moving_median_per_request_and_prices_the_largest_recent_batch_behind_the_queue() -> None:
    pace = Pace()
    assert pace.answered_within_s(5, 8) is None and over_budget(pace, 5, 8, 0.1) is None  # nothing measured
    pace.observe(0.08, 8)  # the first call sets it: 10 ms per request
    assert pace.seconds_per_request == pytest.approx(0.010)
    for _ in range(3):
        pace.observe(0.010, 1)
    pace.observe(0.060, 1)  # one stalled call (6x): the median does not move
    assert pace.seconds_per_request == pytest.approx(0.010)
    for _ in range(PACE_CALLS // 2):
        pace.observe(0.030, 1)  # a slowdown that lasts: half the window later, the pace is the slower one
    assert pace.seconds_per_request == pytest.approx(0.030)
    assert Pace(0.05).seconds_per_request == pytest.approx(0.05)  # seeded with the batch-1 time
    # the last calls took one request each: a request behind 4 rides in a batch of 1, not of 8
    assert pace.answered_within_s(4, 8) == pytest.approx(5 * 0.030)
    pace.observe(0.090, 3)  # a call of 3: later arrivals join a batch again
    assert pace.answered_within_s(4, 8) == pytest.approx(7 * 0.030)
    assert over_budget(pace, 4, 8, 7 * 0.030 + 1e-9) is None and over_budget(pace, 4, 8, 7 * 0.030 - 1e-9)
    for _ in range(PACE_CALLS):
        pace.observe(0.240, 12)  # overload: calls as large as the queue allows, capped at the engine's batch
    assert pace.answered_within_s(4, 8) == pytest.approx(12 * 0.020)
    why = over_budget(Pace(0.02), 30, 8, 0.5)
    assert why == "30 requests ahead would keep it about 760 ms at the present 20.0 ms per request, over the " \
                  "500 ms budget"
    assert over_budget(Pace(0.02), 30, 8, None) is None  # no budget: the count cap alone
    assert over_budget(Pace(0.02), 0, 8, 1e-6) is None  # an idle replica always admits
    # before any call a full batch is priced; it is taken from the requests held: under a cap of 4 it is at most
    # 4, so 2 held + 4 is 6 requests' work
    assert Pace(0.02).answered_within_s(2, 8, max_queue=4) == pytest.approx(0.12)
    assert over_budget(Pace(0.02), 2, 8, 0.12, max_queue=4) is None


def test_lone_call_seconds_is_the_fastest_after_the_warm_ups() -> None:
    times = iter([0.3, 0.2, 0.1, 0.03, 0.01, 0.05, 0.02, 0.04, 0.03, 0.06])  # the 3 slow warm-ups are not timed
    assert lone_call_seconds(lambda: time.sleep(next(times)), calls=7, warmup=3) == pytest.approx(0.01, abs=0.008)


def test_a_request_its_batch_would_answer_past_the_budget_is_late() -> None:
    pace = Pace(0.02)
    assert late_for_budget(pace, 0.3, 4, None) is None  # no budget
    pace.observe(0.5, 10)  # one call at 50 ms per request: the slowest of the recent calls prices the next
    assert pace.slowest_s == pytest.approx(0.05)
    assert late_for_budget(pace, 0.3, 4, 0.5 + 1e-9) is None  # 300 ms waited + 4 x 50 ms: just within
    assert late_for_budget(pace, 0.31, 4, 0.5) == ("it waited 310 ms and its batch of 4 would answer it about "
                                                   "510 ms after it arrived, over the 500 ms budget")


def test_an_engine_that_slows_after_admission_gets_the_late_request_refused_uncomputed() -> None:
    """Priced at the 100 ms measured at start, the second request is admitted (2 x 100 ms within 350 ms); the
    first call then takes 300 ms, so the second, when its batch forms, would be answered ~600 ms after it
    arrived: refused then, and never computed."""
    engine = Engine(seconds=0.3)
    batcher = DynamicBatcher(engine, max_requests=1, wait_s=0.0, max_queue=100, budget_s=0.35, pace=Pace(0.1))

    async def run() -> tuple:
        first = asyncio.ensure_future(batcher.submit(_x(1.0)))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit(_x(2.0)))
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(run())
    assert float(first.answer.outputs["y"][0, 0]) == 2.0
    assert isinstance(second, QueueFull) and second.by_time and "over the 350 ms budget" in str(second)
    assert engine.calls == [1]  # the late request never reached the engine


def test_the_time_cap_refuses_what_the_count_cap_would_still_take_and_never_computes_it() -> None:
    """100 ms per request, a 250 ms budget, room for 100 by count: the first request is answered within
    (0 + 1) x 100 ms, the second within 200 ms, the third would need 300: refused at once, never computed."""
    engine = Engine(seconds=0.1)
    batcher = DynamicBatcher(engine, max_requests=1, wait_s=0.0, max_queue=100, budget_s=0.25, pace=Pace(0.1))

    async def flood() -> tuple[list, QueueFull, float]:
        admitted = [asyncio.ensure_future(batcher.submit(_x(float(i)))) for i in (1, 2)]
        await asyncio.sleep(0)
        start = time.perf_counter()
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(_x(3.0))
        refused_in = time.perf_counter() - start
        return await asyncio.gather(*admitted), refused.value, refused_in

    answers, refused, refused_in = asyncio.run(flood())
    assert refused.by_time and refused.held == 2 and refused_in < 0.01
    assert "2 requests ahead would keep it about 300 ms" in str(refused) and "250 ms budget" in str(refused)
    assert engine.calls == [1, 1]  # the refused request never reached the engine
    assert [float(t.answer.outputs["y"][0, 0]) for t in answers] == [2.0, 4.0]
    assert batcher.pace.seconds_per_request == pytest.approx(0.1, rel=0.3)  # measured, still ~100 ms


def test_a_full_queue_refuses_at_once_and_the_waiting_ones_are_answered() -> None:
    engine = Engine(seconds=0.2)
    batcher = DynamicBatcher(engine, max_requests=1, wait_s=0.0, max_queue=3)

    async def flood() -> tuple[list, list[tuple[int, int]], float]:
        first = asyncio.ensure_future(batcher.submit(_x(0.0)))
        await asyncio.sleep(0.05)  # the first is in its engine call: it counts, as running
        queued = [asyncio.ensure_future(batcher.submit(_x(float(i)))) for i in (1, 2)]
        await asyncio.sleep(0)
        seen = [(batcher.waiting, batcher.running)]
        start = time.perf_counter()
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(_x(3.0))
        refused_in = time.perf_counter() - start
        assert refused.value.held == 3
        answers = await asyncio.gather(first, *queued)
        return answers, seen + [(batcher.waiting, batcher.running)], refused_in

    answers, held, refused_in = asyncio.run(flood())
    assert held == [(2, 1), (0, 0)] and refused_in < 0.01  # refused without waiting for the busy engine
    assert engine.calls == [1, 1, 1]  # the refused request was never computed
    assert [float(t.answer.outputs["y"][0, 0]) for t in answers] == [0.0, 2.0, 4.0]


def test_a_request_whose_timeout_passes_in_the_queue_never_reaches_the_engine() -> None:
    engine = Engine(seconds=0.3)
    batcher = DynamicBatcher(engine, max_requests=4, wait_s=0.0, max_queue=8)

    async def run() -> tuple:
        busy = asyncio.ensure_future(batcher.submit(_x(0.0), timeout_s=0.01))  # started at once: answered
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        with pytest.raises(DeadlineExpired, match="100 ms"):
            await batcher.submit(_x(1.0), timeout_s=0.1)
        expired_after = time.perf_counter() - start
        waiting_after = batcher.waiting
        kept = await batcher.submit(_x(2.0), timeout_s=5.0)
        return await busy, expired_after, waiting_after, kept

    busy, expired_after, waiting_after, kept = asyncio.run(run())
    assert 0.09 <= expired_after < 0.2  # answered at its deadline, not when the engine came free
    assert waiting_after == 0 and engine.calls == [1, 1]  # 0.0 and 2.0; the expired 1.0 never ran
    assert float(busy.answer.outputs["y"][0, 0]) == 0.0 and float(kept.answer.outputs["y"][0, 0]) == 4.0


def test_a_cancelled_caller_leaves_the_queue_uncomputed() -> None:
    engine = Engine(seconds=0.2)
    batcher = DynamicBatcher(engine, max_requests=4, wait_s=0.0, max_queue=4)

    async def run() -> int:
        busy = asyncio.ensure_future(batcher.submit(_x(0.0)))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(_x(1.0)))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0)
        waiting = batcher.waiting
        await busy
        await batcher.submit(_x(2.0))
        return waiting

    assert asyncio.run(run()) == 0 and engine.calls == [1, 1]
