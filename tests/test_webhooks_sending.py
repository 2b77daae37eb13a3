"""Webhook POSTs (plugins/webhooks/sending.py) against a real socket on 127.0.0.1 that answers
with bytes a test scripts: the request as sent, the answers of receivers that keep their
connection open, skip to a final status, or do not speak HTTP; and a connection kept from one
POST to the next (keep-alive), connected again when the receiver closed it."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from registry_core.builtin_plugins.webhooks import sending
from registry_core.builtin_plugins.webhooks.sending import Connection, post


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
            try:
                connection.sendall(self.reply)
                while connection.recv(65536):
                    pass  # until the client closes
            except ConnectionResetError:
                pass  # closed before it read the whole answer

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


class KeepAliveReceiver:
    """Serves HTTP/1.1 on 127.0.0.1, several requests a connection, answering each 200 with a
    Content-Length. `plan[n]` is how many requests the n-th connection gets: after the last it
    is closed at once (a receiver letting an idle connection go; before, one the client closes);
    a negative count closes it
    after reading that many requests, the last without answering (closed just as a request came)."""

    def __init__(self, plan: list[int]):
        self.plan = plan
        self.requests: list[tuple[int, bytes]] = []  # (connection number, body)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        for number, count in enumerate(self.plan):
            connection, _ = self.listener.accept()
            self.threads.append(threading.Thread(target=self._serve, args=(connection, number, count), daemon=True))
            self.threads[-1].start()

    def _serve(self, connection, number: int, count: int) -> None:
        with connection:
            pending = b""
            for served in range(abs(count)):
                while b"\r\n\r\n" not in pending:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return  # closed by the client
                    pending += chunk
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(pending) < length:
                    pending += connection.recv(65536)
                self.requests.append((number, pending[:length]))
                pending = pending[length:]
                if count < 0 and served == abs(count) - 1:
                    return  # read, never answered
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
        self.listener.close()


def keep_post(connection: Connection, receiver, body: bytes) -> tuple[int, bytes]:
    return connection.post(receiver.url, body, {"Content-Type": "application/json"}, timeout=20,
                           allow_private=True, limit=64)


def test_a_kept_connection_carries_two_deliveries_and_is_connected_again_after_the_receiver_closes_it():
    receiver = KeepAliveReceiver([2, 1])
    connection = Connection()
    try:
        assert keep_post(connection, receiver, b"one") == (200, b"ok")
        assert keep_post(connection, receiver, b"two") == (200, b"ok")
        time.sleep(0.2)  # the receiver closes the first connection meanwhile
        assert keep_post(connection, receiver, b"three") == (200, b"ok")
    finally:
        connection.close()
        receiver.close()
    assert receiver.requests == [(0, b"one"), (0, b"two"), (1, b"three")]
    assert connection.connects == 2


def test_a_request_the_receiver_closed_the_kept_connection_on_is_sent_again_on_a_new_one():
    receiver = KeepAliveReceiver([-2, 1])  # the second request is read, then the connection closed
    connection = Connection()
    try:
        assert keep_post(connection, receiver, b"one") == (200, b"ok")
        assert keep_post(connection, receiver, b"two") == (200, b"ok")
    finally:
        connection.close()
        receiver.close()
    assert receiver.requests == [(0, b"one"), (0, b"two"), (1, b"two")]  # at least once


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,  # (over DRAIN_LIMIT)
])
def test_a_connection_is_not_kept_when_the_answer_asks_to_close_or_its_end_is_not_known_exactly(reply):
    receivers = [ScriptedReceiver(reply), ScriptedReceiver(reply)]
    connection = Connection()
    try:
        for receiver in receivers:  # (one host and port each: the second is a new connection anyway)
            status, _ = connection.post(receiver.url, b"{}", {}, timeout=20, allow_private=True, limit=8)
            assert status == 200 and connection.sock is None
    finally:
        connection.close()
        for receiver in receivers:
            receiver.close()
    assert b"Connection: keep-alive" in receivers[0].request


def test_a_kept_connection_is_connected_again_after_it_was_idle_too_long(monkeypatch):
    receiver = KeepAliveReceiver([2, 1])  # the first connection would take another request
    connection = Connection()
    try:
        assert keep_post(connection, receiver, b"one") == (200, b"ok")
        monkeypatch.setattr(sending, "IDLE_KEPT", 0.0)
        time.sleep(0.01)
        assert keep_post(connection, receiver, b"two") == (200, b"ok")
    finally:
        connection.close()
        receiver.close()
    assert receiver.requests == [(0, b"one"), (1, b"two")]
