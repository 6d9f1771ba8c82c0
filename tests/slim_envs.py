"""Fresh, torch-free virtual environments made from this checkout: one per engine extra,
created once per test session (pip's cache keeps the second run quick)."""
from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).parents[1]
_ENVS: dict[str, Path] = {}


def slim_python(extra: str, root: Path) -> Path:
    """The python of a venv under ``root`` holding ``pip install '.[extra]'`` from the checkout."""
    if extra not in _ENVS:
        env = root / f"slim-{extra}"
        venv.create(env, with_pip=True, clear=True)
        python = env / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-c", str(ROOT / "constraints.txt"), f"{ROOT}[{extra}]"], check=True,
                       capture_output=True, text=True)
        _ENVS[extra] = python
    return _ENVS[extra]


def installed_mb(python: Path) -> float:
    """Size of the environment's site-packages in MB (what an edge device would ship)."""
    site = next((python.parents[1] / "lib").glob("python3*/site-packages"))
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6


def full_env_mb() -> float:
    return installed_mb(Path(sys.executable))
