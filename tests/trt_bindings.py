"""TensorRT's real Python bindings, importable on a machine without a GPU or libnvinfer.

The binding wheels (``tensorrt-cu13-bindings`` 11.x, ``tensorrt-cu12-bindings`` 10.x) have no
dependencies; only the native ``libnv*`` libraries are missing. We give the extension module stub
libraries under every ``libnv*`` name it needs, exporting each undefined TensorRT symbol as a
function that aborts. Then ``import tensorrt_bindings`` exposes the real classes, enums, methods and
docstrings of that version; ``trt.Builder(...)`` would abort, pure-interface trampolines such as
``IProgressMonitor`` work. Prepared once per virtual environment under ``.venv/trt-bindings/``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .run_shared import build_once

ROOT = Path(__file__).parents[1]
CACHE = Path(sys.prefix) / "trt-bindings"
PROBE = Path(__file__).parent / "trt_probe.py"
# The versions checked: TensorRT 11 (current), 10.16 (current 10.x), 10.3 (JetPack 6 on Jetson).
VERSIONS = {
    "11.4.0.106": "tensorrt-cu13-bindings==11.4.0.106",
    "10.16.1.11": "tensorrt-cu12-bindings==10.16.1.11",
    "10.3.0": "tensorrt-cu12-bindings==10.3.0",
}
NOT_TENSORRT = ("Py", "_Py", "__gmon", "_ITM", "__cxa", "_Jv", "dl", "pthread", "__pthread")


def _undefined_symbols(library: Path) -> list[str]:
    """Unversioned undefined symbols of ``library`` that TensorRT's libraries would provide."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(library)], check=True, capture_output=True,
                         text=True).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if "@" not in n and not n.startswith(NOT_TENSORRT))


def _needed_nv_libraries(library: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(library)], check=True, capture_output=True, text=True).stdout
    return sorted({line.split("[")[1].rstrip("]") for line in out.splitlines()
                   if "(NEEDED)" in line and "[libnv" in line})


def _build_stubs(binding: Path, stubs: Path) -> None:
    stubs.mkdir(parents=True, exist_ok=True)
    source = stubs / "stub.c"
    source.write_text("#include <stdlib.h>\n" + "".join(
        f"void {name}(void) {{ abort(); }}\n" for name in _undefined_symbols(binding)))
    for soname in _needed_nv_libraries(binding):
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(stubs / soname), str(source)],
                       check=True, capture_output=True)


def prepare(version: str) -> Path:
    """The folder holding ``tensorrt_bindings`` of ``version`` and its ``stubs/`` (made once per venv, by one
    test worker at a time)."""
    target = CACHE / version

    def fetch() -> None:
        shutil.rmtree(target, ignore_errors=True)  # a half-made folder of an interrupted run
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--disable-pip-version-check", "-d", tmp, VERSIONS[version]], check=True,
                           capture_output=True, text=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(target)
        _build_stubs(next(target.glob("tensorrt_bindings/tensorrt*.so")), target / "stubs")

    CACHE.mkdir(exist_ok=True)
    return build_once(CACHE / f"{version}.ready", fetch, lambda: target)


def probe(version: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run ``tests/trt_probe.py`` against the real bindings of ``version``; returns its JSON answer."""
    folder = prepare(version)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
           "LD_LIBRARY_PATH": str(folder / "stubs")}
    result = subprocess.run([sys.executable, str(PROBE)], input=json.dumps(request), capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"probe for TensorRT {version} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)
