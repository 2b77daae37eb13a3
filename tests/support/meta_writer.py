"""A process that writes to (or reads from) a meta.git, for the writer conformance suite.

    python -m tests.support.meta_writer write META_GIT WRITER ACTOR COUNT PREFIX [KILL_AT]
    python -m tests.support.meta_writer read META_GIT SECONDS

`write` makes COUNT commits as ACTOR, each adding PREFIX-<i> under users/ and moving a shared
counter document (so that concurrent writers conflict and retry). With KILL_AT, the process kills
itself (SIGKILL, as a crash would) at that step of its first commit:
  after-objects  the commit's objects are written, the branch not yet moved;
  lock-held      the branch lock is taken (the writer is reading the branch under it);
  after-move     the branch moved, before the writer's housekeeping.
`read` reads every document of the tip again and again for SECONDS and exits non-zero at the
first one that cannot be read.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from registry_core.context import Context
from registry_core.meta.store import MetaStore

COUNTER = "users/counter.yaml"


def user(name: str) -> dict:
    return {"kind": "user", "schemaVersion": 1, "name": name, "admin": False, "createdAt": "2026-01-01T00:00:00Z"}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(store: MetaStore, step: str) -> None:
    writer = store.writer
    if step == "after-objects":
        original = writer.write_objects

        def write_objects(repo, objects):
            original(repo, objects)
            die()
        writer.write_objects = write_objects
    elif step == "lock-held":
        branch = store.branch
        original_read = branch.read_target

        def read_target():
            if os.path.exists(branch.lock):
                die()
            return original_read()
        branch.read_target = read_target
    elif step == "after-move":
        writer.committed = lambda written, objects: die()
    else:
        raise SystemExit(f"unknown step {step}")


def write(path: str, writer: str, actor: str, count: int, prefix: str, kill_at: str | None = None) -> None:
    store = MetaStore(path, create=False, writer=writer)
    if kill_at:
        arm(store, kill_at)
    context = Context(actor=actor, client_addr="127.0.0.1", request_id=f"{prefix}-req")
    for i in range(count):
        def change(txn, i=i):
            txn.put(f"users/{prefix}-{i}.yaml", user(f"{prefix}-{i}"))
            counter = txn.get(COUNTER) or user("counter")
            counter["email"] = f"{prefix}-{i}@example.test"
            txn.put(COUNTER, counter)
        store.transact(change, context, f"Add {prefix}-{i}")


def read(path: str, seconds: float) -> None:
    store = MetaStore(path, create=False)
    deadline = time.monotonic() + seconds
    reads = 0
    while time.monotonic() < deadline:
        snapshot = store.snapshot()
        for name in snapshot.names("users"):
            if name.endswith(".yaml"):
                assert snapshot.get(f"users/{name}")["kind"] == "user"
                reads += 1
        time.sleep(0.005)
    print(f"read {reads} documents")


if __name__ == "__main__":
    command, path, *rest = sys.argv[1:]
    if command == "write":
        writer, actor, count, prefix, *kill_at = rest
        write(path, writer, actor, int(count), prefix, kill_at[0] if kill_at else None)
    else:
        read(path, float(rest[0]))
