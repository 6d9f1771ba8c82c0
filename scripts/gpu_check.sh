#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and TensorRT 10/11: install the trt extra, export every zoo
# model with --fp16 --engine trt (engine parity checked by attn-export), then time all engines.
# Output: artifacts-gpu/ and gpu_bench/*.json|png; one table per model on stdout.
source "$(dirname "$0")/_venv.sh"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv
python -m pip install --quiet -c constraints.txt --extra-index-url https://pypi.nvidia.com -e ".[trt]"
python -c "import tensorrt, torch; print('TensorRT', tensorrt.__version__, 'CUDA', torch.cuda.is_available())"
mkdir -p gpu_bench
status=0
for model in $(python -c "from exporter.zoo import list_models; print(' '.join(list_models()))"); do
  attn-export "$model" --opset 17 --fp16 --engine trt --out artifacts-gpu --timing-cache artifacts-gpu/timing.cache || { status=$?; continue; }
  attn-bench "artifacts-gpu/$model" --engine trt --engine ort --engine torch --device cuda --batch 1,8,32 \
    --json "gpu_bench/$model.json" --plot "gpu_bench/$model.png" || status=$?
done
python -m pytest -m "trt or gpu" -q
exit $status
