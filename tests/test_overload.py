"""attn-serve under overload and shutdown, against real in-process servers on loopback (10-class c2f_ca,
one engine call at a time): a full queue refuses at once on both protocols, readiness turns false while it
is full, a timeout that passes in the queue is answered 504 / DEADLINE_EXCEEDED, SIGTERM drains the
accepted requests and exits 0; the open-loop load generator keeps its schedule (against a trivial server)
and counts refusals and correct answers. The policy's plain functions are tested without a server.

Like tests/test_serving.py this process imports tritonclient only (KServe runs in the servers)."""
from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from click.testing import CliRunner

import runtimes
from runtimes.bench import open_loop
from serving.policy import (GRPC_TIME_REMAINING, Policy, default_max_queue, queue_budget, ray_options,
                            request_timeout_s)

from . import serving_procs
from .exports import exported

MODEL = "c2f_ca"
MAX_QUEUE = 2


@pytest.fixture(scope="module")
def folder(artifacts_root):
    return exported(MODEL, artifacts_root)[0]


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    """One request per engine call, two held at most by count (the time cap off, so that refusals name the
    count cap; the time cap is tested below and in tests/test_batcher.py): a flood of 16 clients is mostly
    refused."""
    log = tmp_path_factory.mktemp("overload") / "attn-serve.log"
    srv = serving_procs.start([str(folder), "--max-batch", "1", "--max-queue", str(MAX_QUEUE), "--max-queue-ms", "0"],
                              log, [MODEL])
    yield srv
    serving_procs.stop(srv)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)


def _http_request(server, image: np.ndarray, timeout_us: int | None = None) -> urllib.request.Request:
    """A binary-tensor REST request (as tritonclient sends it) that asks for the logits as JSON."""
    header = {"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": image.nbytes}}],
              "outputs": [{"name": "logits", "parameters": {"binary_data": False}}]}
    if timeout_us:
        header["parameters"] = {"timeout": timeout_us}
    head = json.dumps(header).encode()
    return urllib.request.Request(f"{server.url}/v2/models/{MODEL}/infer", head + image.tobytes(),
                                  {"Content-Type": "application/octet-stream",
                                   "Inference-Header-Content-Length": str(len(head))}, method="POST")


def _send(request: urllib.request.Request) -> tuple[int, dict[str, str], dict]:
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


class Flood:
    """``clients`` threads sending lone requests back to back until stopped; what came back, by kind."""

    def __init__(self, server, clients: int = 16, timeout_us: int | None = None) -> None:
        self.server, self.timeout_us = server, timeout_us
        self.results: list[tuple[int, dict[str, str], dict, int]] = []  # status, headers, body, seed
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(c,)) for c in range(clients)]

    def _client(self, c: int) -> None:
        i = 0
        while not self.stopping.is_set():
            seed = c * 1000 + i % 4
            outcome = _send(_http_request(self.server, _image(seed), self.timeout_us))
            with self.lock:
                self.results.append((*outcome, seed))
            i += 1

    def __enter__(self) -> "Flood":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def of(self, status: int) -> list:
        return [r for r in self.results if r[0] == status]


def _stats(server) -> dict:
    return json.loads(server.get(f"/v2/models/{MODEL}/stats")[1])["model_stats"][0]


def assert_refused_at_the_cap_and_answered_correctly(server, folder, flood: Flood, before: dict,
                                                     cap_phrase: str) -> None:
    """A flood came back as 200s and 503s only, each 503 with Retry-After and a message naming the model and
    the cap, each 200 its own input's answer, and the model's statistics count both."""
    refused, answered = flood.of(503), flood.of(200)
    assert len(refused) + len(answered) == len(flood.results), {r[0] for r in flood.results}
    assert refused and answered
    _, headers, body, _ = refused[0]
    assert {k.lower(): v for k, v in headers.items()}.get("retry-after") == "1"
    assert f"model '{MODEL}': its queue is full (" in body["error"] and cap_phrase in body["error"], body
    with runtimes.load(folder) as rt:  # every answer is its own input's, computed alone
        want = {seed: rt({"image": _image(seed)})["logits"] for seed in {r[3] for r in answered}}
    worst = max(np.abs(np.asarray(r[2]["outputs"][0]["data"]) - want[r[3]].ravel()).max() for r in answered)
    assert worst <= 1e-5 * max(np.abs(w).max() for w in want.values())
    after = _stats(server)["inference_stats"]
    assert after["refused"]["count"] - before["refused"]["count"] == len(refused)
    assert after["success"]["count"] - before["success"]["count"] == len(answered)


def test_a_full_queue_refuses_at_once_over_http_and_readiness_turns_false(server, folder) -> None:
    before = _stats(server)["inference_stats"]
    readiness = []
    with Flood(server) as flood:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            readiness.append(server.get("/v2/health/ready")[0])
            time.sleep(0.05)
    assert 503 in readiness, f"readiness never turned false while 16 clients flooded a queue of {MAX_QUEUE}"
    assert_refused_at_the_cap_and_answered_correctly(
        server, folder, flood, before, f"({MAX_QUEUE} requests waiting or running, --max-queue {MAX_QUEUE})")
    time.sleep(0.5)
    assert server.get("/v2/health/ready")[0] == 200  # the queue emptied: ready again


def test_under_ray_serve_the_same_cap_refuses_and_answers_correctly(folder, tmp_path) -> None:
    """``--runner ray`` with one replica: Ray Serve is given the same cap (max_ongoing_requests and
    max_queued_requests), and a flood of 16 clients is refused by it with the same 503, Retry-After and message."""
    srv = serving_procs.start([str(folder), "--runner", "ray", "--max-batch", "1", "--max-queue", str(MAX_QUEUE),
                               "--max-queue-ms", "0"], tmp_path / "attn-serve-ray.log", [MODEL])
    try:
        before = _stats(srv)["inference_stats"]
        with Flood(srv) as flood:
            time.sleep(4)
        assert_refused_at_the_cap_and_answered_correctly(srv, folder, flood, before, f"--max-queue {MAX_QUEUE}")
    finally:
        serving_procs.stop(srv)
    assert srv.proc.returncode == 0 and srv.children == [], (tmp_path / "attn-serve-ray.log").read_text()[-3000:]


def test_a_full_queue_refuses_grpc_with_unavailable(server) -> None:
    codes, lock = [], threading.Lock()

    def client(c: int) -> None:
        conn = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
        for i in range(6):
            tensor = grpcclient.InferInput("image", [1, 3, 224, 224], "FP32")
            tensor.set_data_from_numpy(_image(c * 10 + i))
            try:
                conn.infer(MODEL, [tensor])
                outcome = ("OK", "")
            except Exception as exc:  # tritonclient's InferenceServerException: status() is the gRPC code
                outcome = (str(exc.status()), str(exc.message()))
            with lock:
                codes.append(outcome)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kinds = {code for code, _ in codes}
    assert kinds <= {"OK", "StatusCode.UNAVAILABLE"} and kinds == {"OK", "StatusCode.UNAVAILABLE"}, kinds
    message = next(m for c, m in codes if c == "StatusCode.UNAVAILABLE")
    assert f"model '{MODEL}'" in message and "queue is full" in message


def test_a_timeout_that_passes_in_the_queue_is_answered_504_and_never_computed(server) -> None:
    before = _stats(server)
    with Flood(server, clients=6, timeout_us=1) as flood:  # 1 µs: only a request that finds the engine free runs
        time.sleep(3)
    after = _stats(server)
    timed_out, answered, refused = flood.of(504), flood.of(200), flood.of(503)
    assert timed_out and len(timed_out) + len(answered) + len(refused) == len(flood.results)
    assert "it was not computed" in timed_out[0][2]["error"] and f"model '{MODEL}'" in timed_out[0][2]["error"]
    counted = {k: after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
               for k in ("timed_out", "success")}
    assert counted == {"timed_out": len(timed_out), "success": len(answered)}
    # the engine computed the answered rows only: one row per answered request, none for the 504s
    assert after["inference_count"] - before["inference_count"] == len(answered)


def test_a_grpc_deadline_is_the_request_timeout(server) -> None:
    """gRPC clients set deadlines, not parameters: a 1 ms deadline behind a busy engine is dropped."""
    codes = []
    with Flood(server, clients=4):
        conn = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
        for i in range(10):
            tensor = grpcclient.InferInput("image", [1, 3, 224, 224], "FP32")
            tensor.set_data_from_numpy(_image(i))
            try:
                conn.infer(MODEL, [tensor], client_timeout=0.001)
                codes.append("OK")
            except Exception as exc:
                codes.append(str(exc.status()))
    assert "StatusCode.DEADLINE_EXCEEDED" in codes and set(codes) <= {
        "OK", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.UNAVAILABLE"}, codes


def test_an_open_loop_above_capacity_refuses_and_answers_correctly(server, tmp_path) -> None:
    """``attn-bench --url --rate --duration`` (the CLI, its table and JSON) at a rate the server cannot hold."""
    from runtimes.bench.cli import main as attn_bench

    out = tmp_path / "open_loop.json"
    run = CliRunner().invoke(attn_bench, [MODEL, "--url", server.url, "--rate", "150", "--duration", "3",
                                          "--json", str(out)])
    assert run.exit_code == 0, run.output
    result = json.loads(out.read_text())["results"][0]
    assert result["sent"] == 450 and result["answered"] + result["refused"] + result["timed_out"] == result["sent"]
    assert result["refused"] > 0 and result["answered"] > 0 and result["errors"] == 0
    assert sum(result["refused_by_window"]) == result["refused"]
    assert result["send_lag_max_ms"] >= result["send_lag_p99_ms"]
    assert result["refusal_examples"] and all("queue is full" in why for why in result["refusal_examples"])
    assert result["wrong"] == 0 and result["max_abs_diff"] == 0.0  # bit-equal to the unloaded answers
    rss = result["server_rss_mb"]
    assert rss and rss["max"] >= rss["start"] > 100
    assert result["after_ms"] < 10 * result["unloaded_ms"] + 100  # the server recovered once the load stopped
    assert len(result["steal_by_window_pct"]) == 1 and 0.0 <= result["steal_by_window_pct"][0] < 100.0
    tail = result["tail_split_ms"]  # attn-serve's split of the slowest 1 %: its parts within their latency
    assert set(tail) == {"decode", "hop", "queue", "engine", "encode", "server", "client"} and tail["engine"] > 0
    assert tail["server"] + tail["client"] <= result["max_ms"] + 1e-6 and tail["client"] > -1.0
    assert f"http: the slowest 1 % of answers spent client {tail['client']:.0f} + decode" in run.output
    (window_tail,) = result["tail_split_by_window_ms"]  # one 60 s window holds the whole 3 s run
    assert window_tail == pytest.approx(tail)
    (lone,) = result["lone_engine_ms_by_window"]  # the lone requests before the load are outside the windows
    assert lone != lone or 0.0 < lone < tail["engine"] + 1e-6  # nan when every answer rode in a batch


def test_the_tail_split_is_the_mean_of_each_part_over_the_slowest_percent() -> None:
    """100 answers: the slowest (latency 500 ms) alone is at or above the p99; its parts are reported, and the
    time outside the server (500 - 450 ms) as ``client``; answers without attn-serve's split give nothing."""
    parts = ("decode", "hop", "queue", "engine", "encode")
    latency = [10.0] * 99 + [500.0]
    fast = {**{f"{p}_us": 1000 for p in parts}, "server_us": 5000}
    slow = {"decode_us": 0, "hop_us": 0, "queue_us": 300_000, "engine_us": 150_000, "encode_us": 0,
            "server_us": 450_000}
    split = open_loop.tail_split(latency, [fast] * 99 + [slow])
    assert split == pytest.approx({"decode": 0, "hop": 0, "queue": 300.0, "engine": 150.0, "encode": 0,
                                   "server": 450.0, "client": 50.0})
    assert open_loop.tail_split(latency, [{}] * 100) == {} and open_loop.tail_split([], []) == {}
    assert open_loop.describe_tail(split) == "client 50 + decode 0 + hop 0 + queue 300 + engine 150 + encode 0 ms"


def test_the_lone_engine_time_is_the_median_over_answers_computed_alone() -> None:
    """Only ``batch_rows`` 1 answers count (a batch of 8's 80 ms is not the machine's speed); none: nan."""
    splits = [{"batch_rows": 1, "engine_us": us} for us in (10_000, 12_000, 30_000)]
    splits += [{"batch_rows": 8, "engine_us": 80_000}] * 5
    assert open_loop.lone_engine_ms(splits) == pytest.approx(12.0)
    assert np.isnan(open_loop.lone_engine_ms(splits[3:])) and np.isnan(open_loop.lone_engine_ms([]))


def test_the_stolen_cpu_share_is_per_window_from_the_machines_cpu_times() -> None:
    """Steal per window: (steal at the window's last sample - at its first) / (total CPU time, likewise); a
    window with fewer than two samples ends the list (the run stopped sampling)."""
    sampler = open_loop._RssSampler("http://127.0.0.1:9")  # nobody listens: no server process to sample
    sampler.cpu = [(100.0, 1.0, 10.0), (100.5, 1.5, 12.0), (101.0, 2.0, 14.0),
                   (101.5, 2.0, 16.0), (102.0, 2.0, 18.0), (102.9, 2.1, 20.0)]
    assert sampler.steal_by_window(100.0, 1.0, 4) == pytest.approx([25.0, 0.0, 5.0])
    assert sampler.steal_by_window(100.0, 3.0, 1) == pytest.approx([100.0 * 1.1 / 10.0])


def test_sigterm_drains_accepted_requests_refuses_new_ones_and_exits_0(folder, tmp_path) -> None:
    log = tmp_path / "drain.log"
    srv = serving_procs.start([str(folder), "--max-batch", "4", "--drain-timeout-s", "20"], log, [MODEL])
    results = []
    load = threading.Thread(target=lambda: results.append(
        open_loop.run_open_loop(srv.url, MODEL, "http", rate=120, duration_s=6)))
    load.start()
    time.sleep(3.0)
    srv.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    readiness = srv.get("/v2/health/ready")[0] if srv.proc.poll() is None else None
    srv.proc.wait(timeout=30)
    took = time.monotonic() - signalled
    load.join()
    text = log.read_text()
    assert srv.proc.returncode == 0 and took < 20, text[-3000:]
    assert readiness in (503, None)  # false at once (or already gone)
    assert "attn-serve: draining" in text
    result = results[0]
    # exit 0 is the server's own proof that it answered every request it accepted. On the client's side, an
    # HTTP/1.1 keep-alive connection closed by the server in the instant the client reuses it loses that
    # request before the server reads it (RFC 9112 9.6: clients retry such requests); the drain makes this
    # rare (Connection: close on every answer while draining, then refusals for 0.5 s), not impossible
    closed_under = [e for e in result.error_examples if "Server disconnected" in e or "reset by peer" in e]
    assert result.errors <= 1 and len(closed_under) == result.errors, result.error_examples
    assert result.answered > 0 and result.refused > 0 and result.wrong == 0
    assert result.answered + result.refused + result.timed_out + result.errors == result.sent


def test_the_open_loop_schedule_is_kept_against_a_trivial_server() -> None:
    arrivals: list[float] = []

    class Trivial(BaseHTTPRequestHandler):
        def _reply(self, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
            self._reply({"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                         "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]})

        def do_POST(self) -> None:  # noqa: N802
            arrivals.append(time.perf_counter())
            self.rfile.read(int(self.headers["Content-Length"]))
            self._reply({"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 1],
                                                          "data": [0.5]}]})

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", serving_procs.free_port()), Trivial)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = open_loop.run_open_loop(f"http://127.0.0.1:{httpd.server_port}", "m", "http", rate=100,
                                         duration_s=3)
    finally:
        httpd.shutdown()
    loaded = arrivals[open_loop.POOL:-1]  # the unloaded pool first, the lone request after
    assert result.sent == len(loaded) == 300 and result.answered == 300 and result.wrong == 0
    assert abs(result.sent_per_s / 100 - 1) <= 0.05
    assert abs((len(loaded) - 1) / (loaded[-1] - loaded[0]) / 100 - 1) <= 0.05  # as the server saw them


def test_policy_defaults_ray_options_and_timeouts() -> None:
    assert default_max_queue(8) == 32 and Policy().max_queue == 32
    assert ray_options("m", 2, Policy(max_batch=4, max_queue=16), 1) == {
        "name": "m", "num_replicas": 2, "max_ongoing_requests": 16, "max_queued_requests": 16,
        "max_replicas_per_node": 1}
    assert request_timeout_s({"timeout": 250_000}, 9.0) == 0.25  # OIP parameter, microseconds
    assert request_timeout_s({}, 9.0) == 9.0 and request_timeout_s(None, None) is None
    token = GRPC_TIME_REMAINING.set(0.3)
    try:
        assert request_timeout_s({}, 9.0) == 0.3  # a gRPC deadline beats the server default
        assert request_timeout_s({"timeout": 100}, 9.0) == 1e-4  # the parameter beats the deadline
    finally:
        GRPC_TIME_REMAINING.reset(token)
    from tritonclient.grpc import service_pb2

    parameter = service_pb2.InferParameter(int64_param=5000)
    assert request_timeout_s({"timeout": parameter}, None) == 0.005


def test_the_time_budget_defaults_to_the_count_cap_times_the_batch_1_engine_time() -> None:
    assert queue_budget(32, None, 0.0117) == (pytest.approx(0.3744), "a 374 ms budget: --max-queue 32 x the 11.7 ms "
                                              "batch-1 engine time; --max-queue-ms sets it")
    assert queue_budget(32, 250.0, 0.0117) == (0.25, "--max-queue-ms 250")
    assert queue_budget(32, 0.0, 0.0117) == (None, "--max-queue-ms 0")  # 0: the count cap alone


def _in_a_fresh_interpreter(script: str, *args: object) -> dict:
    """``script`` run by ``python -c`` with ``args`` (kserve's OIP protos and tritonclient's cannot share one
    process); the JSON its last line prints."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


REPLICA = """
import asyncio, json, sys
from runtimes.specs import random_inputs
from serving.policy import Policy
from serving.server import ReplicaCore
policy = Policy(1, 0.0, 32, max_queue_ms=float(sys.argv[2]), engine_threads=1)
core = ReplicaCore(sys.argv[1], "ort", None, policy, {})
calls = []
run = core.batcher.run
core.batcher.run = lambda feeds: calls.append(1) or run(feeds)
async def two():
    return await asyncio.gather(*(core.infer(random_inputs(core.runtime.input_specs, 1, seed=s)) for s in (3, 4)))
first, second = asyncio.run(two())
print(json.dumps({"lone_ms": core.lone_s * 1e3, "budget_s": core.batcher.budget_s, "first": sorted(first),
                  "second": sorted(second), "refused": second.get("refused"), "calls": len(calls),
                  "threads": core.runtime.session.get_session_options().intra_op_num_threads}))
"""


@pytest.mark.parametrize("max_queue_ms", [0.001, 0.0])
def test_a_replica_measures_its_batch_1_time_and_refuses_past_its_time_budget(folder, max_queue_ms) -> None:
    """A replica (in a fresh interpreter: kserve's OIP protos and tritonclient's cannot share one process),
    its onnxruntime session at the one thread its policy asks for, whose budget is under one batch-1 call
    answers the first of two requests sent together (an idle replica always admits) and refuses the second at
    once, naming the flag, without computing it; with the time cap off (0) both are answered."""
    result = _in_a_fresh_interpreter(REPLICA, folder, max_queue_ms)
    assert result["threads"] == 1  # --engine-threads reaches the replica's onnxruntime session
    assert 0.1 < result["lone_ms"] < 5000  # a measured c2f_ca call, not a default
    assert "outputs" in result["first"]
    if max_queue_ms:
        assert result["budget_s"] == pytest.approx(1e-6) and result["calls"] == 1
        assert result["refused"].startswith("its queue is full (1 requests ahead would keep it about")
        assert result["refused"].endswith("; --max-queue-ms 0.001)")
    else:
        assert result["budget_s"] is None and result["calls"] == 2 and "outputs" in result["second"]


BACKPRESSURE = """
import asyncio, json, sys
import numpy as np
from kserve import InferInput, InferRequest
from ray.serve.exceptions import BackPressureError
from runtimes import manifest as mf
from serving.overload import Unavailable
from serving.server import ArtifactModel

class FullHandle:  # what Ray Serve's handle does past max_ongoing_requests + max_queued_requests
    async def remote(self, arrays, timeout_s):
        raise BackPressureError(num_queued_requests=3, max_queued_requests=2)

model = ArtifactModel("m", FullHandle(), mf.read_manifest(sys.argv[1]), queue_gauge=lambda m: m.in_flight,
                      queue_cap=8)
image = InferInput(name="image", shape=[1, 3, 224, 224], datatype="FP32")
image.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
try:
    asyncio.run(model(InferRequest(model_name="m", infer_inputs=[image])))
    outcome = {"raised": None}
except Unavailable as exc:
    outcome = {"raised": "Unavailable", "message": str(exc)}
print(json.dumps({**outcome, "refused": model.stats.to_json()["inference_stats"]["refused"]["count"],
                  "in_flight": model.in_flight, "ready": model.accepting()}))
"""


def test_ray_serves_backpressure_is_the_same_refusal(folder) -> None:
    """Ray Serve's own BackPressureError (its caller queue past max_queued_requests; attn-serve's front end caps
    first, so a live server rarely reaches it) becomes the same UNAVAILABLE / 503, counted as refused, with
    readiness false after it (a fresh interpreter: kserve's protos and tritonclient's cannot share one)."""
    result = _in_a_fresh_interpreter(BACKPRESSURE, folder)
    assert result["raised"] == "Unavailable" and result["message"].startswith("model 'm': Ray Serve's queue is full")
    assert "retry after" in result["message"] and result["refused"] == 1 and result["in_flight"] == 0
    assert result["ready"] is False  # the refusal holds readiness false (READY_HOLD_S)


@pytest.mark.parametrize("status,kind", [("503", "refused"), ("StatusCode.UNAVAILABLE", "refused"),
                                         ("504", "timed_out"), ("StatusCode.DEADLINE_EXCEEDED", "timed_out"),
                                         ("500", "error"), ("StatusCode.INTERNAL", "error")])
def test_open_loop_classifies_failures(status, kind) -> None:
    from tritonclient.utils import InferenceServerException

    assert open_loop.classify(InferenceServerException("x", status=status)) == kind


def test_open_loop_tells_a_request_never_sent_from_an_answer_lost() -> None:
    import aiohttp

    assert open_loop.classify(aiohttp.ClientOSError(None, "Can not write request body for http://h/v2")) == "refused"
    assert open_loop.classify(ConnectionRefusedError(111, "Connection refused")) == "refused"
    assert open_loop.classify(aiohttp.ServerDisconnectedError()) == "error"  # it was sent: the answer is lost


def test_a_second_signal_during_the_drain_exits_at_once(folder, tmp_path) -> None:
    """16 clients sending 4 images each keep the engine busy; SIGTERM starts the drain, SIGINT ends it without waiting."""
    srv = serving_procs.start([str(folder), "--drain-timeout-s", "60"], tmp_path / "second.log", [MODEL])
    big = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                _send(_http_request(srv, big))
            except OSError:  # the server went away under us: expected here
                return

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)  # 16 requests of 4 images are in flight: the drain takes seconds
        srv.proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        srv.proc.wait(timeout=30)
        took = time.monotonic() - signalled
    finally:
        stop.set()
        for t in threads:
            t.join()
    text = (tmp_path / "second.log").read_text()
    assert "attn-serve: draining" in text and "stopped during the drain" in text, text[-2000:]
    assert srv.proc.returncode == 130 and took < 1.0, (srv.proc.returncode, took)
