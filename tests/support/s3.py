"""A real S3 endpoint for tests: moto's server (`moto_server`, from the `moto[server]` test extra)
on 127.0.0.1, one process per test session, and a fresh bucket for each test that asks.

Where moto is not installed the S3 tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto_executable() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


class MotoServer:
    """A `moto_server` process on a free port of 127.0.0.1; `.endpoint` is its URL. With `tls`
    (certificate and key files, tls_certificate() makes them) it speaks https: whoever talks to
    it trusts the certificate through AWS_CA_BUNDLE (botocore) or `verify=` (requests)."""

    def __init__(self, log: Path, env: dict | None = None, tls: tuple[Path, Path] | None = None):
        executable = moto_executable()
        if executable is None:
            message = "moto_server is not installed (pip install -e '.[test]' brings moto[server])"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify = str(tls[0]) if tls else True
        tls_arguments = ["-c", str(tls[0]), "-k", str(tls[1])] if tls else []
        self._log = open(log, "wb")
        self.process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(self.port), *tls_arguments],
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: see {log}")
            try:
                requests.get(self.endpoint + "/moto-api/", timeout=1, verify=self.verify)
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer in 30 s: see {log}")
                time.sleep(0.1)

    def client(self, **credentials):
        import boto3
        from botocore.config import Config
        keys = {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"], **credentials}
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", verify=self.verify,
                            config=Config(s3={"addressing_style": "path"}), **keys)

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl), in `directory`."""
    certificate, key = directory / "moto-cert.pem", directory / "moto-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(certificate), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return certificate, key


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server) -> str:
    return moto_server.new_bucket()


@pytest.fixture
def aws_credentials(monkeypatch):
    """The standard AWS variables, set to what moto accepts, for this process and its children."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
