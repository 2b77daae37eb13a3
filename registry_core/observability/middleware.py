"""The WSGI middleware around the whole app (outside web.ErrorsAsJson, so its answers count too):
every response carries X-Request-Id, every request is counted (metrics.py) and, with
`http.accessLog: json`, logged as one JSON line.

It stays off the response body's way: a body with a Content-Length (every blob, manifest and
JSON answer) is returned as the app made it, so gunicorn still sends blobs with sendfile; bytes
out are that Content-Length. Only a body without one is wrapped to count what it yields, and
only a chunked request body is wrapped to count what the app read (bytes in are otherwise the
request's Content-Length). The per-request work is a clock read at each end, a dict lookup and a
few counter increments; the access log line is built only when it is on.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time

from registry_core.names import canonical_name
from registry_core.observability.metrics import UNMATCHED, Metrics
from registry_core.web import ACTOR_KEY, content_length, request_id

ACCESS_LOGGER = "registry_core.access"
_NO_BODY_STATUSES = ("204", "304")


class ObservedRequests:
    def __init__(self, app, metrics: Metrics, access_log: "JsonAccessLog | None" = None):
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    def __call__(self, environ: dict, start_response):
        started, wall = time.perf_counter(), time.time()
        identifier = request_id(environ)
        response: list = []

        def start(status: str, headers: list, exc_info=None):
            headers.append(("X-Request-Id", identifier))
            response[:] = (status, headers)
            return start_response(status, headers, exc_info)

        counted_input = None
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            counted_input = environ["wsgi.input"] = CountedInput(environ["wsgi.input"])
        result = self.app(environ, start)
        seconds = time.perf_counter() - started

        def record(sent: int) -> None:
            received = counted_input.count if counted_input is not None \
                else content_length(environ.get("CONTENT_LENGTH")) or 0
            self._record(environ, response, seconds, wall, received, sent, identifier)

        sent = _declared_body_size(environ, response, result)
        if sent is None:
            return CountedBody(result, record)
        record(sent)
        return result

    def _record(self, environ: dict, response: list, seconds: float, wall: float, received: int, sent: int,
                identifier: str) -> None:
        route = environ.get("bottle.route")
        rule = route.rule if route is not None else UNMATCHED
        status = response[0][:3] if response else "000"
        self.metrics.observe(environ.get("REQUEST_METHOD", ""), rule, status, seconds, received, sent)
        if self.access_log is not None:
            self.access_log.write(environ, rule, status, seconds, wall, received, sent, identifier)


def _declared_body_size(environ: dict, response: list, result) -> int | None:
    """The bytes the response's body will have, when known without reading it: none for HEAD,
    204 and 304, else its Content-Length, else the parts of a list; None otherwise."""
    if environ.get("REQUEST_METHOD") == "HEAD" or (response and response[0][:3] in _NO_BODY_STATUSES):
        return 0
    if response:
        for name, value in response[1]:
            if name == "Content-Length" or name.lower() == "content-length":
                return content_length(value) or 0
    if isinstance(result, (list, tuple)):
        return sum(len(part) for part in result)
    return None


class CountedInput:
    """A chunked request body, counting the bytes the app reads."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.stream.readline(size)
        self.count += len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = self.stream.readlines(hint)
        self.count += sum(len(line) for line in lines)
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line


class CountedBody:
    """A response body of unknown size, counted as it is sent; recorded when the server closes it."""

    def __init__(self, body, record):
        self.body = body
        self.record = record
        self.count = 0

    def __iter__(self):
        for part in self.body:
            self.count += len(part)
            yield part

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.record(self.count)


class JsonAccessLog:
    """`http.accessLog: json`: one JSON object per request, on a line of standard output."""

    def __init__(self, stream=None):
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if not self.logger.handlers:
            handler = logging.StreamHandler(stream or sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def write(self, environ: dict, rule: str, status: str, seconds: float, wall: float, received: int,
              sent: int, identifier: str) -> None:
        self.logger.info(json.dumps(access_record(environ, rule, status, seconds, wall, received, sent, identifier),
                                    separators=(",", ":")))


def access_record(environ: dict, rule: str, status: str, seconds: float, wall: float, received: int, sent: int,
                  identifier: str) -> dict:
    """The access log's fields for one request. `actor`: the account that acted, `anonymous`
    when the request was judged without one, null when nobody asked (a probe, an unrouted path)."""
    name = environ.get("route.url_args", {}).get("name")
    if ACTOR_KEY in environ:
        actor = environ[ACTOR_KEY]
        actor = actor.name if actor is not None else "anonymous"
    else:
        actor = None
    started = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
    return {"time": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestId": identifier, "method": environ.get("REQUEST_METHOD"), "route": rule,
            "repository": canonical_name(name) if isinstance(name, str) else None, "actor": actor,
            "status": int(status) if status.isdigit() else None, "bytesIn": received, "bytesOut": sent,
            "durationMs": round(seconds * 1000, 3), "client": environ.get("REMOTE_ADDR")}
