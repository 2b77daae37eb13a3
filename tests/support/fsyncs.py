"""What a durable write puts on disk: the real os.fsync/os.fdatasync, recorded."""

from __future__ import annotations

import os


def record_syncs(monkeypatch) -> list[str]:
    """Record the path of every file or folder os.fsync/os.fdatasync is called on, in order; the
    real calls still run."""
    synced = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def recording(fd, real=real):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            return real(fd)
        monkeypatch.setattr(os, name, recording)
    return synced
