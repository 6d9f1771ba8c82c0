"""Engine × precision → artifact: the one table that decides which file runs.

``runtimes.load``, ``attn-bench``, the export pipeline and the serving tools all
read this table; a new engine, precision or artifact is one row here (plus the
backend file), never an ``if engine == ...`` elsewhere.

Precisions are named ``fp32``, ``fp16``, ``bf16``, ``int8`` (``f32`` is
accepted for ``fp32``) plus ``auto``, which the backend resolves to the best
precision it can run on this machine (OpenVINO: BF16 where the CPU reports it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from runtimes.errors import ArtifactError, OptionError

ENGINES = ("ort", "torch", "openvino", "trt", "executorch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
AUTO = "auto"
_ALIASES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "i8": "int8"}


@dataclass(frozen=True)
class Choice:
    """What ``engine`` at ``precision`` runs: the first manifest artifact of ``artifacts`` present, which
    ``attn-export`` writes when given ``export_flags``, verified by the manifest's parity row ``parity``
    (``None``: PyTorch's own program, the reference itself; ``engine="auto"`` takes only verified rows)."""

    engine: str
    precision: str
    artifacts: tuple[str, ...]
    export_flags: str = ""
    parity: str | None = ""


_TABLE: tuple[Choice, ...] = (
    Choice("ort", "fp32", ("onnx_fused", "onnx"), parity="onnx"),  # fused only when it passed and was faster
    Choice("ort", "fp16", ("onnx_fp16",), "--fp16", "onnx_fp16"),
    Choice("ort", "int8", ("onnx_int8",), "--int8", "onnx_int8"),  # the INT8 correctness reference
    Choice("torch", "fp32", ("torch",), parity=None),
    Choice("openvino", "fp32", ("openvino", "onnx"), "--openvino", "openvino"),
    Choice("openvino", "bf16", ("openvino", "onnx"), "--openvino", "openvino_bf16"),  # the IR, BF16 hint
    Choice("openvino", "int8", ("onnx_int8",), "--int8", "onnx_int8"),  # the Q/DQ file, checked on onnxruntime
    Choice("trt", "fp16", ("engine",), "--engine trt", "engine"),
    Choice("trt", "int8", ("engine_int8",), "--int8 --engine trt", "engine_int8"),
    Choice("executorch", "fp32", ("executorch",), "--executorch", "executorch"),  # XNNPACK .pte (phones, boards)
    Choice("executorch", "int8", ("executorch_int8",), "--executorch --int8", "executorch_int8"),  # PT2E .int8.pte
)
TABLE: Mapping[tuple[str, str], Choice] = {(c.engine, c.precision): c for c in _TABLE}
DEFAULT_PRECISION: Mapping[str, str] = {"ort": "fp32", "torch": "fp32", "openvino": "fp32", "trt": "fp16",
                                        "executorch": "fp32"}
# engine → "module:Runtime class", one module per engine in runtimes/engines/, imported on first use
# (runtimes.backend)
BACKENDS: Mapping[str, str] = {"ort": "runtimes.engines.ort_rt:OrtRuntime",
                               "torch": "runtimes.engines.torch_rt:TorchRuntime",
                               "openvino": "runtimes.engines.openvino_rt:OpenVinoRuntime",
                               "trt": "runtimes.engines.trt_rt:TrtRuntime",
                               "executorch": "runtimes.engines.executorch_rt:ExecutorchRuntime"}
# engine → the devices it runs on, its default first (runtimes.load's device=None takes the default)
DEVICES: Mapping[str, tuple[str, ...]] = {"ort": ("cpu", "cuda"), "torch": ("cpu", "cuda"), "openvino": ("cpu",),
                                          "trt": ("cuda",), "executorch": ("cpu",)}
# A single file given to runtimes.load: its suffix picks the engines that can open it.
SUFFIX_ENGINES: Mapping[str, tuple[str, ...]] = {
    ".onnx": ("ort", "openvino"), ".ort": ("ort",), ".xml": ("openvino",), ".pt2": ("torch",), ".engine": ("trt",), ".plan": ("trt",),
    ".pte": ("executorch",),
}


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise OptionError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def default_device(engine: str, prefer_cuda: bool = False) -> str:
    """The device ``engine`` runs on: CUDA when ``prefer_cuda`` and the engine has it, else its default."""
    devices = DEVICES[check_engine(engine)]
    return "cuda" if prefer_cuda and "cuda" in devices else devices[0]


def normalise_precision(precision: str | None, engine: str) -> str:
    """``None`` → the engine's default; aliases folded; ``auto`` kept for the backend to resolve."""
    if precision is None:
        return DEFAULT_PRECISION[check_engine(engine)]
    name = _ALIASES.get(precision.lower(), precision.lower())
    if name != AUTO and (engine, name) not in TABLE:
        offered = sorted(p for (e, p) in TABLE if e == engine) + [AUTO]
        raise OptionError(f"engine {engine!r} has no precision {precision!r}; choose one of {offered}")
    return name


def canonical_precision(precision: str | None) -> str:
    """Any engine's precision name: ``None`` → ``auto``, aliases folded, an unknown name refused."""
    if precision is None:
        return AUTO
    name = _ALIASES.get(precision.lower(), precision.lower())
    if name != AUTO and name not in PRECISIONS:
        raise OptionError(f"precision must be one of {list(PRECISIONS) + [AUTO]}, got {precision!r}")
    return name


def precisions(engine: str) -> tuple[str, ...]:
    """Precisions ``engine`` can run (table order)."""
    return tuple(c.precision for c in _TABLE if c.engine == engine)


def artifact_key(manifest_artifacts: Mapping[str, str], engine: str, precision: str) -> str:
    """The manifest artifact key that ``engine`` at (resolved) ``precision`` opens."""
    choice = TABLE[(engine, precision)]
    for key in choice.artifacts:
        if manifest_artifacts.get(key):
            return key
    raise ArtifactError(f"no {choice.artifacts[0]!r} artifact for engine {engine!r} at {precision}; "
                        f"re-export with attn-export {choice.export_flags}".rstrip())


def parse_engine_spec(spec: str, default_precision: str | None = None) -> tuple[str, str]:
    """``"openvino:bf16"`` → ("openvino", "bf16"); ``"ort"`` → ("ort", default or the engine's default);
    ``"auto"`` → ("auto", "auto")."""
    engine, _, precision = spec.partition(":")
    if engine == AUTO:  # the fastest verified artifact (runtimes.auto_select); a precision filters the candidates
        return AUTO, canonical_precision(precision or default_precision)
    return check_engine(engine), normalise_precision(precision or default_precision, engine)
