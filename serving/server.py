"""attn-serve's server: artifact folders served from KServe's ModelServer process itself (one node, one
replica: the default) or by Ray Serve replicas behind it, speaking the Open Inference Protocol (KServe v2, what Triton speaks) over REST and gRPC.

    client ──OIP v2 REST/gRPC──► KServe ModelServer (ArtifactModel per folder)
                                   │  request → plain numpy arrays (never protobuf objects)
                                   ▼
                                 the front process itself (--runner in-process, no Ray), or a
                                 Ray Serve deployment (ArtifactReplica × --replicas, any node)
                                   │  validate each request, then a DynamicBatcher joins compatible ones
                                   │  (a lone request runs at once; see serving/batcher.py)
                                   ▼
                                 runtimes.load(folder, engine, precision)

KServe's own ``RayModel`` forwards the protobuf-backed gRPC request into Ray, which cannot pickle it;
``ArtifactModel`` converts to numpy first. Errors a request causes (wrong name, shape, dtype, value,
batch above the max) come back as values, not exceptions, so one bad request never fails the batch
it would have joined, and the front answers 400 naming the problem.

Every response carries the server-side split as integer microseconds (gRPC parameters have no float):
``decode_us`` (request tensors → numpy), ``hop_us`` (front → replica → front, minus the replica's own
time), ``queue_us``, ``engine_us``, ``encode_us`` (numpy → response tensors), and ``server_us``, the
wall time they fit in;
``GET /v2/models/<name>/stats`` accumulates them per model (``serving/stats.py``).

Under overload (serving/overload.py): each replica's queue is bounded (``--max-queue``), a request beyond it
is refused at once (503 / UNAVAILABLE), one whose timeout passes while it waits is dropped before the engine
(504 / DEADLINE_EXCEEDED), ``/v2/health/ready`` is false while a queue is full (and for a second after its
last refusal) and while draining; on SIGTERM the server drains (``DrainingModelServer``).
REST requests that use the binary tensor extension are parsed by ``binary_rest`` (KServe's own
parser turns every binary tensor into a Python list).
"""
from __future__ import annotations

import gc
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import RequestedOutput
from kserve.model import InferenceModel
from kserve.errors import InvalidInput
from kserve.utils.numpy_codec import from_np_dtype
from ray import serve
from ray.serve.exceptions import BackPressureError

import runtimes
from runtimes.selection import AUTO
from runtimes import manifest as mf
from runtimes.errors import AttnExportError
from runtimes.specs import random_inputs

from .admission import Pace, lone_call_seconds
from .batcher import DeadlineExpired, DynamicBatcher, QueueFull
from .binary_rest import HEADER_LENGTH, BinaryRequestError, parse_binary_body
from .overload import DeadlineExceeded, Draining, Unavailable, add_rest_handlers, use_deadline_servicer
from .policy import (READY_HOLD_S, RETRY_AFTER_S, Policy, queue_budget, queue_full, queue_full_by_time,
                     ray_options, request_timeout_s)
from .stats import ModelStats


def freeze_startup_objects() -> None:
    """Move every object alive once the models are loaded (~170k: KServe, Ray, onnxruntime's bindings) out of
    the garbage collector's reach (``gc.freeze``). A full collection then scans only what serving allocates:
    before, each one scanned them all and stopped the event loop and the batcher for 30-140 ms (c2f_ca at 0.8 x C
    on a Zen 3, four in 100 s), long enough to fill a queue and trip the time cap."""
    gc.collect()
    gc.freeze()


class DrainTimedOut(AttnExportError):
    """SIGTERM's drain ended at --drain-timeout-s with accepted requests unanswered."""

    exit_code = 1


class ReplicaCore:
    """One replica's work, wherever it runs (the front process, or a Ray Serve replica):
    an opened runtime and its dynamic batcher; concurrent requests joined up to ``policy.max_batch`` requests."""

    def __init__(self, folder: str, engine: str, precision: str | None, policy: Policy,
                 identity: dict[str, Any]) -> None:
        # the front's event loop shares these cores: engine threads sleep between calls (measured on c2f_ca,
        # concurrency 8: +5-8 % throughput in an A/B of alternating runs, docs/benchmarks.md#serving)
        # engine="auto" measures at the batch the batcher joins (runtimes.auto_select; cached per machine)
        options: dict[str, Any] = {"batch": policy.max_batch} if engine == AUTO else {}
        if policy.engine_threads:
            options["threads"] = policy.engine_threads
        self.runtime = runtimes.load(folder, engine=engine, precision=precision, spin_wait=False, **options)
        self.max_rows = self.runtime.max_batch or 1
        self.identity = identity
        lone = random_inputs(self.runtime.input_specs, 1)
        self.lone_s = lone_call_seconds(lambda: self.runtime(**lone))  # also the warm-up
        budget_s, self.budget_source = queue_budget(policy.max_queue, policy.max_queue_ms, self.lone_s)
        print(f"attn-serve: {Path(folder).name}: {self.budget_source}", file=sys.stderr, flush=True)
        self.batcher = DynamicBatcher(self.runtime, policy.max_batch, policy.wait_ms / 1000.0, policy.max_queue,
                                      budget_s, Pace(self.lone_s))

    async def infer(self, arrays: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, Any]:
        """Validate one request on its own, then let it join a batch; errors, a refusal (queue full) and a
        timeout in the queue are returned as values (``error``, ``refused``, ``timed_out``)."""
        received = time.perf_counter()
        try:
            feeds = self.runtime.validate(arrays)
            rows = next(iter(feeds.values())).shape[0]
            if rows > self.max_rows:
                raise runtimes.InputSpecError(f"batch of {rows} rows is above the model's max_batch_size "
                                              f"{self.max_rows}; split the request")
        except AttnExportError as exc:
            return {"error": str(exc)}
        try:
            timed = await self.batcher.submit(feeds, timeout_s)
        except QueueFull as exc:
            if exc.by_time:
                return {"refused": queue_full_by_time(str(exc), self.budget_source)}
            return {"refused": queue_full(exc.held, f"--max-queue {self.batcher.max_queue}")}
        except DeadlineExpired as exc:
            return {"timed_out": str(exc)}
        answer = timed.answer
        return {"outputs": answer.outputs, "batch_rows": answer.batch_rows, "batch_requests": answer.batch_requests,
                "queue_ms": timed.queue_ms, "engine_ms": timed.engine_ms,
                "replica_ms": (time.perf_counter() - received) * 1e3, **self.identity}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ArtifactReplica:
    """A Ray Serve replica around one ``ReplicaCore``."""

    def __init__(self, folder: str, engine: str, precision: str | None, policy: Policy) -> None:
        import ray

        identity = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
        self.core = ReplicaCore(folder, engine, precision, policy, identity)
        freeze_startup_objects()

    async def __call__(self, arrays: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, Any]:
        return await self.core.infer(arrays, timeout_s)


class InProcessHandle:
    """``--runner in-process``: the front calls its ``ReplicaCore`` directly, as it would a Ray Serve handle."""

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core

    def remote(self, arrays: dict[str, np.ndarray], timeout_s: float | None = None) -> Any:
        return self.core.infer(arrays, timeout_s)


class BinaryTensorDataPlane(DataPlane):
    """KServe's data plane, with binary REST tensors read by ``binary_rest`` and kept binary."""

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        length = {k.lower(): v for k, v in (headers or {}).items()}.get(HEADER_LENGTH)
        if not isinstance(body, bytes) or length is None:
            return super().decode_inference_request(body, headers, model_name)
        if not length.strip().isdigit():
            raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {length!r}")
        try:
            header, inputs = parse_binary_body(body, int(length))
        except BinaryRequestError as exc:
            raise InvalidInput(f"model {model_name!r}: {exc}") from None
        tensors = []
        for item in inputs:
            spec = item.spec
            tensor = InferInput(name=spec.get("name"), shape=spec.get("shape"), datatype=spec.get("datatype"),
                                parameters=spec.get("parameters"))
            if item.array is not None:
                tensor.set_data_from_numpy(item.array, binary_data=True)
            else:
                tensor.data = item.data
            tensors.append(tensor)
        outputs = header.get("outputs")
        requested = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in outputs] \
            if isinstance(outputs, list) else None
        return InferRequest(model_name=model_name, infer_inputs=tensors, request_id=header.get("id"),
                            parameters=header.get("parameters"), request_outputs=requested)

    async def ready(self) -> bool:
        """Server readiness: every model accepting (not draining, queue not full; ``ArtifactModel.accepting``)."""
        return all(getattr(m, "accepting", lambda: True)() for m in self._model_registry.get_models().values())


def tensor_metadata(specs: list[Any]) -> list[dict[str, Any]]:
    """OIP v2 metadata of tensor specs: dynamic dims as -1."""
    return [{"name": s.name, "datatype": from_np_dtype(np.dtype(s.dtype)),
             "shape": [d if isinstance(d, int) else -1 for d in s.shape]} for s in specs]


class ArtifactModel(InferenceModel):
    """The KServe side of one artifact folder: OIP v2 request ↔ numpy, forwarded to the replica handle; it
    admits requests (refused while draining), counts those in flight and says whether it is ready for more."""

    def __init__(self, name: str, handle: Any, manifest: dict[str, Any], *, queue_gauge: Any, queue_cap: int,
                 cap_source: str = "", default_timeout_s: float | None = None) -> None:
        super().__init__(name)
        self.handle = handle
        self.inputs = tensor_metadata(list(mf.input_specs(manifest)))
        self.outputs = tensor_metadata(list(mf.output_specs(manifest)))
        self.stats = ModelStats(name)
        self.ready = True
        self.queue_gauge, self.queue_cap, self.default_timeout_s = queue_gauge, queue_cap, default_timeout_s
        self.cap_source = cap_source or f"--max-queue {queue_cap}"  # where the cap comes from, for refusals
        self.in_flight = 0  # requests accepted and not yet answered
        self.draining = False
        self._last_refusal = -READY_HOLD_S  # time.monotonic() of the last refusal for a full queue

    def load(self) -> bool:
        self.ready = True
        return True

    def accepting(self) -> bool:
        """Server readiness (``/v2/health/ready``): false while draining, while the queue is at its cap, and for
        ``READY_HOLD_S`` after the last refusal for a full queue (the hysteresis: under overload the queue
        empties and refills between engine calls, and a load balancer's view must not flap with it). The
        model's own ready endpoint keeps meaning "loaded": KServe refuses inference on a model not ready."""
        full = self.queue_gauge(self) >= self.queue_cap or time.monotonic() - self._last_refusal < READY_HOLD_S
        return not self.draining and not full

    def _refused(self, why: str) -> Unavailable:
        """The 503 / UNAVAILABLE for a full queue (ours or Ray Serve's); readiness holds false after it."""
        self._last_refusal = time.monotonic()
        return Unavailable(f"model {self.name!r}: {why}; retry after {RETRY_AFTER_S} s or add replicas")

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.outputs

    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: Any = None
                       ) -> tuple[InferResponse, dict[str, str]]:
        start = time.perf_counter()
        if self.draining:
            self.stats.record_refused(0.0)
            raise Draining(f"model {self.name!r}: the server is shutting down (draining); send the request to "
                           f"another replica")
        held = self.queue_gauge(self)
        if held >= self.queue_cap:  # before its tensors are converted and validated: a refusal costs little
            self.stats.record_refused((time.perf_counter() - start) * 1e3)
            raise self._refused(queue_full(held, self.cap_source))
        self.in_flight += 1
        try:
            response = await self._infer(body, start)
        except Unavailable:
            self.stats.record_refused((time.perf_counter() - start) * 1e3)
            raise
        except DeadlineExceeded:
            self.stats.record_timed_out((time.perf_counter() - start) * 1e3)
            raise
        except Exception:
            self.stats.record_failure((time.perf_counter() - start) * 1e3)
            raise
        finally:
            self.in_flight -= 1
        if self.draining:
            self.stats.record_drained()
        return response

    async def _infer(self, body: Any, start: float) -> tuple[InferResponse, dict[str, str]]:
        if not isinstance(body, InferRequest):
            raise InvalidInput("attn-serve speaks the Open Inference Protocol v2: POST /v2/models/<name>/infer")
        arrays = {}
        for tensor in body.inputs:
            try:
                arrays[tensor.name] = np.array(tensor.as_numpy())  # a plain array: picklable into Ray
            except Exception as exc:  # kserve raises several types for data that does not fit its shape
                raise InvalidInput(f"input {tensor.name!r}: {exc}") from None
        sent = time.perf_counter()
        try:
            result = await self.handle.remote(arrays, request_timeout_s(body.parameters, self.default_timeout_s))
        except BackPressureError as exc:  # Ray Serve's max_queued_requests
            raise self._refused(f"Ray Serve's queue is full ({exc})") from None
        returned = time.perf_counter()
        if "error" in result:
            raise InvalidInput(result["error"])
        if "refused" in result:
            raise self._refused(result["refused"])
        if "timed_out" in result:
            raise DeadlineExceeded(f"model {self.name!r}: {result['timed_out']}; it was not computed")
        outputs = []
        for name, value in result["outputs"].items():  # kept binary: KServe writes JSON lists only when asked
            out = InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype))
            out.set_data_from_numpy(np.ascontiguousarray(value), binary_data=True)
            outputs.append(out)
        done = time.perf_counter()
        split = {"decode_ms": (sent - start) * 1e3, "hop_ms": (returned - sent) * 1e3 - result["replica_ms"],
                 "queue_ms": result["queue_ms"], "engine_ms": result["engine_ms"], "encode_ms": (done - returned) * 1e3,
                 "server_ms": (done - start) * 1e3}
        rows = next(iter(result["outputs"].values())).shape[0]
        parameters = {**{k: result[k] for k in ("batch_rows", "batch_requests", "node", "pid")},
                      **{k.replace("_ms", "_us"): round(v * 1e3) for k, v in split.items()}}  # gRPC has no floats
        self.stats.record_success(split, split["server_ms"], rows, result["batch_requests"])
        response = InferResponse(response_id=body.id or str(uuid.uuid4()), model_name=self.name,
                                 infer_outputs=outputs, parameters=parameters,
                                 use_binary_outputs=body.use_binary_outputs, requested_outputs=body.request_outputs)
        # once the server drains, every answer closes its REST connection: no client reuses a keep-alive
        # connection that the server is about to close (gRPC has no such header; its stop has a grace)
        return response, ({"Connection": "close"} if self.draining else {})


def in_process_gauge(model: ArtifactModel) -> int:
    """Requests the in-process replica holds: waiting or in its engine call."""
    return model.handle.core.batcher.held


def ray_gauge(model: ArtifactModel) -> int:
    """Requests the Ray Serve replicas hold, as the front sees them: those in flight."""
    return model.in_flight


def serve_folders(folders: list[Path], *, engine: str, precision: str | None, replicas: int, policy: Policy,
                  http_port: int, grpc_port: int, ray_address: str | None, max_replicas_per_node: int | None = None,
                  in_process: bool = False) -> None:
    """Serve every folder until stopped: on Ray Serve replicas (started or joined), or with ``in_process``
    from the front process itself (one replica per model, no Ray). Returns after SIGTERM's drain."""
    if in_process:
        models = []
        for folder in folders:
            core = ReplicaCore(str(folder.resolve()), engine, precision, policy,
                               {"node": "in-process", "pid": os.getpid()})
            models.append(ArtifactModel(folder.name, InProcessHandle(core), mf.read_manifest(folder),
                                        queue_gauge=in_process_gauge, queue_cap=policy.max_queue,
                                        default_timeout_s=policy.request_timeout_s))
        _serve_models(models, http_port, grpc_port, policy.drain_timeout_s, hard_exit=True)
        return
    import ray

    ray.init(address=ray_address or "local", include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True, configure_logging=False)
    serve.start(http_options={"location": "NoServer"})
    models = []
    for folder in folders:
        name = folder.name
        app = ArtifactReplica.options(**ray_options(name, replicas, policy, max_replicas_per_node)).bind(
            str(folder.resolve()), engine, precision, policy)
        handle = serve.run(app, name=name, route_prefix=None)
        models.append(ArtifactModel(name, handle, mf.read_manifest(folder),
                                    queue_gauge=ray_gauge,
                                    queue_cap=replicas * policy.max_queue,
                                    cap_source=f"--max-queue {policy.max_queue} x {replicas} replicas",
                                    default_timeout_s=policy.request_timeout_s))
    try:
        _serve_models(models, http_port, grpc_port, policy.drain_timeout_s)
    finally:
        serve.shutdown()
        ray.shutdown()


def _serve_models(models: list[ArtifactModel], http_port: int, grpc_port: int, drain_timeout_s: float,
                  hard_exit: bool = False) -> None:
    """KServe's ModelServer (one worker process) with our binary data plane, the statistics route, 503/504
    answers, gRPC deadlines and the drain on SIGTERM."""
    from .drain import DrainingModelServer

    add_stats_route({m.name: m.stats for m in models})
    add_rest_handlers(_kserve_app())
    use_deadline_servicer()
    server = DrainingModelServer(models, drain_timeout_s, hard_exit, http_port=http_port, grpc_port=grpc_port,
                                 enable_docs_url=False, workers=1)
    server.dataplane = BinaryTensorDataPlane(model_registry=server.registered_models)
    freeze_startup_objects()
    server.start(models)
    if server.unanswered:
        raise DrainTimedOut(f"the drain ended at --drain-timeout-s {drain_timeout_s:g} with {server.unanswered} "
                            f"accepted requests unanswered")


def _kserve_app() -> Any:
    from kserve.model_server import app

    return app


def add_stats_route(stats: dict[str, ModelStats]) -> None:
    """``GET /v2/models/<name>/stats`` on KServe's FastAPI app (the statistics extension, Triton's shape)."""
    from fastapi.responses import JSONResponse

    app = _kserve_app()

    async def model_stats(model_name: str) -> JSONResponse:
        if model_name not in stats:
            return JSONResponse({"error": f"model {model_name!r} is not served; GET /v2/models lists them"}, 404)
        return JSONResponse({"model_stats": [stats[model_name].to_json()]})

    app.add_api_route("/v2/models/{model_name}/stats", model_stats, methods=["GET"])
