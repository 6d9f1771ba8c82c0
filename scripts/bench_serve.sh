#!/usr/bin/env bash
# attn-serve against in-process attn-bench, for each model given (default: c2f_ca, which is overhead-bound,
# and resnet50_sa, which is compute-bound; 1000 classes; artifacts/MODEL exported when missing): in-process
# onnxruntime at batch 1 and 8, then the folder served by attn-serve with its default options and one
# replica, loaded over HTTP and gRPC at concurrency 1, 8 and 32 — in three modes: in-process (the default:
# --runner auto on one node), ray (--runner ray, Ray Serve's handle path) and ray-throughput (the same with
# RAY_SERVE_THROUGHPUT_OPTIMIZED=1) — all in one run. The server's split of each request's time (decode,
# hop, queue, engine, encode) is printed per level beside the client's latency.
# Output: bench/serve_MODEL_inprocess.json (the in-process engine) and bench/serve_MODEL_MODE_{http,grpc}.json
# per MODE; tables on stdout.
source "$(dirname "$0")/_venv.sh"
mkdir -p bench
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(c2f_ca resnet50_sa)
for m in "${models[@]}"; do
  [ -f "artifacts/$m/manifest.json" ] || attn-export "$m" --opset 17 || exit $?
  attn-bench "artifacts/$m" --engine ort --batch 1,8 --warmup 2 --iters 10 --json "bench/serve_${m}_inprocess.json"
  for mode in in-process ray ray-throughput; do
    flags=() optimised=0
    [ "$mode" != in-process ] && flags=(--runner ray)
    [ "$mode" = ray-throughput ] && optimised=1
    read -r port grpc_port < <(python -c "
import socket
held = [socket.socket() for _ in range(2)]
for s in held: s.bind(('127.0.0.1', 0))
print(*(s.getsockname()[1] for s in held))")  # two free ports (port + 1 may be Ray's)
    RAY_SERVE_THROUGHPUT_OPTIMIZED=$optimised attn-serve "artifacts/$m" "${flags[@]}" --http-port "$port" --grpc-port "$grpc_port" \
      > "bench/serve_${m}_$mode.log" 2>&1 &
    server=$!
    trap 'kill -TERM $server 2>/dev/null; wait $server' EXIT
    for _ in $(seq 180); do curl -sf "http://127.0.0.1:$port/v2/models/$m/ready" > /dev/null && break; sleep 1; done
    echo "== $m on attn-serve ($mode)"
    attn-bench "$m" --url "http://127.0.0.1:$port" --concurrency 1,8,32 --iters 16 \
      --json "bench/serve_${m}_${mode}_http.json"
    attn-bench "$m" --url "http://127.0.0.1:$grpc_port" --protocol grpc --concurrency 1,8,32 --iters 16 \
      --json "bench/serve_${m}_${mode}_grpc.json"
    kill -TERM "$server"; wait "$server" || true; trap - EXIT  # attn-serve exits 130 when stopped
  done
done
python scripts/serve_table.py "${models[@]}"
