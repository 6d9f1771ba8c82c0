"""``attn-bench --url --rate R --duration S``: an open-loop load generator for an Open Inference Protocol
server (attn-serve, Triton), through ``tritonclient``'s asyncio clients over HTTP or gRPC.

Closed-loop clients (``--concurrency``) slow down when the server does, so they never see overload. Here
request *i* is sent at ``t0 + i / rate`` whatever happened to the others, and its latency counts from that
scheduled time, so queueing in the client counts too (wrk2's and perf_analyzer's ``--request-rate`` rule).

Each answer is checked against the server's own unloaded answer to the same input (a pool of distinct
inputs is answered one at a time before the load: that is also the unloaded latency). Outcomes: answered
(``wrong`` counts those that differ), refused (HTTP 503, gRPC UNAVAILABLE, a closed port, or a connection the
server closed before the request was written), timed out
(504, DEADLINE_EXCEEDED, or no answer within ``--timeout-ms`` plus a second), errors (anything else). After
the load, one lone request measures how fast the server recovered. The server's resident memory is sampled
through the load when it runs on this machine (found by its listening port; needs psutil).

For soaks: ``bad_every=N`` makes every Nth request a bad one (an input name the model does not have), which
must be answered 4xx (anything else is an error); p99 and RSS are also reported per ``window_s``.
"""
from __future__ import annotations

import asyncio
import gc
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from runtimes.bench.remote import SPLIT, _strip, infer_inputs, int_parameters, model_specs
from runtimes.specs import TensorSpec, random_inputs

POOL = 16  # distinct inputs, each answered unloaded first
RSS_EVERY_S = 0.5
GRACE_S = 1.0  # a client timeout waits this much beyond the request's own
REFUSED = ("503", "UNAVAILABLE")
TIMED_OUT = ("504", "DEADLINE_EXCEEDED")
# the request never reached the server: nobody listens on the port, or it closed the connection before the
# body was written (a server that stopped accepting); an answer lost after the request was sent is an error
NOT_SENT = ("Connection refused", "Can not write request body")


@dataclass(frozen=True)
class OpenLoopResult:
    """One open-loop run of one protocol."""

    engine: str  # "http" or "grpc"
    rate: float  # requests per second asked
    duration_s: float
    sent: int
    sent_per_s: float  # what the schedule achieved: sends over the span from the first to the last
    send_lag_p99_ms: float  # how late sends left against their schedule (the generator's own health)
    send_lag_max_ms: float  # the worst of them: a generator stall sends its backlog as one burst
    answered: int
    refused: int
    timed_out: int
    errors: int
    wrong: int  # answered, but not equal to the unloaded answer (rows, within max_abs_diff)
    max_abs_diff: float  # largest |answer − unloaded answer| over every answered request
    p50_ms: float  # answered requests, from their scheduled time
    p99_ms: float
    max_ms: float
    unloaded_ms: float  # median latency of lone requests before the load
    after_ms: float  # a lone request once the load's answers are all in
    server_rss_mb: dict[str, float] = field(default_factory=dict)  # start, at_10s, end, max; empty if remote
    bad_sent: int = 0  # of ``sent``: bad requests (``bad_every``), each expected to be answered 4xx
    bad_rejected: int = 0  # of those: answered 4xx
    p99_by_window_ms: list[float] = field(default_factory=list)  # answered good requests, per window_s
    rss_by_window_mb: list[float] = field(default_factory=list)  # the server's RSS at the end of each window
    error_examples: list[str] = field(default_factory=list)
    refusal_examples: list[str] = field(default_factory=list)  # up to 3 distinct: which cap refused, at what pace
    refused_by_window: list[int] = field(default_factory=list)  # refusals per window_s, by scheduled time
    steal_by_window_pct: list[float] = field(default_factory=list)  # this machine's CPU time stolen, per window
    # where the slowest 1 % of answers spent their time: the mean of each part of attn-serve's split over them,
    # and ``client``, their latency outside the server's (scheduling, network, HTTP/gRPC before the model is
    # called); empty for a server that reports no split
    tail_split_ms: dict[str, float] = field(default_factory=dict)
    tail_split_by_window_ms: list[dict[str, float]] = field(default_factory=list)  # the same, per window_s
    # per window: the median engine time of answers computed alone (``batch_rows`` 1): the machine's own speed
    # that minute, which tells a slower machine from a longer queue (nan where the server reports no split)
    lone_engine_ms_by_window: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _aio_module(protocol: str) -> Any:
    from runtimes.optional import require

    return require(f"tritonclient.{'grpc' if protocol == 'grpc' else 'http'}.aio", "attn-bench --url --rate",
                   "serve")


def _status(exc: BaseException) -> str:
    """The HTTP status or gRPC code tritonclient puts in its exception's ``status()``; "" for other errors."""
    return str(getattr(exc, "status", lambda: "")() or "")


def classify(exc: BaseException) -> str:
    """``refused``, ``timed_out`` or ``error`` for a failed request (tritonclient puts the HTTP status or the gRPC
    code in the exception's ``status()``; a port nobody listens on any more is a refusal)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed_out"
    status = _status(exc)
    if any(code in status for code in REFUSED):
        return "refused"
    if any(code in status for code in TIMED_OUT):
        return "timed_out"
    text = f"{type(exc).__name__}: {exc}"
    if "Connect" in type(exc).__name__ or any(sign in text for sign in NOT_SENT):
        return "refused"
    return "error"


def server_process(url: str) -> Any:
    """The local process listening on ``url``'s port, or None (remote, or psutil missing)."""
    try:
        import psutil
    except ImportError:
        return None
    port = int(_strip(url).rsplit(":", 1)[-1])
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class _Client:
    """One asyncio tritonclient, the pool of prepared requests and one bad request."""

    def __init__(self, url: str, protocol: str, model: str, specs: list[TensorSpec], timeout_ms: float | None) -> None:
        self.module = _aio_module(protocol)
        self.model, self.timeout_ms, self.protocol = model, timeout_ms, protocol
        kwargs = {"conn_limit": 10_000} if protocol == "http" else {}
        self.client = self.module.InferenceServerClient(_strip(url), **kwargs)
        self.pool = [infer_inputs(self.module, specs, random_inputs(specs, 1, seed=1000 + i)) for i in range(POOL)]
        self.bad = infer_inputs(self.module, specs, random_inputs(specs, 1, seed=999),
                                rename={specs[0].name: "__not_an_input__"})

    async def infer(self, index: int, bad: bool = False) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Send pool entry ``index`` (or the bad request); its outputs by name and the response's integer
        parameters (the request's timeout is sent as the OIP parameter)."""
        timeout_us = int(self.timeout_ms * 1e3) if self.timeout_ms else None
        call = self.client.infer(self.model, self.bad if bad else self.pool[index % POOL], timeout=timeout_us)
        result = await (asyncio.wait_for(call, self.timeout_ms / 1e3 + GRACE_S) if self.timeout_ms else call)
        response = result.get_response()
        names = [o["name"] for o in response["outputs"]] if isinstance(response, dict) else \
            [o.name for o in response.outputs]
        return {name: result.as_numpy(name) for name in names}, int_parameters(result, self.protocol)

    async def close(self) -> None:
        await self.client.close()


def _max_diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(got[k].astype(np.float64) - want[k].astype(np.float64)).max()) for k in want)


def _rejected_as_bad(exc: BaseException) -> bool:
    """A 4xx: HTTP 400-499, or gRPC INVALID_ARGUMENT / NOT_FOUND."""
    status = _status(exc)
    return status.startswith("4") or status in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND")


@dataclass
class _Tally:
    """What came back during a run."""

    outcomes: dict[str, int] = field(default_factory=lambda: {"answered": 0, "refused": 0, "timed_out": 0,
                                                               "error": 0})
    answered: list[tuple[float, float]] = field(default_factory=list)  # (scheduled since t0, latency ms)
    splits: list[dict[str, int]] = field(default_factory=list)  # each answer's *_us parameters, as answered
    lags_ms: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    refused_at: list[float] = field(default_factory=list)  # scheduled since t0
    wrong: int = 0
    worst: float = 0.0
    bad_sent: int = 0
    bad_rejected: int = 0

    def failed(self, exc: BaseException, scheduled: float) -> None:
        kind = classify(exc)
        self.outcomes[kind] += 1
        text = f"{type(exc).__name__}: {str(exc)[:300]}"
        if kind == "error" and len(self.examples) < 3:
            self.examples.append(text)
        if kind == "refused":
            self.refused_at.append(scheduled)
            if len(self.refusals) < 3 and text not in self.refusals:
                self.refusals.append(text)


class _RssSampler:
    """The server's resident MB every ``RSS_EVERY_S``, while it runs (none for a remote server), and this
    machine's CPU times with each sample: how much of the CPUs the hypervisor took (steal) tells a slow minute
    of the machine from one of the server."""

    def __init__(self, url: str) -> None:
        self.proc = server_process(url)
        self.samples: list[tuple[float, float]] = []  # (loop time, MB)
        self.cpu: list[tuple[float, float, float]] = []  # (loop time, steal s, total s) over every CPU

    async def run(self, loop: asyncio.AbstractEventLoop) -> None:
        import psutil  # present: server_process found the server through it

        while self.proc is not None:
            try:
                resident = self.proc.memory_info().rss if self.proc.is_running() and \
                    self.proc.status() != "zombie" else 0
            except Exception:  # the server exited (a drain): stop sampling
                return
            if not resident:
                return
            self.samples.append((loop.time(), resident / 2**20))
            times = psutil.cpu_times()
            self.cpu.append((loop.time(), getattr(times, "steal", 0.0), sum(times)))
            await asyncio.sleep(RSS_EVERY_S)

    def summary(self, t0: float) -> dict[str, float]:
        if not self.samples:
            return {}
        at_10 = [mb for t, mb in self.samples if t - t0 <= 10.0]
        return {"start": self.samples[0][1], "at_10s": at_10[-1] if at_10 else self.samples[0][1],
                "end": self.samples[-1][1], "max": max(mb for _, mb in self.samples)}

    def by_window(self, t0: float, window_s: float, windows: int) -> list[float]:
        return [next((mb for t, mb in reversed(self.samples) if t - t0 <= (w + 1) * window_s), float("nan"))
                for w in range(windows)] if self.samples else []

    def steal_by_window(self, t0: float, window_s: float, windows: int) -> list[float]:
        """Per window: % of this machine's CPU time stolen by the hypervisor (Linux guests; 0 elsewhere)."""
        shares = []
        for w in range(windows):
            inside = [c for c in self.cpu if w * window_s <= c[0] - t0 <= (w + 1) * window_s]
            if len(inside) < 2:
                return shares
            (_, steal0, total0), (_, steal1, total1) = inside[0], inside[-1]
            shares.append(100.0 * (steal1 - steal0) / max(total1 - total0, 1e-9))
        return shares


async def _run(url: str, model: str, protocol: str, rate: float, duration_s: float, timeout_ms: float | None,
               max_abs_diff: float, bad_every: int, window_s: float) -> OpenLoopResult:
    specs = model_specs(url, model, protocol)
    client = _Client(url, protocol, model, specs, timeout_ms)
    loop = asyncio.get_running_loop()
    reference, lone_ms = [], []
    for i in range(POOL):
        start = loop.time()
        reference.append((await client.infer(i))[0])
        lone_ms.append((loop.time() - start) * 1e3)
    tally, rss = _Tally(), _RssSampler(url)
    # the generator's own full garbage collections scanned every imported object (tritonclient, numpy: 40 ms
    # on a Zen 3) and delayed sends into bursts; frozen, they scan only what the run allocates
    gc.collect()
    gc.freeze()
    t0 = loop.time() + 0.05

    async def one(index: int, scheduled: float) -> None:
        tally.lags_ms.append((loop.time() - scheduled) * 1e3)
        bad = bad_every > 0 and index % bad_every == bad_every - 1
        tally.bad_sent += bad
        try:
            got, parameters = await client.infer(index, bad)
        except Exception as exc:  # every failure is counted by its kind; the load goes on
            if bad and _rejected_as_bad(exc):
                tally.bad_rejected += 1
            else:
                tally.failed(exc, scheduled - t0)
            return
        if bad:  # a bad request answered as good: the server let it through
            tally.failed(RuntimeError("a request with an unknown input name was answered"), scheduled - t0)
            return
        tally.answered.append((scheduled - t0, (loop.time() - scheduled) * 1e3))
        tally.splits.append(parameters)
        tally.outcomes["answered"] += 1
        diff = _max_diff(got, reference[index % POOL])
        tally.worst = max(tally.worst, diff)
        tally.wrong += diff > max_abs_diff

    sampler = loop.create_task(rss.run(loop))
    count = max(1, int(round(rate * duration_s)))
    # only the requests still out are kept: a soak's finished tasks would otherwise pile up in the collector's
    # oldest generation and make each full collection, which stalls the schedule, longer than the last
    in_flight: set[asyncio.Task] = set()
    for i in range(count):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    last_send = loop.time()
    await asyncio.gather(*in_flight)
    start = loop.time()
    try:
        await client.infer(0)
        after_ms = (loop.time() - start) * 1e3
    except Exception:  # the server is gone (SIGTERM during the run)
        after_ms = float("nan")
    sampler.cancel()
    await client.close()
    gc.unfreeze()  # this run's tally and tasks become collectable again once it returns
    latency = np.asarray([ms for _, ms in tally.answered] or [float("nan")])
    p50, p99 = np.percentile(latency, [50, 99])
    windows = max(1, int(np.ceil(duration_s / window_s)))
    in_window = [[i for i, (t, _) in enumerate(tally.answered) if w * window_s <= t < (w + 1) * window_s]
                 for w in range(windows)]
    by_window = [[tally.answered[i][1] for i in w] for w in in_window]
    out = tally.outcomes
    return OpenLoopResult(
        engine=protocol, rate=rate, duration_s=duration_s, sent=count,
        sent_per_s=(count - 1) / max(last_send - t0, 1e-9) if count > 1 else 0.0,
        send_lag_p99_ms=float(np.percentile(tally.lags_ms, 99)), send_lag_max_ms=float(max(tally.lags_ms)),
        answered=out["answered"], refused=out["refused"],
        timed_out=out["timed_out"], errors=out["error"], wrong=tally.wrong, max_abs_diff=tally.worst,
        p50_ms=float(p50), p99_ms=float(p99), max_ms=float(latency.max()), unloaded_ms=float(np.median(lone_ms)),
        after_ms=after_ms, server_rss_mb=rss.summary(t0), error_examples=tally.examples, bad_sent=tally.bad_sent,
        bad_rejected=tally.bad_rejected,
        p99_by_window_ms=[float(np.percentile(w, 99)) if w else float("nan") for w in by_window],
        rss_by_window_mb=rss.by_window(t0, window_s, windows), refusal_examples=tally.refusals,
        refused_by_window=[sum(w * window_s <= t < (w + 1) * window_s for t in tally.refused_at)
                           for w in range(windows)],
        steal_by_window_pct=rss.steal_by_window(t0, window_s, windows),
        tail_split_ms=tail_split([ms for _, ms in tally.answered], tally.splits),
        tail_split_by_window_ms=[tail_split([tally.answered[i][1] for i in w], [tally.splits[i] for i in w])
                                 for w in in_window],
        lone_engine_ms_by_window=[lone_engine_ms([tally.splits[i] for i in w]) for w in in_window])


def tail_split(latency_ms: list[float], splits: list[dict[str, int]]) -> dict[str, float]:
    """The mean of each part of attn-serve's split (``SPLIT``, from the ``*_us`` parameters) over the answers
    at or above the p99 latency, and ``client``: their latency less the server's; ``{}`` when the answers
    carry no split."""
    if not latency_ms or not all(f"{part}_us" in s for s in splits for part in SPLIT):
        return {}
    latency = np.asarray(latency_ms)
    tail = np.flatnonzero(latency >= np.percentile(latency, 99))
    parts = {part: float(np.mean([splits[i][f"{part}_us"] for i in tail])) / 1e3 for part in SPLIT}
    parts["client"] = float(np.mean(latency[tail])) - parts["server"]
    return parts


def lone_engine_ms(splits: list[dict[str, int]]) -> float:
    """The median ``engine_us`` of the answers computed alone (``batch_rows`` 1), in ms; nan if none."""
    alone = [s["engine_us"] for s in splits if s.get("batch_rows") == 1 and "engine_us" in s]
    return float(np.median(alone)) / 1e3 if alone else float("nan")


def describe_tail(split_ms: dict[str, float]) -> str:
    """``client 6 + decode 0 + … ms``: where the slowest answers spent their time, outside the server first."""
    parts = ["client", *(p for p in SPLIT if p != "server")]
    return " + ".join(f"{p} {split_ms[p]:.0f}" for p in parts) + " ms"


def run_open_loop(url: str, model: str, protocol: str, rate: float, duration_s: float,
                  timeout_ms: float | None = None, max_abs_diff: float = 0.0, bad_every: int = 0,
                  window_s: float = 60.0) -> OpenLoopResult:
    """Send ``rate × duration_s`` single-sample requests on schedule; see the module docstring."""
    return asyncio.run(_run(url, model, protocol, rate, duration_s, timeout_ms, max_abs_diff, bad_every, window_s))


def format_table(results: list[OpenLoopResult]) -> str:
    lines = [f"{'protocol':<8} {'rate/s':>7} {'sent':>6} {'answered':>8} {'refused':>7} {'timeout':>7} "
             f"{'errors':>6} {'wrong':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lone ms':>8} {'after ms':>8}  "
             f"server RSS MB (start/10s/end/max)"]
    for r in results:
        rss = "/".join(f"{r.server_rss_mb[k]:.0f}" for k in ("start", "at_10s", "end", "max")) \
            if r.server_rss_mb else "-"
        lines.append(f"{r.engine:<8} {r.rate:>7.1f} {r.sent:>6} {r.answered:>8} {r.refused:>7} {r.timed_out:>7} "
                     f"{r.errors:>6} {r.wrong:>5} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} "
                     f"{r.unloaded_ms:>8.1f} {r.after_ms:>8.1f}  {rss}")
    lines += [f"{r.engine}: the slowest 1 % of answers spent {describe_tail(r.tail_split_ms)}"
              for r in results if r.tail_split_ms]
    return "\n".join(lines)
