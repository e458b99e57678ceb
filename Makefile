# Silvertalk: `make run` serves the whole service on embedded defaults; `make test` runs the suite.
# Each target does its own set-up on a fresh machine and is idempotent.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := models/whisper-base/model.bin

.PHONY: run test bench bench-v2v bench-floor bench-bargein bench-calls bench-rest bench-fuzz bench-load bench-endpointing bench-tier bench-soak bench-messages bench-v2v-tool lint setup models migrate clean browser run-cluster haproxy

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) $(MODEL)

$(MODEL): $(STAMP)
	$(PY) -m pipeline.engines.assemble --out models/whisper-base

models: $(MODEL)

migrate: setup
	$(PY) -m server.migrate

run: setup migrate
	$(PY) -m server

# The split service on this machine: the Ray Serve inference tier, two gateways and HAProxy on :8000.
# PostgreSQL when it answers on 127.0.0.1:5432 (else SQLite), Redis on 127.0.0.1:6379. Ctrl-C stops all.
run-cluster: setup haproxy
	$(PY) -m deploy.cluster $(CLUSTER_ARGS)

haproxy:
	@command -v haproxy >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null) || \
	  echo "Could not install HAProxy; run: apt-get install -y haproxy"

browser:
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi nanum || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null) || \
	  echo "Could not install Chromium; run: apt-get install -y chromium fonts-nanum (the browser test says so too)"

test: setup browser haproxy
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench all

# One benchmark each: make bench-v2v | bench-floor | bench-bargein | bench-calls | bench-rest | bench-fuzz
# | bench-messages | bench-endpointing | bench-tier (the inference tier asked alone, path by path)
# | bench-soak (20 minutes of calls plus warm-up; SOAK_ARGS="--minutes 3" for less)
bench-v2v bench-floor bench-bargein bench-calls bench-rest bench-fuzz bench-messages bench-endpointing bench-tier bench-soak: setup
	$(PY) -m bench $(@:bench-%=%) $(if $(filter bench-soak,$@),$(SOAK_ARGS))

# First reply audio when every answer calls one of the companion's tools (compare with bench-v2v).
bench-v2v-tool: setup
	$(PY) -m bench v2v --tool

# Voice-to-voice with 1, 6 and 16 concurrent callers, in-process and through the inference tier
# (tens of minutes; LOAD_ARGS="--callers 1,2 --turns 3" for a short run).
bench-load: setup
	$(PY) -m bench load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) models data
