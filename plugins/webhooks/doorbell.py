"""Waking the delivery process from any other process on the machine: a named pipe (FIFO) at
`state/webhooks/doorbell`. A request that recorded an event, a ping, a redelivery (from the API or
the command line) writes one byte to it; the delivery process, which listens, looks at the outbox
at once instead of at its next `pollInterval`.

Rings are gathered: after waking the delivery process the listener waits GATHER before it reads
the pipe again, so that under a stream of pushes one wake (one round of the delivery process's
main loop, one sender thread per hook) carries every event recorded meanwhile, rather than one
each; the first event after a quiet spell is looked at at once.

A ring is a hint, never the record: the outbox files are written first, and the delivery process
still looks every `pollInterval`, so a ring lost (no listener yet, the pipe full, a process on
another node sharing the store, where a FIFO does not reach) only delays a delivery. Ringing
never blocks and never raises: it is one write() on a file descriptor kept open.
"""

from __future__ import annotations

import os
import select
import stat
import threading
import time

BELL = "doorbell"
_RING = b"\0"
GATHER = 0.05  # seconds between two wakes by the bell, at least


class Doorbell:
    def __init__(self, folder: str):
        self.path = os.path.join(folder, BELL)
        self._fd: int | None = None
        self._lock = threading.Lock()  # guards opening and closing _fd

    def ring(self) -> None:
        """Wake the listening process, if one listens on this machine."""
        with self._lock:
            if self._fd is None:
                self._fd = _open_for_ringing(self.path)
                if self._fd is None:
                    return
            try:
                os.write(self._fd, _RING)
            except BlockingIOError:
                pass  # the pipe is full of rings the listener has not read yet: it will wake
            except OSError:  # EPIPE: the listener went away; open the bell again at the next ring
                os.close(self._fd)
                self._fd = None

    def listen(self, wake: threading.Event, until: int) -> None:
        """Set `wake` each time the bell rings, until the pipe `until` (a file descriptor: the
        process that started this one writes nothing to it and holds its other end) is closed."""
        _make_fifo(self.path)
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # A writer of our own, so that the pipe never reads as closed when no one else has it open.
        keeper = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            while True:
                ready, _, _ = select.select([reader, until], [], [])
                if reader in ready:
                    try:
                        os.read(reader, 65536)  # every ring so far (a pipe holds 64 KiB): one wake for all
                    except BlockingIOError:
                        pass
                    wake.set()
                if until in ready and not os.read(until, 4096):
                    return
                if reader in ready:
                    time.sleep(GATHER)  # the rings meanwhile wait in the pipe: one wake for all
        finally:
            os.close(reader)
            os.close(keeper)


def _open_for_ringing(path: str) -> int | None:
    """A descriptor to write rings to, or None: no bell yet (ENOENT), nobody listening (ENXIO),
    or something else than a FIFO at `path` (never written to)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _make_fifo(path: str) -> None:
    """The FIFO at `path`, made when missing; anything else there is replaced (only the listener,
    the holder of the outbox's lock, makes it). One that exists is kept: ringing processes hold
    it open."""
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path, 0o600)
