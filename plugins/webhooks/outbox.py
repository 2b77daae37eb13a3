"""The durable outbox: one JSON file per (hook, event) under `<store>/state/webhooks/`, written
before the request that caused the event is answered, so a crash right after the response still
delivers. Operational data, not git: the audit log (meta.git) shows who configured which hook,
not every retry.

    state/webhooks/worker.lock                       flock: the one process that delivers
    state/webhooks/doorbell                          FIFO: rung to wake it (doorbell.py)
    state/webhooks/events/<seq>.json                 events recorded by requests, not yet split
    state/webhooks/hooks/<hook>/queue/<seq>.json     pending deliveries, oldest first
    state/webhooks/hooks/<hook>/log/<seq>.json       delivered or failed (dead letter), the newest 1000

A request writes one file per event, naming the hooks that want it (`record_event`); the
delivering process splits it into one pending delivery per hook, with the body in that hook's
format, and then removes it (`split_events`), so the request path pays for one small file however
many hooks there are. A split interrupted by a crash is done again: the deliveries get the same
names, so each is queued once (one already delivered may be sent again: at least once).

`<hook>` is a repository hook's id, or `registry-<name>` for an endpoint of registry.yaml;
`<seq>` is `<nanoseconds>-<event id>`, so names sort in the order the events happened and a
delivery is found by its event id. Every file is written whole to a temporary name and renamed.
Only the delivering process (the holder of worker.lock) changes files in `queue/` and removes
events; a redeliver moves a record from `log/` back to `queue/`.
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
LOG_SLACK = 100  # the log is pruned back to LOG_KEPT once it holds this many more (one listing per 100)


class Outbox:
    def __init__(self, root: str, durable: bool = False, log_kept: int = LOG_KEPT, log_slack: int = LOG_SLACK):
        self.root = root
        self.log_kept = log_kept
        self.log_slack = log_slack
        self.durable = durable
        self.hooks = os.path.join(root, "hooks")
        self.events = os.path.join(root, "events")
        self._made: set[str] = set()  # folders known to exist (a write makes its folder once)
        self._logged: dict[str, int] = {}  # per hook: deliveries in its log, as this process last counted

    def lock_path(self) -> str:
        os.makedirs(self.root, exist_ok=True)
        return os.path.join(self.root, "worker.lock")

    def _folder(self, key: str, where: str) -> str:
        assert HOOK_KEY.fullmatch(key) and where in ("queue", "log")
        return os.path.join(self.hooks, key, where)

    # --- writing --------------------------------------------------------------------------------

    def _write(self, path: str, record: dict) -> None:
        folder = os.path.dirname(path)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        with open(temporary, "w") as f:
            json.dump(record, f, separators=(",", ":"))
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)

    def record_event(self, occurrence: dict, deliveries: list[dict]) -> str:
        """Record an event for the hooks that want it (`deliveries`: hook, format, repository);
        its name (the sequence) is returned."""
        name = f"{time.time_ns():020d}-{occurrence['id']}.json"
        self._write(os.path.join(self.events, name), {"occurrence": occurrence, "deliveries": deliveries})
        return name

    def split_events(self, queue_delivery) -> int:
        """Turn each recorded event into its deliveries, oldest first: `queue_delivery(name,
        delivery, occurrence)` queues one; the event's file goes once all of them are queued.
        How many events were split."""
        try:
            names = sorted(name for name in os.listdir(self.events) if name.endswith(".json"))
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(self.events, name)
            event = self._read_path(path)
            if event is None:
                continue
            for delivery in event["deliveries"]:
                queue_delivery(name, delivery, event["occurrence"])
            os.unlink(path)
        return len(names)

    def unsplit(self, key: str) -> list[tuple[str, dict, dict]]:
        """(name, delivery, occurrence) of each recorded event not split yet that hook `key`
        wants, oldest first: deliveries the hook's queue does not show yet."""
        try:
            names = sorted(name for name in os.listdir(self.events) if name.endswith(".json"))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                with open(os.path.join(self.events, name)) as f:
                    event = json.load(f)
            except (FileNotFoundError, ValueError):
                continue  # split meanwhile (or moved aside by the delivering process)
            found += [(name, delivery, event["occurrence"]) for delivery in event["deliveries"]
                      if delivery["hook"] == key]
        return found

    def enqueue(self, key: str, record: dict, name: str | None = None) -> str:
        """Add a pending delivery to the hook's queue, under `name` (an event's sequence) or a new
        one; its name is returned."""
        name = name or f"{time.time_ns():020d}-{record['id']}.json"
        self._write(os.path.join(self._folder(key, "queue"), name), record)
        return name

    def update(self, key: str, name: str, record: dict) -> None:
        """Rewrite a pending delivery (its attempts, its next attempt)."""
        self._write(os.path.join(self._folder(key, "queue"), name), record)

    def finish(self, key: str, name: str, record: dict) -> None:
        """Move a delivery out of the queue into the log: delivered, or failed. The log keeps
        the newest `log_kept` of them: it is listed and pruned back to that once it holds
        `log_slack` more, so a delivery does not list the whole log."""
        self._write(os.path.join(self._folder(key, "log"), name), record)
        os.unlink(os.path.join(self._folder(key, "queue"), name))
        logged = self._logged.get(key)
        if logged is None:
            logged = len(self.names(key, "log"))
        else:
            logged += 1
        if logged >= self.log_kept + self.log_slack:
            names = self.names(key, "log")
            for old in names[:-self.log_kept]:
                try:
                    os.unlink(os.path.join(self._folder(key, "log"), old))
                except FileNotFoundError:
                    pass
            logged = min(len(names), self.log_kept)
        self._logged[key] = logged

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
        """How many deliveries wait in all the queues, and events not split yet (one listing per
        hook and one of events/: for /metrics)."""
        try:
            events = sum(1 for name in os.listdir(self.events) if name.endswith(".json"))
        except FileNotFoundError:
            events = 0
        return events + sum(len(self.names(key, "queue")) for key in self.keys())

    def read(self, key: str, where: str, name: str) -> dict | None:
        """The record, or None when it is gone. One that cannot be read (edited by hand: every
        write is a rename) is renamed `<name>.unreadable`, so it holds up no queue."""
        return self._read_path(os.path.join(self._folder(key, where), name))

    def _read_path(self, path: str) -> dict | None:
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
