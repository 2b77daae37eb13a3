"""Shared fixtures: one real registry process for the session (seeded with the sample store)."""

from __future__ import annotations

import pytest

from tests.support.oci import Client, unique_name
from tests.support.server import RunningRegistry


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A registry started the way `make run` starts it: a new store seeded from sample_store/."""
    server = RunningRegistry(tmp_path_factory.mktemp("registry") / "store")
    yield server
    server.stop()


@pytest.fixture
def client(registry) -> Client:
    return Client(registry.url)


@pytest.fixture
def name() -> str:
    """A repository name no other test uses."""
    return unique_name()
