# kaptain-warden — every target installs what it needs (a .venv, the control-plane binaries).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets and what they do
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the project with its test extras

.PHONY: assets
assets: ## Build (once, cached per version) kube-apiserver, kube-controller-manager, kubectl, etcd, helm
	hack/test-assets

.PHONY: sdk-envs
sdk-envs: ## Build (once, cached) the virtualenvs of the Kubeflow SDKs tier 3 drives as clients
	hack/sdk-envs

.PHONY: run
run: $(STAMP) ## The embedded default: local control plane + admission server, stamped objects to look at
	$(BIN)/kaptain-warden up

.PHONY: generate
generate: $(STAMP) ## Write the generated files: chart tables, built-in rules, schema, values table, kinds and upstream docs
	$(BIN)/python -m kaptain_warden.install.generated
	hack/upstream-table --write

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-linter layer contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The oldest and newest supported Kubernetes minors (newest patches whose every module the Go
# module proxy serves). Tier 3 runs whole on the newest; on the oldest, the tests of what the
# product asks of the API server: admission webhooks and parent lookups, every sweeper test
# (metadata-only lists, field selectors, deletes with preconditions, events.k8s.io/v1 Events,
# Lease leader election, status subresources), every family of kinds with its upstream CRDs,
# the real SDKs and kubectl, the chart installed and its RBAC proven per ServiceAccount, and
# the harness itself (Job status and the controllers the tests use differ by version). Left to
# the newest: tiers 1, 2 and 4 (no API server), certificate bootstrap and rotation and
# `kaptain-warden up` (the warden's own TLS and processes, the same on any version), the real
# controllers (Knative Serving's refuses an API server older than 1.33), and what later files
# add unless they are listed here.
K8S_NEWEST := 1.34.4
K8S_OLDEST := 1.30.14
OLDEST_TESTS := tests/e2e/test_controlplane.py tests/e2e/test_admission_e2e.py \
	tests/e2e/test_hostile_admission.py tests/e2e/test_parent_owner_resolver.py \
	$(wildcard tests/e2e/test_sweeper_*.py) tests/e2e/test_outage_backfill.py \
	tests/e2e/test_chart_install.py tests/e2e/test_chart_rbac.py tests/e2e/test_provenance.py \
	$(wildcard tests/e2e/test_family_*.py) tests/e2e/test_training_operator_kinds.py \
	tests/e2e/test_expiry_for_owners.py $(wildcard tests/e2e/test_sdk_*.py) \
	tests/e2e/test_kubectl_round_trips.py

.PHONY: test
test: $(STAMP) ## Everything: lint, tiers 1-4 on Kubernetes 1.34, then tier 3's API tests on 1.30
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-k8s K8S=$(K8S_NEWEST)
	$(MAKE) --no-print-directory test-k8s K8S=$(K8S_OLDEST) TESTS="$(OLDEST_TESTS)"

.PHONY: test-fast
test-fast: $(STAMP) ## Tiers 1 and 2 (unit, server: under a minute), few Hypothesis examples, no `slow` tests
	set -o pipefail; assets="$$(hack/test-assets | tail -n 1)" && \
	  KUBEBUILDER_ASSETS="$$assets" $(BIN)/pytest -m "not e2e and not slow" \
	    $(or $(TESTS),tests/unit tests/server)

.PHONY: test-k8s
test-k8s: $(STAMP) ## pytest (TESTS=..., default all) against Kubernetes K8S=1.x.y, built if needed
	@test -n "$(K8S)" || { echo "test-k8s: say which version, e.g. make test-k8s K8S=1.30.14" >&2; exit 2; }
	set -o pipefail; assets="$$(KW_K8S_VERSION=$(K8S) hack/test-assets | tail -n 1)" && \
	  KW_K8S_VERSION=$(K8S) KUBEBUILDER_ASSETS="$$assets" $(BIN)/pytest $(TESTS)

.PHONY: bench
bench: $(STAMP) ## Run every benchmark (rounds, ranges; about 30 min), then regenerate the Figures
	nice -n 10 $(BIN)/python bench/admission.py
	nice -n 10 $(BIN)/python bench/slow_clients.py
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" nice -n 10 $(BIN)/python bench/e2e_admission.py
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" nice -n 10 $(BIN)/python bench/sweep.py
	nice -n 10 $(BIN)/python bench/startup.py
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" nice -n 10 $(BIN)/python bench/sweep.py --objects 10000
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" nice -n 10 $(BIN)/python bench/outage.py
	$(MAKE) --no-print-directory figures

.PHONY: figures
figures: $(STAMP) ## Rewrite the README's and docs/developers/benchmarks.md's Figures from bench/results/
	$(BIN)/python bench/figures.py --write --note "$(BENCH_NOTE)"

.PHONY: clean
clean: ## Remove .venv and caches (the control-plane binary cache stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
