# The two commands of the README: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make run PORT=5001` serves on another port (default: registry.yaml's, else 5000).
PORT ?=
# What pip and venv print goes here; the terminal gets one line per step (the log's end on failure).
INSTALL_LOG := $(VENV)/install.log
# System packages the test suite drives for real (skopeo, a private dockerd, podman, the
# reference registry, Chromium for the web UI's tests through Playwright, rsync for the backup
# test of docs/deploy.md). Installed with apt-get when missing.
SYSTEM_PACKAGES := git skopeo docker.io podman docker-registry chromium rsync

# $(call quietly,what it does,command): run the command with its output in INSTALL_LOG.
quietly = echo "$(1) (log: $(INSTALL_LOG))"; \
	{ $(2); } >>$(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); echo "failed: $(1); the whole output is in $(INSTALL_LOG)"; exit 1; }

.PHONY: run test system-deps clean

run: $(VENV)/.installed
	@$(BIN)/registry serve $(if $(PORT),--port $(PORT))

test: $(VENV)/.installed-test system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	@mkdir -p $(VENV) && : >$(INSTALL_LOG)
	@$(call quietly,creating $(VENV),$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); })
	@$(call quietly,upgrading pip in $(VENV),$(BIN)/pip install --upgrade pip)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	@$(call quietly,installing registry-core and its dependencies into $(VENV),$(BIN)/pip install -e .)
	@touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml tests/plugin_package/pyproject.toml
	@$(call quietly,installing registry-core and what its tests need into $(VENV),$(BIN)/pip install -e '.[test]' ./tests/plugin_package)
	@touch $@ $(VENV)/.installed

system-deps:
	@bash .ci/system-deps $(SYSTEM_PACKAGES)

clean:
	rm -rf $(VENV) registry-data build *.egg-info
