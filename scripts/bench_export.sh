#!/usr/bin/env bash
# Every zoo model exported as a user would (attn-export all --opset 17 --fp16: 1000 classes, batch 1:8:32,
# parity at batches 1, 2, 7, 32 and on the bundled photos), then the docs' two export tables from the
# manifests (FP32 parity and timings; what FP16 kept in FP32 and why). OUT (default bench-export/) holds
# ~6 GB of artifacts. Exits non-zero when any model fails.
source "$(dirname "$0")/_venv.sh"
out="${OUT:-bench-export}"
attn-export all --opset 17 --fp16 --out "$out" "$@"
python scripts/export_table.py "$out"
