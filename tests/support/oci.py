"""Making test content: random blobs, configs, image manifests and indexes, and pushing them."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}/r{uuid.uuid4().hex[:12]}"


def descriptor(data: bytes, media_type: str, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


class Client:
    """A thin requests wrapper speaking the distribution API to one registry."""

    def __init__(self, url: str, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.http = session or requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        if path.startswith("http"):
            return self.http.request(method, path, **kwargs)
        return self.http.request(method, self.url + path, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def push_blob(self, name: str, data: bytes) -> str:
        d = digest(data)
        r = self.post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, data=data,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return d

    def push_manifest(self, name: str, reference: str, manifest: dict | bytes,
                      media_type: str = OCI_MANIFEST) -> requests.Response:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        return self.put(f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type})

    def push_image(self, name: str, tag: str | None = None, layers: int = 1, **manifest_fields) -> tuple[str, dict, bytes]:
        """Push a random small image; returns (digest, manifest, body)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "nonce": uuid.uuid4().hex}).encode()
        self.push_blob(name, config)
        layer_descriptors = []
        for _ in range(layers):
            layer = os.urandom(256)
            self.push_blob(name, layer)
            layer_descriptors.append(descriptor(layer, OCI_LAYER))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                    "layers": layer_descriptors, **manifest_fields}
        body = json.dumps(manifest).encode()
        r = self.push_manifest(name, tag or digest(body), body)
        assert r.status_code == 201, r.text
        return digest(body), manifest, body


def error_codes(response: requests.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


# --- helpers for the distribution-spec tests (added; nothing above changed) -------------------------

def start_upload(client: Client, name: str) -> str:
    """POST an empty upload session; returns its (absolute) Location."""
    r = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    return upload_location(client, r)


def upload_location(client: Client, response: requests.Response) -> str:
    """The response's Location, made absolute (the spec allows relative ones)."""
    from urllib.parse import urljoin
    return urljoin(client.url + "/", response.headers["Location"])


def range_end(response: requests.Response) -> int:
    """The last byte offset in a `Range: 0-<end>` upload header."""
    start, _, end = response.headers["Range"].partition("-")
    assert start == "0", response.headers["Range"]
    return int(end)


def raw_http(host: str, port: int, head: bytes, body: bytes = b"", timeout: float = 5) -> bytes:
    """Send `head` + `body` over a plain socket, half-close, and return whatever the server answers.

    For bodies that end before their Content-Length: the server sees end-of-file mid-body."""
    import socket
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return answer


def artifact_manifest(artifact_type: str, blobs: list[tuple[bytes, str]], **fields) -> dict:
    """An OCI 1.1 artifact: `artifactType`, the empty config descriptor, the given (data, mediaType) layers."""
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [descriptor(data, media_type) for data, media_type in blobs], **fields}


def meta_commits(store, since=None) -> list:
    """Commits of <store>/meta.git on main, newest first, stopping before commit id `since`."""
    import pygit2
    repo = pygit2.Repository(str(store) + "/meta.git")
    commits = []
    for commit in repo.walk(repo.references["refs/heads/main"].target, pygit2.enums.SortMode.TOPOLOGICAL):
        if since is not None and commit.id == since:
            break
        commits.append(commit)
    return commits


def meta_tip(store):
    import pygit2
    repo = pygit2.Repository(str(store) + "/meta.git")
    return repo.references["refs/heads/main"].target


def keepalive_exchange(host: str, port: int, messages: list[bytes], timeout: float = 10) -> list[int]:
    """Send each raw HTTP/1.1 request in turn on ONE connection, reading its response before
    sending the next; return the response statuses. A connection the server closed ends the list."""
    import socket
    statuses = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        buffer = b""
        for message in messages:
            try:
                s.sendall(message)
            except OSError:
                pass  # the server stopped reading; its response may still be there
            try:
                while b"\r\n\r\n" not in buffer:
                    chunk = s.recv(65536)
                    if not chunk:
                        return statuses
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = 0 if message.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    chunk = s.recv(65536)
                    if not chunk:
                        return statuses
                    buffer += chunk
                buffer = buffer[length:]
            except OSError:
                return statuses
            statuses.append(int(lines[0].split()[1]))
    return statuses
