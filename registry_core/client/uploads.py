"""Pushing one blob: a chunked upload (POST, PATCH with Content-Range, PUT ?digest=) that resumes
after a dropped connection.

After a failure the client asks the registry how much it holds (`GET <upload location>` →
`Range: 0-<last>`) and continues from there, re-opening its source at that offset. A registry that
has lost or refused the session (Distribution 2.8 cancels an upload whose stored size no longer
matches the state in its Location) gets a fresh upload from byte 0. The digest is checked by
the registry when the upload completes; when the bytes come from another registry (copy) the
client also hashes them on the way and refuses to complete an upload whose content is wrong.
"""

from __future__ import annotations

import threading
import time

from registry_core.client import manifests as mf
from registry_core.client.errors import ClientError, NetworkError, NotFound, VerificationError
from registry_core.client.session import RETRIES, RegistrySession, Retryable
from registry_core.client.streams import TRANSIENT_READ_ERRORS, Meter, Opener

DEFAULT_CHUNK_SIZE = 64 << 20
_RESUMABLE_CODES = ("RANGE_INVALID", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "HTTP_416")


class ChunkBody:
    """Exactly `length` bytes of a reader, as a request body of known length (so requests sends
    Content-Length, not chunked transfer encoding, and urllib3 reads it in large blocks)."""

    def __init__(self, reader, length: int, meter: Meter):
        self.reader = reader
        self.remaining = length
        self.length = length
        self.meter = meter

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        self.meter.check()
        if self.remaining <= 0:
            return b""
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.reader.read(size)
        if not data:
            raise ClientError(f"the source ended {self.remaining} bytes before the end of the blob",
                              code="SOURCE_SHORT")
        self.remaining -= len(data)
        self.meter.count(data)
        return data

    def __iter__(self):
        while data := self.read(1 << 20):
            yield data


def upload(session: RegistrySession, repository: str, descriptor: mf.Descriptor, open_at: Opener, *,
           chunk_size: int = DEFAULT_CHUNK_SIZE, progress=None, cancel: threading.Event | None = None,
           verify: bool = False) -> int:
    """Upload one blob; returns how many times it had to resume."""
    size, digest = descriptor.size, descriptor.digest
    meter = Meter(progress, cancel, mf.hasher(digest) if verify else None)
    location = session.start_upload(repository)
    offset, resumes, failures = 0, 0, 0
    reader = open_at(0)
    try:
        while True:
            try:
                while offset < size:
                    length = min(chunk_size, size - offset)
                    body = ChunkBody(reader, length, meter)
                    try:
                        location, received = session.upload_chunk(repository, location, body, offset, length)
                    except ClientError as e:
                        if e.code in _RESUMABLE_CODES:
                            raise Retryable(e.message) from e
                        raise
                    if received != offset + length:
                        raise Retryable(f"the registry holds {received} bytes, expected {offset + length}")
                    offset = received
                if meter.hasher is not None:
                    actual = f"{digest.split(':')[0]}:{meter.hasher.hexdigest()}"
                    if actual != digest:
                        session.cancel_upload(repository, location)
                        raise VerificationError(f"blob {digest} from the source has digest {actual}; "
                                                "the upload was cancelled",
                                                detail={"expected": digest, "actual": actual})
                try:
                    session.finish_upload(repository, location, digest)
                except NotFound:  # a retried PUT whose first attempt had completed the upload
                    if not session.has_blob(repository, digest):
                        raise
                return resumes
            except (Retryable, *TRANSIENT_READ_ERRORS) as failure:
                failures += 1
                if failures > RETRIES:
                    raise NetworkError(f"uploading {digest} to {repository} failed {failures} times; "
                                       f"last: {failure}") from None
                time.sleep(min(0.1 * 2 ** failures, 2))
                meter.check()
                if offset >= size and session.has_blob(repository, digest):
                    return resumes
                status = session.upload_status(repository, location)
                if status is None:
                    location, offset = session.start_upload(repository), 0
                else:
                    location, offset = status
                resumes += 1
                meter.hasher = None  # a resumed stream's hash would not cover the whole blob
                reader.close()
                reader = open_at(offset)
                if progress is not None:
                    progress.reset_to(offset)
    finally:
        reader.close()
