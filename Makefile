# The two commands a newcomer needs: `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up test setup install lint bench clean

up: setup
	$(BIN)/sovra up

test: setup lint
	$(BIN)/pytest

# Everything both commands need: the environment, the engine, the default model.
setup: install
	$(BIN)/sovra engines install
	$(BIN)/sovra preload

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/affinity.py

clean:
	rm -rf $(VENV) build *.egg-info
