"""``engine="auto"``: the fastest verified artifact of a folder on this machine, chosen by measuring, not by a
guess.

Candidates are the rows of the engine × precision table (``runtimes.selection``) whose artifact the folder
holds, whose parity check passed (``Choice.parity``; PyTorch's own program is the reference and needs none) and
which, where ``--eval`` recorded accuracy, lose at most ``max_accuracy_drop`` points of top-1 against FP32. Each
is opened (one that cannot be opened here, a missing engine or no GPU, is skipped and recorded) and timed at the
caller's batch and thread count, in rounds that alternate the candidates so drift on a noisy machine hits all
alike, within ``budget_s`` seconds of runs in all (every candidate runs at least once per round: a model whose
one call per candidate exceeds the budget gets one round). The lowest median latency wins.

The choice is cached in the user's cache folder (``user_cache``, never the verified folder), keyed by the
manifest's SHA-256, the CPU, its ISA flags and core count, the batch, the threads, the precision filter and the
accuracy budget: a second load measures nothing.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from runtimes import manifest as mf
from runtimes import user_cache
from runtimes.errors import ArtifactError, AttnExportError, first_line
from runtimes.machine import cpu_identity
from runtimes.selection import AUTO, TABLE, Choice
from runtimes.specs import random_inputs

DEFAULT_BUDGET_S = 10.0
DEFAULT_MAX_ACCURACY_DROP = 1.0  # points of top-1 against FP32, where --eval recorded accuracy
ROUNDS = 3
CACHE = "auto_choices"


@dataclass
class AutoChoice:
    """What ``engine="auto"`` chose and why: ``table`` has one row per candidate (measured, skipped or refused,
    with its median ms or its reason); ``cached`` when it came from the cache (no candidate ran)."""

    engine: str
    precision: str
    reason: str
    table: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # opening the candidates, and the timed runs
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verdict(choice: Choice, manifest: Mapping[str, Any], max_accuracy_drop: float) -> str | None:
    """Why ``choice`` is not a candidate for the folder of ``manifest`` (``None`` when it is)."""
    artifacts = manifest["artifacts"]
    if not any(artifacts.get(key) for key in choice.artifacts):
        return "not exported"
    if choice.parity is None:
        return None  # PyTorch's own program: the reference every other artifact is checked against
    row = manifest["parity"].get(choice.parity)
    if row is None:
        return f"no parity check ({choice.parity})"
    if not row.get("passed"):
        return f"parity failed ({choice.parity})"
    drop = (row.get("accuracy") or {}).get("drop_points")
    if drop is not None and drop > max_accuracy_drop:
        return f"loses {drop:.2f} points of top-1, more than {max_accuracy_drop:g}"
    return None


def cache_key(manifest_file: Path, batch: int, threads: int | None, precision: str, max_accuracy_drop: float) -> str:
    """What a choice depends on: the manifest's bytes (so a re-export measures again), this CPU, its ISA flags and
    cores, the batch, the threads, the precision filter and the accuracy budget."""
    digest = hashlib.sha256(manifest_file.read_bytes()).hexdigest()[:16]
    cpu, flags = cpu_identity()
    return (f"{digest}|{cpu}|{' '.join(flags)}|{os.cpu_count()} cores|batch={batch}|threads={threads or 'all'}|"
            f"precision={precision}|max_drop={max_accuracy_drop:g}")


def choose(folder: str | Path, *, batch: int = 1, threads: int | None = None, precision: str = AUTO,
           max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP, budget_s: float = DEFAULT_BUDGET_S,
           opener: Callable[..., Any] | None = None, **options: Any) -> AutoChoice:
    """The fastest verified (engine, precision) of ``folder`` at ``batch`` and ``threads`` (``precision`` other
    than ``auto`` keeps only that precision); from the cache when this machine measured it before."""
    root = Path(folder)
    manifest = mf.read_manifest(root)
    key = cache_key(mf.manifest_path(root), batch, threads, precision, max_accuracy_drop)
    cached = user_cache.read(CACHE).get(key)
    if cached:
        return AutoChoice(cached["engine"], cached["precision"], cached["reason"], cached["table"],
                          cached.get("seconds", {}), cached=True)
    table: list[dict[str, Any]] = []
    candidates: list[Choice] = []
    for choice in TABLE.values():
        if precision != AUTO and choice.precision != precision:
            continue
        why_not = verdict(choice, manifest, max_accuracy_drop)
        if why_not == "not exported":
            continue
        if why_not:
            table.append({"engine": choice.engine, "precision": choice.precision, "status": "refused",
                          "reason": why_not})
        else:
            candidates.append(choice)
    seconds: dict[str, float] = {}
    measured = _measure(root, candidates, batch, threads, budget_s, table, seconds, opener, options)
    if not measured:
        rows = "; ".join(f"{row['engine']}:{row['precision']} {row['reason']}" for row in table) or "none exported"
        raise ArtifactError(f"{root}: engine='auto' found no verified artifact that opens on this machine ({rows}); "
                            "re-export with more artifacts, or name an engine")
    best, *slower = sorted(measured, key=lambda row: row["median_ms"])
    runner_up = slower[:1]
    reason = (f"fastest verified artifact at batch {batch}, threads {threads or 'all'}: {best['median_ms']:.3f} ms "
              "median" + (f", {runner_up[0]['median_ms'] / best['median_ms']:.2f}x faster than "
                          f"{runner_up[0]['engine']}:{runner_up[0]['precision']}" if runner_up else ", the only one"))
    result = AutoChoice(best["engine"], best["precision"], reason, table, seconds)
    user_cache.store(CACHE, key, {**result.to_json(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    return result


ENGINE_OPTIONS = {"threads": ("ort", "openvino"), "hint": ("openvino",), "optimization": ("ort",)}


def options_for(engine: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those another engine's runtime takes (``threads``, ``hint``, ``optimization``)."""
    return {k: v for k, v in options.items() if engine in ENGINE_OPTIONS.get(k, (engine,))}


def _measure(root: Path, candidates: list[Choice], batch: int, threads: int | None, budget_s: float,
             table: list[dict[str, Any]], seconds: dict[str, float], opener: Callable[..., Any] | None,
             options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Open every candidate, then time them in ``ROUNDS`` alternating rounds within ``budget_s`` of runs; every
    candidate gets a table row (``measured`` with its median, or ``failed to open`` with the reason), and
    ``seconds`` the time spent opening and running."""
    from runtimes import load

    opener = opener or load
    opened: list[tuple[Choice, Any]] = []
    start = time.perf_counter()
    for choice in candidates:
        wanted = options_for(choice.engine, {**options, **({"threads": threads} if threads else {})})
        try:
            runtime = opener(root, engine=choice.engine, precision=choice.precision, **wanted)
        except AttnExportError as exc:
            table.append({"engine": choice.engine, "precision": choice.precision, "status": "failed to open",
                          "reason": first_line(exc)})
            continue
        opened.append((choice, runtime))
    samples: dict[int, list[float]] = {i: [] for i in range(len(opened))}
    seconds["open"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    try:
        if opened:
            feeds = random_inputs(opened[0][1].input_specs, batch, seed=0)
            # warm-up (lazy allocations, kernel selection; not timed), which also says how many rounds fit
            warm = sum(_timed(lambda: runtime(feeds), 0.0)[0] for _, runtime in opened) / 1e3
            rounds = max(1, min(ROUNDS, int(budget_s / max(warm, 1e-9))))
            per_slot = budget_s / (rounds * len(opened))
            for _ in range(rounds):
                for index, (_, runtime) in enumerate(opened):
                    samples[index] += _timed(lambda: runtime(feeds), per_slot)
    finally:
        for _, runtime in opened:
            runtime.close()
    seconds["measure"] = round(time.perf_counter() - start, 2)
    measured = []
    for index, (choice, _) in enumerate(opened):
        row = {"engine": choice.engine, "precision": choice.precision, "status": "measured",
               "median_ms": round(float(np.median(samples[index])), 4), "calls": len(samples[index])}
        table.append(row)
        measured.append(row)
    return measured


def _timed(call: Callable[[], Any], seconds: float) -> list[float]:
    """Latencies (ms) of ``call`` repeated while the next call, as long as the last, ends within ``seconds`` (at
    least one call)."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while not out or time.perf_counter() + out[-1] / 1e3 < deadline:
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out
