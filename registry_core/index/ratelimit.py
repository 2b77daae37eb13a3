"""Failed-login limiting per (user, client address), shared by every worker process of a store.

Failures are appended to a small file per key under <store>/state/login-failures/ (outside git:
they are not audit data). A success path only stats the file, so it costs nothing when there
were no failures.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time

from registry_core.errors import RegistryError


class LoginLimiter:
    def __init__(self, directory: str, attempts: int = 10, window: int = 300):
        self.directory = directory
        self.attempts = attempts
        self.window = window
        os.makedirs(directory, exist_ok=True)

    def _path(self, user: str, address: str | None) -> str:
        key = hashlib.sha256(f"{user}\0{address or '-'}".encode()).hexdigest()
        return os.path.join(self.directory, key)

    def _recent(self, f, now: float) -> list[float]:
        f.seek(0)
        stamps = []
        for line in f.read().split():
            try:
                stamp = float(line)
            except ValueError:
                continue
            if now - stamp < self.window:
                stamps.append(stamp)
        return stamps

    def check(self, user: str, address: str | None) -> bool:
        """Raise TOOMANYREQUESTS while `user` from `address` has used up its failed attempts;
        otherwise tell whether there are recent failures on record."""
        path = self._path(user, address)
        if not os.path.exists(path):
            return False
        now = time.time()
        with open(path, "r") as f:
            stamps = self._recent(f, now)
        if len(stamps) >= self.attempts:
            retry_after = max(1, int(self.window - (now - min(stamps))) + 1)
            raise RegistryError("TOOMANYREQUESTS", f"too many failed logins for {user} from this address: "
                                f"try again in {retry_after} seconds", headers={"Retry-After": str(retry_after)})
        return True

    def failed(self, user: str, address: str | None) -> None:
        path = self._path(user, address)
        now = time.time()
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            stamps = self._recent(f, now) + [now]
            f.seek(0)
            f.truncate()
            f.write("\n".join(f"{s:.3f}" for s in stamps[-self.attempts * 2:]))

    def succeeded(self, user: str, address: str | None) -> None:
        try:
            os.unlink(self._path(user, address))
        except FileNotFoundError:
            pass
