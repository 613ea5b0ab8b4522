# reconciler: developer and CI entry points (GNU make).
#
#   make deps    install docker.io, busybox-static (and python3-venv, iproute2) where missing, and mount
#                the cgroup v1 controllers containerd needs (scripts/ensure-cgroups); root only
#   make venv    .venv with `pip install -e .[test]`, redone when pyproject.toml changes
#   make test    deps + venv, then pytest over tests/ (real private Docker engines included)
#   make demo    deps + venv + a running system engine + the demo image, then validate/apply/get manifests/
#   make bench   deps + venv, then every tests/benchmarks/*_bench.py in turn
#   make lint    ruff over reconciler/ and tests/
#   make clean   remove .venv and caches
#
# Extra pytest arguments: make test PYTEST_ARGS='-k harness -x'. CI=true makes tests that need Docker engines
# fail instead of skipping when no engine can be started (see tests/conftest.py).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_HOST := $(or $(DOCKER_HOST),unix:///var/run/docker.sock)
.PHONY: all deps venv test demo bench lint clean

all: test

deps:
	@missing=""; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	if command -v dpkg >/dev/null 2>&1; then \
	    dpkg -s busybox-static >/dev/null 2>&1 || missing="$$missing busybox-static"; \
	elif [ ! -x /bin/busybox ]; then missing="$$missing busybox-static"; fi; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v $(PYTHON) >/dev/null 2>&1 || missing="$$missing python3"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -z "$$missing" ]; then echo "deps: all present"; exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
	    echo "deps: missing:$$missing -- as root run: apt-get install -y$$missing" >&2; exit 0; fi; \
	echo "deps: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q; \
	apt-get install -y -q $$missing
	@scripts/ensure-cgroups

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || { echo "venv: $(PYTHON) is $$($(PYTHON) -V 2>&1); reconciler needs Python 3.11+ (make PYTHON=python3.11)" >&2; exit 1; }
	[ -x $(VENV_PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -q -e '.[test]'
	touch $@

test: deps venv
	@rc=0; $(VENV)/bin/pytest tests -q --strict-markers --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; exit 1; fi; \
	exit $$rc

demo: deps venv
	scripts/ensure-engine
	scripts/build-image $(DEMO_HOST)
	DOCKER_HOST=$(DEMO_HOST) $(VENV)/bin/reconciler validate manifests/ \
	    && DOCKER_HOST=$(DEMO_HOST) $(VENV)/bin/reconciler apply manifests/ --yes \
	    && DOCKER_HOST=$(DEMO_HOST) $(VENV)/bin/reconciler get services manifests/ \
	    && DOCKER_HOST=$(DEMO_HOST) $(VENV)/bin/reconciler get tasks manifests/ \
	    && DOCKER_HOST=$(DEMO_HOST) $(VENV)/bin/reconciler get deployments web manifests/

bench: deps venv
	@shopt -s nullglob; benches=(tests/benchmarks/*_bench.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "bench: no tests/benchmarks/*_bench.py yet"; exit 0; fi; \
	for bench in "$${benches[@]}"; do \
	    echo "== $$bench"; \
	    $(VENV_PY) "$$bench" || { echo "bench: $$bench failed" >&2; exit 1; }; \
	done

lint: venv
	$(VENV)/bin/ruff check reconciler tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .bench build dist *.egg-info
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
