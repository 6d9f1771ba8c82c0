"""ONNX files on disk: the graph alone, or the graph plus one external data file for its weights.

Protobuf cannot serialise a message of 2 GiB or more, so a model whose weights come near that is written as
``NAME.onnx`` (the graph) beside ``NAME.onnx.data`` (every tensor of 1 KiB or more, in one file: the layout
torch's dynamo exporter, onnxruntime, OpenVINO and TensorRT's parser all read, found by its name relative to
the ``.onnx``). ``--external-data`` asks for that layout at any size. Every stage reads, writes and copies
ONNX through here, so none of them meets the limit on its own, and no data file is left behind by a file
that is then rewritten inline.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import onnx
import onnx.external_data_helper

from exporter.errors import ExportError
from runtimes.fileio import UMASK, atomic_path

PROTOBUF_LIMIT = 2**31  # bytes a serialised protobuf message must stay under
HEADROOM = 2**26  # kept free below the limit for what a later stage adds (Q/DQ nodes, casts, names)
INLINE_BELOW = 1024  # tensors smaller than this stay in the graph file (onnx's own default)


def data_name(path: Path) -> str:
    """The external data file of ``path``: ``model.onnx`` → ``model.onnx.data``."""
    return path.name + ".data"


def too_large_for_protobuf(model: onnx.ModelProto) -> bool:
    """Whether ``model`` (weights in memory) cannot be written as one protobuf file."""
    try:
        return model.ByteSize() > PROTOBUF_LIMIT - HEADROOM
    except Exception:  # protobuf's C implementation refuses to size a message past its limit
        return True


def save(model: onnx.ModelProto, path: Path, *, external: bool = False) -> Path | None:
    """Write ``model`` to ``path`` after onnx.checker (``full_check``) passed on the written file: inline, or with
    its weights in ``path``'s data file when ``external`` or when it is too large for protobuf. Returns the data
    file, or ``None`` (a stale data file is removed). Both files are replaced by rename, so a file the checker
    rejects is never in place; onnx moves the weights out of ``model`` in place when it writes them external."""
    data = path.with_name(data_name(path))
    if not (external or too_large_for_protobuf(model)):
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
            check(tmp, path.name)
        data.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as work:
        staged = Path(work) / path.name  # onnx appends to an existing data file: always a fresh folder
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=INLINE_BELOW, convert_attribute=True)
        check(staged, path.name)
        for written in (staged.with_name(data.name), staged):  # the data first: a graph never names a missing file
            os.chmod(written, 0o666 & ~UMASK)
            os.replace(written, path.with_name(written.name))
    return data


def load(path: Path, *, weights: bool = True) -> onnx.ModelProto:
    """The model at ``path``; with ``weights=False`` its external tensors stay references (dims only)."""
    return onnx.load(str(path), load_external_data=weights)


def data_files(path: Path) -> list[Path]:
    """The external data files ``path``'s tensors point to (none for an inline file)."""
    model = load(path, weights=False)
    names = {onnx.external_data_helper.ExternalDataInfo(t).location
             for t in _tensors(model.graph) if onnx.external_data_helper.uses_external_data(t)}
    return [path.parent / name for name in sorted(names)]


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            yield from ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def copy(path: Path, folder: Path) -> Path:
    """``path`` and its data files copied into ``folder`` under the same names (for a tool that rewrites or
    reads its input in a private folder); returns the copy of ``path``."""
    for source in (path, *data_files(path)):
        shutil.copyfile(source, folder / source.name)
    return folder / path.name


def check(path: Path, name: str | None = None) -> None:
    """onnx.checker with ``full_check`` on the file (by path, so external data and > 2 GiB models work);
    ``name`` is what the error calls it (the published name of a staged file)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected {name or path.name}: {str(exc).splitlines()[0]}") from exc


def total_bytes(path: Path) -> int:
    """The file's size with its data files."""
    return sum(p.stat().st_size for p in (path, *data_files(path)))
