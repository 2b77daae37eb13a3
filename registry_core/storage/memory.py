"""The in-memory driver: the store as a dictionary of paths, for tests and throwaway registries.

It lives in one process, so it is not registered for `registry serve` (whose workers are separate
processes); it shows the driver contract at its smallest and runs the shared driver suite.
"""

from __future__ import annotations

import io
import threading
import time
from typing import BinaryIO, Iterator

from registry_core.storage.driver import PathNotFound


class MemoryDriver:
    name = "memory"

    def __init__(self):
        self._files: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def local_path(self, path: str) -> None:
        return None

    def get_content(self, path: str) -> bytes:
        with self._lock:
            if path not in self._files:
                raise PathNotFound(path)
            return self._files[path][0]

    def put_content(self, path: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"content must be bytes, not {type(data).__name__}")
        with self._lock:
            self._files[path] = (bytes(data), time.time())

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        stream = io.BytesIO(self.get_content(path))
        stream.seek(offset)
        return stream

    def sized_reader(self, path: str) -> tuple[BinaryIO, int]:
        content = self.get_content(path)
        return io.BytesIO(content), len(content)

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append; the chunks are joined first, so a failing stream appends nothing."""
        added = b"".join(chunks)
        with self._lock:
            content = self._files.get(path, (b"", 0.0))[0] + added
            self._files[path] = (content, time.time())
            return len(content)

    def size(self, path: str) -> int:
        return len(self.get_content(path))

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self._files

    def modified(self, path: str) -> float | None:
        with self._lock:
            return self._files[path][1] if path in self._files else None

    def list(self, path: str) -> list[str]:
        folder = path.strip("/") + "/" if path.strip("/") else ""
        with self._lock:
            return sorted({name[len(folder):].split("/")[0] for name in self._files if name.startswith(folder)})

    def move(self, source: str, destination: str) -> None:
        with self._lock:
            if source not in self._files:
                raise PathNotFound(source)
            self._files[destination] = self._files.pop(source)

    def delete(self, path: str) -> None:
        with self._lock:
            for name in [name for name in self._files if name == path or name.startswith(path + "/")]:
                del self._files[name]
