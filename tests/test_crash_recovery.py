"""A worker killed in the middle of an upload loses nothing that was stored, and the session goes on;
a writer killed while it moved the metadata's branch does not stop the pushes after it.

The registry's own processes are killed with SIGKILL (no clean-up runs), as a crash or an OOM kill
would; gunicorn starts new workers, and the client resumes from the offset the server reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.support.oci import OCI_MANIFEST, Client, start_upload, unique_name
from tests.support.server import RunningRegistry, open_config


@pytest.fixture
def server(tmp_path):
    registry = RunningRegistry(tmp_path / "store", "--empty", "--config", open_config(tmp_path))
    yield registry
    registry.stop()


def workers(server) -> list[int]:
    return server.pids()[1:]


def wait_for_new_workers(server, old: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = workers(server)
        if current and not set(current) & set(old):
            return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not replace its workers: {workers(server)}")


def test_upload_survives_workers_killed_mid_chunk(server):
    client, name = Client(server.url), unique_name()
    location = start_upload(client, name)
    data = os.urandom(3 * 1024 * 1024)
    first = data[:1024 * 1024]
    assert client.patch(location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"}).status_code == 202

    # A second chunk announced whole but only half sent, then every worker is killed mid-request.
    parts = urlsplit(location)
    half = data[len(first):len(first) + 512 * 1024]
    head = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Range: {len(first)}-{2 * 1024 * 1024 - 1}\r\nContent-Length: {1024 * 1024}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head + half)
        time.sleep(0.5)  # the worker has appended what it received so far
        old = workers(server)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
    wait_for_new_workers(server, old)

    # The session is still there; whatever reached the disk is kept and the client resumes from it.
    status = client.get(location)
    assert status.status_code == 204
    offset = int(status.headers["Range"].split("-")[1]) + 1
    assert len(first) <= offset <= len(first) + len(half)
    rest = data[offset:]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    finished = client.put(location, params={"digest": digest}, data=rest,
                          headers={"Content-Range": f"{offset}-{len(data) - 1}"})
    assert finished.status_code == 201, finished.text
    assert client.get(f"/v2/{name}/blobs/{digest}").content == data


def test_a_blob_is_never_visible_half_written(server):
    """Nothing in blobs/ is partial after a crash: content arrives there only by rename of a
    verified upload, so every file under blobs/ matches its name."""
    client, name = Client(server.url), unique_name()
    for _ in range(3):
        client.push_blob(name, os.urandom(256 * 1024))
    old = workers(server)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_for_new_workers(server, old)
    blobs = [p for p in (server.store / "blobs").rglob("*") if p.is_file()]
    assert blobs
    for blob in blobs:
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == f"{blob.parent.parent.name}:{blob.name}"


def put_until_not_busy(client: Client, path: str, body: bytes):
    """PUT, and again after Retry-After while the server answers 503 (as clients do), a few times."""
    for _ in range(5):
        answer = client.put(path, data=body, headers={"Content-Type": OCI_MANIFEST})
        if answer.status_code != 503:
            return answer
        assert answer.json()["errors"][0]["code"] == "UNAVAILABLE"
        time.sleep(int(answer.headers["Retry-After"]))
    return answer


def packs_written(store) -> set[str]:
    pack_dir = store / "meta.git" / "objects" / "pack"
    return {p.name for p in [*pack_dir.glob("pack-*.pack"), *pack_dir.glob("retired/pack-*.pack")]}


@pytest.mark.parametrize("left_by", ["touch", "a copy of the branch file"])
def test_a_branch_lock_left_by_a_crashed_writer_does_not_stop_pushes(server, left_by):
    client, name = Client(server.url), unique_name()
    client.push_image(name, "before")
    heads = server.store / "meta.git" / "refs" / "heads"
    if left_by == "touch":
        (heads / "main.lock").touch()
    else:
        (heads / "main.lock").write_bytes((heads / "main").read_bytes())
    packs_before = packs_written(server.store)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "left_by": left_by}).encode()
    config_digest = client.push_blob(name, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
        "size": len(config)}}).encode()

    pushed = put_until_not_busy(client, f"/v2/{name}/manifests/after", manifest)

    assert pushed.status_code == 201, pushed.text
    assert client.get(f"/v2/{name}/manifests/after", headers={"Accept": OCI_MANIFEST}).content == manifest
    assert not (heads / "main.lock").exists()
    # The commit's pack, and at most one pack merging the small ones: not a pack per retry.
    assert len(packs_written(server.store) - packs_before) <= 2
    assert "left by a writer that stopped midway" in server.log()
