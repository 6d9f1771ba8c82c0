"""Fresh, torch-free virtual environments made from this checkout: one per engine extra,
created once per test run and shared by its workers (pip's cache keeps the second run quick)."""
from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from filelock import FileLock

from .run_shared import build_once, run_dir

ROOT = Path(__file__).parents[1]
_ENVS: dict[str, Path] = {}


def slim_python(extra: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv in the run's folder holding ``pip install '.[extra]'`` from the checkout."""
    if extra not in _ENVS:
        env = run_dir(tmp_path_factory) / f"slim-{extra}"
        python = env / "bin" / "python"

        def create() -> None:
            venv.create(env, with_pip=True, clear=True)
            with FileLock(env.with_name("checkout-build.lock")):  # pip builds in the checkout's build/
                subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "-c", str(ROOT / "constraints.txt"), f"{ROOT}[{extra}]"], check=True,
                               capture_output=True, text=True)

        _ENVS[extra] = build_once(env.with_name(f"slim-{extra}.ready"), create, lambda: python)
    return _ENVS[extra]


def installed_mb(python: Path) -> float:
    """Size of the environment's site-packages in MB (what an edge device would ship)."""
    site = next((python.parents[1] / "lib").glob("python3*/site-packages"))
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6


def full_env_mb() -> float:
    return installed_mb(Path(sys.executable))
