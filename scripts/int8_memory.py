"""Peak memory of the INT8 quantization of one exported ONNX file, alone in this process: the numbers behind
``exporter.formats.int8.INT8_WEIGHT_COPIES`` (ModelOpt) and ``exporter.formats.int8_ort.WEIGHT_COPIES``
(onnxruntime's quantize_static) (docs/coverage.md, "Models over 2 GB").

    python scripts/int8_memory.py artifacts/MODEL [--samples 8] [--tool ModelOpt|onnxruntime]

Prints one JSON line: the file's weights and per-sample activations (MB), this process's resident memory
before the call and its peak during it (MB), and the peak above the start as a multiple of the weights once
the activation term the estimate uses (per sample × ``ORT_OVERHEAD``) is taken off.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

from exporter import onnx_files
from exporter.formats import activation_memory
from exporter.formats.int8 import MODELOPT, ONNXRUNTIME, WIDENING_STEPS, calibration_data, quantize
from runtimes import manifest as mf


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an attn-export folder holding model.onnx")
    parser.add_argument("--samples", type=int, default=8, help="calibration samples (attn-export's --calib-size)")
    parser.add_argument("--tool", choices=[MODELOPT, ONNXRUNTIME], default=MODELOPT, help="the quantizer measured")
    args = parser.parse_args()
    manifest = mf.read_manifest(args.folder)
    specs = list(mf.input_specs(manifest))
    onnx_path = args.folder / "model.onnx"
    weights = onnx_files.total_bytes(onnx_path)
    per_sample = activation_memory.activation_bytes_per_sample(onnx_path, specs)
    calib = calibration_data(specs, seed=0, size=args.samples)
    activation_memory.return_freed_memory()
    start = rss_mb()
    with tempfile.TemporaryDirectory(dir=args.folder) as work:
        quantize(onnx_path, Path(work) / "model.int8.onnx", calib, "max", 17, WIDENING_STEPS[0],
                 external_data=bool(onnx_files.data_files(onnx_path)), tool=args.tool)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    activation_mb = per_sample * activation_memory.ORT_OVERHEAD / 2**20
    print(json.dumps({"folder": str(args.folder), "tool": args.tool, "weights_mb": round(weights / 2**20),
                      "activation_mb_per_sample": round(per_sample / 2**20, 1), "samples": args.samples,
                      "start_rss_mb": round(start), "peak_rss_mb": round(peak),
                      "weight_copies": round((peak - start - activation_mb) / (weights / 2**20), 2)}))


if __name__ == "__main__":
    main()
