"""Exporter errors; each carries the CLI exit code scripts can rely on and a failure class that the manifest,
the coverage sweep and the console report (``failure_class``)."""
from __future__ import annotations

from runtimes.errors import AttnExportError, first_line

FAILURE_CLASSES = ("exporter", "baked size", "unsupported operator", "parity", "tool crash", "timeout", "memory",
                   "format limit", "model source")


class ExportError(AttnExportError):
    """torch → ONNX failed, or the written file breaks a promise (opset, symbolic batch)."""

    exit_code = 4
    failure_class = "exporter"

    def __init__(self, message: str, failure_class: str | None = None) -> None:
        super().__init__(message)
        if failure_class is not None:
            self.failure_class = failure_class


class ToolCrashError(ExportError):
    """A third-party stage (onnxslim, ModelOpt, OpenVINO, ExecuTorch, onnxruntime's .ort converter) raised
    something that is not one of our errors: reported as that stage failing, in one line."""

    failure_class = "tool crash"


UNSUPPORTED_PHRASES = ("not implemented", "not supported", "does not support", "no decomposition", "no conversion rule",
                       "unsupported operator", "could not find an implementation")


def tool_failure(what: str, exc: BaseException) -> ToolCrashError:
    """A third-party tool's exception as ``what failed: Type: first line``: class ``unsupported operator`` where
    the tool says it has no conversion or kernel for an operator, else ``tool crash``."""
    first = first_line(exc)
    unsupported = any(phrase in first.lower() for phrase in UNSUPPORTED_PHRASES)
    return ToolCrashError(f"{what} failed: {type(exc).__name__}: {first}",
                          "unsupported operator" if unsupported else None)


class MemoryBudgetError(ExportError):
    """A stage whose estimated peak memory exceeds what this machine has: refused before the kernel kills it."""

    failure_class = "memory"


class ParityError(AttnExportError):
    """An artifact computes something else than PyTorch beyond tolerance."""

    exit_code = 3
    failure_class = "parity"


class EngineBuildError(AttnExportError):
    """TensorRT could not parse or build; carries every parser error."""

    exit_code = 4
    failure_class = "tool crash"

    def __init__(self, message: str, parser_errors: list[str] | None = None) -> None:
        self.parser_errors = list(parser_errors or [])
        details = "".join(f"\n  - {e}" for e in self.parser_errors)
        super().__init__(message + details)


class ModelSourceError(AttnExportError):
    """MODEL, --model-arg, --input or --output cannot give a module to export (exit 2): a missing file,
    module or callable, a callable that returns no ``nn.Module``, bad syntax, names that do not match
    ``forward``, or an output count that differs from what ``forward`` returns."""

    exit_code = 2
    failure_class = "model source"


def failure_class(exc: BaseException) -> str:
    """The class a failure is reported under (``FAILURE_CLASSES``); ``tool crash`` for anything foreign."""
    return str(getattr(exc, "failure_class", "tool crash"))
