"""Dynamic batching inside a replica, as plain functions: requests that can share one engine call
(same input names, dtypes and non-batch shapes) are concatenated along the batch axis, run once, and
each caller gets exactly its own rows back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Answer:
    """One caller's outputs and the batch its rows were computed in."""

    outputs: Arrays
    batch_rows: int  # rows in the engine call that served this request
    batch_requests: int  # requests joined into that call


def _signature(arrays: Arrays) -> tuple:
    return tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in arrays.items()))


def group_compatible(requests: Sequence[Arrays]) -> list[list[int]]:
    """Indices of requests that can be concatenated, in arrival order within each group."""
    groups: dict[tuple, list[int]] = {}
    for i, arrays in enumerate(requests):
        groups.setdefault(_signature(arrays), []).append(i)
    return list(groups.values())


def run_batched(requests: Sequence[Arrays], run: Callable[[Arrays], Arrays]) -> list[Answer]:
    """Answer every request, joining compatible ones into one ``run`` call each."""
    answers: list[Answer | None] = [None] * len(requests)
    for group in group_compatible(requests):
        rows = [next(iter(requests[i].values())).shape[0] for i in group]
        joined = {name: np.concatenate([requests[i][name] for i in group]) for name in requests[group[0]]}
        outputs = run(joined)
        bounds = np.cumsum([0, *rows])
        for i, start, stop in zip(group, bounds[:-1], bounds[1:]):
            answers[i] = Answer({k: v[start:stop] for k, v in outputs.items()}, int(bounds[-1]), len(group))
    return [a for a in answers if a is not None]
