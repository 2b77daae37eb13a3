"""Upload sessions: bytes received so far, in the store (on disk, or in S3 through the driver's
`append`), so any worker process can continue any session.

A session is `uploads/<uuid>/` (see storage/paths.py). Chunks are appended under an exclusive
lock on the session; a chunk whose start is not the current end is refused (416). Completing
checks the digest and only then moves the data into `blobs/` by atomic rename and links the blob
into the repository: validate → move → link → remove the session, as Distribution's blobwriter.

Hashing: the process that received the bytes keeps a running hash keyed by (session, offset), so a
session handled by one process is hashed once as it streams in; when another process appended in
between, the offsets disagree and the data is hashed again from disk.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import threading
import uuid
from collections import OrderedDict
from typing import Iterable

from registry_core.errors import RegistryError
from registry_core.names import check_digest
from registry_core.registry.blobs import BlobService, algorithm_of, hash_file
from registry_core.storage import paths
from registry_core.storage.driver import PathNotFound, StorageDriver, put_fresh

UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RUNNING_HASHES_KEPT = 256
SESSION_LOCKS = 64  # sessions share these locks by hash when the driver has no local files


class UploadService:
    def __init__(self, driver: StorageDriver, blobs: BlobService):
        self.driver = driver
        self.blobs = blobs
        self._hashes: OrderedDict[str, tuple[int, "hashlib._Hash"]] = OrderedDict()
        self._hashes_lock = threading.Lock()
        self._session_locks = [threading.Lock() for _ in range(SESSION_LOCKS)]

    def start(self, repository: str) -> str:
        upload_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        try:
            put_fresh(self.driver, paths.upload_started_path(upload_id), now.encode())
            put_fresh(self.driver, paths.upload_repository_path(upload_id), repository.encode())
        except BaseException:  # a full disk: no session half-made
            self.driver.delete(paths.upload_dir(upload_id))
            raise
        return upload_id

    @staticmethod
    def _unknown(repository: str, upload_id: str) -> RegistryError:
        return RegistryError("BLOB_UPLOAD_UNKNOWN",
                             f"upload {upload_id} is unknown in repository {repository}: it was "
                             "completed, cancelled or expired; start a new upload with POST",
                             detail={"uuid": upload_id})

    def _check(self, repository: str, upload_id: str) -> None:
        unknown = self._unknown(repository, upload_id)
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise unknown
        try:
            owner = self.driver.get_content(paths.upload_repository_path(upload_id)).decode()
        except PathNotFound:
            raise unknown from None
        if owner != repository:
            raise unknown

    def offset(self, repository: str, upload_id: str) -> int:
        self._check(repository, upload_id)
        return self._size(upload_id)

    def _size(self, upload_id: str) -> int:
        try:
            return self.driver.size(paths.upload_data_path(upload_id))
        except PathNotFound:
            return 0

    @contextlib.contextmanager
    def _locked(self, repository: str, upload_id: str):
        """Hold the session's lock: one writer at a time, across threads and processes. A session
        removed (completed or cancelled by another request) before or while this waited for it
        is BLOB_UPLOAD_UNKNOWN."""
        lock_path = self.driver.local_path(paths.upload_dir(upload_id) + "/lock")
        if lock_path is None:  # drivers without a local filesystem (S3) serialise within the process
            with self._session_locks[hash(upload_id) % len(self._session_locks)]:
                yield
            return
        try:
            lock_file = open(lock_path, "a")
        except (FileNotFoundError, NotADirectoryError):
            raise self._unknown(repository, upload_id) from None
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                if os.fstat(lock_file.fileno()).st_nlink == 0:  # its folder was removed meanwhile
                    raise self._unknown(repository, upload_id)
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def append(self, repository: str, upload_id: str, chunks: Iterable[bytes],
               start: int | None = None) -> int:
        """Append a chunk; `start` (from Content-Range) must be the current end. Returns the new size."""
        self._check(repository, upload_id)
        with self._locked(repository, upload_id):
            return self._append_locked(repository, upload_id, chunks, start)

    def _append_locked(self, repository: str, upload_id: str, chunks: Iterable[bytes], start: int | None) -> int:
        before: list = []  # [the size before this append, its running hash or None]

        def starting(current: int) -> None:
            if start is not None and start != current:
                raise RegistryError(
                    "RANGE_INVALID",
                    f"chunk starts at byte {start} but the upload has {current} bytes: send the "
                    f"chunk that starts at {current} (GET the upload URL for its status)",
                    headers={"Range": range_header(current)},
                    detail={"expected": current, "received": start})
            before[:] = [current, self._running_hash(upload_id, current)]

        written = [0]

        def hashed(stream):
            hasher = before[1]
            for chunk in stream:
                if hasher is not None:
                    hasher.update(chunk)
                written[0] += len(chunk)
                yield chunk
        # The running hash is taken out of the table when the append starts (`_running_hash`) and
        # put back only when it saw every byte appended: a failed append leaves none behind.
        data_path = paths.upload_data_path(upload_id)
        append_from = getattr(self.driver, "append_from", None)
        try:
            if append_from is not None:  # the driver tells the size it appends to (S3: no HEAD for it)
                size = append_from(data_path, hashed(chunks), starting)
            else:
                starting(self._size(upload_id))
                size = self.driver.append(data_path, hashed(chunks))
        except RegistryError:
            raise
        except Exception:
            self._unless_removed_meanwhile(repository, upload_id)
            raise
        current, hasher = before
        if hasher is not None and size == current + written[0]:
            self._remember_hash(upload_id, size, hasher)
        else:
            self._forget_hash(upload_id)
        return size

    def _unless_removed_meanwhile(self, repository: str, upload_id: str) -> None:
        """After an append failed: if another request (on another node, where the session's lock
        does not reach) cancelled or completed the session meanwhile, remove what the append left
        (a tail, a multipart upload) and answer BLOB_UPLOAD_UNKNOWN; else return, for the caller
        to raise its own error."""
        try:
            self._check(repository, upload_id)
        except RegistryError:
            self.cancel_quietly(upload_id)
            raise

    def finish(self, repository: str, upload_id: str, digest: str,
               chunks: Iterable[bytes] | None = None, start: int | None = None) -> int:
        """Complete the upload: verify `digest`, publish the blob, link it, end the session.
        `chunks` is a last chunk; `start` (from its Content-Range) must be the current end. The
        last chunk and the completion hold the session's lock together, so no other chunk can
        come between them (and the size the append returns is the size checked)."""
        check_digest(digest)
        self._check(repository, upload_id)
        with self._locked(repository, upload_id):
            try:
                size = self._complete_locked(repository, upload_id, digest, chunks, start)
            except RegistryError:
                raise
            except Exception as e:
                # Its bytes gone while this completed them (S3: a 404, or another status, from
                # sealing what was sealed or removed meanwhile): another request (a retried PUT on
                # another worker or node, where the session's lock does not reach) completed or
                # cancelled the same session. Nothing is linked on the other's word.
                if not isinstance(e, PathNotFound) and self.driver.exists(paths.upload_data_path(upload_id)):
                    raise  # its bytes are still there: a failure of its own
                self._check(repository, upload_id)  # gone by now: BLOB_UPLOAD_UNKNOWN
                raise self._completed_elsewhere(repository, upload_id, digest) from None
        self.cancel_quietly(upload_id)
        return size

    def _completed_elsewhere(self, repository: str, upload_id: str, digest: str) -> RegistryError:
        return RegistryError(
            "BLOB_UPLOAD_INVALID", f"another request is completing upload {upload_id} at the same time, "
            f"so this one stopped: HEAD /v2/{repository}/blobs/{digest} tells when the blob is there",
            status=409, detail={"uuid": upload_id})

    def _complete_locked(self, repository: str, upload_id: str, digest: str,
                         chunks: Iterable[bytes] | None, start: int | None) -> int:
        """`finish`'s work under the session's lock: the last chunk, the digest's check, the blob
        published and linked; its size."""
        if chunks is not None:
            size = self._append_locked(repository, upload_id, chunks, start)
        else:
            size = self._size(upload_id)
        actual = self._digest(upload_id, size, algorithm_of(digest))
        if actual != digest:
            # Another request may have completed this session since it was checked (a retried
            # PUT on another worker or node): that is an unknown upload, not wrong bytes. Caught
            # between its publishing the blob and its removing the session, this sees no bytes;
            # whether the blob exists is not asked here (that would tell any pusher which
            # digests the registry holds), the message says what to do instead.
            self._check(repository, upload_id)
            hint = (" (if another request completed this upload at the same time, HEAD the blob "
                    "to see it)") if size == 0 else ""
            raise RegistryError(
                "DIGEST_INVALID",
                f"the uploaded content ({size} bytes) has digest {actual}, not {digest}: the upload "
                f"is kept, so the missing or corrected bytes can still be sent{hint}",
                detail={"expected": digest, "actual": actual, "size": size})
        data_path = paths.upload_data_path(upload_id)
        if size == 0 and not self.driver.exists(data_path):  # no chunk ever came: an empty blob
            self.driver.put_content(data_path, b"")
        if self.blobs.exists(digest):
            self.driver.delete(data_path)
        else:
            self.driver.move(data_path, paths.blob_path(digest))
        self.blobs.link(repository, digest)
        return size

    def cancel(self, repository: str, upload_id: str) -> None:
        self._check(repository, upload_id)
        self.cancel_quietly(upload_id)

    def cancel_quietly(self, upload_id: str) -> None:
        self._forget_hash(upload_id)
        self.driver.delete(paths.upload_dir(upload_id))

    def _digest(self, upload_id: str, size: int, algorithm: str) -> str:
        with self._hashes_lock:
            running = self._hashes.get(upload_id)
        if running is not None and running[0] == size and running[1].name == algorithm:
            return f"{algorithm}:{running[1].copy().hexdigest()}"
        # (an upload with bytes whose data is gone raises PathNotFound: see finish)
        return hash_file(self.driver, paths.upload_data_path(upload_id), algorithm, missing_is_empty=size == 0)

    def _running_hash(self, upload_id: str, offset: int):
        with self._hashes_lock:
            running = self._hashes.pop(upload_id, None)
        if running is not None and running[0] == offset:
            return running[1]
        if offset == 0:
            return hashlib.sha256()
        return None  # another process appended: hash from disk when the upload completes

    def _remember_hash(self, upload_id: str, offset: int, hasher) -> None:
        with self._hashes_lock:
            self._hashes[upload_id] = (offset, hasher)
            while len(self._hashes) > RUNNING_HASHES_KEPT:
                self._hashes.popitem(last=False)

    def _forget_hash(self, upload_id: str) -> None:
        with self._hashes_lock:
            self._hashes.pop(upload_id, None)


def range_header(size: int) -> str:
    # Distribution's convention: "0-0" for an empty upload, else the inclusive last byte offset.
    return f"0-{max(size - 1, 0)}"


def parse_content_range(value: str) -> tuple[int, int]:
    """Parse a PATCH Content-Range "<start>-<end>" (inclusive); RANGE_INVALID if malformed."""
    match = re.fullmatch(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/[0-9]{1,19}|/\*)?", value.strip())
    if not match or int(match.group(2)) < int(match.group(1)):
        raise RegistryError("RANGE_INVALID", f"malformed Content-Range {value!r}: expected <start>-<end>")
    return int(match.group(1)), int(match.group(2))
