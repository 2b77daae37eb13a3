"""The registry's Prometheus metrics, in prometheus-client.

Counted per request, by the middleware (middleware.py), under bounded labels only: the HTTP
method (one of the usual verbs, else `other`), the route's pattern as bottle declares it
(`/v2/<name:path>/manifests/<reference>`, never the path itself: one series per route, not per
repository or digest; `(unmatched)` when no route took the request) and the status:

    registry_http_requests_total{method,route,status}
    registry_http_request_duration_seconds{method,route}     histogram, to the response's headers
    registry_http_received_bytes_total{method,route}         request bodies
    registry_http_sent_bytes_total{method,route}             response bodies

and elsewhere: registry_meta_commit_retries_total (a metadata commit run again because another
writer moved the branch first: meta/store.py `on_conflict`). Read from the store when scraped,
never on a request's path: registry_upload_sessions_open (one listing of `uploads/`) and, with
the webhooks plugin, registry_webhook_outbox_pending (one listing per hook's queue).

Across gunicorn's workers: with PROMETHEUS_MULTIPROC_DIR set (by the master, multiproc.py) each
worker's counters live in files there and a scrape sums them all, whichever worker answers it.
Without it (`registry serve --dev`, tests in one process) they are the process's own.
"""

from __future__ import annotations

import glob
import logging
import os
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from registry_core.observability.multiproc import MULTIPROC_ENV
from registry_core.storage.paths import UPLOADS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
# Seconds: manifest and tag requests fall in the first buckets, blob uploads in the last ones.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The text format every Prometheus version reads (what generate_latest writes, for these names).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
WEBHOOKS_PLUGIN = "registry_core.builtin_plugins.webhooks"
log = logging.getLogger("registry_core")


class _Instruments:
    """The counters and the histogram, once per process: in multiprocess mode two instances of a
    metric in one process would write over each other's value in the shared file."""

    def __init__(self, collectors: CollectorRegistry | None):
        route = ("method", "route")
        self.requests = Counter("registry_http_requests", "HTTP requests answered, by route pattern and status",
                                ("method", "route", "status"), registry=collectors)
        self.duration = Histogram("registry_http_request_duration_seconds",
                                  "Seconds from a request's arrival to its response's headers (a streamed "
                                  "body's transfer is not included)", route, buckets=DURATION_BUCKETS,
                                  registry=collectors)
        self.received = Counter("registry_http_received_bytes", "Bytes of request bodies", route,
                                registry=collectors)
        self.sent = Counter("registry_http_sent_bytes", "Bytes of response bodies", route, registry=collectors)
        self.commit_retries = Counter("registry_meta_commit_retries",
                                      "Metadata commits run again because another writer moved the branch first",
                                      registry=collectors)


_instruments: _Instruments | None = None
_own_collectors: CollectorRegistry | None = None
_lock = threading.Lock()


def _process_instruments() -> tuple[_Instruments, CollectorRegistry | None]:
    """This process's instruments, and (without multiprocess mode) the registry that holds them."""
    global _instruments, _own_collectors
    with _lock:
        if _instruments is None:
            _own_collectors = None if os.environ.get(MULTIPROC_ENV) else CollectorRegistry()
            _instruments = _Instruments(_own_collectors)
        return _instruments, _own_collectors


class WorkerFiles(MultiProcessCollector):
    """prometheus-client's sum of the workers' files, leaving out a file a starting worker has
    created but not yet sized (empty for an instant: read then, it fails the whole scrape)."""

    def collect(self):
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= 8:  # the header: how much of the file is used
                    files.append(path)
            except FileNotFoundError:  # a dead worker's live gauges, just removed
                pass
        return self.merge(files, accumulate=True)


class Metrics:
    """The metrics of one Registry (its store's gauges) over this process's instruments."""

    def __init__(self, registry):
        self.instruments, self._own_collectors = _process_instruments()
        self.store_gauges = StoreGauges(registry)
        self._children: dict[tuple, tuple] = {}
        registry.meta.on_conflict = self.instruments.commit_retries.inc

    def observe(self, method: str, route: str, status: str, seconds: float, received: int, sent: int) -> None:
        """One answered request: a few increments of values found by a dict lookup."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._labelled(*key)
        requests, duration, received_bytes, sent_bytes = children
        requests.inc()
        duration.observe(seconds)
        if received:
            received_bytes.inc(received)
        if sent:
            sent_bytes.inc(sent)

    def _labelled(self, method: str, route: str, status: str) -> tuple:
        if method not in METHODS:
            method = "other"
        instruments = self.instruments
        return (instruments.requests.labels(method, route, status), instruments.duration.labels(method, route),
                instruments.received.labels(method, route), instruments.sent.labels(method, route))

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape answers, and its content type: every worker's counters summed (or
        this process's own), then the store's gauges."""
        folder = os.environ.get(MULTIPROC_ENV)
        collectors = CollectorRegistry()
        if folder:
            WorkerFiles(collectors, folder)
            text = generate_latest(collectors)
        else:
            text = generate_latest(self._own_collectors)
        gauges = CollectorRegistry()
        gauges.register(self.store_gauges)
        return text + generate_latest(gauges), TEXT_FORMAT


class StoreGauges:
    """Gauges read from the store at scrape time (a custom collector): the same in every worker,
    so they are not summed across them. A gauge that cannot be read is left out and logged."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        for name, documentation, read in self._gauges():
            try:
                value = read()
            except Exception:
                log.warning("metrics: %s could not be read", name, exc_info=True)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)

    def _gauges(self):
        yield ("registry_upload_sessions_open", "Blob upload sessions started and not yet finished or cancelled",
               self.open_upload_sessions)
        outbox = self.webhook_outbox()
        if outbox is not None:
            yield ("registry_webhook_outbox_pending", "Webhook deliveries waiting in the outbox", outbox.pending)

    def open_upload_sessions(self) -> int:
        return sum(1 for name in self.registry.driver.list(UPLOADS) if not name.startswith("."))

    def webhook_outbox(self):
        """The built-in webhooks plugin's outbox, when that plugin is enabled."""
        plugin = self.registry.plugins.get_plugin("webhooks")
        if plugin is None or getattr(plugin, "__name__", None) != WEBHOOKS_PLUGIN:
            return None
        return plugin.service(self.registry).outbox
