"""Password hashing (argon2id, by argon2-cffi) and generated secrets. Plain passwords are never stored."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id setting (19 MiB, 2 passes, 1 lane) rather than argon2-cffi's default (64 MiB):
# each check is held in a worker's memory, and several workers may check at once. Hashes made
# with other parameters still verify (they carry their own).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def return_large_allocations_to_the_system() -> None:
    """Fix glibc's mmap threshold at 128 KiB in this process (each server worker calls it, in
    serving.worker_app; the CLI, tests and tools keep glibc's default). A block over it is mmap'd
    and given back to the system when freed, a password check's 19 MiB (argon2id) among them,
    which glibc's own rising threshold could otherwise serve from a heap that keeps it. The
    workers' buffers are sized to stay under it (serving.BODY_RECV, web.CHUNK, meta/packs.py's
    deflate state), so that they come from the heap and are reused."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_M_MMAP_THRESHOLD = -3


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_against_no_password(password: str) -> None:
    """Do the work of one wrong password check, for a login whose account has no password to
    check (unknown, disabled, a robot): it then takes as long as a wrong password for a real
    user, so the time of an answer does not tell which names exist. The hash it checks against
    is made once per process with the parameters of real hashes."""
    password_matches(_stand_in_hash(), password)


_stand_in: list[str] = []


def _stand_in_hash() -> str:
    if not _stand_in:
        _stand_in.append(_hasher.hash(secrets.token_urlsafe(18)))
    return _stand_in[0]


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def secret_hash(secret: str) -> str:
    """For high-entropy generated secrets (tokens) a fast hash is enough: they cannot be guessed."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, secret_hash(secret))
