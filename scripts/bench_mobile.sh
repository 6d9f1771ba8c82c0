#!/usr/bin/env bash
# Phones and boards: every zoo model exported with --executorch --int8 --ort-format (1000 classes, batch
# 1:4:8, under mobile/), then scripts/bench_mobile.py's table: size, parity and p50 against onnxruntime
# FP32 for .onnx, .ort, .pte and .int8.pte, timed in one run on this CPU (JSON in mobile/bench.json).
# A model whose INT8 fails parity (exit 3, ONNX INT8 first) is re-exported without --int8: its row says so
# by having no .int8.pte. Extra args go to every attn-export call. Resumes: delete mobile/MODEL to redo it.
source "$(dirname "$0")/_venv.sh"
mkdir -p mobile
for model in $(python -c "from exporter.zoo import list_models; print(' '.join(list_models()))"); do
  [ -f "mobile/$model/manifest.json" ] && continue
  common=("$model" --batch 1:4:8 --executorch --ort-format --out mobile "$@")
  attn-export "${common[@]}" --int8 || { [ $? -eq 3 ] && attn-export "${common[@]}"; } || exit $?
done
python scripts/bench_mobile.py mobile/*/ --json mobile/bench.json
