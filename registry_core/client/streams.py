"""Readers of blob bytes from where they live (a file, a slice of a tar archive, a registry
response), all with `read(n)` and `close()`, and each opened at a byte offset so that a transfer
can resume where it stopped."""

from __future__ import annotations

import os
import threading
from typing import Callable, Protocol

import requests
import urllib3

from registry_core.client.errors import Interrupted

CHUNK = 1 << 20


class Reader(Protocol):
    def read(self, size: int) -> bytes: ...
    def readinto(self, buffer: memoryview) -> int: ...
    def close(self) -> None: ...


Opener = Callable[[int], Reader]

# What a dropped connection looks like from the reading side.
TRANSIENT_READ_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError,
                         TimeoutError)


class FileSlice:
    """Bytes [start, start + length) of a file, read with pread so several slices of one archive
    can be read by several threads at once."""

    def __init__(self, path: str, start: int, length: int, offset: int = 0):
        self.fd = os.open(path, os.O_RDONLY)
        self.position = start + offset
        self.end = start + length

    def read(self, size: int) -> bytes:
        size = min(size, self.end - self.position)
        if size <= 0:
            return b""
        data = os.pread(self.fd, size, self.position)
        self.position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        size = min(len(buffer), self.end - self.position)
        if size <= 0:
            return 0
        count = os.preadv(self.fd, [buffer[:size]], self.position)
        self.position += count
        return count

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def file_opener(path: str, start: int = 0, length: int | None = None) -> Opener:
    if length is None:
        length = os.path.getsize(path) - start
    return lambda offset: FileSlice(path, start, length, offset)


class ResponseReader:
    """The raw body of a streaming response (no Content-Encoding decoding: a blob's bytes are what
    its digest covers). When the server ignored a Range request, the bytes before `skip` are
    read and dropped, so the caller still gets the stream from the offset it asked for."""

    def __init__(self, response: requests.Response, skip: int = 0):
        self.response = response
        self.response.raw.decode_content = False
        self.skip = skip

    def _skip(self) -> bool:
        while self.skip:
            dropped = self.response.raw.read(min(self.skip, CHUNK), decode_content=False)
            if not dropped:
                return False
            self.skip -= len(dropped)
        return True

    def read(self, size: int) -> bytes:
        if not self._skip():
            return b""
        return self.response.raw.read(size, decode_content=False)

    def readinto(self, buffer: memoryview) -> int:
        """Into a caller's buffer: about twice as fast as read() for large blobs (no new bytes
        object per chunk, and no pass through urllib3's decoded-content buffer)."""
        if not self._skip():
            return 0
        return self.response.raw.readinto(buffer)

    def close(self) -> None:
        self.response.close()


class Meter:
    """Counts bytes as they pass: progress bars, the cancel flag, an optional running hash."""

    def __init__(self, progress=None, cancel: threading.Event | None = None, hasher=None):
        self.progress = progress
        self.cancel = cancel
        self.hasher = hasher

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Interrupted("cancelled")

    def count(self, data: bytes) -> None:
        if self.hasher is not None:
            self.hasher.update(data)
        if self.progress is not None:
            self.progress.update(len(data))
