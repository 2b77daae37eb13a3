"""The storage driver interface: the few operations the registry needs from a place to keep bytes.

Modelled on CNCF Distribution's storagedriver: paths are '/'-separated strings relative to the
store root; `move` is atomic and is how content becomes visible; `reader` returns a binary file
object positioned at `offset` (a real file where possible, so the WSGI server can sendfile it).
Every driver must pass tests/test_storage_drivers.py.

Optional methods, looked up with getattr: `modified(path) -> float | None` (when a file was last
written, for garbage collection's ages; else the local file's mtime), `redirect_url(path) -> str |
None` (a URL the client may GET the blob from instead, answered with 307; S3's presigned URLs),
`sized_reader(path) -> (BinaryIO, int)` (`reader(path)` and the file's size, learnt from the one
read where the store tells both: an S3 GET's Content-Length, so a blob GET asks S3 once instead of
a HEAD then a GET; else the registry asks `size` then `reader`), `append_from(path, chunks,
starting) -> int` (`append`, calling `starting(size before)` first, where a driver learns that size
from what its append reads anyway: S3's append state; if `starting` raises, nothing is appended;
else the registry asks `size` first), `put_fresh_content(path, data)` (`put_content` at a path
nothing ever appends to: upload sessions' small files, links, blobs; a driver may skip ending an
append in progress there: S3's GET of the path's append state) and `close()`. A factory that
cannot reach its storage raises StorageUnavailable with one line.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, Protocol


class PathNotFound(Exception):
    """The path does not exist in the driver."""


class StorageDriver(Protocol):
    name: str

    def get_content(self, path: str) -> bytes: ...

    def put_content(self, path: str, data: bytes) -> None:
        """Write the whole content atomically (readers see the old content or the new, never part)."""

    def reader(self, path: str, offset: int = 0) -> BinaryIO: ...

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append chunks to the file at `path` (created if missing); return its new size."""

    def size(self, path: str) -> int: ...

    def exists(self, path: str) -> bool: ...

    def list(self, path: str) -> list[str]:
        """Names directly below `path`, sorted; empty when `path` does not exist."""

    def move(self, source: str, destination: str) -> None:
        """Atomically rename; the destination is replaced if it exists."""

    def delete(self, path: str) -> None:
        """Delete a file or a whole folder; missing paths are not an error."""

    def local_path(self, path: str) -> str | None:
        """The path on the local filesystem, when the driver has one (for locking and sendfile)."""


class StorageUnavailable(Exception):
    """The driver cannot be used as configured (no bucket, wrong credentials, unreachable): its
    message is one line saying what to fix, shown at start-up instead of a traceback."""


def put_fresh(driver: StorageDriver, path: str, data: bytes) -> None:
    """`put_content` at a path nothing appends to, by the driver's `put_fresh_content` where it
    has one (see above)."""
    getattr(driver, "put_fresh_content", driver.put_content)(path, data)
