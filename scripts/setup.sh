#!/usr/bin/env bash
# Creates .venv and installs dnnbench into it: PyTorch first (pinned, so pip takes the wheels this
# machine serves from disk instead of downloading a CUDA build), then the package and its extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
.venv/bin/pip install --quiet -e ".${extras}"
