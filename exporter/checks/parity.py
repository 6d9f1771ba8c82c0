"""Parity between a reference (PyTorch FP32) and a candidate (ONNX Runtime, TensorRT).

Per output and per input set: max abs error, max error relative to max|ref|,
cosine similarity and, for logits, top-1 agreement. ``ParityReport`` is truthy
when every row is within tolerance (as Polygraphy's ``OutputCompareResult``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Pass thresholds; the FP32 and FP16 defaults come from the product spec."""

    max_rel: float | None  # None: not bounded (INT8 is judged by cosine and top-1 only)
    min_cosine: float
    min_top1: float
    max_abs: float | None = None  # optional absolute bound (--atol), checked in addition
    top1_pooled: bool = False  # judge top-1 over every sample of the report, not per input set

    @classmethod
    def fp32(cls) -> "Tolerance":
        return cls(max_rel=1e-4, min_cosine=0.99999, min_top1=1.0)

    @classmethod
    def fp16(cls) -> "Tolerance":
        return cls(max_rel=1e-2, min_cosine=0.999, min_top1=0.99)

    @classmethod
    def bf16(cls) -> "Tolerance":
        """OpenVINO BF16 (8-bit mantissa): looser than FP16 on relative error."""
        return cls(max_rel=2e-2, min_cosine=0.999, min_top1=0.99)

    @classmethod
    def int8(cls) -> "Tolerance":
        """Cosine per output and input set; top-1 agreement over all samples pooled (a set of one
        sample can only agree 0 % or 100 %, so 95 % per set would allow no flip at all)."""
        return cls(max_rel=None, min_cosine=0.99, min_top1=0.95, top1_pooled=True)


@dataclass(frozen=True)
class ParityRow:
    """The comparison of one output on one input set."""

    output: str
    inputs: str  # e.g. "random b=7", "photos b=9"
    batch: int
    max_abs: float
    max_rel: float
    cosine: float
    top1: float | None  # None when the output is not [B, classes] logits
    error: str | None = None  # the engine's one-line message when it raised instead of answering

    def passed(self, tol: Tolerance) -> bool:
        return (
            self.error is None
            and np.isfinite(self.max_abs)
            and (tol.max_abs is None or self.max_abs <= tol.max_abs)
            and (tol.max_rel is None or self.max_rel <= tol.max_rel)
            and self.cosine >= tol.min_cosine
            and (self.top1 is None or tol.top1_pooled or self.top1 >= tol.min_top1)
        )


def compare(output: str, inputs: str, reference: np.ndarray, candidate: np.ndarray) -> ParityRow:
    """Compare two arrays of the same shape; non-finite candidates give an infinite error."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output {output!r}: shape {candidate.shape} differs from reference {reference.shape}")
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    if not np.isfinite(cand).all():
        max_abs = max_rel = float("inf")
        cosine = 0.0
    else:
        max_abs = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
        max_rel = max_abs / max(float(np.max(np.abs(ref))), 1e-12)
        norm = float(np.linalg.norm(ref) * np.linalg.norm(cand))
        cosine = float(ref @ cand / norm) if norm > 0 else float(np.array_equal(ref, cand))
    top1 = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        top1 = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
    return ParityRow(output, inputs, int(reference.shape[0]), max_abs, max_rel, cosine, top1)


@dataclass
class ParityReport:
    """All rows of one parity check and the tolerance they were judged by."""

    candidate: str
    tolerance: Tolerance
    rows: list[ParityRow] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None  # top-1/top-5 on labelled images (attn-export --eval), when measured

    def add(self, inputs: str, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        for name, ref in reference.items():
            self.rows.append(compare(name, inputs, ref, candidate[name]))

    def add_error(self, inputs: str, reference: Mapping[str, np.ndarray], message: str) -> None:
        """The engine raised on this input set: one failed row per output, carrying its message."""
        for name, ref in reference.items():
            batch = int(ref.shape[0]) if ref.ndim else 1
            self.rows.append(ParityRow(name, inputs, batch, float("inf"), float("inf"), 0.0, None, message))

    @property
    def errors(self) -> list[str]:
        """The engine messages of rows where it raised (deduplicated, in order)."""
        return list(dict.fromkeys(r.error for r in self.rows if r.error))

    def __bool__(self) -> bool:
        return (bool(self.rows) and all(r.passed(self.tolerance) for r in self.rows)
                and (not self.tolerance.top1_pooled or self.pooled_top1 >= self.tolerance.min_top1))

    @property
    def pooled_top1(self) -> float:
        """Top-1 agreement over every sample of every input set (weighted by batch size)."""
        rows = [r for r in self.rows if r.top1 is not None]
        total = sum(r.batch for r in rows)
        return sum(r.top1 * r.batch for r in rows) / total if total else 1.0

    @property
    def worst(self) -> dict[str, float]:
        """Worst value of each metric over all rows: the tolerance the check would have needed
        (top-1: the pooled agreement when the tolerance pools it)."""
        top1 = [r.top1 for r in self.rows if r.top1 is not None]
        return {
            "max_abs": max((r.max_abs for r in self.rows), default=0.0),
            "max_rel": max((r.max_rel for r in self.rows), default=0.0),
            "min_cosine": min((r.cosine for r in self.rows), default=1.0),
            "min_top1": self.pooled_top1 if self.tolerance.top1_pooled else min(top1, default=1.0),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "passed": bool(self),
            "tolerance": asdict(self.tolerance),
            "worst": self.worst,
            "rows": [asdict(r) for r in self.rows],
            **({"accuracy": self.accuracy} if self.accuracy is not None else {}),
        }

    def table(self) -> str:
        """A compact text table, one line per row, with a verdict line; ``rel_error`` is max|error| / max|ref|,
        the number ``--max-rel-error`` bounds."""
        lines = [f"{'output':<8} {'inputs':<18} {'max_abs':>10} {'rel_error':>10} {'cosine':>10} {'top1':>6}  ok"]
        for r in self.rows:
            top1 = "-" if r.top1 is None else f"{100 * r.top1:.0f}%"
            ok = "yes" if r.passed(self.tolerance) else "NO"
            if r.error:
                lines.append(f"{r.output:<8} {r.inputs:<18} {'engine error: ' + r.error}  NO")
                continue
            lines.append(
                f"{r.output:<8} {r.inputs:<18} {r.max_abs:>10.2e} {r.max_rel:>10.2e} {r.cosine:>10.6f} {top1:>6}  {ok}"
            )
        t, w = self.tolerance, self.worst
        verdict = "PASSED" if self else "FAILED"
        lines.append(
            f"{self.candidate}: {verdict} (need {'' if t.max_rel is None else f'rel_error <= {t.max_rel:g}, '}"
            f"cosine >= {t.min_cosine:g}, "
            f"top1 >= {100 * t.min_top1:g}%{' over all samples' if t.top1_pooled else ''}; worst rel_error "
            f"{w['max_rel']:.2e}, cosine {w['min_cosine']:.6f}, top1 {100 * w['min_top1']:.0f}%)"
        )
        return "\n".join(lines)
