#!/usr/bin/env bash
# engine="auto" against every single engine and precision, in one attn-bench run per model (issue 31): each
# MODEL (default: the eleven zoo models) exported with --fp16 --int8 --openvino --executorch (1000 classes,
# batch 1:8:8, INT8 parity on random weights may fail: that artifact is then not a candidate), then timed at
# batch 1 and 8 with --engine auto first and every engine:precision the folder has, then
# scripts/auto_table.py prints the table for docs/benchmarks.md: auto's choice, its speed against the fastest
# single row of the same run, and achieved GFLOP/s with % of each engine's measured GEMM ceiling. The rows are
# timed in 5 alternating rounds (attn-bench --rounds), so drift on a shared machine hits every row alike.
# Everything lives under runs-auto/MODEL/; a finished step is skipped (delete it to redo).
# --without-executorch: leave the .pte files out (their INT8 lowering of a ResNet-50 or VGG16 is the longest
# stage on a 2-core CPU); auto then chooses among the ONNX, .ort and OpenVINO artifacts.
#   ./scripts/bench_auto.sh [--without-executorch] [MODEL...]
source "$(dirname "$0")/_venv.sh"
executorch=(--executorch)
[ "${1:-}" = "--without-executorch" ] && { executorch=(); shift; }
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <(attn-export --list --json | python -c \
    "import json,sys; print('\n'.join(r['name'] for r in json.load(sys.stdin)))")
export ATTN_EXPORT_CACHE="${ATTN_EXPORT_CACHE:-runs-auto/cache}"
for model in "${models[@]}"; do
  run="runs-auto/$model"
  [ -f "$run/artifacts/$model/manifest.json" ] || attn-export "$model" --batch 1:8:8 --fp16 --int8 --openvino \
      "${executorch[@]}" --keep-going --no-photos --out "$run/artifacts" || [ $? -eq 3 ] || exit $?
  engines=(--engine auto)
  for spec in $(python -c "
import sys; from runtimes import manifest as mf; from runtimes.auto_select import verdict
from runtimes.selection import TABLE
m = mf.read_manifest(sys.argv[1])
print(' '.join(f'{c.engine}:{c.precision}' for c in TABLE.values() if c.engine != 'trt' and verdict(c, m, 1.0) is None))
" "$run/artifacts/$model"); do engines+=(--engine "$spec"); done
  [ -f "$run/bench.json" ] || attn-bench "$run/artifacts/$model" "${engines[@]}" --batch 1,8 --seconds 3 --rounds 5 \
      --json "$run/bench.json" || exit $?
done
python scripts/auto_table.py "${models[@]}"
