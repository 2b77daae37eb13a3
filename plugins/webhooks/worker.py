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
the same id: at least once.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
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
    of the record's hook, or raises HookGone; `lock_file`, the open `worker.lock` when the
    process holds its flock already."""

    def __init__(self, outbox: Outbox, settings, hook_for, queue_delivery, lock_file=None):
        self.outbox = outbox
        self.settings = settings
        self.hook_for = hook_for
        self.queue_delivery = queue_delivery  # (event name, delivery, occurrence): outbox.split_events
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._lock_file = lock_file  # the open worker.lock this process holds the flock through
        self._busy: set[str] = set()   # hooks being sent by a sender thread
        self._busy_lock = threading.Lock()
        self._senders = concurrent.futures.ThreadPoolExecutor(SENDERS, thread_name_prefix="webhooks-send")
        self.thread = threading.Thread(target=self._run, name="webhooks-delivery", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _holds_lock(self) -> bool:
        if self._lock_file is None:
            handle = open(self.outbox.lock_path(), "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._lock_file = handle
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.settings.poll_interval
            try:
                if self._holds_lock():
                    wait = self.deliver_due()
            except Exception:
                log.exception("webhook delivery failed; trying again in %ss", self.settings.poll_interval)
            self.wake.wait(wait)
            self.wake.clear()

    def deliver_due(self) -> float:
        """Start sending each hook's queue whose oldest delivery is due (one thread per hook, at
        most SENDERS at once, so a slow receiver holds up only its own hook); the seconds until
        something may be due again."""
        wait = self.settings.poll_interval
        self.outbox.split_events(self.queue_delivery)
        for key in self.outbox.keys():
            with self._busy_lock:
                if key in self._busy:
                    continue
            names = self.outbox.names(key, "queue")
            record = self.outbox.read(key, "queue", names[0]) if names else None
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

    def _drain(self, key: str) -> None:
        """Send the hook's due deliveries in order, until one is not delivered or none is due."""
        try:
            while not self._stop.is_set():
                names = self.outbox.names(key, "queue")  # one listing for the deliveries queued now
                if not names:
                    return
                for name in names:
                    if self._stop.is_set():
                        return
                    record = self.outbox.read(key, "queue", name)
                    if record is None:
                        continue  # gone, or moved aside
                    if record["nextAttemptAt"] > time.time() or not self.attempt(key, name, record):
                        return  # not due, or not delivered: this hook's later events wait for it
        except Exception:
            log.exception("webhook delivery of %s failed", key)
        finally:
            with self._busy_lock:
                self._busy.discard(key)
            self.wake.set()  # the main loop works out when this hook is due again

    def attempt(self, key: str, name: str, record: dict) -> bool:
        """One attempt at a delivery, recorded; True when it is done (delivered or failed for good)."""
        started, now = time.monotonic(), time.time()
        entry = {"at": now}
        final = False
        try:
            url, secret = self.hook_for(record)
        except HookGone as e:
            entry["error"] = str(e)
            final = True
        else:
            body = record["body"].encode()
            headers = {"Content-Type": record["contentType"], "User-Agent": USER_AGENT,
                       "X-Registry-Event": record["event"], "X-Registry-Delivery": record["id"],
                       "X-Registry-Signature": signature(secret, body)}
            try:
                status, answer = post(url, body, headers, self.settings.timeout, self.settings.allow_private_targets)
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
