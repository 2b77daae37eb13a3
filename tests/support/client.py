"""Shared pieces of the client tests (tests/test_client_*.py); no tests of its own.

- `cli(...)`: run `registry …` in-process (click's runner) with an isolated HOME and auth files.
- `distribution(...)`: CNCF Distribution 2.8 (Debian's docker-registry) on a free loopback port,
  with no auth, htpasswd (Basic) auth, or token (Bearer) auth.
- `TokenService`: a token service per the Docker token spec, just enough of one: RS256 JWTs with
  an x5c header, signed with `openssl` (the venv has no crypto library), that Distribution checks
  against the certificate in its `rootcertbundle`.
- `FaultyProxy`: a loopback TCP relay that drops one connection mid-upload, or flips one byte of a
  download, once.
- `Skopeo` (from tests/support/skopeo.py): skopeo isolated from the host's policy, registries and auth files.
- `write_layout(...)`: OCI layouts of random layers, single-image or multi-platform.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from registry_core.cli import main
from tests.support.engines import _stop_daemon, free_port, reproducible_tar, sha256_digest, wait_for_port
from tests.support.skopeo import Skopeo  # noqa: F401  (re-exported for the client tests)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
SKOPEO = shutil.which("skopeo") or "skopeo"


# --- running the CLI ------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private HOME: docker's config.json and podman's auth.json of the tests live here."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return home


def cli(*args: str, input: str | None = None, expect: int | None = 0):
    """Run `registry ARGS…`; checks the exit status unless `expect` is None. `.json` parses stdout."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, (f"registry {' '.join(map(str, args))} exited {result.exit_code}, "
                                            f"expected {expect}\n{result.output}")
    result.json = lambda: json.loads(result.stdout)
    return result


# --- Distribution 2.8 -----------------------------------------------------------------------------

def htpasswd_line(user: str, password: str) -> str:
    import bcrypt
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


@contextlib.contextmanager
def distribution(base: Path, auth: str = ""):
    """docker-registry on 127.0.0.1:<free port>; yields "127.0.0.1:<port>". `auth` is YAML under `auth:`."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = base / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: client-tests\n" + (f"auth:\n{auth}" if auth else ""))
    log_path = base / "registry.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 20)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_daemon(process, 10)


@pytest.fixture(scope="module")
def plain_distribution(tmp_path_factory):
    with distribution(tmp_path_factory.mktemp("distribution")) as host:
        yield host


# --- a token service (Docker token authentication spec) --------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """GET /token?service=…&scope=…: Basic-authenticated users get the actions they ask for,
    anonymous requests only `pull`. Records every request for the tests to count."""

    def __init__(self, directory: Path, users: dict[str, str], service: str = "client-tests",
                 issuer: str = "client-tests-issuer"):
        self.directory = directory
        self.users = users
        self.service = service
        self.issuer = issuer
        self.key = directory / "token-key.pem"
        self.cert = directory / "token-cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=client-tests-token-issuer"],
                       check=True, capture_output=True)
        pem = self.cert.read_text()
        self.x5c = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        service_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                service_self._answer(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _answer(self, handler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        user = None
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                self.requests.append({"user": name, "scopes": query.get("scope", []), "granted": False})
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if user or a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        self.requests.append({"user": user, "scopes": query.get("scope", []), "granted": True})
        token = self.sign({"iss": self.issuer, "sub": user or "", "aud": self.service,
                           "exp": int(time.time()) + 300, "nbf": int(time.time()) - 10,
                           "iat": int(time.time()), "jti": uuid.uuid4().hex, "access": access})
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def registry_auth(self) -> str:
        return (f"  token:\n    realm: {self.realm}\n    service: {self.service}\n"
                f"    issuer: {self.issuer}\n    rootcertbundle: {self.cert}\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- a proxy that misbehaves once -------------------------------------------------------------------

class FaultyProxy:
    """Relays 127.0.0.1:<port> to `target`. `drop_upload_after=N`: the first connection whose
    client has sent more than N bytes is cut (both directions), once; `drop_download_after=N`: the
    same for the server's side. `corrupt_download_at=N`: in the first server→client stream longer
    than N bytes, byte N is flipped, once. Also counts bytes sent up and concurrent connections."""

    def __init__(self, target: str, drop_upload_after: int | None = None, corrupt_download_at: int | None = None,
                 drop_download_after: int | None = None):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.drop_upload_after = drop_upload_after
        self.corrupt_download_at = corrupt_download_at
        self.drop_download_after = drop_download_after
        self.dropped = 0
        self.corrupted = 0
        self.bytes_up = 0
        self.open_connections = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            state = {"up": 0, "down": 0, "open": 2}
            with self._lock:
                self.open_connections += 1
                self.max_concurrent = max(self.max_concurrent, self.open_connections)
            threading.Thread(target=self._relay, args=(client, upstream, "up", state), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, "down", state), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, direction: str, state: dict) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    start = state[direction]
                    state[direction] += len(data)
                    if direction == "up":
                        self.bytes_up += len(data)
                        if self.drop_upload_after is not None and not self.dropped \
                                and state["up"] > self.drop_upload_after:
                            self.dropped += 1
                            sink.sendall(data[: self.drop_upload_after - start] if self.drop_upload_after > start else b"")
                            raise ConnectionAbortedError("dropped by FaultyProxy")
                    elif self.drop_download_after is not None and not self.dropped \
                            and state["down"] > self.drop_download_after:
                        self.dropped += 1
                        raise ConnectionAbortedError("dropped by FaultyProxy")
                    elif self.corrupt_download_at is not None and not self.corrupted \
                            and start <= self.corrupt_download_at < state["down"]:
                        self.corrupted += 1
                        position = self.corrupt_download_at - start
                        data = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                state["open"] -= 1
                if state["open"] == 0:
                    self.open_connections -= 1
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()


# --- images ---------------------------------------------------------------------------------------

_sha256 = sha256_digest
layer_tar = reproducible_tar


def write_layout(path: Path, tag: str = "1", platforms=("linux/amd64",), layer_sizes=(1024,),
                 index: bool | None = None) -> str:
    """An OCI layout whose `tag` is an image (one platform) or an index (several, or index=True).
    Layers are gzip tars of random files of the given sizes (gzip level 0: fast, incompressible
    content anyway). Returns the tagged digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes, media_type: str, **extra) -> dict:
        digest = _sha256(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    manifests = []
    for platform in platforms:
        os_name, arch, *variant = platform.split("/")
        layers, diff_ids = [], []
        for position, size in enumerate(layer_sizes):
            tar = layer_tar({f"{arch}-{position}.bin": os.urandom(size)})
            diff_ids.append(_sha256(tar))
            layers.append(put(gzip.compress(tar, compresslevel=0, mtime=0), OCI_LAYER_GZIP))
        config = {"architecture": arch, "os": os_name, "created": "2024-01-01T00:00:00Z",
                  "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests"}] * len(diff_ids)}
        if variant:
            config["variant"] = variant[0]
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": put(json.dumps(config).encode(), OCI_CONFIG), "layers": layers}
        platform_field = {"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {})}
        manifests.append(put(json.dumps(manifest).encode(), OCI_MANIFEST, platform=platform_field))
    if index or (index is None and len(platforms) > 1):
        top = put(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode(), OCI_INDEX)
    else:
        top = {k: v for k, v in manifests[0].items() if k != "platform"}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return top["digest"]


def layout_blobs(path: Path) -> dict[str, bytes]:
    """Every blob of a layout, by digest."""
    return {f"sha256:{p.name}": p.read_bytes() for p in (path / "blobs" / "sha256").iterdir()}


def tagged_digest(path: Path, tag: str) -> str:
    for entry in json.loads((path / "index.json").read_text())["manifests"]:
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return entry["digest"]
    raise AssertionError(f"{path} has no tag {tag}")


def unique(prefix: str = "client") -> str:
    return f"{prefix}/r{uuid.uuid4().hex[:10]}"
