# The two commands of the README: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# System packages the test suite drives for real (skopeo, a private dockerd, podman, the
# reference registry). Installed with apt-get when missing.
SYSTEM_PACKAGES := git skopeo docker.io podman docker-registry

.PHONY: run test system-deps clean

run: $(VENV)/.installed
	$(BIN)/registry serve

test: $(VENV)/.installed-test system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml tests/plugin_package/pyproject.toml
	$(BIN)/pip install -q -e '.[test]' ./tests/plugin_package
	touch $@ $(VENV)/.installed

system-deps:
	@bash .ci/system-deps $(SYSTEM_PACKAGES)

clean:
	rm -rf $(VENV) registry-data build *.egg-info
