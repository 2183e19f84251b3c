#!/usr/bin/env bash
# Prints the path of a portable llama-cpp-python wheel, building it first if this machine has none yet.
# scripts/install.sh installs it before the project (so `make install`, CI, the wheel test and both images get
# it), and scripts/venv_pipecat.sh does the same.
#
#   bash scripts/llama_cpp_wheel.sh PYTHON
#
# Why: llama-cpp-python ships as source only, and pip's default build compiles llama.cpp with -march=native
# (GGML_NATIVE). Such a wheel runs only on CPUs like the build machine's (SIGILL elsewhere: an image built on
# one host, a shared pip cache) and, on Intel CPUs with AMX (Sapphire Rapids and later), turns on llama.cpp's
# AMX path, whose Q4_K matmul segfaults on the first token (llama.cpp#20824). This build targets x86-64 with
# AVX2/FMA/F16C (Intel Haswell, AMD Zen and every later CPU) without AVX-512 or AMX: measured no slower for the
# packaged models on an AVX-512 CPU (README, "The language model's build").
#
# pip's wheel cache is keyed by the source archive alone, not by CMAKE_ARGS, so it could hand back a native
# build made earlier: the wheel is built with --no-cache-dir into a directory of its own, named after the
# version and the exact build settings. VOICE_LLAMA_CMAKE_ARGS replaces the settings (e.g. a CUDA build of
# your own); VOICE_WHEEL_CACHE moves the directory. Two installs at once on one machine (a CI clone beside a
# checkout) build it once: the second waits for the first and takes its wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${1:?usage: llama_cpp_wheel.sh PYTHON}
VERSION=0.3.36 # the pin in pyproject.toml's `embedded` extra (tests/unit/test_packaging.py checks both agree)
PORTABLE="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
PORTABLE+=" -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
PORTABLE+=" -DLLAVA_BUILD=OFF" # the multimodal library: the app never loads it
cmake_args=${VOICE_LLAMA_CMAKE_ARGS:-$PORTABLE}

key=$(printf '%s' "$VERSION $(uname -m) $cmake_args" | sha256sum | cut -c1-12)
dir="${VOICE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/voice-orchestrator/wheels}/llama-cpp-python-$VERSION-$key"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
if command -v flock >/dev/null; then
    flock 9 # held until this script exits
fi
wheel=$(compgen -G "$dir/llama_cpp_python-$VERSION-*.whl" | head -n 1 || true)
if [[ -z "$wheel" ]]; then
    echo "llama_cpp_wheel.sh: compiling llama-cpp-python $VERSION ($cmake_args), ≈ 5 min on 2 cores" >&2
    tmp=$(mktemp -d "$dir.tmp.XXXXXX") && chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$py" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$tmp" "llama-cpp-python==$VERSION" >&2
    printf '%s\n' "$cmake_args" >"$tmp/CMAKE_ARGS"
    rm -rf "$dir" && mv "$tmp" "$dir" # whole or not at all: an interrupted build leaves no wheel behind
    wheel=$(compgen -G "$dir/llama_cpp_python-$VERSION-*.whl" | head -n 1)
fi
[[ -f "$wheel" ]] || { echo "llama_cpp_wheel.sh: no wheel in $dir" >&2; exit 1; }
echo "$wheel"
