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
# The report's browser test drives Debian's Chromium (Playwright's own browsers would be a download).
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the browser test needs Chromium: sudo apt-get install chromium" >&2
  fi
fi
