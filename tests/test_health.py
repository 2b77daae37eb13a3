"""/healthz and /readyz through the real server: alive whatever the store's state, ready only while
the store can be written, meta.git read and the storage driver answers; a 503 names the failing
check and its reason without the server's paths.

The store is broken in ways the file modes cannot undo, since the tests may run as root (who
writes through any mode): the state folder replaced by a file, the branch pointing at a commit
that does not exist, the blobs folder replaced by a symbolic link to itself."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.support.server import RunningRegistry, open_config

CHECKS = ["store", "metadata", "storage"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A registry of its own, whose store these tests break (and mend) on purpose."""
    root = tmp_path_factory.mktemp("health")
    with RunningRegistry(root / "store", "--empty", "--config", open_config(root)) as running:
        yield running


def readyz(server) -> requests.Response:
    return requests.get(server.url + "/readyz", timeout=10)


def assert_not_ready(server, failing: str, reason: str) -> dict:
    r = readyz(server)
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    [error] = r.json()["errors"]
    assert error["code"] == "UNAVAILABLE"
    assert error["detail"]["failing"] == [failing]
    assert reason in error["detail"]["checks"][failing] and reason in error["message"]
    assert all(error["detail"]["checks"][name] == "ok" for name in CHECKS if name != failing)
    assert str(server.store) not in r.text and str(server.store.parent) not in r.text
    return error


@contextlib.contextmanager
def replaced_by_a_file(path: Path):
    """`path` (a folder) moved aside and a plain file put in its place, until the block ends."""
    aside = path.with_name(path.name + ".aside")
    path.mkdir(exist_ok=True)
    path.rename(aside)
    path.write_text("not a folder\n")
    try:
        yield
    finally:
        path.unlink()
        aside.rename(path)


def test_healthz_answers_ok(server):
    r = requests.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_answers_200_with_every_check_passed(server):
    r = readyz(server)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {name: "ok" for name in CHECKS}}


def test_readyz_needs_no_credentials_on_a_registry_with_accounts(secured_registry):
    for path in ("/healthz", "/readyz"):
        assert requests.get(secured_registry.url + path, timeout=10).status_code == 200


def test_readyz_is_503_naming_the_store_when_its_state_folder_cannot_be_written(server):
    with replaced_by_a_file(server.store / "state"):
        error = assert_not_ready(server, "store", "Not a directory")
        assert error["detail"]["checks"]["store"].startswith("the store's state folder cannot be written")
        health = requests.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200, "alive, though not ready"
    assert readyz(server).status_code == 200
    assert not [name for name in os.listdir(server.store / "state") if name.startswith(".ready-")]


def test_readyz_is_503_naming_the_metadata_when_the_branch_points_at_no_commit(server):
    branch = server.store / "meta.git" / "refs" / "heads" / "main"
    original = branch.read_bytes()
    replacement = branch.with_name("main.test-replacement")
    replacement.write_bytes(b"1" * 40 + b"\n")  # a well-formed id of an object meta.git does not have
    os.replace(replacement, branch)
    try:
        assert_not_ready(server, "metadata", f"meta.git cannot be read: object {'1' * 40} is missing")
    finally:
        replacement.write_bytes(original)
        os.replace(replacement, branch)
    assert readyz(server).status_code == 200


def test_readyz_is_503_naming_the_storage_driver_when_it_cannot_list_its_blobs(server):
    blobs = server.store / "blobs"
    blobs.mkdir(exist_ok=True)
    aside = blobs.with_name("blobs.aside")
    blobs.rename(aside)
    blobs.symlink_to("blobs")  # a link to itself: every lookup through it fails (ELOOP)
    try:
        assert_not_ready(server, "storage", "Too many levels of symbolic links")
    finally:
        blobs.unlink()
        aside.rename(blobs)
    assert readyz(server).status_code == 200


def test_the_probes_are_served_in_the_index_role_too(tmp_path):
    with RunningRegistry(tmp_path / "store", "--empty", "--role", "index") as index:
        assert requests.get(index.url + "/v2/", timeout=10).status_code == 404
        assert requests.get(index.url + "/healthz", timeout=10).status_code == 200
        assert requests.get(index.url + "/readyz", timeout=10).status_code == 200
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
