# intccms: two commands do everything on a fresh machine.
#   make run  [CONF=demo] [ARGS="key=value ..."]   set up (first use) and run a configuration
#   make test [PYTEST_ARGS=...]                    set up, install the test services, run the suite
# The environment is a local virtual environment (.venv), or pixi where pixi is installed
# (ENV_TOOL=pixi|venv overrides the choice).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CONF ?= demo
ARGS ?=
PYTEST_ARGS ?=
ENV_TOOL ?= $(if $(shell command -v pixi 2>/dev/null),pixi,venv)
PIN_HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP := $(VENV)/.installed-$(PIN_HASH)

ifeq ($(ENV_TOOL),pixi)
RUN := pixi run
SETUP := .pixi/.installed
else
RUN := $(VENV)/bin/
SETUP := $(STAMP)
endif

.PHONY: help env run test services bench clean-outputs config

help:
	@sed -n '2,6p' Makefile

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

.pixi/.installed: pixi.toml pyproject.toml
	pixi install
	@mkdir -p .pixi && touch $@

env: $(SETUP)

run: env
	$(RUN)intccms run $(CONF) $(ARGS)

config: env
	$(RUN)intccms config $(CONF) $(ARGS)

services:
	@for script in tests/setup/install_*.sh; do bash "$$script"; done

test: env services
	$(RUN)python -m pytest $(PYTEST_ARGS)

bench: env
	$(RUN)python benchmarks/bench_variations.py

clean-outputs:
	rm -rf outputs
