"""A worker killed in the middle of an upload loses nothing that was stored, and the session goes on.

The registry's own processes are killed with SIGKILL (no clean-up runs), as a crash or an OOM kill
would; gunicorn starts new workers, and the client resumes from the offset the server reports.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.support.oci import Client, start_upload, unique_name
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
