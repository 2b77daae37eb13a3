"""The loads the comparison runs, the same for every server: each takes a base URL and the headers
to send (empty for an open registry, `Authorization: Bearer …` with auth on) and returns figures.

Blob bodies are incompressible (os.urandom once, reused) and streamed from memory with
http.client in large slices; every blob gets a unique 32-byte tail so no server can deduplicate
it. Pulls go through curl (`-o /dev/null`); Range reads are 1 MiB at random offsets on one
keep-alive connection; manifest GETs are wrk with a Lua script (headers, percentiles as JSON).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

MiB = 1 << 20
SEND_SLICE = 8 * MiB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
CURL = shutil.which("curl") or "/usr/bin/curl"


class LoadError(RuntimeError):
    pass


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- HTTP plumbing ---------------------------------------------------------------------------------


class Client:
    """One keep-alive connection to a server at `base` (http://127.0.0.1:port)."""

    def __init__(self, base: str, headers: dict | None = None, timeout: float = 300):
        parts = urlsplit(base)
        self.base = base
        self.headers = dict(headers or {})
        self.host, self.port = parts.hostname, parts.port
        assert self.host == "127.0.0.1", "the benchmark only talks to 127.0.0.1"
        self.timeout = timeout
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=MiB)

    def close(self) -> None:
        self.conn.close()

    def path_of(self, location: str) -> str:
        """The path (and query) of a Location header, relative or absolute; refuses other hosts."""
        absolute = urljoin(self.base + "/", location)
        parts = urlsplit(absolute)
        if parts.hostname != self.host or parts.port != self.port:
            raise LoadError(f"the server sent a Location on another host: {location}")
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                expect: tuple[int, ...] = (200,)) -> tuple[http.client.HTTPResponse, bytes]:
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a keep-alive connection the server closed while we were idle: reconnect once
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    raise
        if response.status not in expect:
            raise LoadError(f"{method} {path}: {response.status} {data[:300]!r}")
        return response, data

    def send_stream(self, method: str, path: str, parts, length: int, headers: dict | None = None,
                    expect: tuple[int, ...] = (201, 202)) -> http.client.HTTPResponse:
        """Send a body of `length` bytes made of `parts` (bytes or memoryviews), each in slices."""
        self.conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in {**self.headers, "Content-Type": "application/octet-stream",
                           "Content-Length": str(length), **(headers or {})}.items():
            self.conn.putheader(key, value)
        self.conn.endheaders()
        sent = 0
        for part in parts:
            view = memoryview(part)
            for offset in range(0, len(view), SEND_SLICE):
                piece = view[offset:offset + SEND_SLICE]
                self.conn.send(piece)
                sent += len(piece)
        assert sent == length, (sent, length)
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in expect:
            raise LoadError(f"{method} {path}: {response.status} {data[:300]!r}")
        return response


def with_query(path: str, **query) -> str:
    return path + ("&" if "?" in path else "?") + urlencode(query)


# --- auth ------------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def fetch_token(base: str, scopes: list[str], user: str, password: str, service: str = "registry") -> str:
    """A Bearer token from the token service (GET /token with Basic credentials)."""
    client = Client(base, {"Authorization": basic(user, password)}, timeout=30)
    try:
        query = [("service", service)] + [("scope", scope) for scope in scopes]
        _, data = client.request("GET", "/token?" + urlencode(query))
    finally:
        client.close()
    token = json.loads(data).get("token") or json.loads(data).get("access_token")
    if not token:
        raise LoadError(f"the token service answered without a token: {data[:200]!r}")
    return token


# --- the payloads ----------------------------------------------------------------------------------


class Payload:
    """`size` incompressible bytes generated once; blob i is the shared body plus a unique tail."""

    TAIL = 32

    def __init__(self, size: int):
        self.size = size
        self.body = memoryview(os.urandom(size - self.TAIL))
        self._hash = hashlib.sha256(self.body)

    def blob(self, label: str) -> tuple[bytes, str]:
        """(tail, digest) of a blob that is unique to `label`."""
        tail = hashlib.sha256(label.encode()).digest()[: self.TAIL]
        hasher = self._hash.copy()
        hasher.update(tail)
        return tail, "sha256:" + hasher.hexdigest()

    def parts(self, tail: bytes):
        return [self.body, tail]

    def chunk_parts(self, tail: bytes, start: int, end: int):
        """The parts of bytes [start, end) of the blob with `tail`."""
        body_end = len(self.body)
        parts = []
        if start < body_end:
            parts.append(self.body[start:min(end, body_end)])
        if end > body_end:
            parts.append(tail[max(start - body_end, 0):end - body_end])
        return parts


@dataclass
class Image:
    """A small image (config + 3 layers) used for manifest GETs and tag pushes."""

    blobs: list[bytes]
    manifest: bytes
    digest: str

    @classmethod
    def make(cls, seed: str = "registry-core-bench") -> "Image":
        rng = random.Random(seed)
        layers = [rng.randbytes(2048 + 1024 * i) for i in range(3)]
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]}},
                            sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}
                       for layer in layers],
            "annotations": {"org.opencontainers.image.title": "registry-core benchmark image"},
        }, indent=3).encode()
        return cls(blobs=[config, *layers], manifest=manifest, digest=digest_of(manifest))


def push_image(base: str, headers: dict, repository: str, image: Image, tag: str = "latest") -> None:
    client = Client(base, headers)
    try:
        for blob in image.blobs:  # POST then PUT: Distribution 2.8 ignores ?digest= on the POST
            response, _ = client.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))
            client.request("PUT", with_query(client.path_of(response.getheader("Location")), digest=digest_of(blob)),
                           body=blob, headers={"Content-Type": "application/octet-stream"}, expect=(201,))
        client.request("PUT", f"/v2/{repository}/manifests/{tag}", body=image.manifest,
                       headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
    finally:
        client.close()


def push_payload_image(base: str, headers: dict, repository: str, payload: "Payload", layers: int,
                       tag: str = "latest", label: str = "image") -> dict:
    """Push an image of `layers` layers of `payload.size` incompressible bytes each (monolithic
    uploads streamed from memory) and a small config, then its manifest under `tag`. Returns the
    manifest's digest and size and the blobs' descriptors (config first), for pull_image."""
    blobs = []
    for i in range(layers):
        tail, digest = payload.blob(f"{label}-layer-{i}")
        push_monolithic(base, headers, repository, payload, tail, digest)
        blobs.append({"mediaType": OCI_LAYER, "digest": digest, "size": payload.size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [b["digest"] for b in blobs]}},
                        sort_keys=True).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
                           "layers": blobs}, indent=3).encode()
    client = Client(base, headers)
    try:
        response, _ = client.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))
        client.request("PUT", with_query(client.path_of(response.getheader("Location")), digest=digest_of(config)),
                       body=config, headers={"Content-Type": "application/octet-stream"}, expect=(201,))
        client.request("PUT", f"/v2/{repository}/manifests/{tag}", body=manifest,
                       headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
    finally:
        client.close()
    descriptors = [{"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)}, *blobs]
    return {"digest": digest_of(manifest), "manifest_size": len(manifest), "blobs": descriptors,
            "size": len(manifest) + sum(b["size"] for b in descriptors)}


def pull_image(base: str, headers: dict, repository: str, reference: str, parallel: int = 1) -> dict:
    """Pull an image as a client does: GET the manifest (OCI Accept), then every blob it names
    (config and layers) with curl into /dev/null, `parallel` at a time (sizes checked, content not).
    Returns the seconds from the first request to the last byte and the bytes received."""
    started = time.perf_counter()
    client = Client(base, headers)
    try:
        _, body = client.request("GET", f"/v2/{repository}/manifests/{reference}",
                                 headers={"Accept": OCI_MANIFEST})
    finally:
        client.close()
    manifest = json.loads(body)
    descriptors = [manifest["config"], *manifest["layers"]]
    if parallel > 1:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda d: pull_curl(base, headers, repository, d["digest"], d["size"]), descriptors))
    else:
        for d in descriptors:
            pull_curl(base, headers, repository, d["digest"], d["size"])
    return {"seconds": time.perf_counter() - started,
            "bytes": len(body) + sum(d["size"] for d in descriptors), "digest": digest_of(body)}


# --- blob push -------------------------------------------------------------------------------------


def push_monolithic(base: str, headers: dict, repository: str, payload: Payload, tail: bytes,
                    digest: str) -> float:
    """POST an upload, PUT the whole blob with ?digest=; seconds taken."""
    client = Client(base, headers)
    try:
        started = time.perf_counter()
        response, _ = client.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))
        location = client.path_of(response.getheader("Location"))
        client.send_stream("PUT", with_query(location, digest=digest), payload.parts(tail), payload.size,
                           expect=(201,))
        return time.perf_counter() - started
    finally:
        client.close()


def push_chunked(base: str, headers: dict, repository: str, payload: Payload, tail: bytes, digest: str,
                 chunk: int) -> float:
    """POST an upload, PATCH `chunk`-byte pieces with Content-Range, PUT ?digest=; seconds taken."""
    client = Client(base, headers)
    try:
        started = time.perf_counter()
        response, _ = client.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))
        location = client.path_of(response.getheader("Location"))
        for start in range(0, payload.size, chunk):
            end = min(start + chunk, payload.size)
            response = client.send_stream("PATCH", location, payload.chunk_parts(tail, start, end), end - start,
                                          headers={"Content-Range": f"{start}-{end - 1}"}, expect=(202,))
            location = client.path_of(response.getheader("Location"))
        client.request("PUT", with_query(location, digest=digest), headers={"Content-Length": "0"},
                       expect=(201,))
        return time.perf_counter() - started
    finally:
        client.close()


# --- blob pull -------------------------------------------------------------------------------------


def pull_curl(base: str, headers: dict, repository: str, digest: str, size: int, redirected: bool = False) -> float:
    """GET the blob with curl into /dev/null; seconds taken (curl's time_total). `redirected`:
    the registry must answer with a redirect, which curl follows (-L; the time includes both
    requests)."""
    argv = [CURL, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w",
            "%{http_code} %{size_download} %{time_total} %{num_redirects}"]
    if redirected:
        argv.append("-L")
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(f"{base}/v2/{repository}/blobs/{digest}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    status, downloaded, seconds, redirects = out.stdout.split()
    if status != "200" or int(downloaded) != size:
        raise LoadError(f"curl GET blob: status {status}, {downloaded} of {size} bytes; {out.stderr}")
    if redirected and int(redirects) < 1:
        raise LoadError("curl GET blob: expected a redirect to the storage, the registry sent the bytes itself")
    return float(seconds)


def range_reads(base: str, headers: dict, repository: str, digest: str, payload: Payload, tail: bytes,
                count: int, length: int = MiB, seed: int = 0) -> dict:
    """`count` GETs of `length` bytes at random offsets on one connection; checks the bytes."""
    rng = random.Random(seed)
    client = Client(base, headers)
    latencies = []
    try:
        started = time.perf_counter()
        for i in range(count):
            offset = rng.randrange(0, payload.size - length)
            t0 = time.perf_counter()
            response, data = client.request("GET", f"/v2/{repository}/blobs/{digest}",
                                            headers={"Range": f"bytes={offset}-{offset + length - 1}"},
                                            expect=(206,))
            latencies.append(time.perf_counter() - t0)
            if len(data) != length:
                raise LoadError(f"range read returned {len(data)} bytes, not {length}")
            if i < 8:  # spot-check the content (the tail is covered when an offset reaches it)
                expected = b"".join(bytes(p) for p in payload.chunk_parts(tail, offset, offset + length))
                if data != expected:
                    raise LoadError(f"range read at {offset} returned other bytes")
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    return {"per_s": count / elapsed, "mib_s": count * length / MiB / elapsed,
            "p50_ms": statistics.median(latencies) * 1000}


# --- manifest GET under load (wrk) -----------------------------------------------------------------

_LUA = """
wrk.method = "GET"
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    "WRK-JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"status_errors\\": %d, " ..
    "\\"connect_errors\\": %d, \\"read_errors\\": %d, \\"write_errors\\": %d, \\"timeouts\\": %d, " ..
    "\\"p50_us\\": %d, \\"p90_us\\": %d, \\"p99_us\\": %d, \\"mean_us\\": %f, \\"max_us\\": %d}}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""
_SAFE_HEADER = re.compile(r"^[A-Za-z0-9 ._~+/=:;,*()-]*$")


def wrk_script(headers: dict, directory: Path) -> Path:
    lines = []
    for key, value in headers.items():
        if not (_SAFE_HEADER.match(key) and _SAFE_HEADER.match(value)):
            raise LoadError(f"header {key} has characters the Lua script would need to escape")
        lines.append(f'wrk.headers["{key}"] = "{value}"')
    fd, path = tempfile.mkstemp(suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(_LUA.format(headers="\n".join(lines)))
    return Path(path)


def wrk(url: str, headers: dict, connections: int, seconds: float, directory: Path) -> dict:
    """req/s and latency percentiles (ms) of GET `url` at `connections` keep-alive connections."""
    script = wrk_script(headers, directory)
    threads = min(2, connections)
    argv = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
            "--timeout", "10s", "-s", str(script), url]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        script.unlink(missing_ok=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRK-JSON ")), None)
    if line is None:
        raise LoadError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    summary = json.loads(line[len("WRK-JSON "):])
    errors = sum(summary[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors",
                                      "timeouts"))
    return {"rps": summary["requests"] / (summary["duration_us"] / 1e6), "p50_ms": summary["p50_us"] / 1000,
            "p99_ms": summary["p99_us"] / 1000, "errors": errors, "requests": summary["requests"]}


# --- tag pushes ------------------------------------------------------------------------------------


def push_tags(base: str, headers: dict, repository: str, image: Image, count: int, prefix: str = "t") -> float:
    """PUT the image's manifest under `count` new tags, one connection, one after the other; tags/s."""
    client = Client(base, headers)
    try:
        started = time.perf_counter()
        for i in range(count):
            client.request("PUT", f"/v2/{repository}/manifests/{prefix}{i:05d}", body=image.manifest,
                           headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
        return count / (time.perf_counter() - started)
    finally:
        client.close()


def push_build(client: Client, repository: str, tag: str, layers: list[dict]) -> str:
    """Push one distinct manifest as a CI pipeline makes it: a new config blob (POST + PUT, the
    tag in its labels), then the manifest naming it and `layers` under `tag`; the manifest's digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"build": tag}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config),
                                      "size": len(config)}}).encode()
    response, _ = client.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))
    client.request("PUT", with_query(client.path_of(response.getheader("Location")), digest=digest_of(config)),
                   body=config, headers={"Content-Type": "application/octet-stream"}, expect=(201,))
    client.request("PUT", f"/v2/{repository}/manifests/{tag}", body=manifest,
                   headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
    return digest_of(manifest)


def push_distinct(base: str, headers: dict, repository: str, image: Image, count: int, prefix: str = "d") -> float:
    """Push `count` distinct manifests (push_build) with the image's layers, one connection; pushes/s."""
    layers = json.loads(image.manifest)["layers"]
    client = Client(base, headers)
    try:
        started = time.perf_counter()
        for i in range(count):
            push_build(client, repository, f"{prefix}{i:05d}", layers)
        return count / (time.perf_counter() - started)
    finally:
        client.close()


# --- listings --------------------------------------------------------------------------------------


def timed_get(client: Client, path: str) -> tuple[float, http.client.HTTPResponse, bytes]:
    started = time.perf_counter()
    response, data = client.request("GET", path)
    return time.perf_counter() - started, response, data


def median_get_ms(client: Client, path: str, count: int, check=None) -> float:
    times = []
    for _ in range(count):
        seconds, _, data = timed_get(client, path)
        if check is not None:
            check(json.loads(data))
        times.append(seconds)
    return statistics.median(times) * 1000


def walk_pages(client: Client, path: str, key: str) -> tuple[float, int]:
    """Follow Link: rel="next" from `path`; (seconds, items seen)."""
    started, seen = time.perf_counter(), 0
    while path:
        response, data = client.request("GET", path)
        seen += len(json.loads(data).get(key) or [])
        link = response.getheader("Link")
        path = client.path_of(link.split(">")[0].lstrip("<")) if link else None
    return time.perf_counter() - started, seen
