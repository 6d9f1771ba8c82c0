"""Where onnxruntime spends a model's time at batch 1, by operator type and in the attention blocks: the
cost of an attention that no fusion matches (docs/benchmarks.md, "Fused attention on onnxruntime").

onnxruntime's own profiler (SessionOptions.enable_profiling) times every kernel over RUNS calls after a
warm-up. An attention block is a module scope of the graph's node names (``/backbone/layer1/self_attention``)
that holds a Softmax: every kernel under such a scope counts as attention. Prints one markdown row per
folder.

Usage: python scripts/op_profile.py ARTIFACT_DIR... [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort

from runtimes import manifest as mf
from runtimes.specs import random_inputs



def attention_scopes(path: Path) -> tuple[str, ...]:
    """Module scopes (node-name prefixes) that hold a Softmax."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return tuple(sorted({n.name.rsplit("/", 1)[0] + "/" for n in graph.node if n.op_type == "Softmax"}))


def profile(folder: Path, runs: int) -> dict:
    manifest = mf.read_manifest(folder)
    path = mf.artifact(folder, manifest, "onnx")
    feeds = random_inputs(list(mf.input_specs(manifest)), 1, seed=0)
    scopes = attention_scopes(path)
    with tempfile.TemporaryDirectory() as work:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: Counter[str] = Counter()
    attention_us = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        by_op[event["args"]["op_name"]] += event["dur"]
        attention_us += event["dur"] if event["name"].startswith(scopes) and scopes else 0
    total = sum(by_op.values())
    return {"model": manifest["model"], "ms_per_image": total / 1e3 / (runs + 1),
            "attention_ms": attention_us / 1e3 / (runs + 1), "attention_share": attention_us / total,
            "top_ops": {op: us / total for op, us in by_op.most_common(5)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print("| model | kernel ms / image (batch 1) | attention blocks ms (share) | top operators (share of kernel time) |")
    print("|---|---:|---:|---|")
    for folder in args.folders:
        p = profile(folder, args.runs)
        ops = ", ".join(f"{op} {100 * share:.0f}%" for op, share in p["top_ops"].items())
        print(f"| {p['model']} | {p['ms_per_image']:.2f} | {p['attention_ms']:.2f} ({100 * p['attention_share']:.0f}%) "
              f"| {ops} |")


if __name__ == "__main__":
    main()
