"""The recorded events of an outbox: one append-only journal per writing process, so that a
request records its event with one `write` (plus an fdatasync when the store is durable) rather
than a file of its own.

    <events>/<ns>-<pid>-<random>.journal   one line of JSON an event: {"name", "occurrence", "deliveries"}
    <events>/read.json                      {journal: offset}: every event before the offset is settled

A writing process makes its journal under a temporary name, takes a flock on it and only then
gives it its name, so a journal is always locked while its writer may still append to it; it
starts another once the journal holds ROTATE_AT bytes, or after a failed write (a torn record
ends a journal: nothing is ever appended behind one). A forked child writes a journal of its own.

The delivering process (the holder of worker.lock) reads each journal from the offset it has read
to, keeps only whole lines (a line still being written, or torn by a writer killed mid-write,
has no newline yet), and settles the events in any order; the offset in `read.json` moves past
the settled prefix of each journal. It is written at most every FLUSH_EVERY seconds, and at once
when nothing is left to settle: a crash in between splits those events again, and the Worker's
first round skips the deliveries already queued or logged (at least once, the same name and id).
A journal whose writer has gone (its flock is free) is removed once it is settled to its end; a
torn last record is then ignored, logged.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
import weakref

ROTATE_AT = 4 << 20  # bytes of a journal after which its writer starts another
FLUSH_EVERY = 0.25  # seconds between two writes of read.json while events are settled
READ = "read.json"
JOURNAL = re.compile(r"[0-9]{20}-[0-9]+-[0-9a-f]{8}\.journal")
EVENT_NAME = re.compile(r"[0-9]{20}-[0-9a-f]{32}\.json")
log = logging.getLogger("registry_core.webhooks")

_writers: weakref.WeakSet = weakref.WeakSet()


def _forget_after_fork() -> None:
    for journal in list(_writers):
        journal._forget_writer()


os.register_at_fork(after_in_child=_forget_after_fork)


class EventJournal:
    def __init__(self, folder: str, durable: bool = False):
        self.folder = folder
        self.durable = durable
        # the writing side: this process's journal
        self._fd: int | None = None
        self._size = 0
        self._write_lock = threading.Lock()
        _writers.add(self)
        # the reading side (the delivering process only)
        self._lock = threading.Lock()
        self._offsets: dict[str, int] | None = None  # read.json: per journal, settled up to
        self._read_to: dict[str, int] = {}  # per journal: read up to (whole lines)
        self._unsettled: dict[str, collections.deque] = {}  # per journal: [name, end, settled] in order
        self._events: dict[str, tuple[list, dict]] = {}  # name: (its entry, the event) not settled yet
        self._dirty = False
        self._flushed = 0.0

    # --- writing ----------------------------------------------------------------------------------

    def append(self, name: str, event: dict) -> None:
        """Append event `name` to this process's journal: one write, then fdatasync if durable."""
        line = json.dumps({"name": name, **event}, separators=(",", ":")).encode() + b"\n"
        with self._write_lock:
            if self._fd is None or self._size >= ROTATE_AT:
                self._start()
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.EIO, f"a short write to the webhooks' journal ({written} of {len(line)} bytes)")
                if self.durable:
                    os.fdatasync(self._fd)
            except BaseException:
                self._close()  # a torn record ends this journal: the next event starts another
                raise
            self._size += len(line)

    def _start(self) -> None:
        self._close()
        os.makedirs(self.folder, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.journal"
        temporary = os.path.join(self.folder, name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # before it has a name the reader looks at
            os.rename(temporary, os.path.join(self.folder, name))
            if self.durable:
                folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, 0

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # the flock goes with it: the reader may remove the journal once it is settled

    def _forget_writer(self) -> None:
        """In a forked child: the parent's journal stays the parent's (its lock too)."""
        self._write_lock = threading.Lock()
        self._close()

    # --- reading (the delivering process) -------------------------------------------------------

    def journals(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self.folder) if JOURNAL.fullmatch(name))
        except FileNotFoundError:
            return []

    def settled_offsets(self) -> dict[str, int]:
        """read.json as last written: per journal, the offset every event before is settled to."""
        try:
            with open(os.path.join(self.folder, READ), "rb") as f:
                offsets = json.loads(f.read())
            return {key: value for key, value in offsets.items() if JOURNAL.fullmatch(key) and isinstance(value, int)}
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error("webhooks: %s is not a journal's offsets; reading every journal from its start",
                      os.path.join(self.folder, READ))
            return {}

    def _lines(self, journal: str, start: int) -> tuple[list[tuple[int, dict | None]], int, bool]:
        """The whole lines of `journal` from `start`: (end offset, event or None when it cannot be
        read) each; the offset after the last whole line; whether bytes follow it (a line being
        written, or torn)."""
        try:
            with open(os.path.join(self.folder, journal), "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return [], start, False
        whole = data.rfind(b"\n") + 1
        found, position = [], start
        for line in data[:whole].split(b"\n")[:-1]:
            position += len(line) + 1
            try:
                event = json.loads(line)
                if not EVENT_NAME.fullmatch(event["name"]):
                    raise ValueError(event["name"])
            except (ValueError, KeyError, TypeError):
                log.error("webhooks: a line of %s ending at byte %d is not an event; skipped", journal, position)
                event = None
            found.append((position, event))
        return found, start + whole, whole < len(data)

    def recorded(self) -> list[str]:
        """Read what the journals hold past what was read; the names of the events not settled,
        oldest first. Journals settled to their end whose writer has gone are removed."""
        with self._lock:
            if self._offsets is None:
                self._offsets = self.settled_offsets()
            for journal in self.journals():
                start = self._read_to.get(journal, self._offsets.get(journal, 0))
                lines, read_to, torn = self._lines(journal, start)
                entries = self._unsettled.setdefault(journal, collections.deque())
                for end, event in lines:
                    entry = [event["name"] if event else None, end, event is None]
                    entries.append(entry)
                    if event is not None:
                        self._events[entry[0]] = (entry, event)
                self._read_to[journal] = read_to
                self._advance(journal)
                if not entries and self._offsets.get(journal, 0) == read_to and self._writer_gone(journal):
                    lines, _, torn = self._lines(journal, read_to)  # (appended to before its writer went)
                    if lines:
                        continue  # read next round
                    if torn:
                        log.warning("webhooks: %s ends in a torn record (its writer died writing it); ignored", journal)
                    os.unlink(os.path.join(self.folder, journal))
                    self._offsets.pop(journal, None)
                    self._read_to.pop(journal, None)
                    del self._unsettled[journal]
                    self._dirty = True
            for journal in [journal for journal in self._offsets if journal not in self._read_to]:
                del self._offsets[journal]  # removed: its offset is no use
            names = sorted(self._events)
        self.flush()
        return names

    def _writer_gone(self, journal: str) -> bool:
        try:
            fd = os.open(os.path.join(self.folder, journal), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def event(self, name: str) -> dict | None:
        """A read, unsettled event ({occurrence, deliveries}), or None."""
        with self._lock:
            found = self._events.get(name)
        return None if found is None else {"occurrence": found[1]["occurrence"], "deliveries": found[1]["deliveries"]}

    def settle(self, name: str) -> bool:
        """Event `name` needs nothing more of its journal (each delivery is queued or logged);
        False when it is not one of the journals' unsettled events."""
        with self._lock:
            found = self._events.pop(name, None)
            if found is None:
                return False
            found[0][2] = True
            for journal, entries in self._unsettled.items():
                if entries and entries[0][2]:
                    self._advance(journal)
            idle = not self._events
        if idle or time.monotonic() - self._flushed >= FLUSH_EVERY:
            self.flush()
        return True

    def _advance(self, journal: str) -> None:
        entries = self._unsettled[journal]
        while entries and entries[0][2]:
            self._offsets[journal] = entries.popleft()[1]
            self._dirty = True

    def flush(self) -> None:
        """Write read.json, if an offset moved since it was written (whole, renamed)."""
        with self._lock:
            if not self._dirty:
                return
            data = json.dumps(self._offsets, separators=(",", ":")).encode()
            self._dirty = False
            self._flushed = time.monotonic()
            path = os.path.join(self.folder, READ)
            temporary = f"{path}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                os.write(fd, data)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)

    def unsettled(self) -> list[tuple[str, dict]]:
        """(name, event) of every event past read.json's offsets, oldest first, as any process
        sees them (the deliveries API, /metrics): some may be split already."""
        offsets = self.settled_offsets()
        found = []
        for journal in self.journals():
            lines, _, _ = self._lines(journal, offsets.get(journal, 0))
            found += [(event["name"], event) for _, event in lines if event is not None]
        return sorted(found, key=lambda pair: pair[0])
