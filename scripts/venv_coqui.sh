#!/usr/bin/env bash
# Creates .venv-coqui: Coqui TTS (coqui-tts, import TTS) on torch beside the project, for the Coqui engine tests
# (tests/engines/test_coqui_engine.py). Idempotent: a second run with nothing changed does nothing.
#
#   bash scripts/venv_coqui.sh
#   .venv-coqui/bin/python -m pytest tests/engines/test_coqui_engine.py
#
# Why these versions:
#   - `import TTS` demands torch AND torchaudio, and torchcodec too from torch 2.9 on (coqui-tts's `codec`
#     extra); its VITS and XTTS modules import torchaudio at the top. A stub would not be the real thing.
#   - PyPI has no CPU torchaudio: its Linux wheels are CUDA builds. torchaudio 2.11.0 (the last release) is
#     built against torch's stable ABI (*.abi3.so) for CUDA 13 and loads beside torch 2.14.1+cu130 and runs on
#     the CPU; beside the local CPU torch 2.13.0 it fails (it links libtorch_cuda).
#   - torch==2.14.1 and its CUDA 13 libraries lie on these machines' local package index, so pip copies them
#     from disk (~1 min); elsewhere they are a ~3 GB download. The venv is ~7 GB, mostly CUDA libraries.
#   - the `ja` extra (cutlet, fugashi, unidic-lite): XTTS reads Japanese as romaji made by cutlet.
#   - six: TTS's text punctuation module imports it without declaring it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${COQUI_VENV:-.venv-coqui}
PINS=("torch==2.14.1" "torchaudio==2.11.0" "coqui-tts[codec,ja]==0.28.0" "six>=1.16")
source scripts/extra_venv.sh

# One resolution: torch pinned, so nothing can swap in another build; ray[serve]==2.60.0 and the test tools
# come with the project.
"${pip[@]}" install "${PINS[@]}" -e '.[dev]'
"${pip[@]}" check
"$VENV/bin/python" - <<'PY'
import torch
import torchaudio
from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE

import TTS
from TTS.api import TTS as _Api  # noqa: F401  (the engine's entry point)
from TTS.tts.models.vits import Vits  # noqa: F401  (imports torchaudio at the top)

assert torch.__version__.startswith("2.14.1"), torch.__version__
assert _IS_TORCHAUDIO_EXT_AVAILABLE, "torchaudio's native extension did not load beside this torch"
print(f"coqui-tts {TTS.__version__} on torch {torch.__version__}, torchaudio {torchaudio.__version__}")
PY
touch "$STAMP"
