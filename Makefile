# kaptain-warden — every target installs what it needs (a .venv, the control-plane binaries).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets and what they do
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

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

.PHONY: run
run: $(STAMP) ## The embedded default: local control plane + admission server, stamped objects to look at
	$(BIN)/kaptain-warden up

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-linter layer contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: test
test: $(STAMP) ## Everything: lint, then tiers 1-4 (unit, server, real control plane, chart)
	$(MAKE) --no-print-directory lint
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" $(BIN)/pytest

.PHONY: bench
bench: $(STAMP) ## Print the benchmark figures (admission server, end-to-end admission, sweep)
	$(BIN)/python bench/admission.py
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" $(BIN)/python bench/e2e_admission.py
	KUBEBUILDER_ASSETS="$$(hack/test-assets | tail -n 1)" $(BIN)/python bench/sweep.py

.PHONY: clean
clean: ## Remove .venv and caches (the control-plane binary cache stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
