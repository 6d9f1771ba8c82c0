"""The one lazy import of an optional engine or tool: ``require("openvino", "engine 'openvino'", ...)``
imports it, or raises ``BackendUnavailableError`` naming what needs it and the install command. Nothing
is ever pip-installed at run time."""
from __future__ import annotations

import importlib
from types import ModuleType

from runtimes.errors import BackendUnavailableError


def install_command(extra: str, index_url: str | None = None) -> str:
    """``pip install 'attn-export[EXTRA]'`` (with NVIDIA's index where the extra's packages live there)."""
    index = f"--extra-index-url {index_url} " if index_url else ""
    return f"pip install {index}'attn-export[{extra}]'"


def require(module: str, what: str, extra: str, *, index_url: str | None = None, note: str = "") -> ModuleType:
    """``import module``, or ``BackendUnavailableError``: "WHAT: MODULE is not installed (NOTE); pip install ..."."""
    try:
        return importlib.import_module(module)
    except ImportError:
        detail = f" ({note})" if note else ""
        raise BackendUnavailableError(f"{what}: {module} is not installed{detail}; "
                                      f"{install_command(extra, index_url)}") from None
