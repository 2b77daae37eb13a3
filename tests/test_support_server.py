"""The suite's own server starter (tests/support/server.py): a slow start is waited for, and a
start that fails leaves no process behind. A stand-in `registry` (a small Python script) plays
the slow or silent server: it listens at once but answers late, or never."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import requests

from tests.support.server import RunningRegistry

STAND_IN = f"""#!{sys.executable}
import os, socket, sys, time

port = int(sys.argv[sys.argv.index("--port") + 1])
with open(os.environ["STAND_IN_PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
silent_for = float(os.environ["STAND_IN_SILENT_FOR"])
started, held = time.monotonic(), []
while True:
    connection, _ = listener.accept()
    if time.monotonic() - started < silent_for:  # accepted, read, never answered: a read timeout
        held.append(connection)
        continue
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{{}}")
    connection.close()
"""


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "registry"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    return script


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_start_slower_than_a_request_timeout_is_waited_for(stand_in, tmp_path):
    pid_file = tmp_path / "pid"
    try:
        with RunningRegistry(tmp_path / "store", executable=stand_in, timeout=30,
                             env={"STAND_IN_PID_FILE": str(pid_file), "STAND_IN_SILENT_FOR": "2.5"}) as server:
            assert requests.get(server.url + "/v2/", timeout=5).json() == {}
        assert not alive(int(pid_file.read_text()))
    finally:
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_server_that_never_answers_is_stopped_when_the_start_gives_up(stand_in, tmp_path):
    pid_file = tmp_path / "pid"
    try:
        with pytest.raises(RuntimeError, match="did not answer within 3s"):
            RunningRegistry(tmp_path / "store", executable=stand_in, timeout=3,
                            env={"STAND_IN_PID_FILE": str(pid_file), "STAND_IN_SILENT_FOR": "3600"})
        assert pid_file.exists() and not alive(int(pid_file.read_text()))
    finally:
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
