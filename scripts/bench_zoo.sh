#!/usr/bin/env bash
# attn-bench for every zoo model on this machine's CPU: onnxruntime FP32 against OpenVINO f32, BF16 and
# INT8 at batch 1 and 8, one JSON per model under bench/ (CPU model and ISA flags inside), all engines of a
# model timed in the same run, then the README table. Exports artifacts/MODEL with --int8 when missing; a
# model whose INT8 file fails parity (exit 3) is re-exported without it and benchmarked without INT8.
# Extra args go to every attn-bench call.
source "$(dirname "$0")/_venv.sh"
mkdir -p bench
has_int8() { python -c "import json,sys; sys.exit('onnx_int8' not in json.load(open('artifacts/$1/manifest.json'))['artifacts'])"; }
for model in $(python -c "from exporter.zoo import list_models; print(' '.join(list_models()))"); do
  [ -f "bench/$model.json" ] && continue  # resume: delete bench/MODEL.json to time it again
  if [ ! -f "artifacts/$model/manifest.json" ]; then
    attn-export "$model" --opset 17 --int8 || attn-export "$model" --opset 17 || exit $?
  fi
  engines=(--engine ort --engine openvino:fp32 --engine openvino:bf16)
  has_int8 "$model" && engines+=(--engine openvino:int8)
  attn-bench "artifacts/$model" "${engines[@]}" --batch 1,8 --warmup 2 --iters 10 --json "bench/$model.json" "$@"
done
python scripts/bench_table.py bench/*.json
