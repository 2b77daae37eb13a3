"""The filesystem driver: the store is a plain directory tree, safe on shared storage.

Whole-content writes go to a temporary file in the destination folder and are renamed into place,
so a crash leaves at worst a stray temporary file, never a half-written blob.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import BinaryIO, Iterator

from registry_core.errors import is_storage_full
from registry_core.storage.driver import PathNotFound

# The mode open() would give a new file. mkstemp creates 0600, which would make content written by
# put_content unreadable to the other users or services sharing the store (appended files are not).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: str, durable: bool = False):
        """`durable` (registry.yaml storage.durable): content and appended chunks are on disk
        (fsync), and so are the names of files written or moved, before a call returns."""
        self.root = os.path.abspath(root)
        self.durable = durable
        os.makedirs(self.root, exist_ok=True)

    def local_path(self, path: str) -> str:
        return os.path.join(self.root, path)

    def get_content(self, path: str) -> bytes:
        try:
            with open(self.local_path(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFound(path) from e

    def put_content(self, path: str, data: bytes) -> None:
        target = self.local_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), _FILE_MODE)
                f.write(data)
                if self.durable:
                    f.flush()
                    os.fdatasync(f.fileno())
            os.replace(temporary, target)
            if self.durable:
                sync_folder(os.path.dirname(target))
        except BaseException:
            _remove_quietly(temporary)
            raise

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self.local_path(path), "rb")
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFound(path) from e
        if offset:
            f.seek(offset)
        return f

    def sized_reader(self, path: str) -> tuple[BinaryIO, int]:
        f = self.reader(path)
        return f, os.fstat(f.fileno()).st_size

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append; when the disk is full (ENOSPC, EDQUOT) the file is cut back to its size before
        this call, so an upload stays at the offset its client last saw, whole chunks only."""
        target = self.local_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        start = None
        try:
            with open(target, "ab") as f:
                start = f.tell()
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                if self.durable:
                    os.fdatasync(f.fileno())
                return f.tell()
        except OSError as e:
            if start is not None and is_storage_full(e):
                with contextlib.suppress(OSError):
                    os.truncate(target, start)
            raise

    def size(self, path: str) -> int:
        try:
            return os.stat(self.local_path(path)).st_size
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFound(path) from e

    def exists(self, path: str) -> bool:
        return os.path.exists(self.local_path(path))

    def list(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.local_path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def move(self, source: str, destination: str) -> None:
        target = self.local_path(destination)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(self.local_path(source), target)
        except FileNotFoundError as e:
            raise PathNotFound(source) from e
        if self.durable:
            sync_folder(os.path.dirname(target))

    def delete(self, path: str) -> None:
        target = self.local_path(path)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            _remove_quietly(target)


def sync_folder(path: str) -> None:
    """Make the renames and removals in the folder `path` durable (its entries on disk)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
