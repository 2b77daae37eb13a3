"""One POST to a receiver, on a connection of its own, to the address `targets.resolve` checked
(whatever the host's DNS says by the time we connect).

The request is written and the answer read here rather than by http.client, whose request
building and header parsing (through email.parser) cost the delivery process more than twice the
CPU of the exchange itself: 218 µs against 84 a POST on this machine (bench/profiles/notes.md,
"Webhooks delivery off the request workers"). What is needed of an answer is little: its status
(interim 1xx answers skipped) and the start of its body, at most `limit` bytes: as many as its
Content-Length says, up to the end of a chunked body (kept as received, chunk sizes included), or
up to the end of the connection (we ask for `Connection: close`). Once the status is in, a body
that stops coming (the connection times out or fails) ends the body, not the exchange.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl

from . import targets

HEAD_LIMIT = 65536  # bytes of an answer's status line and headers, at most (as http.client)
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_CHUNKED_END = b"0\r\n\r\n"
_tls: ssl.SSLContext | None = None


def post(url: str, body: bytes, headers: dict, timeout: float, allow_private: bool,
         limit: int = 4096) -> tuple[int, bytes]:
    """POST `body` to `url` (checked again, after resolving); (status, at most `limit` bytes of
    the answer's body). Raises targets.TargetRefused, or OSError/HTTPException for a failed
    exchange."""
    target = targets.resolve(targets.parse(url), allow_private)
    sock = socket.create_connection((target.address, target.port), timeout)
    try:
        if target.scheme == "https":
            sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
        sock.sendall(request(target, body, headers))
        return answer(sock, limit)
    finally:
        sock.close()


def request(target: targets.Target, body: bytes, headers: dict) -> bytes:
    """The bytes of the POST (URLs are printable ASCII: targets.parse; the headers are ours)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != (443 if target.scheme == "https" else 80):
        host += f":{target.port}"
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity", "Connection: close",
             f"Content-Length: {len(body)}"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(sock, limit: int) -> tuple[int, bytes]:
    """(status, start of the body) of the answer read from `sock`."""
    received = b""
    while True:
        end = received.find(b"\r\n\r\n")
        if end < 0:
            if len(received) > HEAD_LIMIT:
                raise http.client.HTTPException(f"the receiver's answer has over {HEAD_LIMIT} bytes of headers")
            chunk = sock.recv(HEAD_LIMIT)
            if not chunk:
                raise http.client.RemoteDisconnected("the receiver closed the connection without an answer")
            received += chunk
            continue
        head, received = received[:end], received[end + 4:]
        match = _STATUS.fullmatch(head.split(b"\r\n", 1)[0])
        if match is None:
            raise http.client.BadStatusLine(head.split(b"\r\n", 1)[0][:100].decode("latin-1"))
        status = int(match[1])
        if status >= 200:
            break  # else an interim answer (100 Continue): the answer follows it
    fields = _fields(head)
    if status in (204, 304):
        return status, b""
    length = fields.get(b"content-length")
    wanted = min(int(length), limit) if length is not None and length.isdigit() else limit
    chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
    try:
        while len(received) < wanted and not (chunked and received.endswith(_CHUNKED_END)):
            chunk = sock.recv(wanted - len(received))
            if not chunk:
                break
            received += chunk
    except OSError:
        pass  # the status is in: a body that stops coming ends here
    return status, received[:wanted]


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
