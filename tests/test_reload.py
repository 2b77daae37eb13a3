"""A changed registry.yaml reloads the workers (watchdog + SIGHUP); an invalid one is ignored."""

from __future__ import annotations

import os
import signal
import time

import requests
import yaml

from tests.support.oci import Client, error_codes, unique_name
from tests.support.server import RunningRegistry


def wait_until(condition, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def start_status(client, name: str) -> int | None:
    """The status of starting an upload; None when the connection was closed under it: a reload
    stops the old workers gracefully, and a keep-alive connection to one of them ends (a client
    sends the request again, as this loop does)."""
    try:
        return client.post(f"/v2/{name}/blobs/uploads/").status_code
    except requests.ConnectionError:
        return None


def test_a_changed_config_is_applied_without_a_restart_and_a_broken_one_is_ignored(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}}))
    server = RunningRegistry(tmp_path / "store", "--empty", "--config", str(config))
    try:
        client, name = Client(server.url), unique_name()
        assert client.post(f"/v2/{name}/blobs/uploads/").status_code == 202
        master = server.process.pid

        config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "readOnly": True}))
        assert wait_until(lambda: start_status(client, name) == 405)
        refused = client.post(f"/v2/{name}/blobs/uploads/")
        assert error_codes(refused) == ["UNSUPPORTED"]

        config.write_text("auth: [this is not: valid\n")
        time.sleep(2)
        assert server.process.poll() is None and server.process.pid == master
        assert client.post(f"/v2/{name}/blobs/uploads/").status_code == 405  # the last good config
        assert client.get("/v2/").status_code == 200
        assert "not reloading" in server.log()
    finally:
        print(server.log())  # shown by pytest when the test fails: what the master and workers said
        server.stop()


def test_a_worker_started_while_the_file_is_broken_serves_the_last_good_config(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "readOnly": True}))
    server = RunningRegistry(tmp_path / "store", "--empty", "--config", str(config))
    try:
        config.write_text("auth: [this is not: valid\n")
        assert wait_until(lambda: "not reloading" in server.log())
        workers = server.pids()[1:]
        os.kill(workers[0], signal.SIGKILL)  # the master starts another worker while the file is broken
        assert wait_until(lambda: set(server.pids()[1:]) - set(workers))
        assert not wait_until(lambda: server.process.poll() is not None, timeout=5)  # it booted
        session = requests.Session()
        session.headers["Connection"] = "close"  # a connection a request: both workers answer
        client, name = Client(server.url, session), unique_name()
        assert {client.post(f"/v2/{name}/blobs/uploads/").status_code for _ in range(12)} == {405}
    finally:
        print(server.log())
        server.stop()
