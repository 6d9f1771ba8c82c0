""""Widen until parity": the one loop behind every reduced precision (FP16, INT8, and later ones).

Each precision has an ordered tuple of steps (its own configurations, each keeping more of the
graph in FP32 than the one before). The loop builds the file for a step, checks it, and stops at
the first step whose check passes; every step tried is recorded, so the report shows what the
earlier steps missed by.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, TypeVar

from runtimes.errors import first_line


class Step(Protocol):
    name: str


S = TypeVar("S", bound=Step)
Check = Callable[[], Any]  # returns a ParityReport (truthy when it passes)


def widen_until_parity(steps: Sequence[S], build: Callable[[S], dict[str, Any]], check: Check,
                       accept: Callable[[Any], bool] = bool, screen: Callable[[S], Any] | None = None,
                       build_failures: tuple[type[Exception], ...] = ()) -> tuple[dict[str, Any], Any]:
    """``build(step)`` then ``check()`` for each step until ``accept(report)`` — by default the parity
    verdict; with ``--eval`` also the accuracy drop on the labels.

    ``screen(step)``, when given, is a cheaper check of the same step made before the file is built (a
    simulation of it): a step it rejects is recorded (``screened``) and not built, except the last, so a
    file is always written and checked. The file's own check still decides every step that is built.

    ``build_failures``: exceptions of ``build`` that fail only that step (recorded with their one-line
    reason) when a wider step is left to try; at the last step they propagate. A tool that cannot
    lower one quantization of a graph may lower the next, which keeps more of it in float.

    Returns (the last build's info with ``step`` and ``tries`` added, the last report). When no
    step passes, the last file stays on disk and its failing report is returned for the caller
    to record.
    """
    if not steps:
        raise ValueError("no widening steps")
    tries: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    report: Any = None
    for index, step in enumerate(steps):
        if screen is not None and index < len(steps) - 1:
            screened = screen(step)
            if not accept(screened):
                tries.append(_tried(step, screened, False, screened=True))
                continue
        try:
            info = build(step)
        except build_failures as exc:
            if index == len(steps) - 1:
                raise
            tries.append(_tried(step, None, False, error=first_line(exc)))
            continue
        report = check()
        accepted = report is not None and accept(report)
        tries.append(_tried(step, report, accepted))
        if accepted:
            break
    info.update(step=tries[-1]["step"], tries=tries)
    return info, report


def _tried(step: Step, report: Any, passed: bool, **extra: Any) -> dict[str, Any]:
    """One entry of ``tries``: the step, its verdict, the report's worst values, and its first engine error and
    accuracy where it has them."""
    return {"step": step.name, "passed": passed, "worst": report.worst if report is not None else None,
            **({"error": report.errors[0]} if getattr(report, "errors", None) else {}),
            **({"accuracy": report.accuracy} if getattr(report, "accuracy", None) else {}), **extra}
