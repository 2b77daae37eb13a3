"""Blobs: global content-addressed storage, visible to a repository only through its link.

On a store with no local files (S3), where asking for a link is a round trip, a blob GET asks for
the link while the blob's own GET is on its way, and a process remembers the links it has seen
(`LinkCache`) until any link of the store is removed: every removal rewrites the file
`state/links-removed` once the link is gone (a blob DELETE at once, garbage collection once its
sweep of links is done), and a lookup that finds
that file changed forgets everything, in every process and node that shares the store's files (as
they notice meta.git's commits by its ref file). A blob is content-addressed and never changes, and
one that is gone fails its GET whatever the cache said. A link deleted in the bucket by other means
than the registry's is not seen by a process that remembers it until the next removal through
the registry.

The processes of a store also share what they found or wrote, through `state/links-known`
(`LinkTable`): a push handled by one worker writes its links there, so the pull that follows on
another worker (or node sharing the store's files) does not ask S3 for them either, as
Distribution's one process knows the links it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from registry_core.errors import RegistryError
from registry_core.names import check_digest, split_digest
from registry_core.storage import paths
from registry_core.storage.driver import PathNotFound, StorageDriver, put_fresh

HASH_READ_SIZE = 1 << 20
LINKS_REMOVED = os.path.join("state", "links-removed")  # under the store root: see the module's docstring
LINKS_KNOWN = os.path.join("state", "links-known")      # LinkTable's file, beside it
LINK_CACHE_ENTRIES = 8192
LINK_TABLE_SLOTS = 1 << 16  # 16 bytes each: a 1 MiB file


def links_removed_path(store: str) -> str:
    return os.path.join(store, LINKS_REMOVED)


def note_links_removed(stamp_path: str) -> None:
    """Tell every process sharing the store that a link is gone: the file is replaced with new
    random content, which LinkCache compares. Call it after the link is deleted."""
    folder = os.path.dirname(stamp_path)
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".links-removed-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(uuid.uuid4().hex)  # what LinkCache compares: never the same twice
        os.replace(temporary, stamp_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class LinkTable:
    """Links found to exist, shared by every process of the store through one file of `slots`
    16-byte slots. A slot holds a hash of (stamp, repository, digest): a removal of any link (a new
    stamp) leaves every slot stale at once, and two links hashed to one slot only cost the one
    written over its next lookup (the store is asked). Reads and writes are single pread/pwrite
    calls of 16 bytes; one that fails is a miss."""

    def __init__(self, path: str, slots: int = LINK_TABLE_SLOTS):
        self.path = path
        self.slots = slots
        self._descriptor: int | None = None
        self._lock = threading.Lock()

    def knows(self, stamp: str | None, repository: str, digest: str) -> bool:
        key, offset = self._slot(stamp, repository, digest)
        try:
            return os.pread(self._open(), 16, offset) == key
        except OSError:
            return False

    def remember(self, stamp: str | None, repository: str, digest: str) -> None:
        key, offset = self._slot(stamp, repository, digest)
        with contextlib.suppress(OSError):
            os.pwrite(self._open(), key, offset)

    def forget(self, stamp: str | None, repository: str, digest: str) -> None:
        if self.knows(stamp, repository, digest):
            with contextlib.suppress(OSError):
                os.pwrite(self._open(), bytes(16), self._slot(stamp, repository, digest)[1])

    def _slot(self, stamp: str | None, repository: str, digest: str) -> tuple[bytes, int]:
        key = hashlib.blake2b(f"{stamp}\0{repository}\0{digest}".encode(), digest_size=16).digest()
        return key, int.from_bytes(key[:8], "big") % self.slots * 16

    def _open(self) -> int:
        if self._descriptor is None:
            with self._lock:
                if self._descriptor is None:
                    os.makedirs(os.path.dirname(self.path), exist_ok=True)
                    descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                    if os.fstat(descriptor).st_size < self.slots * 16:
                        os.ftruncate(descriptor, self.slots * 16)
                    self._descriptor = descriptor
        return self._descriptor


class LinkCache:
    """The (repository, digest) links this process found, valid while the stamp file is unchanged
    (module docstring). Bounded: the least recently used go first."""

    def __init__(self, stamp_path: str, entries: int = LINK_CACHE_ENTRIES, table: LinkTable | None = None):
        self.stamp_path = stamp_path
        self.entries = entries
        self.table = table      # shared with the store's other processes
        self._links: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._stamp: str | None = None
        self._lock = threading.Lock()

    def stamp(self) -> str | None:
        try:
            with open(self.stamp_path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def knows(self, repository: str, digest: str) -> tuple[bool, str | None]:
        """Whether the link is known to exist, and the stamp to `remember` it under if not."""
        stamp = self.stamp()
        with self._lock:
            if stamp != self._stamp:
                self._links.clear()
                self._stamp = stamp
            key = (repository, digest)
            if key in self._links:
                self._links.move_to_end(key)
                return True, stamp
        if self.table is not None and self.table.knows(stamp, repository, digest):
            self._keep(repository, digest, stamp)
            return True, stamp
        return False, stamp

    def remember(self, repository: str, digest: str, stamp: str | None) -> None:
        """Record a link found to exist after `stamp` was read. Every link kept was found after the
        stamp the cache holds was read, so a stamp other than the cache's starts it afresh: a
        removal since then is seen by the next `knows`, which reads the file again."""
        self._keep(repository, digest, stamp)
        if self.table is not None:
            self.table.remember(stamp, repository, digest)

    def _keep(self, repository: str, digest: str, stamp: str | None) -> None:
        with self._lock:
            if stamp != self._stamp:
                self._links.clear()
                self._stamp = stamp
            self._links[(repository, digest)] = None
            self._links.move_to_end((repository, digest))
            while len(self._links) > self.entries:
                self._links.popitem(last=False)

    def forget(self, repository: str, digest: str) -> None:
        with self._lock:
            self._links.pop((repository, digest), None)
        if self.table is not None:
            self.table.forget(self.stamp(), repository, digest)


class BlobService:
    def __init__(self, driver: StorageDriver, links_removed: str | None = None):
        """`links_removed`: the store's stamp file (links_removed_path); without it, and on a store
        with local files, no link is remembered."""
        self.driver = driver
        self.links_removed = links_removed
        self._remote = driver.local_path(paths.LINKS) is None  # asking for a link is a round trip
        self._known = (LinkCache(links_removed, table=LinkTable(os.path.join(os.path.dirname(links_removed),
                                                                           os.path.basename(LINKS_KNOWN))))
                       if self._remote and links_removed else None)
        # asks a remote store for a link beside a GET (`open`); its threads start on first use
        self._link_checks = (ThreadPoolExecutor(max_workers=16, thread_name_prefix="link-check")
                             if self._remote else None)

    def size(self, repository: str, digest: str) -> int:
        """The blob's size if `repository` may read it; BLOB_UNKNOWN otherwise. A link this process
        remembers (LinkCache) is not asked for again; the blob always is."""
        check_digest(digest)
        known, stamp = self._known.knows(repository, digest) if self._known else (False, None)
        if known or self.driver.exists(paths.link_path(repository, digest)):
            try:
                size = self.driver.size(paths.blob_path(digest))
            except PathNotFound:
                if self._known is not None:
                    self._known.forget(repository, digest)
            else:
                if self._known is not None and not known:
                    self._known.remember(repository, digest, stamp)
                return size
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in repository {repository}",
                            detail={"digest": digest})

    def open(self, repository: str, digest: str) -> tuple[BinaryIO, int]:
        """The whole blob and its size if `repository` may read it; BLOB_UNKNOWN otherwise.

        The size comes with the bytes (an S3 GET's Content-Length), not from a request of its own.
        On a remote store a link this process has seen is not asked for again (LinkCache), and
        one it has not is asked for while the blob's GET is on its way; nothing is returned before
        the link is known."""
        check_digest(digest)
        link, blob = paths.link_path(repository, digest), paths.blob_path(digest)
        if not self._remote:  # a stat: microseconds
            linked = self.driver.exists(link)
            opened = _open_or_none(self.driver, blob) if linked else None
        else:
            known, stamp = self._known.knows(repository, digest) if self._known else (False, None)
            checking = None if known else self._link_checks.submit(self.driver.exists, link)
            opened = _open_or_none(self.driver, blob)
            try:
                linked = known or checking.result()
            except BaseException:
                if opened is not None:
                    opened[0].close()
                raise
            if opened is not None and not linked:
                opened[0].close()
            if self._known is not None:
                if opened is None:  # the blob is gone: its link is no use either
                    self._known.forget(repository, digest)
                elif linked and not known:
                    self._known.remember(repository, digest, stamp)
        if linked and opened is not None:
            return opened
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in repository {repository}",
                            detail={"digest": digest})

    def is_linked(self, repository: str, digest: str) -> bool:
        return (self.driver.exists(paths.link_path(repository, digest))
                and self.driver.exists(paths.blob_path(digest)))

    def reader(self, digest: str, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset`, for a caller that has just checked with `size` that the
        repository may read it."""
        return self.driver.reader(paths.blob_path(digest), offset)

    def redirect_url(self, digest: str) -> str | None:
        """A URL the client can GET the blob from directly, when the driver offers one (S3 with
        `redirect: true`); None to serve it from here."""
        offer = getattr(self.driver, "redirect_url", None)
        return offer(paths.blob_path(digest)) if offer is not None else None

    def link(self, repository: str, digest: str) -> None:
        stamp = self._known.stamp() if self._known is not None else None
        put_fresh(self.driver, paths.link_path(repository, digest), b"")
        if self._known is not None:
            self._known.remember(repository, digest, stamp)

    def unlink(self, repository: str, digest: str) -> None:
        self.size(repository, digest)
        self.driver.delete(paths.link_path(repository, digest))
        if self.links_removed:
            note_links_removed(self.links_removed)

    def exists(self, digest: str) -> bool:
        return self.driver.exists(paths.blob_path(digest))

    def put(self, data: bytes, digest: str) -> None:
        """Store small content (manifests) whose digest the caller computed."""
        if not self.driver.exists(paths.blob_path(digest)):
            put_fresh(self.driver, paths.blob_path(digest), data)

    def read(self, digest: str) -> bytes:
        return self.driver.get_content(paths.blob_path(digest))


def _open_or_none(driver: StorageDriver, path: str) -> tuple[BinaryIO, int] | None:
    try:
        return sized_reader(driver, path)
    except PathNotFound:
        return None


def sized_reader(driver: StorageDriver, path: str) -> tuple[BinaryIO, int]:
    """The file and its size, from one read where the driver offers it (storage/driver.py)."""
    offer = getattr(driver, "sized_reader", None)
    if offer is not None:
        return offer(path)
    size = driver.size(path)
    return driver.reader(path), size


def hash_file(driver: StorageDriver, path: str, algorithm: str, missing_is_empty: bool = True) -> str:
    """The digest of the file at `path`; a missing file is empty (an upload that received no
    bytes has no data file yet) unless `missing_is_empty` is False (then PathNotFound)."""
    hasher = hashlib.new(algorithm)
    try:
        with driver.reader(path) as f:
            while chunk := f.read(HASH_READ_SIZE):
                hasher.update(chunk)
    except PathNotFound:
        if not missing_is_empty:
            raise
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(digest: str) -> str:
    return split_digest(digest)[0]
