"""Fetching one blob into a local sink, verified: the size must be the descriptor's and the digest
must match before the caller may make the bytes visible. A dropped connection resumes with a
Range request from the last byte received; a registry that ignores Range is handled by
skipping the bytes already received."""

from __future__ import annotations

import threading
import time

from registry_core.client import manifests as mf
from registry_core.client.errors import NetworkError, VerificationError
from registry_core.client.session import RETRIES, Retryable
from registry_core.client.streams import CHUNK, TRANSIENT_READ_ERRORS, Meter, Opener


def download(open_at: Opener, descriptor: mf.Descriptor, write, *, progress=None,
             cancel: threading.Event | None = None, what: str = "blob") -> None:
    """Read the blob into `write(memoryview)` (the view is reused: copy it to keep it); raise
    VerificationError on a size or digest mismatch."""
    size, digest = descriptor.size, descriptor.digest
    meter = Meter(progress, cancel, mf.hasher(digest))
    received, failures = 0, 0
    buffer = memoryview(bytearray(CHUNK))
    while True:
        meter.check()
        try:
            reader = open_at(received)
        except Retryable as failure:
            reader, error = None, failure
        else:
            error = None
        if reader is not None:
            try:
                while True:
                    meter.check()
                    try:
                        count = reader.readinto(buffer[:min(CHUNK, size - received + 1)])
                    except TRANSIENT_READ_ERRORS as failure:
                        error = failure
                        break
                    data = buffer[:count]
                    if not count:
                        if received < size:  # the body ended early without an error: resume too
                            error = ConnectionError(f"the body ended after {received} of {size} bytes")
                        break
                    received += count
                    if received > size:
                        raise VerificationError(f"{what} {digest}: the registry sent more than the "
                                                f"{size} bytes its descriptor gives", code="SIZE_MISMATCH",
                                                detail={"digest": digest, "expected": size})
                    meter.count(data)
                    write(data)
            finally:
                reader.close()
        if error is None:
            break
        failures += 1
        if failures > RETRIES:
            raise NetworkError(f"downloading {what} {digest} failed {failures} times; last: {error}")
        time.sleep(min(0.1 * 2 ** failures, 2))
    if received != size:
        raise VerificationError(f"{what} {digest}: the registry sent {received} bytes, the descriptor "
                                f"gives {size}", code="SIZE_MISMATCH",
                                detail={"digest": digest, "expected": size, "received": received})
    actual = f"{digest.split(':')[0]}:{meter.hasher.hexdigest()}"
    if actual != digest:
        raise VerificationError(f"{what} {digest}: the content received has digest {actual}",
                                detail={"expected": digest, "actual": actual})
