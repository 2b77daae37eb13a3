"""Response bodies relayed from the storage's socket to the client's through one reused buffer.

A blob GET on an S3 store streams an HTTP response (S3's) into another (the client's). Here the
rest of S3's body is received straight from its socket into one buffer and sent from that buffer
to the client's socket: one copy in, one copy out, no Python bytes object per MiB (the CPU of a
pull is what decides its speed when the registry shares the machine's cores). splice(2), which
would move the bytes without copying them into the process, measured no faster and is not used
(bench/profiles/notes.md, "S3 blob reads: relayed from socket to socket").

`RelayedBody` is the response body a route returns for such a stream: file-like, so bottle hands
it to gunicorn as a `wsgi.file_wrapper`, whose `Response.sendfile` serving.py extends to call
`RelayedBody.send_to` with the client's socket once gunicorn has sent the headers (gunicorn then
counts the bytes sent, and decides keep-alive, as it does for a file). A server that does not know
it reads it like any file.

What the relay needs, checked before a route chooses it (`can_relay`): the serving side installed
(`install`, by serving.py in each gunicorn worker), an HTTP/1 request on a plain TCP socket, and
a stream that gives its rest as a plain socket's descriptor (storage/s3.py `ObjectBody.rest_source`:
not over https, whose socket carries TLS records, not the body). Otherwise the route streams as
before, through Python bytes.
"""

from __future__ import annotations

import os
import select
import socket

BUFFER_SIZE = 1 << 20  # bytes received and sent at a time
_installed = False


def install() -> None:
    """Tell routes that this process's server sends RelayedBody (serving.py, in each worker)."""
    global _installed
    _installed = True


def can_relay(environ: dict, stream) -> bool:
    """Whether a response to this request can send `stream` by `RelayedBody`: see the module's doc."""
    if not _installed:
        return False
    if environ.get("SERVER_PROTOCOL") not in ("HTTP/1.0", "HTTP/1.1"):
        return False
    if type(environ.get("gunicorn.socket")) is not socket.socket:  # an ssl.SSLSocket, another worker's kind
        return False
    rest_source = getattr(stream, "rest_source", None)
    return rest_source is not None and rest_source() is not None


class SourceFailed(Exception):
    """The storage's connection failed while its bytes were relayed (not an OSError: the server
    logs it as an error and closes the client's connection, as for a read that fails)."""


class RelayedBody:
    """`length` bytes of `stream` (an ObjectBody: `read`, `close`, `rest_source`,
    `read_buffered`, `received_from_socket`), sent by `send_to` or read as a file."""

    def __init__(self, stream, length: int):
        self.stream = stream
        self.length = length
        self.sent = 0        # bytes `send_to` has sent so far
        self._read = 0       # bytes `read` has returned so far

    def send_to(self, destination: socket.socket) -> None:
        """Send the body to `destination` (blocking): what the stream's reader already received,
        then the rest straight from the stream's socket. A stream that ends early raises (its
        reader's error) once what it had was sent, so that the server ends the connection instead
        of keeping a short response alive. `self.sent` counts what went out."""
        head = self.stream.read_buffered(self.length)
        if head:
            destination.sendall(head)
            self.sent += len(head)
        source = self.stream.rest_source() if self.sent < self.length else None
        if source is not None:
            # On an error the stream is not told: closed unfinished, its connection is dropped.
            moved = relay(*source, destination, self.length - self.sent, self._count)
            self.stream.received_from_socket(moved)
        while self.sent < self.length:  # read the ordinary way: where the source ended early, it raises
            chunk = self.stream.read(min(self.length - self.sent, BUFFER_SIZE))
            if not chunk:
                raise SourceFailed(f"the storage sent {self.sent} of {self.length} bytes, then ended")
            destination.sendall(chunk)
            self.sent += len(chunk)

    def _count(self, sent: int) -> None:
        self.sent += sent

    def read(self, size: int = -1) -> bytes:
        """For a server that reads the body as a file: at most the bytes left of `length`."""
        left = self.length - self._read
        if left <= 0:
            return b""
        data = self.stream.read(left if size is None or size < 0 else min(size, left))
        self._read += len(data)
        return data

    def close(self) -> None:
        self.stream.close()


def relay(source: int, source_timeout: float | None, destination: socket.socket, count: int,
          moved=lambda count: None) -> int:
    """Move up to `count` bytes from the socket whose descriptor is `source` to `destination`,
    received into one buffer and sent from it; returns how many moved (fewer only if the source
    ended). `moved(n)` is told as each piece is sent. The source's descriptor is non-blocking when
    its socket has a timeout (`source_timeout` seconds): it is then waited on with poll for at
    most that long. Errors sending are raised as they are (the client went away); receiving, as
    SourceFailed. The buffer is the request's own (at most BUFFER_SIZE), freed when it is done."""
    buffer = memoryview(bytearray(min(count, BUFFER_SIZE)))
    total = 0
    while total < count:
        try:
            received = os.readv(source, [buffer[:count - total]])
        except BlockingIOError:
            if not _readable(source, source_timeout):
                raise SourceFailed(f"the storage sent nothing for {source_timeout:g} s "
                                   f"after {total} of {count} bytes") from None
            continue
        except OSError as e:
            raise SourceFailed(f"the storage's connection failed after {total} of {count} bytes: {e}") from e
        if received == 0:  # the source ended
            break
        destination.sendall(buffer[:received])
        total += received
        moved(received)
    return total


def _readable(descriptor: int, timeout: float | None) -> bool:
    """Wait until `descriptor` has bytes (or an error or its end: the next read says which);
    False if `timeout` seconds passed first."""
    poll = select.poll()
    poll.register(descriptor, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poll.poll(None if timeout is None else timeout * 1000))
