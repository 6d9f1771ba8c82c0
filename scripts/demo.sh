#!/usr/bin/env bash
# Create .venv if needed, install, then run the main job: export vgg16_cross at opset 17,
# verify it against onnxruntime (parity table on stderr), and write artifacts/vgg16_cross/.
source "$(dirname "$0")/_venv.sh"
attn-export --list
exec attn-export vgg16_cross --opset 17 "$@"
