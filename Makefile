# The two commands a newcomer needs: `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up test setup install lint bench bench-gateway bench-codex bench-router bench-lifecycle bench-autoscaling bench-fleet train-router clean

up: setup
	$(BIN)/sovra up

test: setup lint
	$(BIN)/pytest --cov --cov-report=term

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
	$(BIN)/python bench/router.py

bench-router: install
	$(BIN)/python bench/router.py

# Loading on demand (cold vs warm, Sovra's overhead), memory predicted vs measured, the scaler's reaction.
bench-lifecycle: setup
	$(BIN)/python bench/lifecycle.py

# Three gateways behind HAProxy, one PostgreSQL ledger, one Redis, under faults (root: namespaces).
bench-fleet: setup
	$(BIN)/python bench/fleet.py $(BENCH_ARGS)

# The KEDA triggers replayed on bursty traces (docs/autoscaling.md): no engine, about 10 s.
bench-autoscaling: install
	$(BIN)/python bench/autoscaling.py --seeds 5

# The router's classifiers, from ../shared/datasets/router (deterministic: same data, same files).
ROUTER_DATA ?= ../shared/datasets/router
train-router: install
	$(BIN)/sovra router train --data $(ROUTER_DATA)

# The gateway against nginx directly and LiteLLM proxy: needs nginx and wrk (Debian) and LiteLLM in a
# virtualenv of its own; installed here if missing (apt-get needs root). BEFORE=<commit> also measures
# the gateway at that commit in the same run (e.g. `make bench-gateway BEFORE=655474a`).
BEFORE ?=
bench-gateway: install
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update && apt-get install -y nginx-light)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	test -x .bench/litellm/bin/litellm || ($(PYTHON) -m venv .bench/litellm && .bench/litellm/bin/pip install 'litellm[proxy]==1.108.0')
	$(if $(BEFORE),rm -rf .bench/before && mkdir -p .bench/before && git archive $(BEFORE) src | tar -x -C .bench/before)
	$(BIN)/python bench/gateway.py $(if $(BEFORE),--before .bench/before/src) $(BENCH_ARGS)

# The real Codex CLI (npm, installed into .bench/codex) through /v1/responses: a scripted upstream
# with one tool round trip, then SmolLM2's too-small context window.
bench-codex: setup
	$(BIN)/python bench/codex.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
