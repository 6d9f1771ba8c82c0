#!/usr/bin/env bash
# attn-bench for every zoo model on this machine: ort vs torch at batch 1 and 8, one JSON per model
# under bench/, plus the plot and the Runtime-vs-bare-onnxruntime overhead for resnet50_sa.
# Exports missing artifact folders first (attn-export defaults). Extra args go to every attn-bench call.
source "$(dirname "$0")/_venv.sh"
mkdir -p bench
for model in $(python -c "from exporter.zoo import list_models; print(' '.join(list_models()))"); do
  extra=()
  [ "$model" = resnet50_sa ] && extra=(--overhead --plot bench/resnet50_sa.png)
  attn-bench "$model" --engine ort --engine torch --batch 1,8 --warmup 2 --iters 10 \
    --json "bench/$model.json" "${extra[@]}" "$@"
done
