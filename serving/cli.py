"""``attn-serve``: serve artifact folders over the Open Inference Protocol (from the server process on one
node, on Ray Serve for replicas and clusters), or write a Triton model repository from them.

    attn-serve artifacts/c2f_ca artifacts/resnet50_sa --http-port 8000 --grpc-port 8001
    attn-serve artifacts/c2f_ca --replicas 2 --ray-address auto
    attn-serve repo artifacts/c2f_ca --out triton-repo

Exit codes: 0 stopped cleanly (SIGTERM: every accepted request answered) · 1 the drain timed out with
accepted requests unanswered · 2 bad input (folder, option, missing serving install) · 130 interrupted
(Ctrl-C, or a second signal during the drain).
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from runtimes.cli_support import exit_on_errors
from runtimes.errors import AttnExportError
from runtimes.optional import install_command
from runtimes.auto_select import ENGINE_OPTIONS
from runtimes.selection import AUTO, ENGINES

from .policy import QUEUE_PER_BATCH, READY_HOLD_S, Policy, default_max_queue

INSTALL_SERVE = install_command("serve")


class _DefaultToServe(click.Group):
    """``attn-serve FOLDER...`` means ``attn-serve serve FOLDER...``; ``attn-serve repo ...`` writes a repository."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToServe, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Serve artifact folders (attn-serve FOLDER...) or write a Triton repository (attn-serve repo)."""


def _folders(values: tuple[str, ...]) -> list[Path]:
    from runtimes import manifest as mf

    folders = [Path(v) for v in values]
    for folder in folders:
        mf.read_manifest(folder)  # a clear error before anything starts
    names = [f.name for f in folders]
    if len(set(names)) != len(names):
        raise AttnExportError(f"two folders share a model name: {names}; models are served under their folder name")
    return folders


RUNNERS = ("auto", "in-process", "ray")
THREADED_ENGINES = (*ENGINE_OPTIONS["threads"], AUTO)  # the engines whose runtimes take ``threads``


def choose_runner(runner: str, replicas: int, ray_address: str | None, max_replicas_per_node: int | None) -> str:
    """``auto`` → ``in-process`` for one replica on one node (Ray's hop to a replica process measured 4.6–8.5
    ms per lone c2f_ca request, the in-process call 0.01 ms: docs/benchmarks.md, bench_serve.sh), ``ray`` as
    soon as replicas, a cluster or placement are asked for; an explicit ``in-process`` with those is a usage
    error."""
    wants_ray = replicas > 1 or ray_address is not None or max_replicas_per_node is not None
    if runner == "auto":
        return "ray" if wants_ray else "in-process"
    if runner == "in-process" and wants_ray:
        raise click.UsageError("--runner in-process serves one replica per model in this process: it cannot be "
                               "combined with --replicas above 1, --ray-address or --max-replicas-per-node")
    return runner


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@main.command("serve")
@click.argument("folders", nargs=-1, required=True, metavar="ARTIFACT_DIR...")
@click.option("--engine", default="ort", show_default=True, type=click.Choice([*ENGINES, AUTO]),
              help="Runtime engine; auto: the fastest verified artifact of each folder on this machine, measured "
                   "at --max-batch once and cached (runtimes.auto_select).")
@click.option("--precision", default=None, help="Precision (fp32, fp16, bf16, int8, auto; default: the engine's).")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Replicas per model (above 1: on Ray Serve).")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 1024),
              help="Concurrent requests a replica joins into one engine call.")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="At most how long a replica waits for more requests while several arrive together (a lone "
                   "request never waits; see serving/batcher.py).")
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="OIP v2 REST port.")
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="OIP v2 gRPC port.")
@click.option("--ray-address", default=None,
              help="Join this Ray cluster (e.g. auto, or ray://head:10001); default: start a local one.")
@click.option("--max-replicas-per-node", default=None, type=click.IntRange(1, 256),
              help="Spread replicas over nodes (1: at most one replica of a model per node).")
@click.option("--runner", default="auto", show_default=True, type=click.Choice(RUNNERS),
              help="Where each model's runtime runs: in-process (the server process itself, no hop), ray (Ray "
                   "Serve replica processes, any node), or auto: in-process unless --replicas above 1, "
                   "--ray-address or --max-replicas-per-node ask for Ray.")
@click.option("--max-queue", default=None, type=click.IntRange(1, 1_000_000),
              help=f"Requests a replica holds, waiting or in its engine call; one more is refused at once (HTTP 503 "
                   f"with Retry-After, gRPC UNAVAILABLE) and readiness is false until {READY_HOLD_S:g} s after the last "
                   f"refusal. Default: {QUEUE_PER_BATCH} x --max-batch.")
@click.option("--max-queue-ms", default=None, type=click.FloatRange(0),
              help="The queue's time cap: a request is also refused at once (503 / UNAVAILABLE) when the replica, at "
                   "the pace it keeps under its present load, would not answer it within this many ms (requests "
                   "held plus its own batch, priced at the largest of the last engine calls, times the measured "
                   "seconds per request). Default: --max-queue x the "
                   "batch-1 engine time measured at start; 0: no time cap, --max-queue alone.")
@click.option("--engine-threads", default=None, type=click.IntRange(1, 1024),
              help="Threads each replica's engine computes with (ort, openvino, auto). Default: every core. Set it "
                   "where several models or replicas share a machine, so that their engines together run no more "
                   "threads than there are cores; see docs/serving.md#engine-threads.")
@click.option("--request-timeout-ms", default=None, type=click.FloatRange(0, min_open=True),
              help="Timeout of a request that sets none (the OIP 'timeout' parameter in microseconds, or a gRPC "
                   "deadline): a request still waiting when it passes is dropped before the engine and answered "
                   "504 / DEADLINE_EXCEEDED. Default: none.")
@click.option("--drain-timeout-s", default=30.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM: readiness turns false and new requests are refused at once; accepted requests "
                   "are answered for at most this long, then the server exits (0, or 1 if some were cut off). A "
                   "second signal exits at once.")
def serve_command(folders: tuple[str, ...], engine: str, precision: str | None, replicas: int, max_batch: int,
                  batch_wait_ms: float, http_port: int, grpc_port: int, ray_address: str | None,
                  max_replicas_per_node: int | None, runner: str, max_queue: int | None,
                  max_queue_ms: float | None, engine_threads: int | None, request_timeout_ms: float | None,
                  drain_timeout_s: float) -> None:
    """Serve each ARTIFACT_DIR as a model named after it, over OIP v2 REST and gRPC: from this process on one
    node, on Ray Serve when replicas or a cluster are asked for (--runner)."""
    signal.signal(signal.SIGTERM, _interrupt)  # stop Ray and every process we started, as on Ctrl-C
    with exit_on_errors("attn-serve", interrupted="stopped"):
        in_process = choose_runner(runner, replicas, ray_address, max_replicas_per_node) == "in-process"
        if engine_threads and engine not in THREADED_ENGINES:
            raise click.UsageError(f"--engine-threads sets the threads of {', '.join(THREADED_ENGINES)}; "
                                   f"engine {engine!r} has no such setting here")
        paths = _folders(folders)
        try:
            from .server import serve_folders
        except ModuleNotFoundError as exc:
            raise AttnExportError(f"serving needs Ray Serve and KServe ({exc.name} missing): {INSTALL_SERVE}") \
                from None
        click.echo(f"attn-serve: runtimes {'in this process' if in_process else 'on Ray Serve replicas'} "
                   f"(--runner {runner})", err=True)
        policy = Policy(max_batch, batch_wait_ms, max_queue or default_max_queue(max_batch),
                        request_timeout_ms / 1e3 if request_timeout_ms else None, drain_timeout_s, max_queue_ms,
                        engine_threads)
        serve_folders(paths, engine=engine, precision=precision, replicas=replicas, policy=policy,
                      http_port=http_port, grpc_port=grpc_port, ray_address=ray_address,
                      max_replicas_per_node=max_replicas_per_node, in_process=in_process)


@main.command("repo")
@click.argument("folders", nargs=-1, required=True, metavar="ARTIFACT_DIR...")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The Triton model repository folder.")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 64),
              help="instance_group count per model.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]),
              help="Where Triton runs the onnxruntime models (TensorRT plans always run on the GPU).")
@click.option("--queue-delay-us", default=1000, show_default=True, type=click.IntRange(0, 10_000_000),
              help="dynamic_batching max_queue_delay_microseconds.")
def repo_command(folders: tuple[str, ...], out: str, instances: int, device: str, queue_delay_us: int) -> None:
    """Write a Triton model repository (config.pbtxt + 1/model.*) for every servable artifact."""
    from .triton_repo import write_repository

    with exit_on_errors("attn-serve"):
        written = write_repository(_folders(folders), Path(out), instances=instances, device=device,
                                   queue_delay_us=queue_delay_us)
    for entry in written:
        click.echo(f"{entry}")


if __name__ == "__main__":
    main()
