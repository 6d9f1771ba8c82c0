"""Build ARTIFACT's FP16 engine again with trtexec (same ONNX, profile, workspace), and compare its batch-32
throughput with attn-bench's trt result in BENCH_JSON. Usage: trtexec_check.py ARTIFACT BENCH_JSON LOG.
Exit 0 when our runtime reaches >= 95 % of trtexec's throughput, 1 otherwise."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from exporter.formats.trtexec import throughput_items_per_s, trtexec_command

GOAL = 0.95


def main(folder: Path, bench_json: Path, log: Path, batch: int = 32) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    argv = trtexec_command(folder / manifest["artifacts"]["onnx_fp16"], manifest["engine"], batch)
    print(" ".join(argv))
    result = subprocess.run(argv, capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    theirs = throughput_items_per_s(result.stdout, batch)
    ours = next(r["throughput"] for r in json.loads(bench_json.read_text())["results"]
                if r["engine"].startswith("trt") and r["batch"] == batch)
    print(f"{folder.name}: attn-bench trt {ours:.1f} items/s, trtexec {theirs:.1f} items/s → {ours / theirs:.1%} "
          f"(goal >= {GOAL:.0%})")
    return 0 if ours >= GOAL * theirs else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
