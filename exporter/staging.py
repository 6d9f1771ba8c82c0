"""Folder-level atomicity: an export is built in a staging folder beside its target and swapped in
only when it has fully passed, so the previous good artifact stays loadable (and byte-identical)
until then.

    OUT/.MODEL.staging-XXXX/   the export being built (removed on Ctrl-C/SIGTERM)
    OUT/MODEL/                 the published folder: replaced only by a passed export
    OUT/MODEL.failed/          a failed export, kept for inspection, when MODEL/ holds a good one
    OUT/.MODEL.old-XXXX/       the previous folder for the instant of the swap

The next export of MODEL removes staging and old folders that a killed run left behind (and puts
an old folder back when a kill hit between the two renames of a swap).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from runtimes import manifest as mf
from runtimes.fileio import UMASK


def _hidden(out: Path, label: str, kind: str) -> list[Path]:
    return sorted(out.glob(f".{label}.{kind}-*"))


def clean_stale(out: Path, label: str) -> list[Path]:
    """Remove what killed exports of ``label`` left in ``out``; returns what was removed."""
    target = out / label
    old = _hidden(out, label, "old")
    if old and not target.exists():
        os.replace(old.pop(), target)  # killed between the two renames of a swap: restore
    removed = _hidden(out, label, "staging") + old
    removed += sorted(target.glob(".*.tmp*")) if target.is_dir() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return removed


def make_staging(out: Path, label: str) -> Path:
    """A fresh staging folder for ``label`` inside ``out`` (same filesystem, so the swap is a rename)."""
    return Path(tempfile.mkdtemp(prefix=f".{label}.staging-", dir=out))


def _holds_good_export(folder: Path) -> bool:
    try:
        return json.loads(mf.manifest_path(folder).read_text()).get("status") == mf.STATUS_OK
    except (OSError, ValueError):
        return False


def _swap(staging: Path, target: Path) -> None:
    os.chmod(staging, 0o777 & ~UMASK)  # mkdtemp makes 0700; the published folder follows the umask
    if target.exists():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def publish(staging: Path, target: Path) -> None:
    """Swap a passed export in at ``target``."""
    _swap(staging, target)


def publish_failed(staging: Path, target: Path) -> Path:
    """Keep a failed export for inspection without touching a good one; returns where it went."""
    if _holds_good_export(target):
        failed = target.with_name(target.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        _swap(staging, failed)
        return failed
    _swap(staging, target)
    return target


def discard(staging: Path) -> None:
    """Drop an interrupted export: nothing published changes."""
    shutil.rmtree(staging, ignore_errors=True)
