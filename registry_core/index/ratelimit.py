"""Failed-login limiting per (name, client address), shared by every worker process of a store.

Each key (a login name and the address it comes from) has a small file of attempt times under
<store>/state/login-failures/ (outside git: they are not audit data). An attempt is counted
*before* its password check runs, under the file's lock, so however many requests arrive at once
at most `attempts` checks run per window per key; a success clears the key. Known and unknown
names are counted alike (a different treatment would tell which names exist), and the directory
keeps at most `keys_kept` files: past that, files whose window has passed go first, then the
oldest. `check`, all that a password the process has already verified needs, only stats the
file when no failures are on record.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable
from contextlib import contextmanager

from registry_core.errors import RegistryError


class LoginLimiter:
    def __init__(self, directory: str, attempts: int = 10, window: int = 300, keys_kept: int = 10_000,
                 clock: Callable[[], float] = time.time):
        self.directory = directory
        self.attempts = attempts
        self.window = window
        self.keys_kept = max(1, keys_kept)
        self.clock = clock
        os.makedirs(directory, exist_ok=True)

    def check(self, user: str, address: str | None) -> bool:
        """Raise TOOMANYREQUESTS while `user` from `address` has used up its attempts; otherwise
        tell whether failures are on record (a success should then `clear` them). Reads without
        the lock: `reserve` is what enforces the limit for password checks."""
        path = self._path(user, address)
        try:
            changed = os.stat(path).st_mtime
        except FileNotFoundError:
            return False
        now = self.clock()
        if now - changed >= self.window:
            return False  # every attempt on record is older than the window
        try:
            with open(path) as f:
                stamps = self._recent(f.read(), now)
        except FileNotFoundError:
            return False
        if len(stamps) >= self.attempts:
            raise self._too_many(user, stamps, now)
        return bool(stamps)

    def reserve(self, user: str, address: str | None) -> None:
        """Count one attempt for `user` from `address` before its password check runs; raise
        TOOMANYREQUESTS (counting nothing) when the window's attempts are used up. The attempt
        stays counted as a failure unless `clear` follows."""
        now = self.clock()
        with self._locked(self._path(user, address)) as (f, created):
            stamps = self._recent(f.read(), now)
            if len(stamps) >= self.attempts:
                raise self._too_many(user, stamps, now)
            stamps.append(now)
            f.seek(0)
            f.truncate()
            f.write("\n".join(f"{stamp:.3f}" for stamp in stamps))
            f.flush()
            os.utime(f.fileno(), (now, now))  # the file's mtime is its latest attempt
        if created:
            self._prune(now)

    def clear(self, user: str, address: str | None) -> None:
        """Forget the attempts of `user` from `address`: they logged in."""
        try:
            os.unlink(self._path(user, address))
        except FileNotFoundError:
            pass

    # --- the files ------------------------------------------------------------------------------

    def _path(self, user: str, address: str | None) -> str:
        key = hashlib.sha256(f"{user}\0{address or '-'}".encode()).hexdigest()
        return os.path.join(self.directory, key)

    @contextmanager
    def _locked(self, path: str):
        """The key's file, opened for update under an exclusive lock, and whether it was created.
        A file unlinked (by `clear` or pruning) while we waited for its lock is no longer the
        key's: open the one at `path` again, so every counter of a key shares one file."""
        while True:
            try:
                fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), True
            except FileExistsError:
                try:
                    fd, created = os.open(path, os.O_RDWR), False
                except FileNotFoundError:
                    continue
            f = os.fdopen(fd, "r+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    current = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    yield f, created
                    return
            finally:
                f.close()

    def _prune(self, now: float) -> None:
        """Keep at most `keys_kept` files: remove those whose attempts are all older than the
        window, then the oldest."""
        names = os.listdir(self.directory)
        if len(names) <= self.keys_kept:
            return
        files = []
        for name in names:
            try:
                files.append((os.stat(os.path.join(self.directory, name)).st_mtime, name))
            except FileNotFoundError:
                continue
        files.sort()
        excess = len(files) - self.keys_kept
        for position, (changed, name) in enumerate(files):
            if position >= excess and now - changed < self.window:
                break
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass

    def _recent(self, text: str, now: float) -> list[float]:
        stamps = []
        for line in text.split():
            try:
                stamp = float(line)
            except ValueError:
                continue
            if now - stamp < self.window:
                stamps.append(stamp)
        return stamps

    def _too_many(self, user: str, stamps: list[float], now: float) -> RegistryError:
        retry_after = max(1, int(self.window - (now - min(stamps))) + 1)
        return RegistryError("TOOMANYREQUESTS", f"too many failed logins for {user} from this address: try again "
                             f"in {retry_after} seconds (logins from other addresses are not affected)",
                             headers={"Retry-After": str(retry_after)})
