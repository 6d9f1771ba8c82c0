"""The docs' fused-attention table from manifests written with --ort-fusion: per model and fuser, what it
fused, its parity and its one-run A/B speedup at batch 1 against model.onnx, and which graph engine ort runs.
Usage: python scripts/fusion_table.py ARTIFACT_DIR..."""
from __future__ import annotations

import sys
from pathlib import Path

from runtimes import manifest as mf


def main(folders: list[Path]) -> None:
    print("| model | fuser | fused (contrib operators) | parity | A/B at batch 1: model.onnx → fused ms | speedup | kept |")
    print("|---|---|---|---|---|---:|---|")
    for folder in folders:
        manifest = mf.read_manifest(folder)
        fusion = manifest["ort_fusion"]
        for fuser, attempt in fusion["tried"].items():
            fused = ", ".join(f"{op} {n}" for op, n in attempt["fused"].items()) or "nothing"
            ab = attempt.get("ab")
            timing = f"{ab['baseline_ms']:.2f} → {ab['fused_ms']:.2f}" if ab else "–"
            speedup = f"{ab['speedup']:.3f}×" if ab else "–"
            parity = {True: "pass", False: "FAIL", None: "–"}[attempt["parity"]]
            kept = "**yes**" if fusion["kept"] == fuser else f"no: {attempt.get('why', '')}"
            print(f"| {manifest['model']} | {fuser} | {fused} | {parity} | {timing} | {speedup} | {kept} |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
