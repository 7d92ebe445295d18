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
[ "${1:-}" = "--test" ] && extras="[test]"  # the test extra brings every backend: onnx, openvino, quant
# The extras must never replace PyTorch: pip resolves them against the installed torch and
# torchvision, pinned, and fails rather than fetch another build if a package asks for one.
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
.venv/bin/python - >"$pins" <<'PY'
from importlib.metadata import version
for name in ("torch", "torchvision"):
    print(f"{name}=={version(name).split('+')[0]}")
PY
.venv/bin/pip install --quiet -c "$pins" -e ".${extras}"
# The report's browser test drives Debian's Chromium (Playwright's own browsers would be a download).
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the browser test needs Chromium: sudo apt-get install chromium" >&2
  fi
fi
