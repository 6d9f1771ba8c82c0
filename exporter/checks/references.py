"""The PyTorch references every artifact is compared with, and the comparison itself.

Input sets: seeded random inputs at each parity batch size; one more at other sizes of the
named axes besides batch (``seq``), so a dynamic axis is proven by numbers, not only by its
name in the file; the bundled photos where the model takes images; the user's own
``--sample-inputs``. PyTorch runs once per set, and every candidate file is checked against
the same outputs.

Calibrated artifacts (INT8) are checked on :func:`labelled_sets` instead when ``--eval`` gives labelled
images: their activation ranges come from the data they were calibrated on, and random noise (or photos,
for a network trained on something else) lies outside them, so a parity failure there says nothing about
the data the model will see. A trained-on-digits resnet50_axial's INT8 kept 99.17 % top-1 on the digits
at the first step while random inputs gave cosine 0.88 after every step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

import runtimes
from exporter.checks.parity import ParityReport, Tolerance
from exporter.checks.photos import photo_inputs
from exporter.export_model import ExportModel
from runtimes.base import Runtime
from runtimes.bench.labels import LabelledImages
from runtimes.engines.providers import cuda_usable
from runtimes.errors import InputSpecError, OptionError, UnreadableArtifactError
from runtimes.manifest import BatchProfile
from runtimes.selection import default_device
from runtimes.specs import BATCH, random_inputs

OTHER_AXIS_GROWTH = 5  # the extra set sizes each named axis (other than batch) this much above its example
LABELLED_POOL = 61  # labelled images in calibrated artifacts' set: prime, so chunks at the profile max leave
                    # an odd remainder and two batch sizes run (8 + 8 … + 5 at max 8)


@dataclass(frozen=True)
class ParityInputs:
    """One input set and PyTorch's outputs on it, computed once and compared with every candidate."""

    label: str
    arrays: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]


def parity_batches(profile: BatchProfile) -> list[int]:
    """1, 2, an odd size (7, or the largest odd size ≤ max) and the profile max, deduplicated."""
    odd = min(7, profile.max if profile.max % 2 else profile.max - 1)
    return sorted({b for b in (1, 2, odd, profile.max) if profile.min <= b <= profile.max} or {profile.min})


def other_axis_sizes(model: ExportModel) -> dict[str, int]:
    """Sizes for named axes other than batch that differ from the example ones (bounded by ``max_dims``)."""
    sizes: dict[str, int] = {}
    for spec in model.input_specs:
        for axis in set(spec.dynamic_axes.values()) - {BATCH}:
            grown = spec.example_dims[axis] + OTHER_AXIS_GROWTH
            sizes[axis] = min(grown, spec.max_dims.get(axis, grown))
    return {a: n for a, n in sizes.items()
            if any(s.example_dims.get(a) not in (None, n) for s in model.input_specs)}


def reference_sets(model: ExportModel, batches: Sequence[int], seed: int, photos: bool,
                   samples: Mapping[str, np.ndarray] | None = None) -> list[ParityInputs]:
    """Seeded random inputs at each batch size (and at other sizes of the other named axes), real photos
    where the model takes images, and the user's ``samples``."""
    input_sets = [(f"random b={b}", random_inputs(model.input_specs, b, seed=seed + b)) for b in batches]
    other = other_axis_sizes(model)
    if other:
        batch = min(max(batches), 2)
        label = " ".join(f"{a}={n}" for a, n in sorted(other.items()))
        input_sets.append((f"random b={batch} {label}", random_inputs(model.input_specs, batch, seed=seed, dims=other)))
    photo_set = photo_inputs(model.input_specs, seed, preprocess=model.preprocess) if photos else None
    if photo_set is not None:
        input_sets.append((f"photos b={len(next(iter(photo_set.values())))}", photo_set))
    if samples:
        input_sets.append((f"samples b={len(next(iter(samples.values())))}", dict(samples)))
    return [ParityInputs(label, arrays, model.forward_arrays(arrays)) for label, arrays in input_sets]


def labelled_sets(model: ExportModel, labelled: LabelledImages, seed: int) -> list[ParityInputs]:
    """One set of ``LABELLED_POOL`` labelled images (a seeded draw across all classes; fewer when the folder
    has fewer), chunked at the profile max like any large batch, so the file runs at the max and at the odd
    remainder; other inputs get seeded data. One pooled set, not one per batch size: a one-image set turns
    the cosine into a per-image statistic that one ambiguous digit decides."""
    chosen = np.random.default_rng(seed).permutation(len(labelled))[:LABELLED_POOL]
    arrays = photo_inputs(model.input_specs, seed, [labelled.files[i] for i in chosen], model.preprocess)
    if arrays is None:
        raise OptionError("the model takes no image input: labelled images cannot be its inputs")
    return [ParityInputs(f"labelled b={len(chosen)}", arrays, model.forward_arrays(arrays))]


def input_independent_outputs(sets: Sequence[ParityInputs], max_spread: float = 1e-6) -> list[str]:
    """Outputs whose reference is the same for every sample of every input set (within ``max_spread`` of their
    largest magnitude): parity on them compares constants and cannot tell a wrong graph from a right one (a
    zero-initialised head at random init). Samples are compared within sets of one per-sample shape."""
    constant = []
    for name in dict.fromkeys(n for s in sets for n in s.reference):
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
        for s in sets:
            ref = s.reference.get(name)
            if ref is not None and ref.ndim:
                by_shape.setdefault(ref.shape[1:], []).append(ref.astype(np.float64))
        groups = [np.concatenate(refs) for refs in by_shape.values()]
        if not groups or sum(len(g) for g in groups) < 2:
            continue
        scale = max(max(float(np.abs(g).max()) if g.size else 0.0 for g in groups), 1e-12)
        if all(float(np.abs(g - g[:1]).max()) <= max_spread * scale for g in groups if g.size):
            constant.append(name)
    return constant


_ENGINE_NOISE = re.compile(r"/onnxruntime_src/\S+:\d+ |onnxruntime::[\w:]+\([^)]*\)\s*(const\s*)?|"
                           r"\[ONNXRuntimeError\] : \d+ : \w+ : ")


def engine_message(exc: BaseException, arrays: Mapping[str, np.ndarray] | None = None) -> str:
    """An engine's exception in one line (300 characters, source paths and C++ signatures dropped, so the node
    and the shapes fit), with the input sizes it ran on."""
    text = _ENGINE_NOISE.sub("", " ".join(str(exc).split()))  # onnxruntime's message spans several lines
    sizes = "; inputs " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) if arrays else ""
    return f"{type(exc).__name__}: {text[:300] or type(exc).__name__}{sizes}"


def check_parity(candidate: Runtime, sets: Sequence[ParityInputs], tolerance: Tolerance) -> ParityReport:
    """Compare ``candidate`` (an opened runtime) with the PyTorch reference on every input set. An engine that
    raises on a set gives failed rows carrying its message (a parity failure, exit 3), never a traceback."""
    return compare_runs(f"{candidate.label}-{candidate.device}:{candidate.path.name}", candidate, sets, tolerance)


def compare_runs(label: str, run: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
                 sets: Sequence[ParityInputs], tolerance: Tolerance) -> ParityReport:
    """``run`` (numpy inputs by name → outputs by name: a runtime, or a simulation of a file not yet written)
    against the references on every input set, as :func:`check_parity`."""
    report = ParityReport(candidate=label, tolerance=tolerance)
    for inputs in sets:
        try:
            outputs = run(inputs.arrays)
        except InputSpecError:
            raise  # our own input checks: a bug in the reference sets, not the file
        except Exception as exc:  # onnxruntime, OpenVINO, ExecuTorch and TensorRT raise their own types
            report.add_error(inputs.label, inputs.reference, engine_message(exc, inputs.arrays))
            continue
        report.add(inputs.label, inputs.reference, outputs)
    return report


def unopenable_report(path: Path, engine: str, exc: BaseException, sets: Sequence[ParityInputs],
                      tolerance: Tolerance) -> ParityReport:
    """A file one of our stages wrote that ``engine`` refuses to open: a failed check (the stage widens further
    or fails), not a corrupt-file error: the engine's own reason, without the runtime's advice to re-export."""
    report = ParityReport(candidate=f"{engine}:{path.name}", tolerance=tolerance)
    reason = exc.reason if isinstance(exc, UnreadableArtifactError) else engine_message(exc)
    message = f"{engine} cannot open the file: {reason}"
    for inputs in sets[:1]:
        report.add_error(inputs.label, inputs.reference, message)
    return report


def candidate_device(engine: str) -> str:
    """The device files are checked on: CUDA where onnxruntime can use it and ``engine`` runs there, else the
    engine's own (``runtimes.selection.default_device``)."""
    return default_device(engine, prefer_cuda=cuda_usable())


def open_candidate(path: Path, engine: str, precision: str | None = None) -> Runtime:
    """``path`` opened with ``engine`` at ``precision`` on ``candidate_device(engine)``."""
    return runtimes.load(path, engine=engine, device=candidate_device(engine), precision=precision)


def check_file_parity(path: Path, engine: str, sets: Sequence[ParityInputs], tolerance: Tolerance,
                      precision: str | None = None) -> ParityReport:
    """Open ``path`` (``open_candidate``) and check it against the references."""
    with open_candidate(path, engine, precision) as candidate:
        return check_parity(candidate, sets, tolerance)
