#!/usr/bin/env bash
# Every registered model (zoo and plugins) through the dynamo exporter at opset 18 (10 classes, batch
# 1:2:4): what the test suite proves on one model per family, for the whole zoo. Exits non-zero when any
# model fails (attn-export all reports each failure and exits with the worst code). Extra args go to
# attn-export, e.g. --opset 17.
source "$(dirname "$0")/_venv.sh"
exec attn-export all --opset 18 --num-classes 10 --batch 1:2:4 --no-photos --out "${OUT:-sweep}" "$@"
