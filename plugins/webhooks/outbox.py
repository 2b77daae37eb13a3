"""The durable outbox under `<store>/state/webhooks/`: the events requests record, written
before the request that caused them is answered, so a crash right after the response still
delivers, and each hook's deliveries. Operational data, not git: the audit log (meta.git) shows
who configured which hook, not every retry.

    state/webhooks/worker.lock                       flock: the one process that delivers
    state/webhooks/doorbell                          FIFO: rung to wake it (doorbell.py)
    state/webhooks/events/<ns>-<pid>-<r>.journal     events recorded by one process, appended (journal.py)
    state/webhooks/events/read.json                  how far each journal's events are settled
    state/webhooks/hooks/<hook>/queue/<seq>.json     pending deliveries, oldest first
    state/webhooks/hooks/<hook>/log.jsonl            delivered or failed (dead letter), appended (deliverylog.py)
    state/webhooks/hooks/<hook>/log.old.jsonl        the log's older lines; the newest 1000 are shown
    state/webhooks/hooks/<hook>/log/<seq>.json       an older version's log, a file a delivery: appended
                                                     to log.jsonl by the delivering process, then removed

A request appends one line per event to its process's journal, naming the hooks that want it
(`record_event`); the delivering process turns it into one delivery per hook, with the body in
that hook's format, and settles the event once every one of them is in its hook's queue or log: a
hook with nothing queued is sent its delivery straight from memory (worker.py), a busy one gets
it queued (`enqueue`). So the request path pays for one write however many hooks there are, and
a delivery sent at once is written once: a line of its hook's log. Work interrupted by a crash is done again
from the journal: the deliveries get the same names, so each is queued once (one already
delivered may be sent again: at least once). An event file `events/<seq>.json` (how an older
version recorded events) is read and removed as well.

`<hook>` is a repository hook's id, or `registry-<name>` for an endpoint of registry.yaml;
`<seq>` is `<nanoseconds>-<event id>.json` (an event's name), so names sort in the order the
events happened and a delivery is found by its event id. Every file of `queue/` is written whole
to a temporary name and renamed. Only the delivering process (the holder of worker.lock) changes
files in `queue/`, appends to the logs and settles events; a redeliver queues a logged delivery
again (the queued record is the delivery's from then on).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time

from .deliverylog import DeliveryLog
from .journal import READ, EventJournal

EVENT_ID = re.compile(r"[0-9a-f]{32}")
HOOK_KEY = re.compile(r"[0-9a-f]{12}|registry-[a-z0-9-]{1,64}")
log = logging.getLogger("registry_core.webhooks")


LOG_KEPT = 1000  # delivered and failed deliveries shown per hook, the newest (up to twice that kept)


class Outbox:
    def __init__(self, root: str, durable: bool = False, log_kept: int = LOG_KEPT):
        self.root = root
        self.log_kept = log_kept
        self.durable = durable
        self.hooks = os.path.join(root, "hooks")
        self.events = os.path.join(root, "events")
        self._made: set[str] = set()  # folders known to exist (a write makes its folder once)
        self.delivery_log = DeliveryLog(self.hooks, log_kept, durable)
        self.journal = EventJournal(self.events, durable)

    def lock_path(self) -> str:
        os.makedirs(self.root, exist_ok=True)
        return os.path.join(self.root, "worker.lock")

    def try_lock(self):
        """The open `worker.lock`, flocked by this process (held while the file stays open, and by
        a child that inherits it); None while another process holds it."""
        handle = open(self.lock_path(), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def _folder(self, key: str, where: str) -> str:
        assert HOOK_KEY.fullmatch(key) and where == "queue"
        return os.path.join(self.hooks, key, where)

    # --- writing --------------------------------------------------------------------------------

    def _write(self, path: str, record: dict) -> None:
        """Write `record` whole to `path`: to a file of another name, renamed."""
        folder = os.path.dirname(path)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        data = json.dumps(record, separators=(",", ":")).encode()  # (json.dump encodes in Python, not C)
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # no other writer's name now
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, data)  # (a regular file takes it whole)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def record_event(self, occurrence: dict, deliveries: list[dict]) -> str:
        """Record an event for the hooks that want it (`deliveries`: hook, format, repository), in
        this process's journal (journal.py: one write); its name (the sequence) is returned."""
        name = f"{time.time_ns():020d}-{occurrence['id']}.json"
        self.journal.append(name, {"occurrence": occurrence, "deliveries": deliveries})
        return name

    def split_events(self, queue_delivery) -> int:
        """Turn each recorded event into its deliveries, oldest first: `queue_delivery(name,
        delivery, occurrence)` queues one; the event is settled once all of them are queued.
        How many events were split."""
        names = self.recorded()
        for name in names:
            event = self.read_event(name)
            if event is None:
                continue
            for delivery in event["deliveries"]:
                queue_delivery(name, delivery, event["occurrence"])
            self.remove_event(name)
        self.journal.flush()
        return len(names)

    def recorded(self) -> list[str]:
        """The names of the recorded events not settled yet, oldest first (for the delivering
        process: it reads the journals on), with those of event files an older version left."""
        return sorted(self.journal.recorded() + self._event_files())

    def _event_files(self) -> list[str]:
        try:
            return [name for name in os.listdir(self.events) if name.endswith(".json") and name != READ]
        except FileNotFoundError:
            return []

    def read_event(self, name: str) -> dict | None:
        """A recorded event ({occurrence, deliveries}), or None when it is gone."""
        event = self.journal.event(name)
        return event if event is not None else self._read_path(os.path.join(self.events, name))

    def remove_event(self, name: str) -> None:
        """Settle a recorded event once each of its deliveries is queued or logged."""
        if not self.journal.settle(name):
            try:
                os.unlink(os.path.join(self.events, name))
            except FileNotFoundError:
                pass

    def unsplit_events(self) -> list[tuple[str, dict]]:
        """(name, event) of the recorded events not settled yet as any process sees them, oldest
        first: those not split yet, and some whose deliveries are being sent or were lately."""
        found = self.journal.unsettled()
        for name in self._event_files():
            try:
                with open(os.path.join(self.events, name)) as f:
                    found.append((name, json.load(f)))
            except (FileNotFoundError, ValueError):
                continue  # split meanwhile (or moved aside by the delivering process)
        return sorted(found, key=lambda pair: pair[0])

    def unsplit(self, key: str) -> list[tuple[str, dict, dict]]:
        """(name, delivery, occurrence) of each recorded event not settled yet that hook `key`
        wants, oldest first: those not split yet, and those some of whose deliveries are being
        sent (this hook's may be in its queue or log already: the same name)."""
        return [(name, delivery, event["occurrence"]) for name, event in self.unsplit_events()
                for delivery in event["deliveries"] if delivery["hook"] == key]

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
        """Log a delivery, delivered or failed (one line appended to the hook's log:
        deliverylog.py), and take it out of the queue if it was queued (one sent straight from
        its event was not)."""
        assert HOOK_KEY.fullmatch(key)
        self.delivery_log.append(key, name, record)
        try:
            os.unlink(os.path.join(self._folder(key, "queue"), name))
        except FileNotFoundError:
            pass

    def requeue(self, key: str, name: str, record: dict) -> None:
        """Put a delivery of the log back in the queue (redeliver): the queued record is the
        delivery's until it is logged again."""
        self._write(os.path.join(self._folder(key, "queue"), name), record)

    def adopt_old_logs(self) -> int:
        """Move each hook's log of an older version into its log.jsonl (DeliveryLog.adopt): the
        delivering process does it once it holds worker.lock, before anything else is logged.
        How many deliveries were moved."""
        return sum(self.delivery_log.adopt(key) for key in self.keys())

    # --- reading --------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The hooks that have (or had) deliveries."""
        try:
            return sorted(key for key in os.listdir(self.hooks) if HOOK_KEY.fullmatch(key))
        except FileNotFoundError:
            return []

    def names(self, key: str, where: str) -> list[str]:
        """The names of the hook's deliveries in its queue or its log (`where`), sorted."""
        if where == "log":
            return self.delivery_log.names(key)
        try:
            return sorted(name for name in os.listdir(self._folder(key, where)) if name.endswith(".json"))
        except FileNotFoundError:
            return []

    def pending(self) -> int:
        """How many deliveries wait in all the queues, and events not split yet (one listing per
        hook and one of events/: for /metrics)."""
        return len(self.unsplit_events()) + sum(len(self.names(key, "queue")) for key in self.keys())

    def read(self, key: str, where: str, name: str) -> dict | None:
        """The record, or None when it is gone. One that cannot be read (edited by hand: every
        write is a rename) is renamed `<name>.unreadable`, so it holds up no queue."""
        return self._read_path(os.path.join(self._folder(key, where), name))

    def logged(self, key: str, name: str) -> bool:
        """Is the hook's delivery `name` in its log (delivered, or failed for good)?"""
        return self.delivery_log.logged(key, name)

    def _read_path(self, path: str) -> dict | None:
        try:
            with open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError:
            try:
                os.replace(path, f"{path}.unreadable")
            except FileNotFoundError:
                return None  # pruned while it was read (its file is being reused)
            log.error("webhooks: %s is not a delivery record; moved aside to %s.unreadable", path, path)
            return None

    def find(self, key: str, event_id: str) -> tuple[str, str, dict] | None:
        """(where, name, record) of the hook's delivery of event `event_id`, or None."""
        if not EVENT_ID.fullmatch(event_id):
            return None
        suffix = f"-{event_id}.json"
        for name in self.names(key, "queue"):
            if name.endswith(suffix):
                record = self.read(key, "queue", name)
                if record is not None and record.get("id") == event_id:
                    return "queue", name, record
        found = self.delivery_log.find(key, event_id)
        return None if found is None else ("log", *found)

    def deliveries(self, key: str, limit: int = 100) -> list[dict]:
        """The hook's deliveries, newest first: the pending ones and the log (a redelivered one
        queued again is pending, not in the log)."""
        queued = {name: None for name in self.names(key, "queue")[-limit:]}
        named = queued | {name: record for name, record in self.delivery_log.records(key, limit) if name not in queued}
        found = []
        for name in sorted(named, reverse=True)[:limit]:
            record = named[name] if name not in queued else self.read(key, "queue", name)
            if record is not None:
                found.append(record)
        return found
