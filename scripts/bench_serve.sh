#!/usr/bin/env bash
# attn-serve against in-process attn-bench on one artifact (default artifacts/resnet50_sa, exported when
# missing): in-process onnxruntime at batch 1 and 8, then the same folder served by attn-serve (one
# replica, dynamic batching up to 32 requests within 10 ms) and loaded over HTTP and gRPC at concurrency
# 1, 8, 32. Output: bench/serve_inprocess.json, bench/serve_http.json, bench/serve_grpc.json; tables on stdout.
source "$(dirname "$0")/_venv.sh"
model="${1:-resnet50_sa}"
mkdir -p bench
[ -f "artifacts/$model/manifest.json" ] || attn-export "$model" --opset 17 || exit $?
attn-bench "artifacts/$model" --engine ort --batch 1,8 --warmup 2 --iters 10 --json bench/serve_inprocess.json
port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
attn-serve "artifacts/$model" --replicas 1 --max-batch 32 --batch-wait-ms 10 --http-port "$port" \
  --grpc-port $((port + 1)) > bench/serve.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' EXIT
for _ in $(seq 180); do curl -sf "http://127.0.0.1:$port/v2/models/$model/ready" > /dev/null && break; sleep 1; done
attn-bench "$model" --url "http://127.0.0.1:$port" --concurrency 1,8,32 --iters 8 --json bench/serve_http.json
attn-bench "$model" --url "http://127.0.0.1:$((port + 1))" --protocol grpc --concurrency 1,8,32 --iters 8 \
  --json bench/serve_grpc.json
