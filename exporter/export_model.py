"""``ExportModel``: any ``nn.Module`` with the input and output specs the pipeline needs.

Specs come from the module (``input_specs`` / ``output_specs``, as every zoo model has) or from
the caller (``--input NAME:SHAPE[:DTYPE[:LOW..HIGH]]``, ``--output NAME``). Before any tracing,
``forward``'s signature is checked against the input names, and ``forward`` runs once on
example inputs: the output count is checked, and output shapes (which axes follow which named
input axis) are read by running it again with each named axis one larger.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from exporter.checks.photos import model_preprocess
from exporter.errors import ModelSourceError
from exporter.tracing import trace_program
from runtimes.dtypes import NUMPY_NAMES
from runtimes.images import Preprocess
from runtimes.specs import BATCH, TensorSpec, default_output_name, random_inputs

DEFAULT_EXAMPLE_DIM = 16  # size of a named axis other than batch in example inputs, unless max_dims is smaller
_EXAMPLE_BATCH = 2
_INPUT_SYNTAX = "NAME:SHAPE[:DTYPE[:LOW..HIGH]], e.g. image:batch,3,224,224 or ids:batch,seq:int64:0..30522"


def parse_input(text: str) -> TensorSpec:
    """``ids:batch,seq:int64:0..30522`` → TensorSpec (named dims are dynamic axes; the range is half-open)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4 or not parts[0].isidentifier() or not parts[1]:
        raise ModelSourceError(f"--input {text!r}: expected {_INPUT_SYNTAX}")
    name, dims = parts[0], parts[1].split(",")
    shape: list[int | str] = []
    for dim in dims:
        dim = dim.strip()
        if dim.isdigit() and int(dim) > 0:
            shape.append(int(dim))
        elif dim.isidentifier():
            shape.append(dim)
        else:
            raise ModelSourceError(f"--input {text!r}: dim {dim!r} is neither a positive size nor an axis name")
    dtype = parts[2] if len(parts) > 2 and parts[2] else "float32"
    if dtype not in NUMPY_NAMES:
        raise ModelSourceError(f"--input {text!r}: dtype {dtype!r} is not one of {', '.join(NUMPY_NAMES)}")
    value_range = None
    if len(parts) == 4:
        match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", parts[3])
        if not match or int(match.group(1)) >= int(match.group(2)):
            raise ModelSourceError(f"--input {text!r}: range {parts[3]!r} must be LOW..HIGH with LOW < HIGH "
                                   "(half-open, like range())")
        if np.issubdtype(np.dtype(dtype), np.floating):
            raise ModelSourceError(f"--input {text!r}: a value range is for integer inputs, not {dtype}")
        value_range = (int(match.group(1)), int(match.group(2)))
    return TensorSpec(name, tuple(shape), dtype, value_range)


def parse_max_dims(items: Sequence[str]) -> dict[str, int]:
    """``["seq=512"]`` → ``{"seq": 512}``."""
    found: dict[str, int] = {}
    for item in items:
        name, sep, size = item.partition("=")
        if not sep or not name.isidentifier() or not size.isdigit() or int(size) < 1:
            raise ModelSourceError(f"--max-dim {item!r}: expected AXIS=SIZE, e.g. --max-dim seq=512")
        found[name] = int(size)
    return found


def complete_input_specs(specs: Sequence[TensorSpec], max_dims: Mapping[str, int] | None = None
                         ) -> tuple[TensorSpec, ...]:
    """Check every input starts with ``batch``; add ``max_dims`` and an example size for each other named axis."""
    done = []
    unknown = set(max_dims or {}) - {d for s in specs for d in s.dynamic_axes.values()} - {BATCH}
    if unknown:
        raise ModelSourceError(f"--max-dim names {sorted(unknown)}, which no input has as an axis")
    if BATCH in (max_dims or {}):
        raise ModelSourceError("--max-dim batch: the batch bound is --batch MIN:OPT:MAX")
    for spec in specs:
        if not spec.shape or spec.shape[0] != BATCH:
            raise ModelSourceError(f"input {spec.name!r}: the first dim must be {BATCH!r} (every artifact has a "
                                   f"dynamic batch), got {list(spec.shape)}")
        axes = set(spec.dynamic_axes.values()) - {BATCH}
        bounds = {**spec.max_dims, **{a: n for a, n in (max_dims or {}).items() if a in axes}}
        examples = {a: spec.example_dims.get(a, min(DEFAULT_EXAMPLE_DIM, bounds.get(a, DEFAULT_EXAMPLE_DIM)))
                    for a in axes}
        done.append(dataclasses.replace(spec, example_dims=examples, max_dims=bounds))
    return tuple(done)


def check_forward_signature(module: nn.Module, specs: Sequence[TensorSpec]) -> None:
    """``forward``'s positional parameters must be the input names, in order (extra ones need defaults)."""
    names = [s.name for s in specs]
    parameters = list(inspect.signature(module.forward).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return  # forward(*inputs): any names go
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    given = [p.name for p in positional[:len(names)]]
    rest = [p.name for p in parameters[len(given):] if p.default is p.empty and p.kind not in (p.VAR_KEYWORD,)]
    signature = f"{type(module).__name__}.forward({', '.join(p.name for p in positional)})"
    if given != names or rest:
        raise ModelSourceError(f"input names {names} do not match {signature}: name the inputs like forward's "
                               "parameters, in order (--input NAME:SHAPE, or the module's input_specs)")


def forward_arrays(module: nn.Module, input_specs: Sequence[TensorSpec], output_names: Sequence[str],
                   arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``module`` on numpy inputs (by input name, in ``forward`` order) → outputs named ``output_names``."""
    with torch.inference_mode():
        out = module(*(torch.from_numpy(np.asarray(arrays[s.name])) for s in input_specs))
    return {name: tensor.detach().numpy() for name, tensor in zip(output_names, _as_tuple(out))}


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _example(specs: Sequence[TensorSpec], batch: int, dims: Mapping[str, int]) -> tuple[torch.Tensor, ...]:
    arrays = random_inputs(specs, batch, seed=0, dims=dims)
    return tuple(torch.from_numpy(arrays[s.name]) for s in specs)


def _run(module: nn.Module, specs: Sequence[TensorSpec], batch: int, dims: Mapping[str, int]) -> tuple[Any, ...]:
    example = _example(specs, batch, dims)
    try:
        with torch.inference_mode():
            outs = _as_tuple(module(*example))
    except Exception as exc:
        shapes = ", ".join(f"{s.name} {list(t.shape)} {str(t.dtype).removeprefix('torch.')}"
                           for s, t in zip(specs, example))
        raise ModelSourceError(f"{type(module).__name__}.forward failed on example inputs ({shapes}): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                               "check --input shapes and dtypes") from exc
    bad = [type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)]
    if bad:
        raise ModelSourceError(f"{type(module).__name__}.forward returns {bad}: every output must be a tensor "
                               "(return a tensor or a tuple of tensors)")
    return outs


def _example_dims(specs: Sequence[TensorSpec]) -> dict[str, int]:
    return {a: n for s in specs for a, n in s.example_dims.items()}


def infer_output_specs(module: nn.Module, input_specs: Sequence[TensorSpec], names: Sequence[str] | None
                       ) -> tuple[TensorSpec, ...]:
    """Output specs from running ``forward``: an output axis that grows with one named input axis gets its name."""
    base_dims = _example_dims(input_specs)
    base = _run(module, input_specs, _EXAMPLE_BATCH, base_dims)
    if names and len(names) != len(base):
        raise ModelSourceError(f"{len(names)} output names given ({', '.join(names)}) but "
                               f"{type(module).__name__}.forward returns {len(base)} tensors")
    axes = [BATCH, *sorted({a for s in input_specs for a in s.dynamic_axes.values()} - {BATCH})]
    try:
        grown = {a: _run(module, input_specs, _EXAMPLE_BATCH + (a == BATCH),
                         {**base_dims, **({a: base_dims[a] + 1} if a != BATCH else {})}) for a in axes}
    except ModelSourceError:
        # forward runs at the example sizes but not one larger: a size is baked in, and torch.export's
        # guards say where (ExportError, exit 4, naming the input and the source line)
        trace_program(module, input_specs, _example(input_specs, _EXAMPLE_BATCH, base_dims))
        raise
    specs = []
    for i, out in enumerate(base):
        name = names[i] if names else default_output_name(i)
        shape: list[int | str] = []
        for d, size in enumerate(out.shape):
            followers = [a for a in axes if grown[a][i].shape[d] != size]
            if len(followers) > 1:
                raise ModelSourceError(f"output {name!r} dim {d} depends on several dynamic axes ({followers}); "
                                       "give the module output_specs")
            shape.append(followers[0] if followers else int(size))
        specs.append(TensorSpec(name, tuple(shape), str(out.dtype).removeprefix("torch.")))
    return tuple(specs)


@dataclass(frozen=True)
class ExportModel:
    """What the pipeline exports: an eval-mode module, its input/output specs, checked, and how image files
    become its image input (``None`` when it takes no images)."""

    module: nn.Module
    input_specs: tuple[TensorSpec, ...]
    output_specs: tuple[TensorSpec, ...]
    preprocess: Preprocess | None = None

    @classmethod
    def of(cls, module: nn.Module, inputs: Sequence[TensorSpec] | None = None,
           outputs: Sequence[TensorSpec | str] | None = None, max_dims: Mapping[str, int] | None = None,
           preprocess: Preprocess | None = None) -> "ExportModel":
        """Take specs from the arguments, else from the module's attributes; check them against ``forward``.

        ``outputs`` are specs (used as given, count checked) or names (shapes read by running ``forward``);
        ``preprocess`` is the source's (a timm data config), else the default resize to the image input's size.
        """
        given = inputs or getattr(module, "input_specs", None)
        if not given:
            raise ModelSourceError(f"{type(module).__name__} has no input_specs: describe each input with "
                                   f"--input {_INPUT_SYNTAX}")
        input_specs = complete_input_specs(tuple(given), max_dims)
        check_forward_signature(module, input_specs)
        declared = outputs if outputs is not None else getattr(module, "output_specs", None)
        if declared and all(isinstance(o, TensorSpec) for o in declared):
            count = len(_run(module, input_specs, _EXAMPLE_BATCH, _example_dims(input_specs)))
            if count != len(declared):
                raise ModelSourceError(f"{len(declared)} outputs declared but {type(module).__name__}.forward "
                                       f"returns {count} tensors")
            output_specs = tuple(declared)  # type: ignore[arg-type]
        else:
            output_specs = infer_output_specs(module, input_specs, [str(o) for o in declared] if declared else None)
        return cls(module.eval(), input_specs, output_specs, model_preprocess(input_specs, preprocess))

    def forward_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``forward`` on numpy inputs, outputs by name (the parity reference)."""
        return forward_arrays(self.module, self.input_specs, [s.name for s in self.output_specs], arrays)
