"""Typed errors for the whole project; each message names the problem and the fix."""
from __future__ import annotations


class AttnExportError(Exception):
    """Base class: every error the tools raise on purpose (CLIs print it as one line)."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first non-empty line, at most ``limit`` characters, or its type name when it says
    nothing: the one line an error message quotes from a library."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class UnknownModelError(AttnExportError, KeyError):
    """A model name that the zoo does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class OptionError(AttnExportError, ValueError):
    """An option value that no engine/precision/setting accepts (exit 2)."""


class WeightsError(AttnExportError):
    """Weights that cannot be found offline or do not fit the model."""


class InputSpecError(AttnExportError, ValueError):
    """An input whose name, shape or dtype does not match the runtime's spec."""


class ArtifactError(AttnExportError):
    """A missing, corrupt or incompatible artifact (manifest, ONNX, .pt2, engine)."""


class UnreadableArtifactError(ArtifactError):
    """A file an engine refuses to load; ``reason`` is the engine's own line, without our advice to re-export
    (which is wrong for a file that an export stage has just written)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BackendUnavailableError(AttnExportError):
    """An optional backend (TensorRT, CUDA) that is not installed or has no device."""


class RuntimeClosedError(AttnExportError, RuntimeError):
    """A call on a runtime after ``close()``."""
