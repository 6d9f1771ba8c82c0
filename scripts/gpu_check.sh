#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and TensorRT 10/11: install the trt extra, export every zoo model with
# --fp16 --int8 --engine trt (engine parity checked by attn-export), time all engines, cross-check each
# FP16 engine against NVIDIA's trtexec built from the same ONNX and profile (goal: our runtime >= 95 % of
# trtexec's throughput at batch 32), and run the GPU-marked tests.
# Output: artifacts-gpu/, gpu_bench/*.json|png and gpu_bench/trtexec_*.log; one table per model on stdout.
source "$(dirname "$0")/_venv.sh"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv
python -m pip install --quiet -c constraints.txt --extra-index-url https://pypi.nvidia.com -e ".[trt]"
python -c "import tensorrt, torch; print('TensorRT', tensorrt.__version__, 'CUDA', torch.cuda.is_available())"
mkdir -p gpu_bench
status=0
for model in $(python -c "from exporter.zoo import list_models; print(' '.join(list_models()))"); do
  attn-export "$model" --opset 17 --fp16 --int8 --engine trt --out artifacts-gpu --timing-cache artifacts-gpu/timing.cache \
    || attn-export "$model" --opset 17 --fp16 --engine trt --out artifacts-gpu --timing-cache artifacts-gpu/timing.cache \
    || { status=$?; continue; }
  attn-bench "artifacts-gpu/$model" --engine trt --engine ort --engine torch --device cuda --batch 1,8,32 \
    --json "gpu_bench/$model.json" --plot "gpu_bench/$model.png" || status=$?
  python scripts/trtexec_check.py "artifacts-gpu/$model" "gpu_bench/$model.json" "gpu_bench/trtexec_$model.log" \
    || status=$?
done
python -m pytest -m "trt or gpu" -q
exit $status
