#!/usr/bin/env bash
# attn-serve under overload (issue 32): for each MODEL (default: c2f_ca and resnet50_mhsa, 1000 classes,
# artifacts/MODEL exported when missing), attn-serve with its defaults; capacity C measured first; then over
# HTTP and gRPC an open loop at 2 x C and 0.8 x C for 60 s, and SIGTERM in the middle of a 2 x C load.
# --soak SECONDS instead: that long at 0.8 x C with a mix of good and bad requests (not part of CI).
# Every goal is printed pass/FAIL with its numbers; JSON in bench/overload_MODEL.json (bench/soak_MODEL.json).
# --engine-threads N: attn-serve's engine threads (default: every core).
#   ./scripts/bench_overload.sh [--duration 60] [--soak 600] [--engine-threads N] [MODEL...]
source "$(dirname "$0")/_venv.sh"
flags=() models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --soak|--duration|--engine-threads) flags+=("$1" "$2"); shift 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -eq 0 ] && models=(c2f_ca resnet50_mhsa)
for m in "${models[@]}"; do
  [ -f "artifacts/$m/manifest.json" ] || attn-export "$m" --opset 17 || exit $?
done
echo "==> on $(python -c 'from runtimes.machine import machine_info, machine_summary; print(machine_summary(machine_info()))'), commit $(git rev-parse --short HEAD)"
python scripts/overload_run.py "${models[@]}" "${flags[@]}"
