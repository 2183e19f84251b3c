#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install the GPU profile into a fresh venv, serve it, run a Japanese and an
# English dialogue and /status, then stage latencies, time to first audio (streaming) and throughput at 1, 8 and
# 32 concurrent clients. Prints the numbers.
#   bash bench/gpu_check.sh            (needs network for pip and the first model downloads)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PORT=${PORT:-8000}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[gpu,embedded,dev]'

"$VENV/bin/serve" run cluster/serve_config.gpu.yaml > serve-gpu.log 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
started=$(date +%s)
until curl -sf "http://127.0.0.1:$PORT/api/orchestrator/status" > /dev/null; do
  sleep 5
  kill -0 $SERVE_PID || { tail -50 serve-gpu.log; exit 1; }
done
echo "ready after $(( $(date +%s) - started )) s (model downloads and loads included)"
curl -s "http://127.0.0.1:$PORT/api/orchestrator/status"; echo

"$VENV/bin/python" - "$PORT" <<'PY'
import sys, time, httpx
from urllib.parse import unquote
from bench.clips import english_clip, japanese_clip
url = f"http://127.0.0.1:{sys.argv[1]}/api/orchestrator/dialogue"
for name, clip in (("ja", japanese_clip()), ("en", english_clip())):
    started = time.perf_counter()
    r = httpx.post(url, files={"audio": ("q.wav", clip)}, timeout=120)
    h = r.headers
    print(f"{name}: {r.status_code} in {1000 * (time.perf_counter() - started):.0f} ms  "
          f"stt={h.get('X-Processing-Time-STT')} llm={h.get('X-Processing-Time-LLM')} tts={h.get('X-Processing-Time-TTS')}  "
          f"heard={unquote(h.get('X-Input-Text', ''))!r} said={unquote(h.get('X-Output-Text', ''))!r}")
PY

"$VENV/bin/python" -m bench.bench_dialogue --url "http://127.0.0.1:$PORT" --requests 10
"$VENV/bin/python" -m bench.bench_stream --url "http://127.0.0.1:$PORT" --requests 10   # time to first audio
"$VENV/bin/python" -m bench.bench_overload --url "http://127.0.0.1:$PORT" --limit 32 --sweep 1 8 32 \
  --step-seconds 30 --soak-seconds 60
