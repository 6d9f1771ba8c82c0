"""``Runtime``: the lifecycle and input handling every backend shares (Polygraphy-style).

Backends implement three small hooks — ``_open`` (load the artifact),
``_run`` (validated, contiguous numpy feeds → numpy outputs) and ``_close``.
Everything else lives here once: state checks, input validation, the dtype
policy, chunking above the profile max, thread safety, warm-up.

Dtype policy: an input must have the spec's dtype, or one that numpy casts to
it safely (int32 → int64, float16 → float32); a lossy cast (float64 → float32,
int64 → int32) raises ``InputSpecError`` instead of happening silently.

Value policy (the same on every engine, because it is checked here and not left
to the backend): integer inputs must lie in the spec's ``value_range`` (token
ids in [0, vocab), masks in {0, 1}); named axes other than batch must not
exceed the spec's ``max_dims`` (the encoder's ``seq`` ≤ 100). NaN/Inf in float
inputs pass through to the engine by default (checking costs a pass over the
data); ``check_finite=True`` rejects them with ``InputSpecError``.

Threads: a backend whose ``_run`` is safe to call concurrently (onnxruntime's
``InferenceSession.run``, a torch module under ``inference_mode``) declares
``concurrent = True``; for the others (TensorRT execution contexts) the base
serialises calls with a lock. Either way one ``Runtime`` may be shared by threads.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from runtimes.errors import (
    ArtifactError,
    InputSpecError,
    OptionError,
    RuntimeClosedError,
    UnreadableArtifactError,
    first_line,
)
from runtimes.images import Preprocess, image_preprocess
from runtimes.selection import AUTO, DEFAULT_PRECISION, normalise_precision
from runtimes.specs import BATCH, TensorSpec, is_default_output_name, random_inputs


@dataclass(frozen=True)
class TensorInfo:
    """Public view of a tensor: ``None`` marks a dynamic dim."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, spec: TensorSpec) -> "TensorInfo":
        return cls(spec.name, tuple(d if isinstance(d, int) else None for d in spec.shape), np.dtype(spec.dtype))


def check_values(spec: TensorSpec, value: np.ndarray, check_finite: bool) -> None:
    """The value policy: integers inside ``value_range``, and (when asked) floats finite."""
    if spec.value_range is not None and value.size and np.issubdtype(value.dtype, np.integer):
        low, high = spec.value_range
        lo, hi = int(value.min()), int(value.max())
        if lo < low or hi >= high:
            bad = lo if lo < low else hi
            allowed = "{0, 1}" if (low, high) == (0, 2) else f"[{low}, {high})"
            raise InputSpecError(f"input {spec.name!r}: value {bad} is outside {allowed}")
    if check_finite and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
        raise InputSpecError(f"input {spec.name!r}: contains NaN or Inf (check_finite=True)")


def check_specs_agree(file: str, kind: str, declared: Sequence[TensorSpec] | None,
                      found: Sequence[TensorSpec]) -> None:
    """The manifest's specs and the ones the engine read from the file must name the same tensors, with
    the same ranks and dtypes: another model's file swapped into a folder is refused at open."""
    if not declared:
        return
    if len(declared) != len(found):
        raise ArtifactError(f"{file} has {len(found)} {kind}s but the manifest declares {len(declared)}: "
                            "the file belongs to another model; re-export")
    for want, have in zip(declared, found):
        if not is_default_output_name(have.name) and want.name != have.name:
            raise ArtifactError(f"{file}: {kind} {have.name!r} where the manifest declares {want.name!r}: "
                                "the file belongs to another model; re-export")
        if len(want.shape) != len(have.shape) or want.dtype != have.dtype or any(
                isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(want.shape, have.shape)):
            raise ArtifactError(f"{file}: {kind} {want.name!r} is {have.dtype}{list(have.shape)} in the file but "
                                f"{want.dtype}{list(want.shape)} in the manifest: the file belongs to another model; "
                                "re-export")


class Runtime(ABC):
    """Serve one exported model: ``runtime({"image": array})`` → ``{"logits": array}``."""

    engine: ClassVar[str]
    concurrent: ClassVar[bool] = True

    def __init__(self, path: str | Path, *, device: str = "cpu", precision: str | None = None,
                 max_batch: int | None = None, input_specs: Sequence[TensorSpec] | None = None,
                 output_specs: Sequence[TensorSpec] | None = None, check_finite: bool = False,
                 artifact_record: Mapping[str, Any] | None = None, spin_wait: bool = True,
                 preprocess: Preprocess | None = None) -> None:
        """Record what to load; nothing heavy happens until :meth:`open` (``runtimes.load`` opens).

        ``precision`` is the resolved precision this runtime runs at (``runtimes.selection``);
        ``max_batch`` the largest batch one engine call gets (larger inputs are chunked);
        ``artifact_record`` the manifest's record of this artifact where it has one (TensorRT: the version
        and GPU that built the plan), checked by the backend at open; ``spin_wait=False`` for a process whose
        cores also do other work (a server's front): engines whose worker threads busy-wait between calls
        (onnxruntime) sleep instead; ``preprocess`` how image files become the image input (the manifest's
        record; ``runtimes.images.Preprocess.default`` when ``None``)."""
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise OptionError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        self.path = Path(path)
        self.device = device
        self.check_finite = check_finite
        self.precision = self.resolve_precision(normalise_precision(precision, self.engine))
        self.max_batch = max_batch
        self.artifact_record = artifact_record
        self.spin_wait = spin_wait
        self.recorded_preprocess = preprocess
        self._input_specs = tuple(input_specs) if input_specs else None
        self._output_specs = tuple(output_specs) if output_specs else None
        self._state = "new"
        self._lock = threading.Lock()
        self.choice: Any = None  # runtimes.auto_select.AutoChoice when engine="auto" chose this runtime

    @classmethod
    def resolve_precision(cls, precision: str, parity: Mapping[str, Any] | None = None) -> str:
        """Turn ``auto`` into a concrete precision; backends that can choose override this, reading
        the manifest's ``parity`` results where a folder gives them."""
        return DEFAULT_PRECISION[cls.engine] if precision == AUTO else precision

    @property
    def label(self) -> str:
        """``engine`` or ``engine:precision`` when that is not the engine's default (for reports)."""
        default = DEFAULT_PRECISION[self.engine]
        return self.engine if self.precision == default else f"{self.engine}:{self.precision}"

    # ----- lifecycle -------------------------------------------------------------------------
    def unreadable(self, engine_name: str, exc: BaseException, reexport: str = "attn-export") -> UnreadableArtifactError:
        """The one message for a file an engine cannot load: the engine's first line of complaint, and the fix."""
        first = first_line(exc)
        return UnreadableArtifactError(f"{engine_name} cannot load {self.path}: {first} "
                                       f"(missing, corrupt or truncated file? re-run {reexport})",
                                       reason=f"{type(exc).__name__}: {first}")

    def open(self) -> "Runtime":
        """Load the artifact (idempotent); specs not given are read from it."""
        if self._state == "closed":
            raise RuntimeClosedError(f"{self.engine} runtime for {self.path} is closed; load it again")
        if self._state == "new":
            specs = self._open()
            try:
                check_specs_agree(self.path.name, "input", self._input_specs, specs[0])
                check_specs_agree(self.path.name, "output", self._output_specs, specs[1])
            except ArtifactError:
                self._close()
                raise
            self._input_specs = self._input_specs or specs[0]
            self._output_specs = self._output_specs or specs[1]
            self._state = "open"
        return self

    def close(self) -> None:
        """Release the session/engine; later calls raise ``RuntimeClosedError``."""
        if self._state == "open":
            self._close()
        self._state = "closed"

    def __enter__(self) -> "Runtime":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """Input specs with dynamic axes named (what ``runtimes.specs.random_inputs`` takes)."""
        return self._opened_specs()[0]

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Output specs, named as the manifest (or the file) names them."""
        return self._opened_specs()[1]

    def image_preprocess(self, spec: TensorSpec) -> Preprocess:
        """How an image file becomes input ``spec`` ([batch, 3, H, W]): the model's recorded preprocessing
        where the folder has one, else the default resize to H×W (``runtimes.images.image_preprocess``)."""
        return image_preprocess(spec, self.recorded_preprocess)

    @property
    def inputs(self) -> list[TensorInfo]:
        """``input_specs`` as onnxruntime-style ``TensorInfo`` (numpy dtypes, ``None`` for dynamic dims): a
        documented alias view for code written against ``InferenceSession.get_inputs()``."""
        return [TensorInfo.of(s) for s in self._opened_specs()[0]]

    @property
    def outputs(self) -> list[TensorInfo]:
        """``output_specs`` as ``TensorInfo`` (the alias view of :attr:`inputs`)."""
        return [TensorInfo.of(s) for s in self._opened_specs()[1]]

    def _opened_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        self.open()
        assert self._input_specs is not None and self._output_specs is not None  # set by open()
        return self._input_specs, self._output_specs

    # ----- calls -----------------------------------------------------------------------------
    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """Run on numpy inputs given by name (a dict or keywords) or positionally in spec order."""
        specs, _ = self._opened_specs()  # raises RuntimeClosedError after close()
        feeds = self.validate(self._as_mapping(specs, args, kwargs))
        batched = all(s.shape and s.shape[0] == BATCH for s in specs)
        batch = feeds[specs[0].name].shape[0] if batched else 0
        if self.max_batch is None or batch <= self.max_batch:
            return self._locked_run(feeds)
        chunks = [self._locked_run({k: v[i:i + self.max_batch] for k, v in feeds.items()})
                  for i in range(0, batch, self.max_batch)]
        return {name: np.concatenate([c[name] for c in chunks], axis=0) for name in chunks[0]}

    def engine_call(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backend's own call on already valid inputs: no checks, chunking or lock. For measuring what
        the wrapper costs (``attn-bench --overhead``), never for serving."""
        return self._run(feeds)

    def warmup(self, batch: int = 1, iterations: int = 3, seed: int = 0) -> None:
        """Run ``iterations`` calls on random inputs so lazy allocations and autotuning happen now."""
        arrays = random_inputs(self.input_specs, batch, seed=seed)
        for _ in range(iterations):
            self(arrays)

    def _locked_run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.concurrent:
            return self._run(feeds)
        with self._lock:
            return self._run(feeds)

    @staticmethod
    def _as_mapping(specs: Sequence[TensorSpec], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if args and isinstance(args[0], Mapping):
            if len(args) > 1 or kwargs:
                raise InputSpecError("pass inputs either as one dict or as arrays/keywords, not both")
            return dict(args[0])
        if len(args) > len(specs):
            raise InputSpecError(f"got {len(args)} positional inputs, the model takes {len(specs)}: "
                                 f"{[s.name for s in specs]}")
        named = {s.name: a for s, a in zip(specs, args)}
        overlap = set(named) & set(kwargs)
        if overlap:
            raise InputSpecError(f"inputs {sorted(overlap)} given both positionally and by name")
        return {**named, **kwargs}

    def validate(self, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check names, dtypes (policy above), ranks, fixed dims and shared dynamic axes."""
        specs, _ = self._opened_specs()
        expected = [s.name for s in specs]
        missing = [n for n in expected if n not in given]
        unexpected = [n for n in given if n not in expected]
        if missing or unexpected:
            raise InputSpecError(f"inputs must be {expected}; missing {missing}, unexpected {unexpected}")
        feeds: dict[str, np.ndarray] = {}
        axis_sizes: dict[str, tuple[int, str]] = {}
        for spec in specs:
            value = given[spec.name]
            if not isinstance(value, np.ndarray):
                raise InputSpecError(f"input {spec.name!r} must be a numpy array, got {type(value).__name__}")
            want = np.dtype(spec.dtype)
            if value.dtype != want:
                if not np.can_cast(value.dtype, want, casting="safe"):
                    raise InputSpecError(f"input {spec.name!r}: expected dtype {want}, received {value.dtype} "
                                         f"(a lossy cast; convert with .astype({want.name!r}) if intended)")
                value = value.astype(want)
            if value.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != n for d, n in zip(spec.shape, value.shape)
            ):
                raise InputSpecError(f"input {spec.name!r}: expected shape {spec.shape}, received {value.shape}")
            for axis, name in spec.dynamic_axes.items():
                size = value.shape[axis]
                if size < 1:
                    raise InputSpecError(f"input {spec.name!r}: axis {name!r} has size 0")
                if name in spec.max_dims and size > spec.max_dims[name]:
                    raise InputSpecError(f"input {spec.name!r}: axis {name!r} is {size}, above its maximum "
                                         f"{spec.max_dims[name]}")
                first = axis_sizes.setdefault(name, (size, spec.name))
                if first[0] != size:
                    raise InputSpecError(f"axis {name!r} is {first[0]} in {first[1]!r} but {size} in {spec.name!r}")
            check_values(spec, value, self.check_finite)
            feeds[spec.name] = np.ascontiguousarray(value)
        return feeds

    # ----- backend hooks ----------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Load the artifact; return (input specs, output specs) as read from it."""

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated, contiguous feeds of at most ``max_batch`` rows."""

    @abstractmethod
    def _close(self) -> None:
        """Release what ``_open`` allocated."""
