"""The node side: what changes in this store, reported to the Index through a durable outbox.

A manifest push, a tag removal and a manifest delete (the core's `push` with a media type,
`untag` and `delete` events) each become one report, appended as one line to the process's journal before the request is
answered (the webhooks plugin's Outbox, plugins/webhooks/outbox.py, under `<store>/state/reports/`):

    state/reports/worker.lock                          flock: the one process of the store that delivers
    state/reports/events/*.journal, read.json          reports recorded by requests, not queued yet
    state/reports/hooks/registry-index/queue/<seq>.json   pending, oldest first
    state/reports/hooks/registry-index/log.jsonl          delivered (or refused as malformed), a line each

One process per store delivers (the webhooks Worker: a non-blocking flock, so when it dies, even by
SIGKILL, another process takes over where it stopped), in order, one report at a time: the next
is sent only once the Index accepted the one before. Each attempt is signed anew (signing.py) and
POSTed to `<index>/api/v1/nodes/reports`; a 2xx answer delivers, a 400 (a report the Index cannot
read: retrying will not help) is logged as failed, anything else (the Index down, a 401 while its
operator has not listed this node's key yet, a 5xx) is retried with backoff, for ever. A report is
recorded as delivered after the Index answered, so a crash in between sends it again under the
same id: at least once, and the Index applies each id once.

The same key signs the node's questions to the Index about what a token's user may see
(`visible`: the catalog of a node that keeps no accounts).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.request
import uuid

from registry_core.context import now_iso
from registry_core.errors import RegistryError

from ..webhooks.outbox import Outbox
from ..webhooks.targets import TargetRefused
from ..webhooks.worker import Worker, post
from . import signing

KEY = "registry-index"           # the outbox's one queue
NEVER = 100 * 365 * 86400.0      # reports are not given up
REPORTS_PATH = "/api/v1/nodes/reports"
ACCESS_PATH = "/api/v1/nodes/access"
USER_AGENT = "registry-core-reporting/1"
log = logging.getLogger("registry_core.reporting")


def report_of(event, node: str) -> dict | None:
    """The report of a core event, or None for what the Index does not record (blob pushes,
    mounts, pulls, tag moves: a push carries its tag)."""
    if event.action == "push" and event.media_type:
        kind = "push"
    elif event.action == "untag":
        kind = "untag"
    elif event.action == "delete" and event.media_type:
        kind = "delete"
    else:
        return None
    report = {"id": uuid.uuid4().hex, "node": node, "action": kind, "repository": event.repository,
              "digest": event.digest, "actor": event.actor, "time": event.timestamp}
    for key, value in (("tag", event.tag), ("mediaType", event.media_type), ("size", event.size)):
        if value is not None:
            report[key] = value
    return report


class Reporter:
    """The outbox and the delivering thread of one node process."""

    def __init__(self, registry, settings):
        config = registry.config
        self.settings = settings
        self.index = settings.index
        self.node = settings.node
        self.key = signing.load_or_create(os.path.join(config.store, "keys"))
        self.outbox = Outbox(os.path.join(config.store, "state", "reports"), durable=config.durable)
        self.worker = ReportWorker(self)

    def record(self, event) -> dict | None:
        """Write `event`'s report to the outbox (one line of its process's journal) and wake the worker."""
        report = report_of(event, self.node)
        if report is None or not event.repository:
            return None
        self.outbox.record_event(report, [{"hook": KEY}])
        self.worker.wake.set()
        return report

    def queue_report(self, name: str, delivery: dict, report: dict) -> None:
        """Queue a recorded report (Outbox.split_events), under its own name."""
        now = time.time()
        self.outbox.enqueue(KEY, {"id": report["id"], "report": report, "createdAt": now_iso(), "created": now,
                                  "deadline": now + NEVER, "state": "pending", "nextAttemptAt": now,
                                  "attempts": []}, name)

    def pending(self) -> int:
        return self.outbox.pending()

    # --- asking the Index ------------------------------------------------------------------------

    def visible(self, subject: str, names: list[str]) -> list[str]:
        """Which of `names` the Index's access policy lets account `subject` pull, in order.
        Raises 503 UNAVAILABLE when the Index does not answer."""
        if not names:
            return []
        body = signing.sign(self.key, self.node, {"subject": subject, "repositories": names})
        request = urllib.request.Request(self.index + ACCESS_PATH, data=body, method="POST", headers={
            "Content-Type": "application/jose", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as answer:
                allowed = set(json.load(answer)["repositories"])
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            raise RegistryError("UNAVAILABLE", f"the Index at {self.index} did not say which repositories "
                                f"this token's user may see ({e}): try again later",
                                headers={"Retry-After": "5"}) from None
        return [name for name in names if name in allowed]


class ReportWorker(Worker):
    """The webhooks Worker (flock, order, backoff), sending reports to the Index instead of hooks."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        super().__init__(reporter.outbox, reporter.settings, hook_for=None, queue_delivery=reporter.queue_report)
        self.thread.name = "reporting-delivery"

    def attempt(self, key: str, name: str, record: dict) -> bool:
        started, now = time.monotonic(), time.time()
        entry = {"at": now}
        final = False
        body = signing.sign(self.reporter.key, self.reporter.node, {"report": record["report"]}, now)
        headers = {"Content-Type": "application/jose", "User-Agent": USER_AGENT,
                   "X-Registry-Delivery": record["id"]}
        try:
            status, answer = post(self.reporter.index + REPORTS_PATH, body, headers, self.settings.timeout, True)
            entry["status"] = status
            if answer:
                entry["response"] = answer[:256].decode("utf-8", "replace")
            if not 200 <= status < 300:
                entry["error"] = f"the Index answered {status}"
                final = status == 400
        except (OSError, http.client.HTTPException, TargetRefused) as e:  # (a name that does not resolve now)
            entry["error"] = f"{type(e).__name__}: {e}"
        entry["durationMs"] = round((time.monotonic() - started) * 1000, 1)
        record["tries"] = record.get("tries", 0) + 1
        record["attempts"] = record["attempts"][-9:] + [entry]  # a long outage keeps the last ten
        if "error" not in entry:
            record.update(state="delivered", nextAttemptAt=None)
        elif final:
            log.error("reporting: the Index refused report %s for good: %s", record["id"], entry.get("response"))
            record.update(state="failed", nextAttemptAt=None)
        else:
            record["nextAttemptAt"] = now + self.backoff(record["tries"])
            self.outbox.update(key, name, record)
            return False
        self.outbox.finish(key, name, record)
        return True
