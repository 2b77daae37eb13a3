"""The durable outbox: one JSON file per (hook, event) under `<store>/state/webhooks/`, written
before the request that caused the event is answered, so a crash right after the response still
delivers. Operational data, not git: the audit log (meta.git) shows who configured which hook,
not every retry.

    state/webhooks/worker.lock                       flock: the one process that delivers
    state/webhooks/hooks/<hook>/queue/<seq>.json     pending deliveries, oldest first
    state/webhooks/hooks/<hook>/log/<seq>.json       delivered or failed (dead letter), the newest 1000

`<hook>` is a repository hook's id, or `registry-<name>` for an endpoint of registry.yaml;
`<seq>` is `<nanoseconds>-<event id>`, so names sort in the order the events happened and a
delivery is found by its event id. Every file is written whole to a temporary name and renamed.
Only the delivering process (the holder of worker.lock) changes files in `queue/`; a redeliver
moves a record from `log/` back to `queue/`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time

EVENT_ID = re.compile(r"[0-9a-f]{32}")
HOOK_KEY = re.compile(r"[0-9a-f]{12}|registry-[a-z0-9-]{1,64}")
log = logging.getLogger("registry_core.webhooks")


LOG_KEPT = 1000  # delivered and failed deliveries kept per hook, the newest


class Outbox:
    def __init__(self, root: str, durable: bool = False, log_kept: int = LOG_KEPT):
        self.root = root
        self.log_kept = log_kept
        self.durable = durable
        self.hooks = os.path.join(root, "hooks")

    def lock_path(self) -> str:
        os.makedirs(self.root, exist_ok=True)
        return os.path.join(self.root, "worker.lock")

    def _folder(self, key: str, where: str) -> str:
        assert HOOK_KEY.fullmatch(key) and where in ("queue", "log")
        return os.path.join(self.hooks, key, where)

    # --- writing --------------------------------------------------------------------------------

    def _write(self, path: str, record: dict) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        with open(temporary, "w") as f:
            json.dump(record, f, separators=(",", ":"))
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)

    def enqueue(self, key: str, record: dict) -> str:
        """Add a pending delivery to the hook's queue; its name (the sequence) is returned."""
        name = f"{time.time_ns():020d}-{record['id']}.json"
        self._write(os.path.join(self._folder(key, "queue"), name), record)
        return name

    def update(self, key: str, name: str, record: dict) -> None:
        """Rewrite a pending delivery (its attempts, its next attempt)."""
        self._write(os.path.join(self._folder(key, "queue"), name), record)

    def finish(self, key: str, name: str, record: dict) -> None:
        """Move a delivery out of the queue into the log: delivered, or failed. The log keeps
        the newest `log_kept` of them."""
        self._write(os.path.join(self._folder(key, "log"), name), record)
        os.unlink(os.path.join(self._folder(key, "queue"), name))
        for old in self.names(key, "log")[:-self.log_kept]:
            try:
                os.unlink(os.path.join(self._folder(key, "log"), old))
            except FileNotFoundError:
                pass

    def requeue(self, key: str, name: str, record: dict) -> None:
        """Put a delivery of the log back in the queue (redeliver)."""
        self._write(os.path.join(self._folder(key, "queue"), name), record)
        os.unlink(os.path.join(self._folder(key, "log"), name))

    # --- reading --------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The hooks that have (or had) deliveries."""
        try:
            return sorted(key for key in os.listdir(self.hooks) if HOOK_KEY.fullmatch(key))
        except FileNotFoundError:
            return []

    def names(self, key: str, where: str) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self._folder(key, where)) if name.endswith(".json"))
        except FileNotFoundError:
            return []

    def pending(self) -> int:
        """How many deliveries wait in all the queues (one listing per hook: for /metrics)."""
        return sum(len(self.names(key, "queue")) for key in self.keys())

    def read(self, key: str, where: str, name: str) -> dict | None:
        """The record, or None when it is gone. One that cannot be read (edited by hand: every
        write is a rename) is renamed `<name>.unreadable`, so it holds up no queue."""
        path = os.path.join(self._folder(key, where), name)
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("webhooks: %s is not a delivery record; moved aside to %s.unreadable", path, path)
            os.replace(path, f"{path}.unreadable")
            return None

    def find(self, key: str, event_id: str) -> tuple[str, str, dict] | None:
        """(where, name, record) of the hook's delivery of event `event_id`, or None."""
        if not EVENT_ID.fullmatch(event_id):
            return None
        suffix = f"-{event_id}.json"
        for where in ("queue", "log"):
            for name in self.names(key, where):
                if name.endswith(suffix):
                    record = self.read(key, where, name)
                    if record is not None:
                        return where, name, record
        return None

    def deliveries(self, key: str, limit: int = 100) -> list[dict]:
        """The hook's deliveries, newest first: the pending ones and the log."""
        named = [(name, "queue") for name in self.names(key, "queue")] + \
                [(name, "log") for name in self.names(key, "log")]
        found = []
        for name, where in sorted(named, reverse=True)[:limit]:
            record = self.read(key, where, name)
            if record is not None:
                found.append(record)
        return found
