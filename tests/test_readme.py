"""The README's quick start, run as written: every command of its bash blocks (the server on free ports,
waited for until ready), and its Python block, whose printed lines must equal the results its comments
promise."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT
from .serving_procs import free_port

README = ROOT / "README.md"
FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def quick_start_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block between '## Quick start' and the next '## ' heading."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return FENCE.findall(section)


def bash_script(blocks: list[tuple[str, str]], http: int, grpc: int) -> str:
    """The bash blocks as one script: the README's ports swapped for free ones, and after the backgrounded
    server a wait until its model is ready (and a trap that stops it)."""
    lines = ["set -euo pipefail"]
    for language, code in blocks:
        if language != "bash":
            continue
        code = code.replace("8000", str(http)).replace("8001", str(grpc))
        for command in code.replace("\\\n", " ").splitlines():
            command = command.split("  #", 1)[0].rstrip()
            if not command:
                continue
            lines.append(command)
            if command.endswith("&"):
                lines += ['server=$!; trap \'kill -TERM "$server"; wait "$server" || true\' EXIT',
                          f"for _ in $(seq 300); do curl -sf http://127.0.0.1:{http}/v2/models/c2f_ca/ready "
                          "> /dev/null && break; sleep 1; done"]
    return "\n".join(lines) + "\n"


def promised_prints(code: str) -> list[object]:
    """The values the block's ``print(...)`` lines promise in their trailing comments."""
    return [ast.literal_eval(line.split("#", 1)[1].strip()) for line in code.splitlines()
            if line.strip().startswith("print(") and "#" in line]


def test_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = quick_start_blocks()
    assert [language for language, _ in blocks] == ["bash", "python", "bash", "bash"]
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the README's own-model command names tests/user_models/
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    script = bash_script(blocks, free_port(), free_port())
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["c2f_ca", "mobilenet",
                                                                          "vit_tiny_patch16_224"]
    vit = json.loads((tmp_path / "artifacts" / "vit_tiny_patch16_224" / "manifest.json").read_text())
    assert vit["preprocess"]["interpolation"] == "bicubic" and vit["inputs"][0]["shape"] == ["batch", 3, 224, 224]
    assert {"model.onnx", "model.fp16.onnx", "model.xml"} <= {
        p.name for p in (tmp_path / "artifacts" / "c2f_ca").iterdir()}
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert sorted((r["engine"].split(":")[0], r["precision"], r["batch"]) for r in results) == sorted(
        (engine, precision, batch) for engine, precision in (("ort", "fp32"), ("ort", "fp16"), ("openvino", "fp32"))
        for batch in (1, 4))
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "triton-repo").iterdir()) == ["c2f_ca_fp16", "c2f_ca_onnx"]

    python = next(code for language, code in blocks if language == "python")
    ran = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    printed = [ast.literal_eval(line) for line in ran.stdout.splitlines()]
    assert printed == promised_prints(python) and printed
