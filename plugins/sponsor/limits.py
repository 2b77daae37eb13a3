"""Pull and sign-up counters shared by every worker process of a store: a small SQLite database
at <store>/state/sponsor/counters.sqlite (outside git: counts are not audit data).

Windows are fixed: a limit of N per PERIOD counts a key's requests in the window
[k·PERIOD, (k+1)·PERIOD) of Unix time, and a refused request is told how many seconds remain
until the window ends (Retry-After). One row per key and window; a write removes the rows of
windows that have ended (found through an index on their end), so the file holds only the
current windows' keys, and a worker that restarts finds the counts where they were. Each count
is one short write transaction (BEGIN IMMEDIATE): workers never count the same request twice
nor lose one. A database that cannot be written (a full disk) lets the request through, logged:
a limit is not worth refusing pulls that would otherwise work.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from .settings import Limit

log = logging.getLogger("registry_core.sponsor")

SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (key TEXT NOT NULL, ends INTEGER NOT NULL, count INTEGER NOT NULL,
                                   PRIMARY KEY (key, ends)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counts_by_end ON counts (ends);
"""


@dataclass(frozen=True)
class Count:
    allowed: bool
    remaining: int   # requests left in the window after this one
    reset: int       # seconds until the window ends


class Counters:
    def __init__(self, path: str, clock=time.time):
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = None

    def _db(self) -> sqlite3.Connection:
        """This process's connection (one per process: a connection must not cross a fork)."""
        if self._connection is None or self._pid != os.getpid():
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(SCHEMA)
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def take(self, key: str, limit: Limit) -> Count:
        """Count one request of `key` against `limit`, unless its window's are used up."""
        now = self.clock()
        ends = window_end(now, limit.period)
        reset = max(1, math.ceil(ends - now))
        with self._lock:
            try:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("DELETE FROM counts WHERE ends <= ?", (int(now),))
                    row = db.execute("SELECT count FROM counts WHERE key = ? AND ends = ?", (key, ends)).fetchone()
                    used = row[0] if row else 0
                    if used >= limit.count:
                        db.execute("COMMIT")
                        return Count(False, 0, reset)
                    db.execute("INSERT INTO counts (key, ends, count) VALUES (?, ?, 1) "
                               "ON CONFLICT (key, ends) DO UPDATE SET count = count + 1", (key, ends))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                log.warning("sponsor: the request of %s was not counted (%s): %s", key, self.path, e)
                return Count(True, limit.count, reset)
        return Count(True, limit.count - used - 1, reset)

    def peek(self, key: str, limit: Limit) -> Count:
        """What is left of `key`'s window, counting nothing (a HEAD)."""
        now = self.clock()
        ends = window_end(now, limit.period)
        reset = max(1, math.ceil(ends - now))
        with self._lock:
            try:
                row = self._db().execute("SELECT count FROM counts WHERE key = ? AND ends = ?",
                                         (key, ends)).fetchone()
            except sqlite3.Error as e:
                log.warning("sponsor: the count of %s could not be read (%s): %s", key, self.path, e)
                row = None
        used = row[0] if row else 0
        return Count(used < limit.count, max(0, limit.count - used), reset)

    def rows(self) -> int:
        with self._lock:
            return self._db().execute("SELECT count(*) FROM counts").fetchone()[0]


def window_end(now: float, period: int) -> int:
    return (int(now) // period + 1) * period
