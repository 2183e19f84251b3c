# Two entry points, each installing what it needs into .venv first:
#   make serve   -> the server on the embedded CPU default (serve run serve_config.yaml), offline
#   make test    -> ruff, mypy --strict and the whole pytest suite (unit + real Ray + real models)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint bench

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[embedded,dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/serve run serve_config.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -ra

bench: install
	$(BIN)/python -m bench.bench_dialogue --serve
