"""One webhook POST (plugins/webhooks/sending.py) against a real socket on 127.0.0.1 that answers
with bytes a test scripts: the request as sent, and the answers of receivers that keep their
connection open, skip to a final status, or do not speak HTTP."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from registry_core.builtin_plugins.webhooks.sending import post


class ScriptedReceiver:
    """Accepts one connection on 127.0.0.1, reads the request, answers `reply`, and keeps the
    connection open until the client closes it (as a keep-alive server that ignores
    `Connection: close` does)."""

    def __init__(self, reply: bytes):
        self.reply = reply
        self.request = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook?x=1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            while b"\r\n\r\n" not in self.request:
                self.request += connection.recv(65536)
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += connection.recv(65536)
            self.request = head + b"\r\n\r\n" + body
            connection.sendall(self.reply)
            while connection.recv(65536):
                pass  # until the client closes

    def close(self) -> None:
        self.thread.join(timeout=30)
        self.listener.close()


def send(reply: bytes, body: bytes = b'{"events":[]}') -> tuple[tuple[int, bytes], ScriptedReceiver]:
    receiver = ScriptedReceiver(reply)
    try:
        return post(receiver.url, body, {"X-Registry-Event": "push", "Content-Type": "application/json"},
                    timeout=20, allow_private=True, limit=8), receiver
    finally:
        receiver.close()


def test_the_post_carries_the_host_with_its_port_the_length_our_headers_and_the_body():
    (status, _), receiver = send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    head, _, body = receiver.request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    port = receiver.url.split(":")[2].split("/")[0]
    assert status == 200 and lines[0] == b"POST /hook?x=1 HTTP/1.1" and body == b'{"events":[]}'
    assert {b"Host: 127.0.0.1:" + port.encode(), b"Content-Length: 13", b"Connection: close",
            b"X-Registry-Event: push", b"Content-Type: application/json"} <= set(lines[1:])


def test_an_interim_answer_is_skipped_and_the_body_read_as_far_as_its_length_and_the_limit():
    (status, answer), _ = send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello")
    assert (status, answer) == (201, b"hello")
    (status, answer), _ = send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 20\r\n\r\n01234567890123456789")
    assert (status, answer) == (202, b"01234567")  # the limit


def test_a_chunked_answer_ends_with_its_last_chunk_and_a_204_has_no_body():
    (status, answer), _ = send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert (status, answer) == (200, b"0\r\n\r\n")
    (status, answer), _ = send(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert (status, answer) == (204, b"")


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n"])
def test_an_answer_that_is_not_http_fails_the_exchange(reply):
    with pytest.raises(http.client.HTTPException):
        send(reply)
