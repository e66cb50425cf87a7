# `make demo` and `make test` work on a fresh machine: each creates .venv when missing, installs, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch/torchvision pair that lies on this project's machines' disk (a CUDA build; runs on the CPU too).
# Elsewhere: make test TORCH_PIN="torch torchvision"
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.medtransfer-installed

.PHONY: setup browser demo test test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the report's browser test (playwright drives it). Needs apt-get as root; without it the
# test is skipped with the reason, and nothing else changes.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "medtransfer: Chromium not installed (needs apt-get as root); the browser test will be skipped"

demo: $(STAMP)
	$(BIN)/medtransfer bench

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q --runslow

bench: $(STAMP)
	$(BIN)/python benchmarks/extract.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
