# agentmedic — developer entry points.
#   make test   install everything the tests need (apt + virtualenv + the local control
#               plane's binaries), then lint and test
#   make demo   install what the demo needs, then run the embedded sandbox demo
#   make k8s    build kube-apiserver, controller-manager, scheduler, etcd and kwok (cached)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (each with its own local control
# plane); the tests mostly wait on servers, so more workers than cores pay (six kept both
# cores busy on 2026-12-03; see tests/README.md). 0: one process.
TEST_WORKERS ?= 6

.PHONY: test k8s demo deps system-deps venv lint typecheck imports crd-check unit integration chart bench crd docs clean

# AGENTMEDIC_REQUIRE_K8S=1: a test that needs the local control plane fails when its
# binaries are missing instead of skipping. --dist loadgroup keeps the tests that share a
# module's fixtures on one worker (tests/conftest.py names the groups).
test: deps k8s lint typecheck imports crd-check
	AGENTMEDIC_REQUIRE_K8S=1 $(BIN)/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

# Not a dependency of demo: on a machine without the binaries the demo runs against the
# API emulator and stays quick; with them it uses the real control plane.
demo: deps
	$(BIN)/agentmedic demo

# The first build takes 15-40 minutes (Go's module and build caches, then a cached bin
# folder outside the checkout); later runs return at once.
k8s:
	tools/k8s/build.sh

deps: system-deps venv

# Debian's prometheus (server + promtool) for the integration tests and the demo, and its
# prometheus-alertmanager (binary /usr/bin/prometheus-alertmanager) for the notify tests.
# The packaged service is disabled where systemd runs: the tests start their own servers.
system-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  echo "installing prometheus from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now prometheus || true; fi; \
	fi
	@if ! command -v prometheus-alertmanager >/dev/null; then \
	  echo "installing prometheus-alertmanager from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; \
	  if [ -d /run/systemd/system ]; then \
	    $(SUDO) systemctl disable --now prometheus-alertmanager || true; fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: venv
	$(BIN)/mypy src

imports: venv
	$(BIN)/lint-imports

# The CRD and the policy reference are generated from the API models; fail on drift.
crd-check: venv
	@$(BIN)/agentmedic crd --check crds && $(BIN)/agentmedic crd --check charts/agentmedic/crds

crd: venv
	$(BIN)/agentmedic crd --write crds
	$(BIN)/agentmedic crd --write charts/agentmedic/crds

docs: venv
	$(BIN)/agentmedic docs reference > docs/policy-reference.md
	$(BIN)/agentmedic docs budget-reference > docs/budget-reference.md
	$(BIN)/agentmedic docs configuration > docs/configuration.md

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: deps
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

bench: deps
	@for f in tests/bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
