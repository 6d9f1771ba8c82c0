"""Small JSON caches in the user's cache folder: what is measured once per machine (GEMM ceilings, ``engine="auto"``
choices) and must never be written inside a verified artifact folder.

The folder is ``$ATTN_EXPORT_CACHE``, else ``$XDG_CACHE_HOME/attn-export``, else ``~/.cache/attn-export``. A cache
that cannot be read is treated as empty, one that cannot be written is skipped: a cache only saves time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runtimes.fileio import write_json


def cache_dir() -> Path:
    """Where the caches live (see the module docstring)."""
    if os.environ.get("ATTN_EXPORT_CACHE"):
        return Path(os.environ["ATTN_EXPORT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attn-export"


def read(name: str) -> dict[str, Any]:
    """Cache ``name`` (``{key: entry}``), empty when missing or unreadable."""
    try:
        data = json.loads((cache_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store(name: str, key: str, entry: Any) -> None:
    """Put ``entry`` under ``key`` in cache ``name`` (atomically; skipped when the folder is not writable)."""
    data = read(name)
    data[key] = entry
    try:
        write_json(cache_dir() / f"{name}.json", data)
    except OSError:
        pass
