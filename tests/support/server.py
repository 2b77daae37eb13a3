"""Starting the real registry process on 127.0.0.1 for tests, on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

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
    """A `registry serve` process; `.url` is its base URL, `.store` its store root."""

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
        self.process = subprocess.Popen(
            [str(executable), "serve", "--store", str(self.store), "--port", str(self.port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            env=environment if environment is not None else {**os.environ, **(env or {})})
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/v2/", timeout=1)  # any answer: it serves (an Index answers 404)
                return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"registry did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The master and its workers."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [self.process.pid] + [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
