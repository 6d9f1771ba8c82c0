"""Exporter errors; each carries the CLI exit code scripts can rely on."""
from __future__ import annotations

from runtimes.errors import AttnExportError


class ExportError(AttnExportError):
    """torch → ONNX failed, or the written file breaks a promise (opset, symbolic batch)."""

    exit_code = 4


class ParityError(AttnExportError):
    """An artifact computes something else than PyTorch beyond tolerance."""

    exit_code = 3


class EngineBuildError(AttnExportError):
    """TensorRT could not parse or build; carries every parser error."""

    exit_code = 4

    def __init__(self, message: str, parser_errors: list[str] | None = None) -> None:
        self.parser_errors = list(parser_errors or [])
        details = "".join(f"\n  - {e}" for e in self.parser_errors)
        super().__init__(message + details)


class ModelSourceError(AttnExportError):
    """MODEL, --model-arg, --input or --output cannot give a module to export (exit 2): a missing file,
    module or callable, a callable that returns no ``nn.Module``, bad syntax, names that do not match
    ``forward``, or an output count that differs from what ``forward`` returns."""

    exit_code = 2
