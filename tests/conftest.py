"""Shared fixtures: one real registry process for the session (seeded with the sample store)."""

from __future__ import annotations

import pytest

from tests.support.oci import Client, unique_name
from tests.support.server import RunningRegistry, open_config

# moto's S3 server (one per session, started by the first test that needs it) and a bucket per test
pytest_plugins = ["tests.support.s3"]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An open registry (auth.enabled: false) on a new store seeded from sample_store/: the
    protocol tests and the real clients talk to it without credentials."""
    root = tmp_path_factory.mktemp("registry")
    server = RunningRegistry(root / "store", "--config", open_config(root))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secured_registry(tmp_path_factory):
    """A registry started the way `make run` starts it: the default configuration (accounts,
    tokens, access control) on a new store seeded from sample_store/ (demo users admin, alice, bob)."""
    server = RunningRegistry(tmp_path_factory.mktemp("secured") / "store")
    yield server
    server.stop()


@pytest.fixture
def client(registry) -> Client:
    return Client(registry.url)


@pytest.fixture
def name() -> str:
    """A repository name no other test uses."""
    return unique_name()


@pytest.fixture
def cli_isolation(tmp_path, monkeypatch):
    """For in-process CLI tests: the working directory is the test's own, no registry.yaml or
    plugins folder comes from the environment, and the OS login name (the default author of
    commits) is `operator`. Modules use it with `pytestmark = pytest.mark.usefixtures(...)`."""
    monkeypatch.chdir(tmp_path)
    for name in ("REGISTRY_CONFIG", "REGISTRY_PLUGINS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "operator")
