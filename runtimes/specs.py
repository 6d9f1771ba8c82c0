"""Tensor specifications shared by the exporter, the manifest and every runtime.

A dimension is either an ``int`` (fixed) or a ``str`` naming a dynamic axis
(``"batch"``, ``"seq"``). Kept free of torch so edge apps can import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

Dim = Union[int, str]
BATCH = "batch"


def default_output_name(index: int) -> str:
    """The name of output ``index`` when neither the model nor the file names it: ``output0``, ``output1``…"""
    return f"output{index}"


def is_default_output_name(name: str) -> bool:
    return name.startswith("output") and name[6:].isdigit()


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``int`` or axis name per dim) and numpy dtype name of one tensor.

    ``value_range`` (low inclusive, high exclusive) tells integer inputs such as
    token ids which values are valid, so example inputs can be generated.
    ``example_dims`` gives the size used for each named dynamic axis other than
    batch when example inputs are made (e.g. ``{"seq": 16}``).
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    value_range: tuple[int, int] | None = None
    example_dims: Mapping[str, int] = field(default_factory=dict)
    max_dims: Mapping[str, int] = field(default_factory=dict)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Map of axis index to axis name for every dynamic dimension."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, batch: int, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape with ``batch`` and other named axes replaced by sizes."""
        sizes = {**self.example_dims, **(dims or {}), BATCH: batch}
        try:
            return tuple(d if isinstance(d, int) else int(sizes[d]) for d in self.shape)
        except KeyError as exc:
            raise ValueError(f"input {self.name!r}: no size given for dynamic axis {exc.args[0]!r}") from None

    def to_json(self) -> dict[str, Any]:
        """Manifest form: ``{name, shape, dtype}`` (+ ``value_range``/``example_dims`` when set)."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.example_dims:
            out["example_dims"] = dict(self.example_dims)
        if self.max_dims:
            out["max_dims"] = dict(self.max_dims)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TensorSpec":
        """Inverse of :meth:`to_json`; ``None`` dims (unnamed dynamic) become ``"dim<i>"``."""
        shape = tuple(d if d is not None else f"dim{i}" for i, d in enumerate(data["shape"]))
        vr = data.get("value_range")
        return cls(
            name=data["name"],
            shape=shape,
            dtype=data.get("dtype", "float32"),
            value_range=tuple(vr) if vr is not None else None,  # type: ignore[arg-type]
            example_dims=dict(data.get("example_dims", {})),
            max_dims=dict(data.get("max_dims", {})),
        )


def random_inputs(
    specs: Sequence[TensorSpec], batch: int, *, seed: int = 0, dims: Mapping[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Seeded random arrays for ``specs`` at ``batch``: N(0,1) floats, uniform ints in ``value_range``.

    Integer inputs whose range is ``(0, 2)`` are treated as masks: their first
    position along the last axis is forced to 1 so no row is fully masked.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch, dims)
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            low, high = spec.value_range or (0, 2)
            arr = rng.integers(low, high, size=shape).astype(spec.dtype)
            if (low, high) == (0, 2):
                arr[..., 0] = 1
            out[spec.name] = arr
    return out
