"""POSTs to a receiver, to the address `targets.resolve` checked (whatever the host's DNS says
by the time we connect): one on a connection of its own (`post`), or several in turn on one
connection kept open between them (`Connection`: HTTP/1.1 keep-alive, one per hook in the
delivery process, so that neither side pays a connect and a close per delivery).

The request is written and the answer read here rather than by http.client, whose request
building and header parsing (through email.parser) cost the delivery process more than twice the
CPU of the exchange itself: 218 µs against 84 a POST on this machine (bench/profiles/notes.md,
"Webhooks delivery off the request workers"). What is needed of an answer is little: its status
(interim 1xx answers skipped) and the start of its body, at most `limit` bytes: as many as its
Content-Length says, up to the end of a chunked body (kept as received, chunk sizes included), or
up to the end of the connection. Once the status is in, a body that stops coming (the connection
times out or fails) ends the body, not the exchange.

A kept connection is used again only when the answer's end is known exactly (a Content-Length
read whole, or no body) and the receiver did not ask to close; it is connected again when the
receiver closed it meanwhile (seen before sending, or as a connection closed or reset before any
byte of the answer: the request is then sent once more on a new connection), when the hook's
host or port changed, or after IDLE_KEPT seconds unused. The address is checked whenever one is
connected; a kept one goes on to the address checked when it was.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import ssl
import time

from . import targets

HEAD_LIMIT = 65536  # bytes of an answer's status line and headers, at most (as http.client)
DRAIN_LIMIT = 65536  # bytes of an answer's body read past `limit` to keep its connection, at most
IDLE_KEPT = 10.0  # seconds a kept connection may stay unused and still be used again
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_CHUNKED_END = b"0\r\n\r\n"
_tls: ssl.SSLContext | None = None


def post(url: str, body: bytes, headers: dict, timeout: float, allow_private: bool,
         limit: int = 4096) -> tuple[int, bytes]:
    """POST `body` to `url` (checked again, after resolving) on a connection of its own; (status,
    at most `limit` bytes of the answer's body). Raises targets.TargetRefused, or
    OSError/HTTPException for a failed exchange."""
    target = targets.parse(url)
    sock = connect(targets.resolve(target, allow_private), timeout)
    try:
        sock.sendall(request(target, body, headers, keep_alive=False))
        status, received, _ = answer(sock, limit)
        return status, received
    finally:
        sock.close()


class Connection:
    """One receiver's connection, kept open from one POST to the next (see the module's
    docstring). Used by one thread at a time (a hook's sender thread)."""

    def __init__(self):
        self.sock = None
        self.peer: tuple | None = None  # (scheme, host, port) the socket was connected for
        self.used = 0.0  # time.monotonic() of its last exchange
        self.connects = 0  # connections made so far (for tests and figures)
        self._parsed: tuple[str, targets.Target] | None = None  # the last URL posted to, parsed

    def post(self, url: str, body: bytes, headers: dict, timeout: float, allow_private: bool,
             limit: int = 4096) -> tuple[int, bytes]:
        """POST `body` to `url` on the kept connection, or on a new one (its address checked);
        as `post`."""
        if self._parsed is None or self._parsed[0] != url:
            self._parsed = (url, targets.parse(url))
        target = self._parsed[1]
        peer = (target.scheme, target.host, target.port)
        if self.sock is not None and (self.peer != peer or not self._reusable()):
            self.close()
        data = request(target, body, headers, keep_alive=True)
        if self.sock is not None:
            try:
                return self._exchange(data, timeout, limit)
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed by the receiver before it answered (an idle connection it let go): once more
        self.sock = connect(targets.resolve(target, allow_private), timeout)
        self.peer = peer
        self.connects += 1
        return self._exchange(data, timeout, limit)

    def _reusable(self) -> bool:
        """Is the kept connection recent, and still open with nothing unread (a receiver that
        closed it makes it readable: its end)?"""
        if time.monotonic() - self.used > IDLE_KEPT:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _exchange(self, data: bytes, timeout: float, limit: int) -> tuple[int, bytes]:
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            status, received, keep = answer(self.sock, limit)
        except BaseException:
            self.close()
            raise
        if keep:
            self.used = time.monotonic()
        else:
            self.close()
        return status, received

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def connect(target: targets.Target, timeout: float):
    """A socket connected to `target`'s checked address (TLS for https, the host name checked)."""
    sock = socket.create_connection((target.address, target.port), timeout)
    if target.scheme == "https":
        try:
            sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
    return sock


def request(target: targets.Target, body: bytes, headers: dict, keep_alive: bool = False) -> bytes:
    """The bytes of the POST (URLs are printable ASCII: targets.parse; the headers are ours)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != (443 if target.scheme == "https" else 80):
        host += f":{target.port}"
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity",
             f"Connection: {'keep-alive' if keep_alive else 'close'}",
             f"Content-Length: {len(body)}"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(sock, limit: int) -> tuple[int, bytes, bool]:
    """(status, start of the body, whether the connection may carry another request) of the
    answer read from `sock`."""
    received = b""
    while True:
        end = received.find(b"\r\n\r\n")
        if end < 0:
            if len(received) > HEAD_LIMIT:
                raise http.client.HTTPException(f"the receiver's answer has over {HEAD_LIMIT} bytes of headers")
            chunk = sock.recv(HEAD_LIMIT)
            if not chunk:
                if received:
                    raise http.client.IncompleteRead(received)
                raise http.client.RemoteDisconnected("the receiver closed the connection without an answer")
            received += chunk
            continue
        head, received = received[:end], received[end + 4:]
        match = _STATUS.fullmatch(head.split(b"\r\n", 1)[0])
        if match is None:
            raise http.client.BadStatusLine(head.split(b"\r\n", 1)[0][:100].decode("latin-1"))
        status = int(match[2])
        if status >= 200:
            break  # else an interim answer (100 Continue): the answer follows it
    fields = _fields(head)
    tokens = {token.strip() for token in fields.get(b"connection", b"").lower().split(b",")}
    keep = b"close" not in tokens if match[1] == b"1" else b"keep-alive" in tokens
    if status in (204, 304):
        return status, b"", keep and not received
    length = fields.get(b"content-length")
    if length is not None and length.isdigit() and b"transfer-encoding" not in fields:
        length = int(length)
        keep = keep and length <= max(limit, DRAIN_LIMIT)
        wanted = length if keep else min(length, limit)
    else:  # (chunked, or up to the end of the connection: its end is not known exactly here)
        keep, wanted = False, limit
    chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
    try:
        while len(received) < wanted and not (chunked and received.endswith(_CHUNKED_END)):
            chunk = sock.recv(wanted - len(received))
            if not chunk:
                break
            received += chunk
    except OSError:
        pass  # the status is in: a body that stops coming ends here
    keep = keep and len(received) == wanted
    return status, received[:limit], keep


def _fields(head: bytes) -> dict[bytes, bytes]:
    """An answer's header fields by lower-case name (the last of a repeated one)."""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return fields


def _tls_context() -> ssl.SSLContext:
    """One default context (the system's CAs, hostname checked) for every HTTPS delivery: making
    one loads the CA certificates, far more work than a handshake."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls
