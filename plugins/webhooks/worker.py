"""Delivering the outbox, one process at a time per store: the loop of the webhooks' delivery
process (delivery.py), and the reporting plugin's delivery thread.

Only the holder of a flock on the outbox's `worker.lock` delivers. A Worker given that lock
already (`lock_file`: the delivery process inherits it from the server process that started it)
delivers at once; one without it takes a non-blocking flock itself, and stands by while another
process holds it, trying again every `pollInterval` (the lock goes with a process that dies, even
by SIGKILL, so another takes over). Each hook's queue is sent in order, by one
sender thread at a time: its oldest pending delivery first, the next only once that one is
delivered or has failed for good; different hooks are sent to side by side. An
attempt POSTs the recorded body with a timeout, follows no redirect, reads at most
RESPONSE_LIMIT bytes of the answer; a 2xx answer delivers. Otherwise the next attempt waits
`initialInterval * 2^(attempts-1)` (at most `maxInterval`), less up to half of it at random
(jitter), until `maxAge` after the event: then the delivery fails (the dead letter that redeliver
picks up). A delivery is recorded after it is sent, so a crash in between sends it again, under
the same id: at least once. Each hook's deliveries go out on one connection kept open between
them (sending.Connection: HTTP/1.1 keep-alive), closed by the main loop once it has been unused
for sending.IDLE_KEPT seconds.

A Worker given `prepare` (the webhooks' delivery process) keeps a recorded event's deliveries in
memory rather than in the hooks' queues when it can: a hook whose queue is empty gets a sender
thread that sends from a list in memory, to which the main loop adds the hook's later events
while the thread runs; nothing is written for such a delivery but its log record. The event
stays unsettled in its journal until each of its deliveries is logged or queued, so a crash
sends them again from it.
Once a delivery in memory is not delivered (it is queued for its next attempt), or the list is
long (MEMORY_KEPT), the rest of the list goes to the queue, in order, and so does every later
event of that hook, until its queue is empty again. A Worker without `prepare` (the reporting
plugin's) queues every delivery.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import hmac
import http.client
import logging
import random
import threading
import time

from . import sending, targets
from .outbox import Outbox

RESPONSE_LIMIT = 4096     # bytes of a receiver's answer read (and kept: RESPONSE_KEPT)
RESPONSE_KEPT = 256
USER_AGENT = "registry-core-webhooks/1"
SENDERS = 8              # hooks sent to at once by the delivering process
MEMORY_KEPT = 1000       # deliveries a hook's sender thread holds in memory, at most; more are queued
log = logging.getLogger("registry_core.webhooks")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict, timeout: float, allow_private: bool) -> tuple[int, bytes]:
    """POST `body` to `url` (checked again, after resolving: sending.py); (status, at most
    RESPONSE_LIMIT bytes of the answer). Raises targets.TargetRefused, or OSError/HTTPException
    for a failed exchange."""
    return sending.post(url, body, headers, timeout, allow_private, RESPONSE_LIMIT)


class HookGone(Exception):
    """A delivery's hook cannot be sent to any more (removed, or its secret cannot be opened)."""


class Worker:
    """The delivery thread of one process. `hook_for(record)` answers the current (url, secret)
    of the record's hook, or raises HookGone; `queue_delivery(event name, delivery, occurrence)`
    queues one hook's delivery of a recorded event; `prepare(event name, delivery, occurrence)`,
    when given, answers (hook, pending delivery) for one instead, so that it can be sent from
    memory; `lock_file`, the open `worker.lock` when the process holds its flock already."""

    def __init__(self, outbox: Outbox, settings, hook_for, queue_delivery, lock_file=None, prepare=None):
        self.outbox = outbox
        self.settings = settings
        self.hook_for = hook_for
        self.queue_delivery = queue_delivery  # (event name, delivery, occurrence): outbox.split_events
        self.prepare = prepare
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._lock_file = lock_file  # the open worker.lock this process holds the flock through
        self._busy: set[str] = set()   # hooks being sent by a sender thread
        self._memory: dict[str, collections.deque] = {}  # busy hooks sent from memory: (name, record, hook) to send
        self._queued_while_busy: set[str] = set()  # busy hooks given a queued delivery
        self._writing: set[str] = set()  # hooks the main loop is writing a queued delivery for
        self._unsettled: dict[str, int] = {}  # event name: its deliveries in memory, not yet logged or queued (+1 while split)
        self._busy_lock = threading.Lock()  # guards the five above, and _connections
        self._recovered = False  # the events found at the start have been split
        self._adopted = False  # an older version's delivery log files are in log.jsonl
        self._connections: dict[str, sending.Connection] = {}  # per hook: kept open, used by its sender thread
        self._senders = concurrent.futures.ThreadPoolExecutor(SENDERS, thread_name_prefix="webhooks-send")
        self.thread = threading.Thread(target=self._run, name="webhooks-delivery", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _holds_lock(self) -> bool:
        if self._lock_file is None:
            self._lock_file = self.outbox.try_lock()
        if self._lock_file is not None and not self._adopted:
            self.outbox.adopt_old_logs()  # (raises: tried again next round, before any delivery)
            self._adopted = True
        return self._lock_file is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.settings.poll_interval
            self.wake.clear()  # before looking: a wake from now on is another round
            try:
                if self._holds_lock():
                    wait = self.deliver_due()
            except Exception:
                log.exception("webhook delivery failed; trying again in %ss", self.settings.poll_interval)
            self.wake.wait(wait)

    def deliver_due(self) -> float:
        """Start sending each hook's queue whose oldest delivery is due, and the recorded events'
        deliveries (one thread per hook, at most SENDERS at once, so a slow receiver holds up only
        its own hook); the seconds until something may be due again."""
        wait = self.settings.poll_interval
        self._close_idle_connections()
        if self.prepare is None:
            self.outbox.split_events(self.queue_delivery)
        queued = {}  # the queues of the hooks no thread sends
        for key in self.outbox.keys():
            with self._busy_lock:
                if key in self._busy:
                    continue
            queued[key] = self.outbox.names(key, "queue")
        if self.prepare is not None:
            started: dict[str, collections.deque] = {}
            try:
                self._split_events(queued, started)
            finally:
                for key, memory in started.items():
                    self._senders.submit(self._drain, key, memory)
        for key, names in queued.items():
            if not names:
                continue
            with self._busy_lock:
                if key in self._busy:
                    continue
            record = self.outbox.read(key, "queue", names[0])
            if record is None:
                continue
            due_in = record["nextAttemptAt"] - time.time()
            if due_in > 0:
                wait = min(wait, due_in)
                continue
            with self._busy_lock:
                self._busy.add(key)
            self._senders.submit(self._drain, key)
        return max(wait, 0.01)

    def _split_events(self, queued: dict, started: dict) -> None:
        """Each recorded event's deliveries (`prepare`), oldest event first, into memory (see the
        module's docstring) or the hooks' queues. A hook sent from memory already gets it at the
        end of its list; one that no thread sends and whose queue is empty gets a list in
        `started` (its thread is started after the split). An event is held (`_unsettled`) while
        it is split and while any of its deliveries is in memory: one whose split fails is not
        split again by this process, and not lost."""
        recovering = not self._recovered  # events a stopped process left: some may be queued or logged
        hooks = {}  # (url, secret) or HookGone of each hook, looked up once this round
        for name in self.outbox.recorded():
            with self._busy_lock:
                if name in self._unsettled:
                    continue  # its deliveries are in memory
                self._unsettled[name] = 1  # held while it is split
            event = self.outbox.read_event(name)
            if event is None:
                with self._busy_lock:
                    del self._unsettled[name]
                continue
            for delivery in event["deliveries"]:
                key, record = self.prepare(name, delivery, event["occurrence"])
                if recovering and (name in queued.get(key, ()) or self.outbox.logged(key, name)):
                    continue
                if key not in hooks:
                    hooks[key] = self._look_up(record)
                with self._busy_lock:
                    idle = key not in self._busy
                if idle and key not in queued:  # no thread sends it since the listing (only this one starts one)
                    queued[key] = self.outbox.names(key, "queue")
                with self._busy_lock:
                    memory = self._memory.get(key)
                    if memory is None and key not in self._busy and not queued.get(key):
                        self._busy.add(key)
                        memory = self._memory[key] = started[key] = collections.deque()
                    if memory is not None and len(memory) < MEMORY_KEPT:
                        memory.append((name, record, hooks[key]))
                        self._unsettled[name] += 1
                        continue
                    self._memory.pop(key, None)  # from now on, queued behind what it holds
                    self._writing.add(key)
                try:
                    self.outbox.enqueue(key, record, name)
                finally:
                    with self._busy_lock:
                        self._writing.discard(key)
                        if key in self._busy:
                            self._queued_while_busy.add(key)  # its thread looks at the queue again
                        elif key in queued:
                            queued[key].append(name)
                        else:
                            self.wake.set()  # its thread ended since the listing: another round sends it
            self._settle(name)
        self._recovered = True

    def _connection(self, key: str) -> sending.Connection:
        """The hook's kept connection (only its sender thread uses it)."""
        with self._busy_lock:
            connection = self._connections.get(key)
            if connection is None:
                connection = self._connections[key] = sending.Connection()
            return connection

    def _close_idle_connections(self) -> None:
        """Close the connections of idle hooks that were not used for IDLE_KEPT seconds (they
        would not be used again), so that a hook that gets no more events holds no socket."""
        now = time.monotonic()
        with self._busy_lock:
            idle = [key for key, connection in self._connections.items()
                    if key not in self._busy and now - connection.used > sending.IDLE_KEPT]
            closing = [self._connections.pop(key) for key in idle]
        for connection in closing:
            connection.close()

    def _look_up(self, record: dict):
        """hook_for(record), or the HookGone it raised."""
        try:
            return self.hook_for(record)
        except HookGone as e:
            return e

    def _settle(self, name: str) -> None:
        """Event `name` is split, or one of its deliveries in memory is logged or queued; the
        event is settled in its journal with the last of these."""
        with self._busy_lock:
            left = self._unsettled.get(name)
            if left is None:
                return
            if left > 1:
                self._unsettled[name] = left - 1
                return
        self.outbox.remove_event(name)
        with self._busy_lock:
            del self._unsettled[name]

    def _drain(self, key: str, memory: collections.deque | None = None) -> None:
        """Send the hook's deliveries in `memory` (the main loop may add to it meanwhile) and its
        due queued ones, in order, until one is not delivered or none is left or due. Once its
        queue is sent, the hook is sent from memory again (the main loop adds to a new list)."""
        look_again = released = False
        try:
            while not self._stop.is_set():
                if memory is not None:
                    sent = self._send_from_memory(key, memory)
                    if sent is None:
                        released = True  # all sent, nothing queued; another thread may hold the hook now
                        if self.outbox.names(key, "queue"):
                            self.wake.set()  # a ping or a redelivery queued meanwhile (its ring came while busy)
                        return
                    if not sent:
                        look_again = True
                        return
                    memory = None  # later deliveries were queued: send the queue
                with self._busy_lock:
                    self._queued_while_busy.discard(key)
                names = self.outbox.names(key, "queue")  # one listing for the deliveries queued now
                for name in names:
                    if self._stop.is_set():
                        return
                    record = self.outbox.read(key, "queue", name)
                    if record is None:
                        continue  # gone, or moved aside
                    if record["nextAttemptAt"] > time.time() or not self.attempt(key, name, record):
                        look_again = True
                        return  # not due, or not delivered: this hook's later events wait for it
                if self.prepare is None:
                    if not names:
                        return
                    continue
                with self._busy_lock:
                    if key in self._writing or key in self._queued_while_busy:
                        continue  # queued since the listing: look again
                    memory = self._memory[key] = collections.deque()  # the queue is empty
        except Exception:
            log.exception("webhook delivery of %s failed", key)
            look_again = True
        finally:
            if not released:
                self._release(key, memory, look_again)

    def _release(self, key: str, memory: collections.deque | None, look_again: bool) -> None:
        """The end of a sender thread: what is left in its `memory` is queued, in order, before
        anything newer; the hook is idle; the main loop looks again when it must."""
        left = []
        with self._busy_lock:
            if memory is not None:
                if self._memory.get(key) is memory:
                    del self._memory[key]
                left = list(memory)
                memory.clear()
        try:
            for name, record, _ in left:
                self.outbox.enqueue(key, record, name)
                self._settle(name)
        except Exception:
            log.exception("webhook deliveries of %s stay in their events' journal", key)
        with self._busy_lock:
            self._busy.discard(key)
            if key in self._queued_while_busy:
                self._queued_while_busy.discard(key)
                look_again = True
        if look_again:
            self.wake.set()  # the main loop works out when this hook is due again

    def _send_from_memory(self, key: str, memory: collections.deque) -> bool | None:
        """Send `memory`'s deliveries in order until it is empty: None when the hook is idle then
        (nothing was queued; this thread no longer holds it), True when later deliveries were queued
        instead (the list was full), False when one was not delivered (it is queued for its
        next attempt; the rest of the list is queued behind it by the caller)."""
        while not self._stop.is_set():
            with self._busy_lock:
                if not memory:
                    if self._memory.get(key) is memory:  # all sent: the hook is idle from now on
                        del self._memory[key]
                        self._busy.discard(key)
                        return None
                    return True
                name, record, hook = memory[0]
            delivered = self.attempt(key, name, record, hook)  # logged, or queued for its next attempt
            with self._busy_lock:
                memory.popleft()
            self._settle(name)
            if not delivered:
                return False
        return False

    def attempt(self, key: str, name: str, record: dict, hook=None) -> bool:
        """One attempt at a delivery, recorded; True when it is done (delivered or failed for good).
        `hook`: hook_for(record) or its HookGone, when looked up already (this round)."""
        started, now = time.monotonic(), time.time()
        entry = {"at": now}
        final = False
        hook = hook or self._look_up(record)
        if isinstance(hook, HookGone):
            entry["error"] = str(hook)
            final = True
        else:
            url, secret = hook
            body = record["body"].encode()
            headers = {"Content-Type": record["contentType"], "User-Agent": USER_AGENT,
                       "X-Registry-Event": record["event"], "X-Registry-Delivery": record["id"],
                       "X-Registry-Signature": signature(secret, body)}
            try:
                status, answer = self._connection(key).post(url, body, headers, self.settings.timeout,
                                                            self.settings.allow_private_targets, RESPONSE_LIMIT)
                entry["status"] = status
                if answer:
                    entry["response"] = answer[:RESPONSE_KEPT].decode("utf-8", "replace")
                if not 200 <= status < 300:
                    entry["error"] = f"the receiver answered {status}" + (
                        " (redirects are not followed)" if 300 <= status < 400 else "")
            except targets.TargetRefused as e:
                entry["error"] = f"refused: {e}"
                final = True  # a target that may not be reached will not become reachable by waiting
            except (OSError, http.client.HTTPException) as e:
                entry["error"] = f"{type(e).__name__}: {e}"
        entry["durationMs"] = round((time.monotonic() - started) * 1000, 1)
        record["attempts"].append(entry)
        delivered = "error" not in entry
        if delivered:
            record.update(state="delivered", nextAttemptAt=None)
        elif final or now >= record["deadline"]:
            record.update(state="failed", nextAttemptAt=None)
        else:
            record["nextAttemptAt"] = now + self.backoff(len(record["attempts"]))
            self.outbox.update(key, name, record)
            return False
        self.outbox.finish(key, name, record)
        return True

    def backoff(self, attempts: int) -> float:
        delay = min(self.settings.initial_interval * 2 ** min(attempts - 1, 30), self.settings.max_interval)
        return delay - random.uniform(0, delay / 2)
