"""Blob GETs on an S3 store whose bodies are relayed from S3's socket to the client's
(registry_core/socket_bodies.py): real `registry serve` processes on moto's S3 on 127.0.0.1, read
by hand over one HTTP/1.1 connection, so that what follows a body on the connection is seen too.

A response must carry exactly its Content-Length, the connection must serve the next request
after it, an S3 answer that stops short must end the client's connection (not leave it waiting,
nor keep a broken stream alive), and over https to S3 (whose socket carries TLS records, not the
body) the bytes must go the ordinary way."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from registry_core.socket_bodies import RelayedBody
from registry_core.storage.s3 import open_s3_driver
from tests.support.oci import Client, unique_name
from tests.support.s3 import CREDENTIALS, MotoServer, tls_certificate
from tests.support.server import RunningRegistry, wait_until
from tests.test_s3_registry import s3_storage, write_config

MIB = 1 << 20
HANG = 60  # seconds: a read that waits this long fails the test (it should never wait at all)


class HttpConnection:
    """One HTTP/1.1 connection to a server, read by hand: each response's head, then its body."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        self.file = self.sock.makefile("rb")

    def send(self, path: str, headers: dict | None = None) -> None:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def head(self) -> tuple[int, dict]:
        status = int(self.file.readline().split()[1])
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        self.send(path, headers)
        status, head = self.head()
        return status, head, self.file.read(int(head["content-length"]))

    def what_follows(self) -> bytes:
        """What the server sends next on this connection: b"" once it has ended it."""
        try:
            return self.file.read(64)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of moto that passes everything through, except, once
    `cut(marker, body_bytes)` is called, the answer to a request containing `marker`: after its
    head and `body_bytes` bytes of its body it closes both sides (S3 dropping a connection
    mid-body, which moto cannot be made to do)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.marker: bytes | None = None
        self.body_bytes = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, marker: str | None, body_bytes: int = 0) -> None:
        self.marker, self.body_bytes = (marker.encode() if marker else None), body_bytes

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            cut: list[int] = []
            threading.Thread(target=self._requests, args=(downstream, upstream, cut), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, downstream, cut), daemon=True).start()

    def _requests(self, downstream, upstream, cut: list[int]) -> None:
        try:
            while data := downstream.recv(MIB):
                if self.marker is not None and self.marker in data:
                    cut.append(self.body_bytes)  # before the request goes on: its answer comes after
                upstream.sendall(data)
        except OSError:
            pass
        _close(upstream)

    def _answers(self, upstream, downstream, cut: list[int]) -> None:
        seen = b""  # the answer being cut, so far: its head, then its body
        try:
            while data := upstream.recv(MIB):
                if not cut:
                    downstream.sendall(data)
                    continue
                seen += data
                head, found, _ = seen.partition(b"\r\n\r\n")
                if not found:
                    downstream.sendall(data)
                    continue
                end = len(head) + 4 + cut[0]
                downstream.sendall(seen[len(seen) - len(data):end])
                if len(seen) >= end:
                    break
        except OSError:
            pass
        _close(downstream)
        _close(upstream)

    def close(self) -> None:
        self.listener.close()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, moto_server):
    """A registry whose S3 is moto behind a CuttingProxy: (server, proxy, bucket)."""
    root = tmp_path_factory.mktemp("s3-relay")
    proxy = CuttingProxy(moto_server.port)
    bucket = moto_server.new_bucket()
    config = write_config(root / "registry.yaml", s3_storage(proxy, bucket))
    try:
        with RunningRegistry(root / "store", "--config", str(config), "--empty", "--access-log",
                             env=CREDENTIALS) as server:
            yield server, proxy, bucket
    finally:
        proxy.close()


def pushed(server, size: int) -> tuple[str, bytes, str]:
    """A new blob of `size` random bytes pushed to a new repository: (its GET path, bytes, digest)."""
    data = os.urandom(size)
    name = unique_name("relay")
    blob = Client(server.url).push_blob(name, data)
    return f"/v2/{name}/blobs/{blob}", data, blob


def test_a_whole_pull_is_the_blob_and_its_connection_serves_the_next_request(proxied):
    server = proxied[0]
    path, data, _ = pushed(server, 8 * MIB + 4321)
    connection = HttpConnection(server.port)
    try:
        for _ in range(2):
            status, headers, body = connection.get(path)
            assert status == 200 and headers["content-length"] == str(len(data))
            assert body == data
        status, _, body = connection.get("/v2/")
        assert status == 200 and body == b"{}"
    finally:
        connection.close()
    # gunicorn's access log counts the bytes relayed around its own writes
    logged = f'"GET {path} HTTP/1.1" 200 {len(data)} '
    wait_until(lambda: server.log().count(logged) == 2, "both pulls in the access log with their size")


def test_a_ranged_pull_is_the_range_and_its_connection_serves_the_next_request(proxied):
    server = proxied[0]
    path, data, _ = pushed(server, 6 * MIB + 99)
    connection = HttpConnection(server.port)
    try:
        status, headers, body = connection.get(path, {"Range": f"bytes={MIB + 7}-{5 * MIB + 6}"})
        assert status == 206 and headers["content-range"] == f"bytes {MIB + 7}-{5 * MIB + 6}/{len(data)}"
        assert body == data[MIB + 7:5 * MIB + 7]
        status, _, body = connection.get(path, {"Range": "bytes=-100"})
        assert status == 206 and body == data[-100:]
        status, _, body = connection.get(path)
        assert status == 200 and body == data
    finally:
        connection.close()


def test_a_pull_whose_s3_answer_stops_short_ends_the_client_connection_after_what_arrived(proxied):
    server, proxy, bucket = proxied
    path, data, blob = pushed(server, 6 * MIB)
    encoded = blob.split(":")[1]
    arrived = 2 * MIB + 5
    proxy.cut(f"GET /{bucket}/blobs/sha256/{encoded[:2]}/{encoded} ", arrived)
    connection = HttpConnection(server.port)
    try:
        connection.send(path)
        status, headers = connection.head()
        assert status == 200 and headers["content-length"] == str(len(data))
        assert connection.file.read(arrived) == data[:arrived]
        # A server that took the short answer for a whole one would now answer this request on
        # the same connection; the connection must be over instead.
        try:
            connection.send("/v2/")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert connection.what_follows() == b""
    finally:
        connection.close()
        proxy.cut(None)
    connection = HttpConnection(server.port)
    try:
        assert connection.get(path)[2] == data  # S3 whole again: so is the pull
    finally:
        connection.close()


@pytest.fixture(scope="module")
def over_https(tmp_path_factory):
    """A registry on a moto that speaks https (a self-signed certificate the registry trusts)."""
    root = tmp_path_factory.mktemp("s3-https")
    certificate, key = tls_certificate(root)
    moto = MotoServer(root / "moto.log", tls=(certificate, key))
    try:
        config = write_config(root / "registry.yaml", s3_storage(moto, moto.new_bucket()))
        with RunningRegistry(root / "store", "--config", str(config), "--empty",
                             env={**CREDENTIALS, "AWS_CA_BUNDLE": str(certificate)}) as server:
            yield server
    finally:
        moto.stop()


def test_over_https_to_s3_pulls_are_the_blob_not_the_tls_records_around_it(over_https):
    path, data, _ = pushed(over_https, 5 * MIB + 17)
    connection = HttpConnection(over_https.port)
    try:
        status, _, body = connection.get(path)
        assert status == 200 and body == data
        status, _, body = connection.get(path, {"Range": f"bytes=3-{4 * MIB}"})
        assert status == 206 and body == data[3:4 * MIB + 1]
    finally:
        connection.close()


def test_a_body_relayed_to_its_end_gives_its_connection_back_to_the_pool(moto_server, s3_bucket):
    driver = open_s3_driver({"bucket": s3_bucket, "endpoint": moto_server.endpoint, "region": "us-east-1",
                             "accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                             "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})
    data = os.urandom(3 * MIB + 1)
    driver.put_content("blobs/sha256/ab/big", data)
    pools = driver.client._endpoint.http_session._manager.pools
    opened_before = sum(pools[key].num_connections for key in pools.keys())
    for _ in range(3):
        stream, size = driver.sized_reader("blobs/sha256/ab/big")
        sending, receiving = socket.socketpair()
        receiving.settimeout(HANG)
        received = bytearray()
        reader = threading.Thread(target=receive_all, args=(receiving, received))
        reader.start()
        with stream:
            body = RelayedBody(stream, size)
            body.send_to(sending)
        sending.close()
        reader.join(HANG)
        receiving.close()
        assert bytes(received) == data and body.sent == len(data)
    assert sum(pools[key].num_connections for key in pools.keys()) == opened_before


def receive_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(MIB):
        into += chunk
