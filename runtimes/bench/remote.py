"""``attn-bench --url``: a load generator for any Open Inference Protocol server (attn-serve, Triton),
through NVIDIA's ``tritonclient`` over HTTP or gRPC.

``concurrency`` client threads (one client each) send single-sample requests with seeded random
inputs shaped from the server's own model metadata (integer inputs get 0/1, valid token ids and mask
values; other dynamic axes 16); per level: latency percentiles, throughput in
items/s over the wall time, the error count, the batch sizes the server reports it formed, and where
the server says each request's time went, averaged (attn-serve returns ``batch_rows`` and the split
``decode_us`` … ``encode_us``, ``server_us`` in each response's parameters; other servers: none).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from runtimes.dtypes import convert
from runtimes.errors import AttnExportError
from runtimes.optional import require
from runtimes.specs import TensorSpec, random_inputs

EXAMPLE_DIM = 16  # size used for dynamic axes other than batch (the encoder's seq)


@dataclass(frozen=True)
class RemoteResult:
    """One protocol at one concurrency level."""

    engine: str  # "http" or "grpc" (the label plots and tables use)
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # items per second over the wall time of the level
    server_batch_rows: dict[str, int] = field(default_factory=dict)  # batch size formed → responses
    server_split_ms: dict[str, float] = field(default_factory=dict)  # mean ms per part of the server's time

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _client_module(protocol: str) -> Any:
    return require(f"tritonclient.{'grpc' if protocol == 'grpc' else 'http'}", "attn-bench --url", "serve")


def _strip(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


class ServerQueryError(AttnExportError):
    """The server named by --url cannot be queried for the model."""


def model_specs(url: str, model: str, protocol: str) -> list[TensorSpec]:
    """Input specs from the server's model metadata (dim 0 is the batch, other -1 dims get names); a server
    that cannot be reached or does not serve ``model`` is a ``ServerQueryError`` (exit 2)."""
    module = _client_module(protocol)
    try:
        client = module.InferenceServerClient(_strip(url))
        meta = client.get_model_metadata(model, as_json=True) if protocol == "grpc" else client.get_model_metadata(model)
    except Exception as exc:  # tritonclient's InferenceServerException, connection and URL errors
        raise ServerQueryError(f"cannot query {model!r} at {url}: {str(exc).splitlines()[0][:300]}") from None
    specs = []
    for tensor in meta["inputs"]:
        dims = [int(d) for d in tensor["shape"]]
        shape = tuple("batch" if i == 0 else (d if d >= 0 else f"dim{i}") for i, d in enumerate(dims))
        value_range = None if tensor["datatype"].startswith("FP") else (0, 2)  # 0/1: valid ids and mask values
        specs.append(TensorSpec(tensor["name"], shape, convert(tensor["datatype"], "oip", "numpy"), value_range,
                                {f"dim{i}": EXAMPLE_DIM for i, d in enumerate(dims) if i and d < 0}))
    return specs


def infer_inputs(module: Any, specs: list[TensorSpec], arrays: dict[str, np.ndarray],
                 rename: dict[str, str] | None = None) -> list[Any]:
    """``module.InferInput``s (tritonclient http or grpc, sync or aio) holding ``arrays``, one per spec; ``rename``
    sends a tensor under another name (a bad request, for soaks)."""
    inputs = []
    for spec in specs:
        tensor = module.InferInput((rename or {}).get(spec.name, spec.name), list(arrays[spec.name].shape),
                                   convert(spec.dtype, "numpy", "oip"))
        tensor.set_data_from_numpy(arrays[spec.name])
        inputs.append(tensor)
    return inputs


SPLIT = ("decode", "hop", "queue", "engine", "encode", "server")  # attn-serve's *_us response parameters


def int_parameters(result: Any, protocol: str) -> dict[str, int]:
    """The response's integer parameters (``batch_rows``, ``*_us``) by name."""
    response = result.get_response()
    if protocol == "grpc":
        return {k: int(v.int64_param) for k, v in response.parameters.items()
                if v.WhichOneof("parameter_choice") == "int64_param"}
    return {k: int(v) for k, v in (response.get("parameters") or {}).items() if isinstance(v, int)}


def run_level(url: str, model: str, protocol: str, specs: list[TensorSpec], concurrency: int,
              requests_per_client: int, seed: int = 0) -> RemoteResult:
    """``concurrency`` threads × ``requests_per_client`` single-sample requests."""
    module = _client_module(protocol)
    latencies: list[float] = []
    rows: Counter[str] = Counter()
    split_us: Counter[str] = Counter()
    split_count = [0]
    errors = [0]
    lock = threading.Lock()

    def prepared_requests(index: int) -> list[list[Any]]:
        """Client ``index``'s distinct requests, built before the clock starts (as perf_analyzer does), so
        generating and serialising inputs is not timed and takes no CPU from the server during the run."""
        return [infer_inputs(module, specs, random_inputs(specs, 1, seed=seed + index * 100_003 + i))
                for i in range(requests_per_client)]

    prepared = [prepared_requests(i) for i in range(concurrency)]
    clients = [module.InferenceServerClient(_strip(url)) for _ in range(concurrency)]

    def client_loop(index: int) -> None:
        for inputs in prepared[index]:
            start = time.perf_counter()
            try:
                result = clients[index].infer(model, inputs)
            except Exception:  # any transport or server error counts; the run goes on
                with lock:
                    errors[0] += 1
                continue
            elapsed = (time.perf_counter() - start) * 1e3
            parameters = int_parameters(result, protocol)
            with lock:
                latencies.append(elapsed)
                if "batch_rows" in parameters:
                    rows[str(parameters["batch_rows"])] += 1
                if all(f"{part}_us" in parameters for part in SPLIT):
                    split_us.update({part: parameters[f"{part}_us"] for part in SPLIT})
                    split_count[0] += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(concurrency)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    lat = np.asarray(latencies or [float("nan")])
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return RemoteResult(protocol, concurrency, len(latencies) + errors[0], errors[0], float(p50), float(p90),
                        float(p99), float(lat.mean()), len(latencies) / wall,
                        dict(sorted(rows.items(), key=lambda kv: int(kv[0]))),
                        {part: split_us[part] / split_count[0] / 1e3 for part in SPLIT} if split_count[0] else {})


def format_table(results: list[RemoteResult]) -> str:
    lines = [f"{'protocol':<8} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p90 ms':>8} "
             f"{'p99 ms':>8} {'items/s':>8}  server batch sizes (rows: responses)"]
    for r in results:
        batches = ", ".join(f"{k}: {v}" for k, v in r.server_batch_rows.items()) or "-"
        lines.append(f"{r.engine:<8} {r.concurrency:>7} {r.requests:>8} {r.errors:>6} {r.p50_ms:>8.2f} "
                     f"{r.p90_ms:>8.2f} {r.p99_ms:>8.2f} {r.throughput:>8.1f}  {batches}")
    split = [r for r in results if r.server_split_ms]
    if split:  # the server's own account, beside the client's mean latency
        lines += ["", f"{'protocol':<8} {'clients':>7} {'client ms':>9} " + " ".join(f"{p + ' ms':>9}" for p in SPLIT)]
        for r in split:
            lines.append(f"{r.engine:<8} {r.concurrency:>7} {r.mean_ms:>9.2f} "
                         + " ".join(f"{r.server_split_ms[p]:>9.2f}" for p in SPLIT))
    return "\n".join(lines)
