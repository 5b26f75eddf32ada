# Two commands for a newcomer: `make run` (demo + everything started) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: install install-dev run demo test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "ChannelHub needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3

$(RUNTIME_STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

demo: install
	$(BIN)/channelhub demo

run: demo
	$(BIN)/channelhub up

# The suite runs in TEST_WORKERS processes (pytest-xdist, a test file per worker at a time): about
# half of its time is spent waiting on servers, browsers and subprocesses, so 2 workers on 2 cores
# take roughly two thirds of the serial time. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -ra -n $(TEST_WORKERS) --dist loadfile

test-fast: install-dev
	$(BIN)/pytest -ra -n $(TEST_WORKERS) --dist loadfile -m "not slow and not browser"

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/dashboard_scale.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
