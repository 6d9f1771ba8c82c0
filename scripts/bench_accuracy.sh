#!/usr/bin/env bash
# What FP16, INT8 and BF16 cost a trained network (docs/benchmarks.md): each MODEL (default: the six of that
# table) trained on the digits (scripts/train_digits.py: STEPS=300, BF16 autocast), exported with --fp16
# --int8 --openvino --eval on its 360 held-out digits (batch 1:4:8), scored by attn-bench --data on ORT
# FP32/FP16/INT8 and OpenVINO INT8/BF16, then scripts/accuracy_table.py prints the table from the manifests
# and bench JSON. Everything lives under runs/MODEL/; a finished step is skipped (delete runs/MODEL to redo).
# An export that misses a goal (exit 3) keeps its failed manifest, and the table says which goal.
source "$(dirname "$0")/_venv.sh"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(c2f_ca resnet50_axial resnet50_kv resnet50_mhsa resnet50_sa vgg16_msa)
for model in "${models[@]}"; do
  run="runs/$model"
  case "$model" in  # the training arguments each model reached >= 95 % held-out with:
    c2f_ca) train=(--lr 3e-3) ;;  # learns slowly at 1e-3
    vgg16_msa) train=(--lr 1e-4) ;;  # VGG16 has no batch norm
    resnet50_kv) train=(--lr 1e-3 --zero-init-residual) ;;  # else its attention starts one-hot: 70 % after 400 steps
    *) train=(--lr 1e-3) ;;  # the ResNet-50s' loss rose at 3e-3
  esac
  [ -f "$run/weights.pt" ] || python scripts/train_digits.py "$model" --out "$run" --steps "${STEPS:-300}" \
      "${train[@]}" --bf16-autocast
  if [ ! -f "$run/artifacts/$model/manifest.json" ]; then
    attn-export "$model" --num-classes 10 --weights "$run/weights.pt" --batch 1:4:8 --calib "$run/digits/train" \
      --eval "$run/digits/val" --fp16 --int8 --openvino --max-accuracy-drop 1 --out "$run/artifacts" \
      || [ $? -eq 3 ] || exit $?
  fi
  [ -f "$run/bench.json" ] || [ "$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" \
      "$run/artifacts/$model/manifest.json")" != ok ] || attn-bench "$run/artifacts/$model" --engine ort \
      --engine ort:fp16 --engine ort:int8 --engine openvino:int8 --engine openvino:bf16 --batch 32 --iters 2 \
      --data "$run/digits/val" --json "$run/bench.json"
done
python scripts/accuracy_table.py "${models[@]}"
