"""torch.export with every named axis symbolic, and its failures told in the user's terms.

Two failures are common with a user's own module, and torch words both for its own developers:
- a size baked into the graph (``x.view(2, -1)``): torch says "Constraints violated (batch)";
  we name the input, the axis and the user's source line (found with ``torch.export.draft_export``,
  which records where each guard was added);
- data-dependent control flow (``if x.sum() > 0``): torch's guard in one line plus the user's line.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch import nn

from exporter.errors import ExportError
from runtimes.specs import BATCH, TensorSpec

_TORCH_FILES = re.compile(r"[/\\](torch|torchvision|exporter)[/\\]")


def dynamic_shapes(specs: Sequence[TensorSpec]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic_shapes: one shared ``batch`` Dim, other named axes ``Dim.DYNAMIC`` (torch
    infers which are equal; the ONNX file names them from the specs)."""
    batch = torch.export.Dim(BATCH, min=1, max=1 << 16)
    return tuple({axis: batch if name == BATCH else torch.export.Dim.DYNAMIC for axis, name in s.dynamic_axes.items()}
                 for s in specs)


def trace_program(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...]
                  ) -> torch.export.ExportedProgram:
    """torch.export with symbolic named axes; a module that specialises one or branches on data raises
    ``ExportError`` (exit 4) naming the input and the source line."""
    shapes = dynamic_shapes(specs)
    try:
        return torch.export.export(module, example, dynamic_shapes=shapes)
    except Exception as exc:  # torch raises UserError / GuardOnDataDependentSymNode / others
        raise explain_trace_failure(exc, module, specs, example, shapes) from exc


def _user_line(frames: Sequence[dict[str, Any]]) -> str | None:
    """``file:line `code``` of the innermost frame outside torch and attn-export."""
    from torch._logging.structured import INTERN_TABLE

    files = {index: name for name, index in INTERN_TABLE.items()}
    for frame in reversed(frames):
        filename = files.get(frame.get("filename"), str(frame.get("filename")))
        if not _TORCH_FILES.search(filename):
            return f"{filename}:{frame.get('line')} `{str(frame.get('loc', '')).strip()}`"
    return None


def _specialised_input(module: nn.Module, specs: Sequence[TensorSpec], example: tuple[torch.Tensor, ...],
                       shapes: tuple[dict[int, Any], ...]) -> tuple[str, str, str | None]:
    """(input name, axis name, user source line) of the first guard that fixed a named axis."""
    names = [s.name for s in specs]
    found = (names[0], BATCH, None)
    try:
        draft = torch.export.draft_export(module, example, dynamic_shapes=shapes)
    except Exception:  # draft_export is best effort: the message then has no source line
        return found
    for failure in draft._report.failures:
        data = failure.data if isinstance(failure.data, dict) else {}
        sources = str(data.get("symbol_to_sources", ""))
        match = re.search(r"L\['(\w+)'\]\.size\(\)\[(\d+)\]", sources)
        if not match or match.group(1) not in names:
            continue
        spec = specs[names.index(match.group(1))]
        axis = spec.dynamic_axes.get(int(match.group(2)), BATCH)
        return spec.name, axis, _user_line(data.get("user_stack") or [])
    return found


def explain_trace_failure(exc: Exception, module: nn.Module, specs: Sequence[TensorSpec],
                          example: tuple[torch.Tensor, ...], shapes: tuple[dict[int, Any], ...]) -> ExportError:
    """One line naming what torch.export tripped on and where in the user's code."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "data-dependent" in text:
        call = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s+(.+)', text)
        where = f" at {call.group(1)}:{call.group(2)} `{call.group(3).strip()}`" if call else ""
        return ExportError(f"data-dependent control flow{where}: torch.export: {first}; branch with torch.where "
                           "or torch.cond instead of Python `if` on tensor values")
    if "specialize" in text or "Constraints violated" in text:
        name, axis, line = _specialised_input(module, specs, example, shapes)
        where = f" at {line}" if line else ""
        return ExportError(
            f"input {name!r}: the model fixes the {axis!r} dimension to the example size{where} "
            "(e.g. .view(batch_size, ...) with a Python int); use -1, flatten or unflatten", "baked size"
        )
    return ExportError(f"torch.export failed: {first}")
