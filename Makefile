# intccms: two commands do everything on a fresh machine.
#   make run  [CONF=demo] [ARGS="key=value ..."]   set up (first use) and run a configuration
#   make test [PYTEST_ARGS=...] [TEST_WORKERS=2]   set up, install the test services, run the suite
#   make image | facility-test | facility-down     the facility as podman containers
#   make inspect [CONF=...] [ARGS=...]             what the inputs hold, before a campaign
#   make chart-deps | manifests                    rebuild the operator chart archive; render manifests/
#   make lock                                      record the pinned runtime closure (images/constraints.txt)
# The environment is a local virtual environment (.venv), or pixi where pixi is installed
# (ENV_TOOL=pixi|venv overrides the choice).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CONF ?= demo
ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most of the suite waits on servers, containers and clusters, so
# two processes keep two cores busy; a module's tests stay in one process, in their order.
TEST_WORKERS ?= 2
# make bench: both inputs (as hard as real skims, and the generated tt); see bench_variations.py --help;
# then fixed costs per worker and scaling to 2 workers (whole jobs; bench_fixed_costs.py, bench_scaling.py)
BENCH_ARGS ?= --input both
ENV_TOOL ?= $(if $(shell command -v pixi 2>/dev/null),pixi,venv)
PIN_HASH := $(shell cat pyproject.toml images/constraints.txt | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(PIN_HASH)

# INTCCMS and PY are the two commands every target runs, in the chosen environment.
ifeq ($(ENV_TOOL),pixi)
INTCCMS := pixi run intccms
PY := pixi run python
SETUP := .pixi/.installed
else
INTCCMS := $(VENV)/bin/intccms
PY := $(VENV)/bin/python
SETUP := $(STAMP)
endif

.PHONY: lock help env run test services bench clean-outputs config bench-stats chart-deps manifests image facility-test facility-down inspect

help:
	@sed -n '2,10p' Makefile

$(STAMP): pyproject.toml images/constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]" -c images/constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

.pixi/.installed: pixi.toml pyproject.toml
	pixi install
	@mkdir -p .pixi && touch $@

env: $(SETUP)

# Record the runtime closure of the pins (images/constraints.txt) after a pin in pyproject.toml
# changes: the environment is resolved from pyproject.toml alone, then locked.
lock:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	$(VENV)/bin/python images/lock.py

run: env
	$(INTCCMS) run $(CONF) $(ARGS)

config: env
	$(INTCCMS) config $(CONF) $(ARGS)

inspect: env
	$(INTCCMS) inspect $(CONF) $(ARGS)

services:
	@for script in tests/setup/install_*.sh; do bash "$$script"; done

# The suite prints its 15 slowest tests and its wall time (set-up excluded).
test: env services
	@start=$$(date +%s); $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS); rc=$$?; \
	echo "suite wall time: $$(( $$(date +%s) - start )) s"; exit $$rc

# The Helm chart: its Dask operator dependency is a committed archive (charts/intccms/charts/),
# so `helm install intccms charts/intccms` works on a fresh clone. chart-deps rebuilds that
# archive from the pinned dask-kubernetes wheel, offline (after the pin changes; a test checks
# they agree); manifests regenerates manifests/ (a test fails when they drift from the chart).
chart-deps: env
	$(PY) charts/intccms/scripts/vendor-operator.py

manifests: env
	@bash tests/setup/install_helm.sh
	bash charts/intccms/scripts/render-manifests.sh

# The facility as real containers (podman): the project's image, and the scheduler, workers,
# Prometheus and job from the chart's and the Dask operator's own specs (docs/facility.md).
image: env
	@bash tests/setup/install_podman.sh
	$(PY) images/facility/image_build.py

facility-test: env
	@for script in tests/setup/install_podman.sh tests/setup/install_helm.sh tests/setup/install_prometheus.sh; do bash "$$script"; done
	$(PY) -m pytest -m facility tests/test_facility.py tests/test_facility_grid.py $(PYTEST_ARGS)

facility-down:
	@command -v podman >/dev/null 2>&1 || exit 0; $(PYTHON) images/facility/facility.py down

bench: env
	$(PY) benchmarks/bench_variations.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_behaviours.py
	$(PY) benchmarks/bench_fixed_costs.py
	$(PY) benchmarks/bench_scaling.py

bench-stats: env
	$(PY) benchmarks/bench_stats.py

clean-outputs:
	rm -rf outputs
