"""The user's own example inputs (``--sample-inputs FILE.npz``, ``--calib FILE.npz``): arrays by input name.

Checked against the input specs before any work — every input present, nothing extra, a dtype
numpy casts to the spec's safely, fixed dims equal, one batch size for all, integer values in
``value_range`` — so a wrong file fails in one line (exit 2) instead of deep inside an engine.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from exporter.errors import ModelSourceError
from runtimes.specs import TensorSpec


def read_npz(path: str | Path, specs: Sequence[TensorSpec], option: str = "--sample-inputs") -> dict[str, np.ndarray]:
    """The arrays of ``path`` by input name, cast to the specs' dtypes, or ``ModelSourceError``."""
    file = Path(path)
    if not file.is_file():
        raise ModelSourceError(f"{option} {file}: no such file")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelSourceError(f"{option} {file}: not a readable .npz ({exc}); write it with numpy.savez") from None
    names = [s.name for s in specs]
    if sorted(arrays) != sorted(names):
        raise ModelSourceError(f"{option} {file} holds {sorted(arrays)} but the model's inputs are {names}")
    batches = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(batches) != 1 or None in batches or 0 in batches:
        raise ModelSourceError(f"{option} {file}: every array needs the same batch size in dim 0 "
                               f"(got {[list(a.shape) for a in arrays.values()]})")
    checked = {}
    for spec in specs:
        array = arrays[spec.name]
        if not np.can_cast(array.dtype, spec.dtype, casting="safe"):
            raise ModelSourceError(f"{option} {file}: {spec.name!r} is {array.dtype}, the model takes {spec.dtype}")
        if array.ndim != len(spec.shape) or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, array.shape)):
            raise ModelSourceError(f"{option} {file}: {spec.name!r} has shape {list(array.shape)}, the model takes "
                                   f"{list(spec.shape)}")
        if spec.value_range is not None and array.size:
            low, high = spec.value_range
            if array.min() < low or array.max() >= high:
                raise ModelSourceError(f"{option} {file}: {spec.name!r} has values outside [{low}, {high})")
        checked[spec.name] = np.ascontiguousarray(array.astype(spec.dtype, copy=False))
    return checked
