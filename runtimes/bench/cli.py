"""``attn-bench``: latency percentiles and throughput of engines side by side.

Exit codes: 0 success · 2 bad input or missing artifact/backend · 130 interrupted.
"""
from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click

from runtimes import load, machine
from runtimes import manifest as mf
from runtimes.bench import accuracy, ceiling, reporting, timing
from runtimes.bench.labels import LabelledImages, load_labelled
from runtimes.cli_support import DEFAULT_OUT, FiniteFloatRange, exit_on_errors
from runtimes.errors import AttnExportError, OptionError
from runtimes.fileio import write_json
from runtimes.selection import AUTO, ENGINES, PRECISIONS, parse_engine_spec


def _batches(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        batches = sorted({int(b) for b in value.split(",")})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if batches[0] < 1:
        raise click.BadParameter("batch sizes must be >= 1")
    return batches


def ensure_file_writable(path: Path) -> None:
    """Fail before the benchmark runs when an output file cannot be written (one line, exit 2)."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise AttnExportError(f"cannot write {path}: {exc.strerror}; choose another path") from None


def resolve_folder(target: str, out: str, max_batch: int) -> Path:
    """An artifact folder for ``target``: the folder itself, OUT/MODEL, or a fresh export of MODEL."""
    path = Path(target)
    if path.is_dir():
        return path
    if len(path.parts) > 1:
        raise AttnExportError(f"no artifact folder {path}; create one with attn-export MODEL --out DIR")
    folder = Path(out) / target
    if (folder / "manifest.json").is_file():
        return folder
    try:
        from exporter.pipeline import ExportOptions, export
        from exporter.progress import stderr_printer
        from exporter.zoo import get_entry
        from runtimes.manifest import BatchProfile
    except ImportError:
        raise AttnExportError(f"no artifact folder {folder}; create it with: attn-export {target} --out {out}") \
            from None
    get_entry(target)  # unknown names fail before any work
    click.echo(f"attn-bench: {folder} is missing; exporting {target} first", err=True)
    opts = ExportOptions(batch=BatchProfile(1, min(8, max_batch), max(max_batch, 1)))
    export(target, out, options=opts, printer=stderr_printer)
    return folder


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("target", metavar="MODEL_OR_FOLDER")
@click.option("--engine", "engines", multiple=True, metavar="ENGINE[:PRECISION]",
              help=f"Engine to time ({', '.join(ENGINES)}, or auto: the fastest verified artifact of the folder on "
                   "this machine, measured once per batch and cached), optionally with a precision, e.g. "
                   "openvino:bf16; repeat for several (default: ort). Speed-ups are against the first; rows show "
                   "achieved GFLOP/s and % of the engine's measured GEMM ceiling.")
@click.option("--precision", default=None, metavar="PRECISION",
              help=f"Precision for engines given without one: {', '.join(PRECISIONS)} or auto "
                   "(default: each engine's own, fp32; trt: fp16).")
@click.option("--hint", default="auto", show_default=True, type=click.Choice(["auto", "latency", "throughput"]),
              help="OpenVINO performance hint (auto: throughput only for profiles of max batch >= 64).")
@click.option("--batch", "batches", default="1,8,32", show_default=True, callback=_batches,
              help="Comma-separated batch sizes.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0), help="Untimed calls before timing.")
@click.option("--iters", default=None, type=click.IntRange(min=1), help="Timed calls per engine and batch (default 30).")
@click.option("--seconds", default=None, type=FiniteFloatRange(min=0, min_open=True), help="Time each engine and batch for this long instead.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Time the engines in this many alternating rounds, each with its share of --iters or --seconds, "
                   "all artifacts open at once: drift on a busy machine then hits every row alike, so the "
                   "ratios between rows hold (1: each engine timed once, in turn, one open at a time).")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="Intra-op CPU threads for ort and torch (default: all).")
@click.option("--device", default=None, type=click.Choice(["cpu", "cuda"]),
              help="Where ort and torch run (default: each engine's own device: trt on cuda, the others on cpu).")
@click.option("--out", default=DEFAULT_OUT, show_default=True, help="Where MODEL's artifact folder lives.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write results as JSON.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG of latency and throughput against batch.")
@click.option("--url", default=None, metavar="http://HOST:PORT",
              help="Load-test an Open Inference Protocol server (attn-serve, Triton) instead; MODEL_OR_FOLDER "
                   "is then the model name on the server.")
@click.option("--concurrency", "concurrency", default="1,8,32", show_default=True, callback=_batches,
              help="With --url: comma-separated numbers of concurrent clients.")
@click.option("--protocol", default="http", show_default=True, type=click.Choice(["http", "grpc"]),
              help="With --url: the OIP transport (give the server's gRPC port in --url for grpc).")
@click.option("--rate", default=None, type=FiniteFloatRange(min=0, min_open=True),
              help="With --url: open loop instead of --concurrency: send this many requests per second on a fixed "
                   "schedule for --duration, latency counted from each scheduled time; reports answered, refused "
                   "(503/UNAVAILABLE), timed-out (504/DEADLINE_EXCEEDED) and wrong answers, and the server's RSS "
                   "when it runs here (runtimes/bench/open_loop.py).")
@click.option("--duration", default=10.0, show_default=True, type=FiniteFloatRange(min=0, min_open=True),
              help="With --rate: seconds of load.")
@click.option("--timeout-ms", default=None, type=FiniteFloatRange(min=0, min_open=True),
              help="With --rate: each request's timeout, sent as the OIP 'timeout' parameter; the client waits "
                   "1 s beyond it, then counts the request as timed out.")
@click.option("--data", default=None, type=click.Path(file_okay=False),
              help="Labelled images as an ImageFolder (DIR/<class>/<image>, class index = sorted folder order): "
                   "also report top-1, top-5, top-1 agreement with the first engine and images/s per engine.")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="Labelled images as a CSV of 'path,index' rows (paths relative to the CSV), instead of --data.")
@click.option("--overhead", is_flag=True,
              help="Also measure Runtime.__call__ against a bare InferenceSession.run at batch 1 (ort).")
def main(target: str, engines: tuple[str, ...], precision: str | None, hint: str, batches: list[int], warmup: int, iters: int | None,
         seconds: float | None, rounds: int, threads: int | None, device: str | None, out: str, json_path: str | None,
         plot_path: str | None, url: str | None, concurrency: list[int], protocol: str, rate: float | None,
         duration: float, timeout_ms: float | None, data: str | None, labels: str | None, overhead: bool) -> None:
    """Time MODEL_OR_FOLDER (a zoo name, exported first if OUT/MODEL is missing, or an artifact folder)."""
    if iters is not None and seconds is not None:
        raise click.UsageError("give --iters or --seconds, not both")
    if url:
        if seconds is not None or engines or overhead or data or labels or rounds > 1:
            raise click.UsageError("--url times a server: --seconds, --rounds, --engine, --data, --labels and "
                                   "--overhead do not apply")
        if rate:
            _bench_open_loop(url, target, protocol, rate, duration, timeout_ms, json_path)
        else:
            _bench_server(url, target, protocol, concurrency, iters or 30, json_path, plot_path)
        return
    if rate:
        raise click.UsageError("--rate is an open-loop load on a server: give --url")
    iters = iters if iters is not None or seconds is not None else 30
    try:
        runs = [parse_engine_spec(spec, precision) for spec in engines or ("ort",)]
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint="--engine/--precision") from None
    if overhead and ("ort", "fp32") not in runs:
        raise click.UsageError("--overhead compares against a bare onnxruntime session: add --engine ort")
    with exit_on_errors("attn-bench"):
        for path in (json_path, plot_path):
            if path:
                ensure_file_writable(Path(path))
        labelled = load_labelled(data, labels) if data or labels else None  # bad rows fail before any work
        folder = resolve_folder(target, out, max(batches))
        if threads:
            _set_torch_threads(threads, [e for e, _ in runs])
        results: list[timing.BenchResult] = []
        report: dict = {"model": folder.name, "results": []}
        flops = mf.flops_per_sample(mf.read_manifest(folder))
        scored: list[tuple[str, dict[str, Any]]] = []
        reference = None
        for group in [runs] if rounds > 1 else [[run] for run in runs]:  # alternating rounds time every row at once
            with ExitStack() as stack:
                rows = _opened_rows(stack, folder, group, batches, device, threads, hint, report)
                click.echo(f"attn-bench: {', '.join(f'{prefix}{rt.label} batch {b}' for rt, b, prefix in rows)}"
                           + (f" in {rounds} alternating rounds" if rounds > 1 else "") + " …", err=True)
                timed = timing.bench_alternating([(rt, b) for rt, b, _ in rows], rounds=rounds, warmup=warmup,
                                                 iters=iters, seconds=seconds)
                first = len(results)
                results += [_with_ceiling(replace(t, engine=prefix + rt.label), rt, flops, threads)
                            for (rt, _, prefix), t in zip(rows, timed)]
                for rt in {id(rt): rt for rt, _, prefix in rows if not prefix}.values():  # auto's twins are not re-scored
                    if overhead and (rt.engine, rt.precision) == ("ort", "fp32"):
                        report["overhead"] = timing.overhead(rt, 1, rounds=5, iters=max(iters or 30, 20))
                    if labelled is not None:
                        acc = _score(rt, labelled, max(batches), reference)
                        reference = acc.predictions if reference is None else reference
                        scored.append((rt.label, acc.to_json()))
                        results[first:] = [replace(r, accuracy=acc.to_json()) if r.engine == rt.label else r
                                           for r in results[first:]]
        report["machine"] = machine.machine_info()
        report["results"] = [r.to_json() for r in results]
        click.echo(reporting.format_table(results))
        if scored and labelled is not None:
            click.echo(reporting.format_accuracy_table(scored, labelled.source))
        if "overhead" in report:
            o = report["overhead"]
            click.echo(f"Runtime.__call__ vs InferenceSession.run at batch 1: {o['wrapped_p50_ms']:.3f} ms vs "
                       f"{o['bare_p50_ms']:.3f} ms p50 → overhead {o['overhead_pct']:+.2f}%")
        if json_path:
            write_json(json_path, report)
        if plot_path:
            reporting.plot(results, plot_path, f"{folder.name} on {report['machine']['cpu'] or device or 'cpu'}")
            if scored and labelled is not None:
                points = [(label, next(r.p50_ms for r in results if r.engine == label), acc["top1"])
                          for label, acc in scored]
                reporting.plot_accuracy(points, accuracy_plot_path(plot_path), f"{folder.name}: top-1 on "
                                    f"{Path(labelled.source).name} vs p50 at batch {batches[0]}")


def _opened_rows(stack: ExitStack, folder: Path, group: list[tuple[str, str | None]], batches: list[int],
                 device: str | None, threads: int | None, hint: str, report: dict[str, Any]
                 ) -> list[tuple[Any, int, str]]:
    """Open the runtimes of ``group`` on ``stack``: ``(runtime, batch, row prefix)`` for every batch. ``auto`` is
    chosen per batch (the fastest artifact can differ between batch 1 and 32), its choice recorded in ``report``."""
    rows: list[tuple[Any, int, str]] = []
    for engine, wanted in group:
        if engine == AUTO:
            for batch in batches:
                rt = stack.enter_context(load(folder, engine=AUTO, precision=wanted, batch=batch,
                                              **({"threads": threads} if threads else {}), hint=hint))
                click.echo(f"attn-bench: auto batch {batch}: {rt.choice.reason} → {rt.label}", err=True)
                report.setdefault("auto", []).append({"batch": batch, **rt.choice.to_json()})
                rows.append((rt, batch, "auto→"))
            continue
        rt = stack.enter_context(load(folder, engine=engine, precision=wanted, device=device,
                                      **ENGINE_OPTIONS.get(engine, lambda **_: {})(threads=threads, hint=hint)))
        rows += [(rt, batch, "") for batch in batches]
    return rows


def _with_ceiling(timed: timing.BenchResult, rt: Any, flops: int | None, threads: int | None) -> timing.BenchResult:
    """``timed`` with its achieved GFLOP/s and % of the engine's ceiling (CPU runs)."""
    if not flops or rt.device != "cpu":
        return timing.with_achieved(timed, flops, None)
    row = timing.with_achieved(timed, flops, ceiling.ceiling(rt.engine, rt.precision, threads))
    if row.ceiling_pct is not None and row.ceiling_pct > 100:  # a cached ceiling measured on a busy machine
        row = timing.with_achieved(timed, flops, ceiling.ceiling(rt.engine, rt.precision, threads, remeasure=True))
    return row


def _bench_server(url: str, model: str, protocol: str, levels: list[int], requests_per_client: int,
                  json_path: str | None, plot_path: str | None) -> None:
    """attn-bench --url: each concurrency level against the server, then the table, JSON and plot."""
    from runtimes.bench import remote

    with exit_on_errors("attn-bench"):
        for path in (json_path, plot_path):
            if path:
                ensure_file_writable(Path(path))
        specs = remote.model_specs(url, model, protocol)
        results = []
        for level in levels:
            click.echo(f"attn-bench: {url} {protocol} concurrency {level} …", err=True)
            results.append(remote.run_level(url, model, protocol, specs, level, requests_per_client))
        click.echo(remote.format_table(results))
        if json_path:
            write_json(json_path, {"machine": machine.machine_info(), "model": model, "url": url,
                                   "results": [r.to_json() for r in results]})
        if plot_path:
            reporting.plot(results, plot_path, f"{model} via {protocol} at {url}", x="concurrency")


def _bench_open_loop(url: str, model: str, protocol: str, rate: float, duration: float, timeout_ms: float | None,
                     json_path: str | None) -> None:
    """attn-bench --url --rate: one open-loop run, its table and JSON."""
    from runtimes.bench import open_loop

    with exit_on_errors("attn-bench"):
        if json_path:
            ensure_file_writable(Path(json_path))
        click.echo(f"attn-bench: {url} {protocol} open loop at {rate:g}/s for {duration:g} s …", err=True)
        result = open_loop.run_open_loop(url, model, protocol, rate, duration, timeout_ms)
        click.echo(open_loop.format_table([result]))
        if json_path:
            write_json(json_path, {"machine": machine.machine_info(), "model": model, "url": url,
                                   "results": [result.to_json()]})


def accuracy_plot_path(plot_path: str) -> str:
    """``bench.png`` → ``bench.accuracy.png``: the accuracy-versus-latency plot beside the latency plot."""
    path = Path(plot_path)
    return str(path.with_name(f"{path.stem}.accuracy{path.suffix or '.png'}"))


def _score(rt: Any, labelled: LabelledImages, batch: int, reference: Any) -> accuracy.Accuracy:
    """Accuracy of ``rt`` on ``labelled`` with a progress bar on stderr."""
    with click.progressbar(length=len(labelled), label=f"attn-bench: accuracy {rt.label}", file=sys.stderr) as bar:
        return accuracy.evaluate(rt, labelled, batch=batch, reference=reference, progress=bar.update)


ENGINE_OPTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "ort": lambda threads, hint: {"threads": threads} if threads else {},
    "openvino": lambda threads, hint: {"hint": hint, **({"threads": threads} if threads else {})},
}


def _set_torch_threads(threads: int, engines: list[str]) -> None:
    if "torch" in engines:
        import torch

        torch.set_num_threads(threads)
