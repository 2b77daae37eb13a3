"""Each hook's delivery log: its delivered and failed (dead letter) deliveries, appended one line
each to a file of the hook's, so that logging a delivery is one write rather than a file.

    hooks/<hook>/log.jsonl       {"name": "<seq>", "record": {...}} a line, in the order they were logged
    hooks/<hook>/log.old.jsonl   the lines before: log.jsonl becomes it once it holds `kept` lines
    hooks/<hook>/log/<seq>.json  an older version's log, a file a delivery: read as the oldest
                                 lines until the delivering process moves it into log.jsonl (adopt)

Only the delivering process (the holder of worker.lock) appends; any process reads. A delivery
logged again (redelivered) has a newer line under the same name: the newest line of a name is
its record. The newest `kept` deliveries are shown (between `kept` and twice that are on disk).
A line torn by a crash mid-write has no newline: the next writer ends it first, and readers skip
a line they cannot read.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading

CURRENT = "log.jsonl"
OLD = "log.old.jsonl"
OLDER_VERSION = "log"  # a folder of one file a delivery
PREFIX = b'{"name":"'  # every line starts with its name, so names are read without parsing the records
log = logging.getLogger("registry_core.webhooks")


class DeliveryLog:
    def __init__(self, hooks: str, kept: int, durable: bool = False):
        self.hooks = hooks
        self.kept = kept
        self.durable = durable
        self._lock = threading.Lock()
        self._open: dict[str, list] = {}  # per hook: [fd of log.jsonl, its lines]
        self._names: dict[str, set[str]] = {}  # per hook: the names logged, once read (logged())

    def _path(self, key: str, segment: str = CURRENT) -> str:
        return os.path.join(self.hooks, key, segment)

    def append(self, key: str, name: str, record: dict) -> None:
        """Log `record` under `name`: one write to the hook's log.jsonl (rotated first when full)."""
        self._append_line(key, name, _line(name, record))

    def _append_line(self, key: str, name: str, line: bytes) -> None:
        line += b"\n"
        with self._lock:
            current = self._open.get(key)
            if current is not None and current[1] >= self.kept:
                os.close(current[0])
                os.replace(self._path(key), self._path(key, OLD))
                current = None
            if current is None:
                current = self._open[key] = self._start(key)
            try:
                written = os.write(current[0], line)
                if written != len(line):
                    raise OSError(errno.EIO, f"a short write to {self._path(key)} ({written} of {len(line)} bytes)")
                if self.durable:
                    os.fdatasync(current[0])
            except BaseException:
                os.close(self._open.pop(key)[0])  # opened again (its torn line ended) by the next append
                raise
            current[1] += 1
            if key in self._names:
                self._names[key].add(name)

    def _start(self, key: str) -> list:
        """[fd, lines] of the hook's log.jsonl, open to append; a torn last line is ended first."""
        os.makedirs(os.path.join(self.hooks, key), exist_ok=True)
        fd = os.open(self._path(key), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                os.write(fd, b"\n")
                data += b"\n"
        except BaseException:
            os.close(fd)
            raise
        return [fd, data.count(b"\n")]

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()

    # --- reading --------------------------------------------------------------------------------

    def _lines(self, key: str) -> list[bytes]:
        """The hook's log lines, oldest first (log.jsonl is read first: rotated meanwhile, its lines
        are in both, not in neither), after those of an older version's files not adopted yet."""
        segments = []
        for segment in (CURRENT, OLD):
            try:
                with open(self._path(key, segment), "rb") as f:
                    segments.append(f.read())
            except FileNotFoundError:
                segments.append(b"")
        lines = [line for line in segments[1].split(b"\n") + segments[0].split(b"\n") if line.startswith(PREFIX)]
        older = self._older_version_lines(key)
        return older + lines if older else lines

    def _older_version_lines(self, key: str) -> list[bytes]:
        """The records of `log/<seq>.json` (an older version's log) as lines, by name; a record
        that cannot be read (edited by hand) is skipped."""
        folder = self._path(key, OLDER_VERSION)
        try:
            names = sorted(name for name in os.listdir(folder) if name.endswith(".json"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        lines = []
        for name in names:
            try:
                with open(os.path.join(folder, name), "rb") as f:
                    record = json.loads(f.read())
            except (FileNotFoundError, ValueError):
                continue
            lines.append(_line(name, record))
        return lines

    def adopt(self, key: str) -> int:
        """Append the hook's older-version log files to log.jsonl, oldest first, then remove their
        folder (pruned copies and unreadable records with it). Interrupted, it is done again: a
        delivery logged twice has the same record (the newest line of a name is read). How many
        deliveries were moved."""
        older = self._older_version_lines(key)
        if not older and not os.path.isdir(self._path(key, OLDER_VERSION)):
            return 0
        for line in older:
            self._append_line(key, self._name(line), line)
        shutil.rmtree(self._path(key, OLDER_VERSION))
        log.info("webhooks: %d deliveries of hook %s moved from log/ to log.jsonl", len(older), key)
        return len(older)

    @staticmethod
    def _name(line: bytes) -> str:
        return line[len(PREFIX):line.index(b'"', len(PREFIX))].decode()

    def _newest(self, key: str) -> dict[str, bytes]:
        """The newest line of each name, of the newest `kept` names logged."""
        newest: dict[str, bytes] = {}
        for line in self._lines(key):
            name = self._name(line)
            newest.pop(name, None)
            newest[name] = line  # (a dict keeps the order they were last logged in)
        return dict(list(newest.items())[-self.kept:])

    @staticmethod
    def _record(line: bytes) -> dict | None:
        try:
            return json.loads(line)["record"]
        except (ValueError, KeyError):
            return None  # torn by a crash: skipped

    def names(self, key: str) -> list[str]:
        """The names of the hook's logged deliveries, sorted (their events' order)."""
        return sorted(self._newest(key))

    def logged(self, key: str, name: str) -> bool:
        """Was delivery `name` logged (delivered, or failed for good)? Read once per hook, then
        kept by this process as it logs (the delivering process's recovery asks for each event)."""
        with self._lock:
            names = self._names.get(key)
        if names is None:
            names = {self._name(line) for line in self._lines(key)}
            with self._lock:
                names = self._names.setdefault(key, names)
        return name in names

    def records(self, key: str, limit: int) -> list[tuple[str, dict]]:
        """(name, record) of the hook's newest `limit` logged deliveries by name, newest first."""
        newest = self._newest(key)
        found = []
        for name in sorted(newest, reverse=True):
            if len(found) >= limit:
                break
            record = self._record(newest[name])
            if record is not None:
                found.append((name, record))
        return found

    def find(self, key: str, event_id: str) -> tuple[str, dict] | None:
        """(name, record) of the hook's logged delivery of event `event_id`, or None."""
        suffix = f"-{event_id}.json"
        for name, line in self._newest(key).items():
            if name.endswith(suffix):
                record = self._record(line)
                if record is not None and record.get("id") == event_id:
                    return name, record
        return None


def _line(name: str, record: dict) -> bytes:
    """A log line, without its newline: the name first (PREFIX), then the record."""
    return PREFIX + name.encode() + b'","record":' + json.dumps(record, separators=(",", ":")).encode() + b"}"
