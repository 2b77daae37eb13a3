"""Starting the real registry process on 127.0.0.1 for tests, on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

REGISTRY = str(Path(sys.executable).with_name("registry"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_config(directory: Path) -> str:
    """A registry.yaml for an open registry (no accounts, no access control), for protocol tests."""
    path = Path(directory) / "open-registry.yaml"
    path.write_text("auth:\n  enabled: false\n")
    return str(path)


class RunningRegistry:
    """A `registry serve` process; `.url` is its base URL, `.store` its store root.

    Stopped by `stop()` (or on leaving `with`). If the start fails in any way (the process exits,
    does not answer in time, the wait itself is interrupted), the process is stopped before the
    error is raised, so no fixture leaves a server behind. It runs in a session of its own, so a
    stop that has to kill takes the gunicorn workers with their master."""

    def __init__(self, store: Path, *args: str, env: dict | None = None, log: Path | None = None,
                 executable: str = REGISTRY, cwd: Path | None = None, environment: dict | None = None,
                 timeout: float = 60):
        """`env` adds to this process's environment; `environment` replaces it (e.g. to run a
        `registry` installed in another venv, from `executable`)."""
        self.store = Path(store)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log or self.store.with_name(self.store.name + ".log")
        self._log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                [str(executable), "serve", "--store", str(self.store), "--port", str(self.port), *args],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                env=environment if environment is not None else {**os.environ, **(env or {})},
                start_new_session=True)
        except BaseException:
            self._log.close()
            raise
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> RunningRegistry:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float = 60) -> None:
        """Until the server answers anything (an Index answers 404 on /v2/). Any failure of a
        request (refused, reset, timed out while the workers start) only means not yet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/v2/", timeout=1)
                return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"registry did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The master and its workers."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [self.process.pid] + [int(p) for p in out.split()]

    def stop(self) -> None:
        """SIGTERM (gunicorn stops its workers gracefully); after 20 s, or for what outlives the
        master, SIGKILL to its whole session (its own: start_new_session)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # nothing of it is left
        self.process.wait()
        self._log.close()


def wait_until(condition, what: str, timeout: float = 30.0):
    """`condition()`'s first true answer, asked every 0.1 s; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = condition()
        if answer:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


class FromAddress(HTTPAdapter):
    """Connections from a chosen local address in 127.0.0.0/8 to the server on 127.0.0.1: a client
    of its own, for limits kept per client address (`session.mount("http://", FromAddress(a))`)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)
