"""Fused attention for onnxruntime: try the fusions that exist on ``model.onnx``, and keep one only when it
passes parity and measures faster on this machine in a one-run A/B.

Fusers (each: the FP32 ``ModelProto`` → a fused ``ModelProto`` and what it fused, by operator):
- ``onnxruntime.transformers``: ``onnxruntime.transformers.optimizer.optimize_model`` (model type ``vit``,
  heads and width read from the graph): Attention, SkipLayerNormalization, BiasGelu, FastGelu on ViT- and
  Swin-shaped graphs.
- ``onnxscript``: ``onnxscript.rewriter.ort_fusions.optimize_for_ort``: SDPA → MultiHeadAttention, the same
  layer-norm and GELU fusions, rotary embeddings.
(opset 23's ONNX ``Attention`` is the dynamo exporter's own at ``--opset 23``/``24``: a different export, not
a rewrite of this one.)

A fuser that fuses nothing is recorded and dropped. Otherwise the fused file is checked against PyTorch
like every artifact, then timed against ``model.onnx`` at batch 1 in ``AB_ROUNDS`` alternating rounds (best
of ``AB_CALLS`` calls each); ``decide`` keeps it when the median per-round speedup is at least
``MIN_SPEEDUP``. The fastest kept candidate is written as ``model.fused.onnx``. Its contrib operators
(domain ``com.microsoft``) run on onnxruntime only: OpenVINO, ExecuTorch and TensorRT read ``model.onnx``.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import onnx

FUSED_FILE = "model.fused.onnx"
CONTRIB_DOMAIN = "com.microsoft"
AB_ROUNDS = 7
AB_CALLS = 5
MIN_SPEEDUP = 1.03  # below 3 %, a one-run A/B on a shared 2-core machine cannot tell it from noise


@dataclass(frozen=True)
class ABResult:
    """Per-round best seconds of the plain and the fused graph, alternating; the decision and why."""

    baseline_s: tuple[float, ...]
    candidate_s: tuple[float, ...]
    speedup: float  # median over rounds of baseline / candidate
    kept: bool

    def to_json(self) -> dict[str, Any]:
        return {"rounds": len(self.baseline_s), "baseline_ms": round(1e3 * min(self.baseline_s), 3),
                "fused_ms": round(1e3 * min(self.candidate_s), 3), "speedup": round(self.speedup, 3),
                "min_speedup": MIN_SPEEDUP, "kept": self.kept}


def decide(baseline_s: Sequence[float], candidate_s: Sequence[float], min_speedup: float = MIN_SPEEDUP) -> ABResult:
    """Keep the candidate when the median of its per-round speedups reaches ``min_speedup`` (rounds alternate,
    so a slow spell of the machine hits both sides of a round alike)."""
    if len(baseline_s) != len(candidate_s) or not baseline_s:
        raise ValueError("an A/B needs the same, non-zero number of rounds on each side")
    speedup = statistics.median(b / c for b, c in zip(baseline_s, candidate_s))
    return ABResult(tuple(baseline_s), tuple(candidate_s), speedup, speedup >= min_speedup)


def alternate(baseline: Callable[[], Any], candidate: Callable[[], Any], rounds: int = AB_ROUNDS,
              calls: int = AB_CALLS) -> tuple[list[float], list[float]]:
    """Best-of-``calls`` seconds of each, round by round, starting with the baseline (one warm-up call each)."""
    baseline(), candidate()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for side, call in zip(times, (baseline, candidate)):
            best = float("inf")
            for _ in range(calls):
                start = time.perf_counter()
                call()
                best = min(best, time.perf_counter() - start)
            side.append(best)
    return times


def contrib_ops(model: onnx.ModelProto) -> dict[str, int]:
    """onnxruntime contrib operators in the graph, by type (what a fuser wrote)."""
    return dict(Counter(n.op_type for n in model.graph.node if n.domain == CONTRIB_DOMAIN))


def declare_contrib_domain(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the ``com.microsoft`` opset import a fuser's contrib nodes need (onnxruntime's optimizer leaves it
    to its own file writer; ``onnx.checker`` rejects the graph without it)."""
    if contrib_ops(model) and all(o.domain != CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return model


def fuse_with_ort_transformers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    from onnxruntime.transformers.optimizer import optimize_model

    fused = declare_contrib_domain(optimize_model(model, model_type="vit", num_heads=0, hidden_size=0,
                                                  opt_level=0).model)
    return fused, contrib_ops(fused)


def fuse_with_onnxscript(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    fused_ir, counts = optimize_for_ort(ir.serde.deserialize_model(model))
    return declare_contrib_domain(ir.serde.serialize_model(fused_ir)), {k: v for k, v in counts.items() if v}


FUSERS: dict[str, Callable[[onnx.ModelProto], tuple[onnx.ModelProto, dict[str, int]]]] = {
    "onnxruntime.transformers": fuse_with_ort_transformers,
    "onnxscript": fuse_with_onnxscript,
}


def candidate_path(folder: Path, fuser: str) -> Path:
    return folder / f".fused.{fuser.replace('.', '_')}.onnx"


@dataclass
class Attempt:
    """One fuser's outcome, as the manifest records it."""

    fuser: str
    fused: dict[str, int]  # contrib operators written, by type
    parity: bool | None = None  # None: not checked (nothing fused, or the fuser failed)
    ab: ABResult | None = None
    why: str = ""  # why it was not kept

    def to_json(self) -> dict[str, Any]:
        return {"fused": self.fused, "parity": self.parity, **({"ab": self.ab.to_json()} if self.ab else {}),
                **({"why": self.why} if self.why else {})}


def try_fusions(model: onnx.ModelProto, folder: Path, save: Callable[[onnx.ModelProto, Path], None],
                passes: Callable[[Path], bool], time_against_plain: Callable[[Path], ABResult]
                ) -> tuple[list[Attempt], Path | None]:
    """Every fuser on ``model``; returns the attempts and the written candidate file of the fastest one that
    passed parity and won its A/B (``None``: none did). Other candidates are deleted."""
    attempts: list[Attempt] = []
    winner: tuple[Attempt, Path] | None = None
    for name, fuse in FUSERS.items():
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        try:
            fused, counts = fuse(copy)
        except Exception as exc:  # a fuser's own failure on a graph it does not know: recorded, not fatal
            attempts.append(Attempt(name, {}, why=f"the fuser failed: {type(exc).__name__}: "
                                                  f"{(str(exc).splitlines() or [''])[0][:200]}"))
            continue
        if not counts:
            attempts.append(Attempt(name, {}, why="no attention or layer-norm pattern matched"))
            continue
        path = candidate_path(folder, name)
        save(fused, path)
        attempt = Attempt(name, counts, parity=passes(path))
        attempts.append(attempt)
        if not attempt.parity:
            attempt.why = "failed parity"
        else:
            attempt.ab = time_against_plain(path)
            if not attempt.ab.kept:
                attempt.why = f"not faster: {attempt.ab.speedup:.3f}x < {MIN_SPEEDUP}x"
            elif winner is None or attempt.ab.speedup > winner[0].ab.speedup:  # type: ignore[union-attr]
                if winner:
                    winner[0].why = "another fuser was faster"
                    winner[1].unlink()
                winner = (attempt, path)
                continue
            else:
                attempt.why = "another fuser was faster"
        path.unlink()
    return attempts, winner[1] if winner else None
