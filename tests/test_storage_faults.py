"""A full disk: the real server on a store in a small tmpfs that the tests fill up.

Every write that fails for want of space answers 507 INSUFFICIENT_STORAGE in the spec's JSON
error shape; nothing half-written becomes visible (an upload's partial bytes are not linked or
kept, a metadata commit that failed is not on the branch); what needs no writing still works (a
failed login is 401, reads are served); and once an operator frees space, everything goes on.

Mounting a tmpfs needs root (as the developers' machines and CI run); elsewhere these tests skip,
except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Client, descriptor, error_codes, meta_tip
from tests.support.server import REGISTRY, RunningRegistry

ALICE = ("alice", "alice-demo")
DISK_SIZE = "24m"


class SmallDisk:
    """A tmpfs mounted at `path`, and a filler file that takes up its free space on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    @contextlib.contextmanager
    def full(self, leave: int = 0):
        """Fill the disk, leaving about `leave` bytes free, for the block; then free it again."""
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 4096:
                        break
                    chunk = chunk[:len(chunk) // 2]
            if leave:
                os.ftruncate(fd, os.fstat(fd).st_size - leave)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            self.filler.unlink()


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    mount_point = tmp_path_factory.mktemp("small-disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":  # CI runs as root: a full disk is tested there, never skipped
            pytest.fail(f"cannot mount a tmpfs in CI: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount_point)
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture(scope="module")
def server(small_disk, tmp_path_factory):
    """The default configuration (accounts, tokens, the demo store) with its store on the small
    disk, and its log elsewhere."""
    log = tmp_path_factory.mktemp("small-disk-log") / "server.log"
    running = RunningRegistry(small_disk.path / "store", log=log)
    yield running
    running.stop()


@pytest.fixture
def alice(server) -> Client:
    session = requests.Session()
    session.auth = ALICE
    return Client(server.url, session)


def repository() -> str:
    return f"alice/full-{os.urandom(5).hex()}"


def assert_storage_full(response: requests.Response) -> None:
    assert response.status_code == 507, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert error_codes(response) == ["INSUFFICIENT_STORAGE"]
    assert "operator must free space" in response.json()["errors"][0]["message"]


def upload_sessions(server) -> list[str]:
    uploads = server.store / "uploads"
    return sorted(os.listdir(uploads)) if uploads.exists() else []


# --- logins need no space --------------------------------------------------------------------------------


def test_a_failed_login_on_a_full_disk_is_401_and_a_right_one_still_works(server, small_disk):
    with small_disk.full():
        r = requests.get(server.url + "/v2/", auth=("alice", "not her password"))
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"], r.text
        r = requests.get(server.url + "/token?service=registry", auth=("alice", "not her password"))
        assert r.status_code == 401 and r.json()["error"] == "invalid_grant", r.text
        assert requests.get(server.url + "/v2/", auth=ALICE).status_code == 200
        r = requests.get(server.url + "/token?service=registry&scope=repository:library/hello:pull", auth=ALICE)
        assert r.status_code == 200 and r.json()["token"]
    assert "could not be recorded for the rate limit" in server.log()


def test_reads_are_served_on_a_full_disk(server, small_disk):
    with small_disk.full():
        assert requests.get(server.url + "/v2/library/hello/tags/list").json()["tags"]
        assert requests.get(server.url + "/v2/library/hello/manifests/latest",
                            headers={"Accept": OCI_MANIFEST}).status_code == 200


# --- blobs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leave", [0, 256 << 10], ids=["no-space", "space-for-part-of-it"])
def test_a_blob_push_on_a_full_disk_answers_507_and_keeps_nothing(server, small_disk, alice, leave):
    name, blob = repository(), os.urandom(1 << 20)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    before = upload_sessions(server)
    with small_disk.full(leave):
        r = alice.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=blob)
        assert_storage_full(r)
    assert alice.head(f"/v2/{name}/blobs/{digest}").status_code == 404
    assert not (server.store / "blobs" / "sha256" / digest[7:9] / digest[7:]).exists()
    assert upload_sessions(server) == before
    assert alice.push_blob(name, blob) == digest  # with space again, the same push works


def test_a_chunk_that_does_not_fit_leaves_the_upload_where_it_was_until_space_is_freed(
        server, small_disk, alice):
    name, first, second = repository(), os.urandom(1000), os.urandom(2 << 20)
    r = alice.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    location = r.headers["Location"]
    r = alice.patch(location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    with small_disk.full(leave=256 << 10):
        r = alice.patch(location, data=second,
                        headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
        assert_storage_full(r)
        assert alice.get(location).headers["Range"] == f"0-{len(first) - 1}"  # no part of the chunk kept
    r = alice.patch(location, data=second, headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
    assert r.status_code == 202, r.text
    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    r = alice.put(r.headers["Location"], params={"digest": digest})
    assert r.status_code == 201, r.text
    assert alice.get(f"/v2/{name}/blobs/{digest}").content == first + second


# --- metadata --------------------------------------------------------------------------------------------


def test_a_manifest_push_on_a_full_disk_answers_507_and_the_branch_is_unchanged(server, small_disk, alice):
    name = repository()
    alice.push_image(name, "v1")  # the repository exists; the next push only adds a manifest and a tag
    config, layer = b'{"architecture": "amd64", "os": "linux"}', os.urandom(300)
    alice.push_blob(name, config)
    alice.push_blob(name, layer)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                "layers": [descriptor(layer, OCI_LAYER)]}
    tip = meta_tip(server.store)
    with small_disk.full():
        assert_storage_full(alice.push_manifest(name, "v2", manifest))
        assert meta_tip(server.store) == tip
        assert alice.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]
    assert alice.get(f"/v2/{name}/manifests/v2").status_code == 404
    assert alice.push_manifest(name, "v2", manifest).status_code == 201
    assert alice.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1", "v2"]


def test_an_api_change_on_a_full_disk_answers_507_and_the_branch_is_unchanged(server, small_disk, alice):
    name = repository()
    alice.push_image(name, "v1")
    tip = meta_tip(server.store)
    url = f"{server.url}/api/v1/repositories/{name}"
    with small_disk.full():
        assert_storage_full(requests.patch(url, auth=ALICE, json={"description": "written on a full disk"}))
        assert_storage_full(requests.post(url + "/comments", auth=ALICE, json={"body": "hello"}))
        assert meta_tip(server.store) == tip
    assert requests.get(url, auth=ALICE).json()["description"] == ""
    assert requests.patch(url, auth=ALICE, json={"description": "written later"}).status_code == 200


def test_the_store_is_consistent_after_the_failures(server):
    result = subprocess.run([REGISTRY, "fsck", "--store", str(server.store)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="making a store another user's takes root (chown)")
def test_a_store_another_user_owns_is_refused_in_one_line_and_left_as_it_was(tmp_path):
    """git (and libgit2) refuse a repository another user owns; the store must then be neither
    re-initialised nor crashed on with a traceback."""
    store = tmp_path / "store"
    subprocess.run([REGISTRY, "init", str(store)], check=True, capture_output=True)
    meta = store / "meta.git"
    tip = subprocess.run(["git", "--git-dir", str(meta), "rev-parse", "main"], check=True, capture_output=True,
                         text=True).stdout
    subprocess.run(["chown", "-R", "54321", str(meta)], check=True)
    for command in (["user", "list"], ["fsck"], ["audit"]):
        result = subprocess.run([REGISTRY, *command, "--store", str(store)], capture_output=True, text=True)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "belongs to the user with uid 54321" in result.stderr and "safe.directory" in result.stderr
    subprocess.run(["chown", "-R", str(os.geteuid()), str(meta)], check=True)
    assert subprocess.run(["git", "--git-dir", str(meta), "rev-parse", "main"], check=True, capture_output=True,
                          text=True).stdout == tip
