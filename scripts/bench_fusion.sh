#!/usr/bin/env bash
# Fused attention on onnxruntime (issue 31): each MODEL (default: the four attention models the issue names)
# exported with --ort-fusion (1000 classes, batch 1:8:8, random weights) under runs-fusion/, then
# scripts/fusion_table.py prints what each fuser matched, its parity and its one-run A/B at batch 1, and
# scripts/op_profile.py where onnxruntime spends the time of model.onnx (the attention blocks' share).
# A finished export is kept (delete runs-fusion/MODEL to redo).
source "$(dirname "$0")/_venv.sh"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(resnet50_sa resnet50_mhsa vgg16_cross transformer_encoder)
folders=()
for model in "${models[@]}"; do
  out="runs-fusion/$model"
  [ -f "$out/$model/manifest.json" ] || attn-export "$model" --ort-fusion --batch 1:8:8 --no-photos --out "$out" \
      || exit $?
  folders+=("$out/$model")
done
echo "==> on $(python -c 'from runtimes.machine import machine_info, machine_summary; print(machine_summary(machine_info()))'), commit $(git rev-parse --short HEAD)"
python scripts/fusion_table.py "${folders[@]}"
echo
python scripts/op_profile.py "${folders[@]}"
