"""attn-serve against real servers (loopback, free ports, bounded requests, 10-class models): answers
equal to runtimes over HTTP and gRPC, dynamic batching without cross-talk, bad requests, a killed
replica, a two-node Ray cluster, Triton repositories parsed by Triton's own schema, the load generator.

This process imports tritonclient only: KServe registers the same ``inference.*`` protobuf names, so
the two never share a process (the servers run in their own)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import runtimes
from runtimes.specs import TensorSpec, random_inputs

from . import serving_procs
from .exports import exported, exported_own_model

MODELS = ("c2f_ca", "transformer_encoder")
OWN_MODEL = "image_text"  # a user's two-input module (image + int64 ids), exported through the Python API


@pytest.fixture(scope="module")
def server(artifacts_root, tmp_path_factory):
    folders = [str(exported(m, artifacts_root)[0]) for m in MODELS] + [str(exported_own_model(artifacts_root)[0])]
    log = tmp_path_factory.mktemp("serve") / "attn-serve.log"
    # a long batch window: a lone request must not pay it (test_a_lone_request_does_not_wait_for_a_batch). The
    # time cap is off: these tests check rows, batching and replicas, not admission (tests/test_overload.py), and
    # the suite's other worker slows these replicas below the batch-1 pace they measured at start, which the time
    # cap rightly reads as a queue it cannot answer within its budget
    srv = serving_procs.start([*folders, "--replicas", "2", "--max-batch", "16", "--batch-wait-ms", "500",
                               "--max-queue-ms", "0"], log, [*MODELS, OWN_MODEL])
    started = list(srv.children)
    yield srv
    took = serving_procs.stop(srv)  # SIGTERM: KServe stops its servers, then Serve and Ray are shut down
    assert srv.proc.returncode in (0, 130) and took < 30, log.read_text()[-3000:]
    assert len(started) >= 3, f"expected Ray's processes under attn-serve, found {started}"
    assert srv.children == [], f"processes left running after SIGTERM: {srv.children}"


def _local(model: str, arrays: dict[str, np.ndarray], artifacts_root) -> dict[str, np.ndarray]:
    with runtimes.load(exported(model, artifacts_root)[0]) as rt:
        return rt(arrays)


def _infer(module, url: str, model: str, arrays: dict[str, np.ndarray]):
    client = module.InferenceServerClient(url)
    inputs = []
    for name, value in arrays.items():
        tensor = module.InferInput(name, list(value.shape), "FP32" if value.dtype == np.float32 else "INT64")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return client.infer(model, inputs)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_own_model_answers_equal_runtimes(protocol, server, artifacts_root) -> None:
    folder, manifest = exported_own_model(artifacts_root)
    arrays = random_inputs([TensorSpec.from_json(s) for s in manifest["inputs"]], 3, seed=8, dims={"seq": 11})
    module, url = (httpclient, f"127.0.0.1:{server.http}") if protocol == "http" else \
        (grpcclient, f"127.0.0.1:{server.grpc}")
    got = _infer(module, url, OWN_MODEL, arrays).as_numpy("logits")
    with runtimes.load(folder) as rt:
        want = rt(arrays)["logits"]
    assert got.shape == want.shape == (3, 10) and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def _inputs(model: str, batch: int, seed: int, artifacts_root) -> dict[str, np.ndarray]:
    specs = [TensorSpec.from_json(s) for s in exported(model, artifacts_root)[1]["inputs"]]
    return random_inputs(specs, batch, seed=seed, dims={"seq": 12})


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", MODELS)
def test_answers_equal_runtimes(model, protocol, server, artifacts_root) -> None:
    arrays = _inputs(model, 3, 5, artifacts_root)
    module, url = (httpclient, f"127.0.0.1:{server.http}") if protocol == "http" else \
        (grpcclient, f"127.0.0.1:{server.grpc}")
    result = _infer(module, url, model, arrays)
    for name, want in _local(model, arrays, artifacts_root).items():
        got = result.as_numpy(name)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_health_metadata_and_metrics(server) -> None:
    assert server.get("/v2/health/ready") == (200, b'{"ready":true}')
    status, body = server.get("/v2/models/transformer_encoder")
    meta = json.loads(body)
    assert status == 200 and [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("tokens", "INT64", [-1, -1]), ("mask", "INT64", [-1, -1])]
    status, metrics = server.get("/metrics")
    assert status == 200 and b"# TYPE" in metrics and b"request_predict" in metrics


def test_concurrent_clients_get_their_own_rows_and_batches_form(server, artifacts_root) -> None:
    """16 clients × 50 requests, distinct inputs: no error, no cross-talk, batches above 1 formed."""
    clients, per_client = 16, 50
    sent = {(c, i): _inputs("c2f_ca", 1, 1000 + c * per_client + i, artifacts_root)["image"]
            for c in range(clients) for i in range(per_client)}
    want = _local("c2f_ca", {"image": np.concatenate(list(sent.values()))}, artifacts_root)["logits"]
    expected = dict(zip(sent, want))
    got, rows, errors = {}, [], []

    def client(c: int) -> None:
        conn = httpclient.InferenceServerClient(f"127.0.0.1:{server.http}")
        for i in range(per_client):
            tensor = httpclient.InferInput("image", [1, 3, 224, 224], "FP32")
            tensor.set_data_from_numpy(sent[(c, i)])
            try:
                result = conn.infer("c2f_ca", [tensor])
            except Exception as exc:  # recorded, asserted below
                errors.append(exc)
                continue
            got[(c, i)] = result.as_numpy("logits")[0]
            rows.append(result.get_response()["parameters"]["batch_rows"])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(got) == clients * per_client
    scale = np.abs(want).max()
    assert max(np.abs(got[k] - expected[k]).max() for k in sent) <= 1e-5 * scale  # each caller, its own rows
    assert max(rows) > 1, f"the server never joined requests: {sorted(set(rows))}"


SPLIT = ("decode_us", "hop_us", "queue_us", "engine_us", "encode_us")


def _parameters(result, protocol: str) -> dict:
    response = result.get_response()
    return response["parameters"] if protocol == "http" else \
        {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in response.parameters.items()}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_lone_request_does_not_wait_for_a_batch_and_says_where_its_time_went(protocol, server,
                                                                              artifacts_root) -> None:
    """--batch-wait-ms 500: one client's requests never wait for a batch, and the split fits the server's wall."""
    module, url = (httpclient, f"127.0.0.1:{server.http}") if protocol == "http" else \
        (grpcclient, f"127.0.0.1:{server.grpc}")
    arrays = _inputs("c2f_ca", 1, 21, artifacts_root)
    _infer(module, url, "c2f_ca", arrays)  # warm the connection
    for _ in range(3):
        start = time.perf_counter()
        result = _infer(module, url, "c2f_ca", arrays)
        took_ms = (time.perf_counter() - start) * 1e3
        params = _parameters(result, protocol)
        # the 500 ms window is not paid: nothing queued, and all but the engine's own time well under it (the
        # engine's time is the CPU's: a busy 2-core machine can make one call take most of a second)
        assert params["batch_requests"] == 1 and params["queue_us"] < 50_000, (took_ms, params)
        assert took_ms - params["engine_us"] / 1e3 < 250, (took_ms, params)
        assert all(params[k] >= -1 for k in SPLIT) and params["engine_us"] > 0
        assert sum(params[k] for k in SPLIT) <= params["server_us"] + 5 and params["server_us"] < took_ms * 1e3


def test_stats_count_successes_and_failures_apart(server, artifacts_root) -> None:
    """Triton's statistics extension: the deltas equal what this test sent to the model."""
    def stats() -> dict:
        status, body = server.get("/v2/models/transformer_encoder/stats")
        assert status == 200, body
        (model,) = json.loads(body)["model_stats"]
        assert model["name"] == "transformer_encoder"
        return model

    before = stats()
    for seed in range(3):
        test_answers_equal_runtimes("transformer_encoder", "http", server, artifacts_root) if seed == 0 else \
            _infer(httpclient, f"127.0.0.1:{server.http}", "transformer_encoder",
                   _inputs("transformer_encoder", 2, seed, artifacts_root))
    bad = {"inputs": [{"name": "tokens", "shape": [1, 2], "datatype": "INT64", "data": [5, 1000]},
                      {"name": "mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]}]}
    for _ in range(2):
        assert server.post_json("/v2/models/transformer_encoder/infer", bad)[0] == 400
    after = stats()
    delta = {k: after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
             for k in after["inference_stats"]}
    assert delta == {"success": 3, "fail": 2, "refused": 0, "timed_out": 0, "queue": 3, "compute_input": 3,
                     "compute_infer": 3, "compute_output": 3}
    assert after["inference_count"] - before["inference_count"] == 3 + 2 + 2  # rows: 3, 2, 2
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["last_inference"] >= before["last_inference"] > 0 or before["inference_count"] == 0
    status, body = server.get("/v2/models/nope/stats")
    assert status == 404 and "nope" in json.loads(body)["error"]


def test_default_server_answers_in_process_without_ray(artifacts_root, tmp_path) -> None:
    """The default on one node (one replica, no cluster): the same answers, split and statistics, computed in
    the server's own process, no Ray started."""
    import psutil

    folder, _ = exported("c2f_ca", artifacts_root)
    srv = serving_procs.start([str(folder)], tmp_path / "attn-serve.log", ["c2f_ca"])
    try:
        for protocol, module, port in (("http", httpclient, srv.http), ("grpc", grpcclient, srv.grpc)):
            arrays = _inputs("c2f_ca", 3, 9, artifacts_root)
            result = _infer(module, f"127.0.0.1:{port}", "c2f_ca", arrays)
            want = _local("c2f_ca", arrays, artifacts_root)["logits"]
            got = result.as_numpy("logits")
            assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
            params = _parameters(result, protocol)
            assert params["pid"] == srv.proc.pid and params["node"] == "in-process"
            assert sum(params[k] for k in SPLIT) <= params["server_us"] + 5 and params["engine_us"] > 0
        status, body = srv.get("/v2/models/c2f_ca/stats")
        assert status == 200 and json.loads(body)["model_stats"][0]["inference_stats"]["success"]["count"] == 2
        names = [psutil.Process(pid).name() for pid in srv.children if psutil.pid_exists(pid)]
        assert not any("ray" in n or "gcs" in n for n in names), names
    finally:
        serving_procs.stop(srv)
    assert srv.proc.returncode in (0, 130)


@pytest.mark.parametrize("runner,replicas,address,per_node,chosen", [
    ("auto", 1, None, None, "in-process"), ("auto", 2, None, None, "ray"), ("auto", 1, "auto", None, "ray"),
    ("auto", 1, None, 1, "ray"), ("ray", 1, None, None, "ray"), ("in-process", 1, None, None, "in-process")])
def test_runner_choice(runner, replicas, address, per_node, chosen) -> None:
    from serving.cli import choose_runner

    assert choose_runner(runner, replicas, address, per_node) == chosen


def test_in_process_refuses_ray_options(artifacts_root) -> None:
    from serving.cli import main as attn_serve

    folder, _ = exported("c2f_ca", artifacts_root)
    result = CliRunner().invoke(attn_serve, ["serve", str(folder), "--runner", "in-process", "--replicas", "2"])
    assert result.exit_code == 2 and "--runner in-process serves one replica per model" in result.output


def test_engine_threads_is_refused_for_an_engine_without_threads(artifacts_root) -> None:
    from serving.cli import main as attn_serve

    folder, _ = exported("c2f_ca", artifacts_root)
    result = CliRunner().invoke(attn_serve, ["serve", str(folder), "--engine", "torch", "--engine-threads", "1"])
    assert result.exit_code == 2 and "engine 'torch' has no such setting" in result.output


BAD_REQUESTS = [
    ("unknown model", "/v2/models/nope/infer", {"inputs": []}, 404, "nope"),
    ("wrong input name", "/v2/models/c2f_ca/infer",
     {"inputs": [{"name": "pixels", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 150528}]},
     400, "missing ['image'], unexpected ['pixels']"),
    ("wrong shape", "/v2/models/c2f_ca/infer",
     {"inputs": [{"name": "image", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]},
     400, "expected shape"),
    ("wrong dtype", "/v2/models/c2f_ca/infer",
     {"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP64", "data": [0.0] * 150528}]},
     400, "expected dtype float32, received float64"),
    ("batch above the max", "/v2/models/c2f_ca/infer",
     {"inputs": [{"name": "image", "shape": [5, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 752640}]},
     400, "above the model's max_batch_size 4"),
    ("token id out of range", "/v2/models/transformer_encoder/infer",
     {"inputs": [{"name": "tokens", "shape": [1, 2], "datatype": "INT64", "data": [5, 1000]},
                 {"name": "mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]}]},
     400, "value 1000 is outside [0, 1000)"),
    ("data shorter than shape", "/v2/models/c2f_ca/infer",
     {"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * 10}]},
     400, "image"),
]


@pytest.mark.parametrize("label,path,payload,status,phrase", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_and_the_next_good_one_works(label, path, payload, status, phrase, server,
                                                          artifacts_root) -> None:
    got, body = server.post_json(path, payload)
    assert got == status and phrase in body.get("error", json.dumps(body)), (got, body)
    test_answers_equal_runtimes("c2f_ca", "http", server, artifacts_root)


def test_truncated_body_is_a_4xx(server, artifacts_root) -> None:
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                   "data": [0.0] * 1000}]}).encode()
    status, _ = server.post("/v2/models/c2f_ca/infer", body[: len(body) // 2])
    assert 400 <= status < 500
    test_answers_equal_runtimes("c2f_ca", "http", server, artifacts_root)


def test_binary_body_that_lies_about_its_size_is_a_400_naming_the_input(server, artifacts_root) -> None:
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 1000}}]}).encode()
    status, body = server.post("/v2/models/c2f_ca/infer", header + bytes(1000), "application/octet-stream",
                               {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "input 'image': binary_data_size 1000 bytes" in body.decode() \
        and "needs 602112" in body.decode(), body
    test_answers_equal_runtimes("c2f_ca", "http", server, artifacts_root)  # tritonclient.http sends binary


def test_grpc_bad_request_names_the_problem(server) -> None:
    with pytest.raises(Exception, match="expected shape"):
        _infer(grpcclient, f"127.0.0.1:{server.grpc}", "c2f_ca", {"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_a_killed_replica_is_replaced(server, artifacts_root) -> None:
    arrays = _inputs("c2f_ca", 1, 9, artifacts_root)
    pids = {_infer(httpclient, f"127.0.0.1:{server.http}", "c2f_ca", arrays).get_response()["parameters"]["pid"]
            for _ in range(12)}
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    deadline, seen, replaced = time.monotonic() + 120, set(), False
    while time.monotonic() < deadline and not replaced:
        try:
            response = _infer(httpclient, f"127.0.0.1:{server.http}", "c2f_ca", arrays).get_response()
        except Exception:  # requests routed to the dead replica before Serve notices may fail
            time.sleep(0.5)
            continue
        seen.add(response["parameters"]["pid"])
        replaced = bool(seen - pids)
    assert replaced, f"no new replica within 120 s (saw pids {seen}, killed {victim})"
    for _ in range(5):  # and requests after it succeed
        _infer(httpclient, f"127.0.0.1:{server.http}", "c2f_ca", arrays)


def test_two_replicas_on_a_two_node_cluster_both_serve(artifacts_root, tmp_path) -> None:
    folder = str(exported("c2f_ca", artifacts_root)[0])
    srv = serving_procs.start([folder], tmp_path / "two-node.log", ["c2f_ca"], script=serving_procs.TWO_NODE)
    try:
        arrays = _inputs("c2f_ca", 1, 3, artifacts_root)
        nodes = {_infer(httpclient, f"127.0.0.1:{srv.http}", "c2f_ca", arrays).get_response()["parameters"]["node"]
                 for _ in range(30)}
    finally:
        serving_procs.stop(srv)
    assert len(nodes) == 2, f"replies came from {len(nodes)} node(s)"
    assert srv.children == []


def test_load_generator_against_the_server(server, tmp_path) -> None:
    from runtimes.bench.cli import main as attn_bench

    for protocol, port in (("http", server.http), ("grpc", server.grpc)):
        out = tmp_path / f"{protocol}.json"
        result = CliRunner().invoke(attn_bench, ["c2f_ca", "--url", f"http://127.0.0.1:{port}", "--protocol",
                                                 protocol, "--concurrency", "1,4", "--iters", "3", "--json",
                                                 str(out), "--plot", str(tmp_path / f"{protocol}.png")])
        assert result.exit_code == 0, result.output
        rows = json.loads(out.read_text())["results"]
        assert [(r["engine"], r["concurrency"], r["requests"], r["errors"]) for r in rows] == [
            (protocol, 1, 3, 0), (protocol, 4, 12, 0)]
        assert all(r["p99_ms"] >= r["p50_ms"] > 0 and r["throughput"] > 0 for r in rows)
        assert sum(rows[1]["server_batch_rows"].values()) == 12
        for row in rows:  # the server's split, averaged per level, fits inside the client's mean latency
            split = row["server_split_ms"]
            assert set(split) == {"decode", "hop", "queue", "engine", "encode", "server"} and split["engine"] > 0
            assert sum(v for k, v in split.items() if k != "server") <= split["server"] + 0.01 < row["mean_ms"]
        assert "engine ms" in result.output and "client ms" in result.output
    bad = CliRunner().invoke(attn_bench, ["nope", "--url", f"http://127.0.0.1:{server.http}"])
    assert bad.exit_code == 2 and "cannot query 'nope'" in bad.output


def test_triton_repositories_parse_into_tritons_schema(model_name, artifacts_root, tmp_path) -> None:
    from serving.triton_repo import write_repository

    folder, manifest = exported(model_name, artifacts_root)
    entries = write_repository([folder], tmp_path / "repo", instances=2, queue_delay_us=500)
    sources = {"onnx": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"}  # entry suffix → manifest artifact
    served = sorted(f"{model_name}_{suffix}" for suffix, key in sources.items() if key in manifest["artifacts"])
    assert sorted(e.name for e in entries) == served and len(served) >= 2
    for entry in entries:
        config = text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        source = folder / manifest["artifacts"][sources[entry.name.rsplit("_", 1)[1]]]
        assert (entry / "1" / "model.onnx").samefile(source)  # one filesystem: a hard link, not a 2nd copy
        assert config.name == entry.name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
        assert [i.name for i in config.input] == [i["name"] for i in manifest["inputs"]]
        assert [list(i.dims) for i in config.input] == [[d if isinstance(d, int) else -1 for d in i["shape"][1:]]
                                                        for i in manifest["inputs"]]
        assert [list(o.dims) for o in config.output] == [[d if isinstance(d, int) else -1 for d in o["shape"][1:]]
                                                         for o in manifest["outputs"]]
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert config.instance_group[0].count == 2 and config.instance_group[0].kind == \
            model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_triton_repository_copies_across_filesystems(artifacts_root, tmp_path, monkeypatch) -> None:
    """Where a hard link is refused (another filesystem: EXDEV), the entry is a full copy."""
    import errno

    from serving.triton_repo import write_repository

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    folder, manifest = exported("c2f_ca", artifacts_root)
    monkeypatch.setattr(os, "link", cross_device)
    entry = write_repository([folder], tmp_path / "repo")[0]
    copied, source = entry / "1" / "model.onnx", folder / manifest["artifacts"]["onnx"]
    assert not copied.samefile(source) and copied.read_bytes() == source.read_bytes()


def test_attn_export_triton_repo_and_trt_entries(tmp_path) -> None:
    from exporter.cli import main as attn_export
    from serving.triton_repo import BACKENDS, config_pbtxt

    result = CliRunner().invoke(attn_export, ["c2f_ca", "--out", str(tmp_path / "a"), "--num-classes", "10",
                                              "--batch", "1:2:4", "--no-photos", "--triton-repo", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["c2f_ca_onnx"]
    manifest = json.loads((tmp_path / "a" / "c2f_ca" / "manifest.json").read_text())
    plan = text_format.Parse(config_pbtxt("c2f_ca_trt", BACKENDS[".engine"], manifest), model_config_pb2.ModelConfig())
    assert plan.platform == "tensorrt_plan" and plan.instance_group[0].kind == \
        model_config_pb2.ModelInstanceGroup.KIND_GPU
