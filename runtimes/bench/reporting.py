"""attn-bench's output: the engines-side-by-side table, the accuracy table and the PNG plots."""
from __future__ import annotations

from typing import Any, Sequence

from runtimes.bench.timing import BenchResult
from runtimes.fileio import atomic_path


def _group(label: str) -> str:
    """``auto→openvino:bf16`` → ``auto``: rows of engine="auto" compare as one engine, whatever each batch chose."""
    return label.split("→")[0]


def speedups(results: list[BenchResult]) -> dict[tuple[str, int], float]:
    """Speed-up of each result against the first engine's result at the same batch (mean latency)."""
    first = _group(results[0].engine) if results else ""
    base = {r.batch: r.mean_ms for r in results if _group(r.engine) == first}
    return {(r.engine, r.batch): base[r.batch] / r.mean_ms for r in results if r.batch in base}


def format_table(results: list[BenchResult]) -> str:
    ups = speedups(results)
    lines = [f"{'engine':<20} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
             f"{'items/s':>9} {'speed-up':>8} {'GFLOP/s':>8} {'% ceil':>6}"]
    for r in results:
        gflops = "-" if r.gflops_per_s is None else f"{r.gflops_per_s:.1f}"
        pct = "-" if r.ceiling_pct is None else f"{r.ceiling_pct:.0f}%"
        lines.append(f"{r.engine:<20} {r.batch:>5} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} {r.p99_ms:>9.2f} "
                     f"{r.mean_ms:>9.2f} {r.throughput:>9.1f} {ups.get((r.engine, r.batch), 1.0):>7.2f}x "
                     f"{gflops:>8} {pct:>6}")
    return "\n".join(lines)


def format_accuracy_table(rows: Sequence[tuple[str, dict[str, Any]]], source: str) -> str:
    """One line per engine: top-1, top-5, agreement with the first engine, images/s."""
    lines = [f"accuracy on {source}", f"{'engine':<14} {'images':>6} {'top-1':>7} {'top-5':>7} {'agree':>7} "
                                      f"{'images/s':>9}"]
    for engine, acc in rows:
        lines.append(f"{engine:<14} {acc['images']:>6} {100 * acc['top1']:>6.2f}% {100 * acc['top5']:>6.2f}% "
                     f"{100 * acc['agreement_top1']:>6.2f}% {acc['images_per_s']:>9.1f}")
    return "\n".join(lines)


def plot_accuracy(points: Sequence[tuple[str, float, float]], path: str, title: str) -> None:
    """PNG of top-1 against p50 latency, one point per engine:precision (``(label, p50 ms, top-1)``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, latency, top1 in points:
        ax.scatter([latency], [100 * top1], s=40)
        ax.annotate(label, (latency, 100 * top1), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="p50 latency (ms)", ylabel="top-1 (%)", title=title)
    ax.grid(alpha=0.3)
    _save_png(plt, fig, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(plt: Any, fig: Any, path: str) -> None:
    """Lay ``fig`` out, write it to ``path`` atomically as a PNG, and free it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot(results: Sequence[Any], path: str, title: str, x: str = "batch") -> None:
    """PNG of p50 latency and throughput against ``x`` (batch size, or concurrency for a server), one line per
    engine; with achieved GFLOP/s (local rows of a model with counted FLOPs) a third panel beside its ceilings."""
    plt = _pyplot()
    engines: dict[str, list[Any]] = {}
    for r in results:
        engines.setdefault(r.engine, []).append(r)
    achieved = any(getattr(r, "gflops_per_s", None) for r in results)
    fig, axes = plt.subplots(1, 3 if achieved else 2, figsize=(15 if achieved else 10, 4))
    ax_lat, ax_thr = axes[0], axes[1]
    for engine, rows in engines.items():
        rows = sorted(rows, key=lambda r: getattr(r, x))
        xs = [getattr(r, x) for r in rows]
        ax_lat.plot(xs, [r.p50_ms for r in rows], marker="o", label=engine)
        ax_thr.plot(xs, [r.throughput for r in rows], marker="o", label=engine)
        if achieved and rows[0].gflops_per_s is not None:
            line = axes[2].plot(xs, [r.gflops_per_s for r in rows], marker="o", label=engine)[0]
            if rows[0].ceiling_gflops_per_s:
                axes[2].axhline(rows[0].ceiling_gflops_per_s, color=line.get_color(), linestyle="--", alpha=0.6)
    ax_lat.set(xlabel=x, ylabel="p50 latency (ms)", title="latency")
    ax_thr.set(xlabel=x, ylabel="items / s", title="throughput")
    if achieved:
        axes[2].set(xlabel=x, ylabel="GFLOP/s", title="achieved (dashed: the engine's GEMM ceiling)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save_png(plt, fig, path)
