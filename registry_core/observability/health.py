"""Readiness: whether this process can do its work on its store now (/readyz).

Three checks, each cheap and each touching what a push or a pull would need:
- `store`: a small file is created, written and removed in the store's `state/` folder (where the
  saved views, login failures and the webhooks' outbox are written);
- `metadata`: meta.git's branch resolves to a commit and its tree can be read (the snapshot every
  request starts from);
- `storage`: the storage driver answers one listing of its `blobs/` folder.

A failed check's reason names what failed and the system's error, with the store's own path
replaced by `<store>`: a probe's answer shows nothing of the server's file system.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from registry_core.storage.paths import BLOBS

STATE_DIR = "state"


@dataclass
class Check:
    name: str
    ok: bool
    reason: str | None = None


def readiness(registry) -> list[Check]:
    """Every check's result, in a fixed order."""
    store = registry.config.store
    checks = []
    for name, check in (("store", _store_writable), ("metadata", _metadata_readable), ("storage", _driver_answers)):
        try:
            check(registry)
        except Exception as e:
            checks.append(Check(name, False, _reason(name, e, store)))
        else:
            checks.append(Check(name, True))
    return checks


def _store_writable(registry) -> None:
    state = os.path.join(registry.config.store, STATE_DIR)
    probe = os.path.join(state, f".ready-{os.getpid()}-{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(probe, flags, 0o600)
    except FileNotFoundError:  # a store that has no state yet
        os.makedirs(state, exist_ok=True)
        descriptor = os.open(probe, flags, 0o600)
    try:
        os.write(descriptor, b"ready\n")
    finally:
        os.close(descriptor)
        os.unlink(probe)


class NoCommit(Exception):
    """meta.git's branch does not point at a commit."""


def _metadata_readable(registry) -> None:
    snapshot = registry.meta.snapshot()
    if snapshot.commit is None:
        raise NoCommit("its branch does not point at a commit")
    len(snapshot.commit.tree)  # the root tree is read, not only the commit


def _driver_answers(registry) -> None:
    registry.driver.list(BLOBS)


_WHAT = {"store": "the store's state folder cannot be written",
         "metadata": "meta.git cannot be read",
         "storage": "the storage driver does not answer"}


def _reason(name: str, error: Exception, store: str) -> str:
    if isinstance(error, OSError) and error.strerror:
        said = error.strerror  # not str(error), which names the file
    elif isinstance(error, KeyError):  # pygit2: an object the repository does not have
        said = f"object {error.args[0] if error.args else '?'} is missing"
    else:
        said = str(error) or type(error).__name__
    said = said.replace(os.path.abspath(store), "<store>")
    return f"{_WHAT[name]}: {said}"
