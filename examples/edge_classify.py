"""Edge app: classify the photos in a folder with an exported model, without torch.

    pip install "attn-export[openvino]"        # or [ort]: numpy + Pillow + one engine
    python examples/edge_classify.py artifacts/resnet50_sa --engine openvino --precision auto
    python examples/edge_classify.py artifacts/resnet50_sa --images ~/photos --top 5 --json out.json

Every image is preprocessed by ``runtimes.images`` as the model's manifest
records it (size, resize and crop, interpolation, mean and std: a timm model's
own data config, the same preprocessing the exporter's parity check used) and run one at a time, as a
camera loop would; the latency printed is that one call. Without ``--images``
the five photos bundled with ``runtimes`` are classified. Models must take a
single image input. Exit codes: 0 ok, 2 bad input (folder, model, engine).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import runtimes
from runtimes.errors import AttnExportError
from runtimes.images import image_files, is_image_input, sample_photo_files


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def classify(folder: Path, images: list[Path], engine: str, precision: str | None, top: int) -> dict[str, Any]:
    """Top-``top`` classes and the latency of one call per image."""
    with runtimes.load(folder, engine=engine, precision=precision) as rt:
        specs = rt.input_specs
        if len(specs) != 1 or not is_image_input(specs[0]):
            raise AttnExportError(f"{folder.name} takes {[s.name for s in specs]}; this example needs a model "
                                  "with one [batch, 3, H, W] image input")
        preprocess = rt.image_preprocess(specs[0])
        output = rt.outputs[0].name
        rt(preprocess(images[0])[None])  # warm-up: first-call allocations are not latency
        rows = []
        for path in images:
            pixels = preprocess(path)[None]
            start = time.perf_counter()
            logits = rt(pixels)[output][0]
            latency_ms = (time.perf_counter() - start) * 1e3
            probs = softmax(logits.astype(np.float64))
            best = np.argsort(-probs, kind="stable")[:top]
            rows.append({"image": path.name, "latency_ms": latency_ms,
                         "top": [{"class": int(c), "probability": float(probs[c])} for c in best],
                         "logits": logits.astype(float).tolist()})
        chosen = {"choice": rt.choice.to_json()} if rt.choice else {}  # engine="auto": what was measured and why
        return {"model": folder.name, "engine": rt.engine, "precision": rt.precision, **chosen, "results": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path, help="artifact folder written by attn-export")
    parser.add_argument("--images", type=Path, default=None, help="folder of photos (default: the bundled samples)")
    parser.add_argument("--engine", default="ort", choices=[*runtimes.ENGINES, "auto"],
                        help="ort or openvino (torch-free installs); executorch, torch or trt; auto: the fastest "
                             "verified artifact of the folder on this machine, measured once and cached (default ort)")
    parser.add_argument("--precision", default=None, help="fp32, bf16, int8 or auto (default: the engine's)")
    parser.add_argument("--top", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        images = image_files(args.images) if args.images else sample_photo_files()
        report = classify(args.artifact, images, args.engine, args.precision, max(1, args.top))
    except AttnExportError as exc:
        print(f"edge_classify: error: {exc}", file=sys.stderr)
        return 2
    print(f"{report['model']} on {report['engine']} ({report['precision']})"
          + (f": {report['choice']['reason']}" if "choice" in report else ""))
    for row in report["results"]:
        classes = "  ".join(f"{t['class']}:{t['probability']:.3f}" for t in row["top"])
        print(f"{row['image']:<24} {row['latency_ms']:8.2f} ms  {classes}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
