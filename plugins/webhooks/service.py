"""The webhooks of one store: hook definitions (meta.git), the outbox (state/), the delivery
process, and the step between them: an event the core reports becomes one pending delivery per
hook that wants it, recorded before the request that caused it is answered.

Built from a `spec` (`spec_of`: the store and the plugin's settings, plain JSON), in the server's
processes from registry.yaml, and in the delivery process (delivery.py) from the spec its server
process handed it, so that both read the same settings.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import secrets
import socket
import time

from registry_core.context import now_iso

from . import payloads
from .definitions import Definitions, wants
from .doorbell import Doorbell
from .outbox import Outbox
from .sealing import Sealer, SecretUnavailable
from .settings import Settings
from .worker import HookGone

INSTANCE = socket.gethostname()
BASES_KEPT = 256  # base URLs kept by the request fields they are made of (request_details), at most


class EventIds:
    """Event ids, 32 hex digits, unique across processes and nodes without a read of the system's
    random source per event (uuid4 costs one): 80 random bits drawn once per process (again in a
    forked child, so that workers forked from one master never share them), then a counter.
    An event keeps its id from then on (it is recorded with it), so every retry sends the same."""

    def __init__(self):
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


event_ids = EventIds()
_bases: dict[tuple, str] = {}


def webhook_event(event) -> str | None:
    """The webhook event of a core event, or None: pushes, pulls and deletes of manifests (a
    blob's push or pull is part of an image's, and never sent), tag moves and tag removals, stars
    and comments, and a mirror's fill of a manifest from its upstream."""
    if event.action in ("push", "pull", "delete", "mirror-fill"):
        return event.action if event.media_type else None
    if event.action in ("tag", "untag", "star", "comment"):
        return event.action
    return None


def request_details() -> tuple[dict, str | None]:
    """The current HTTP request's details (host, method, user agent) and base URL, when the event
    happens during one (not when seeding or from the command line)."""
    import bottle

    from registry_core.web import base_url
    try:
        environ = bottle.request.environ
    except RuntimeError:
        return {}, None
    # The base URL, made once for the request fields it is made of (bottle's urlparts also quotes
    # the request's path, which the base does not need).
    made_of = (environ.get("HTTP_X_FORWARDED_PROTO"), environ.get("wsgi.url_scheme"),
               environ.get("HTTP_X_FORWARDED_HOST"), environ.get("HTTP_HOST"), environ.get("SERVER_NAME"),
               environ.get("SERVER_PORT"))
    base = _bases.get(made_of)
    if base is None:
        if len(_bases) >= BASES_KEPT:
            _bases.clear()
        base = _bases[made_of] = base_url(bottle.request)
    return ({"host": environ.get("HTTP_HOST"), "method": environ.get("REQUEST_METHOD"),
             "useragent": environ.get("HTTP_USER_AGENT")}, base)


def spec_of(config) -> dict:
    """What the webhooks of a store are built from (plain JSON: it is handed to the delivery
    process): the store, how its meta.git is written, where the sealing key is, the plugin's
    section of registry.yaml."""
    return {"store": config.store, "durable": config.durable, "metaWriter": config.meta_writer,
            "keysDir": config.auth.keys_dir or os.path.join(config.store, "keys"),
            "settings": config.plugin_config.get("webhooks") or {}}


class Webhooks:
    def __init__(self, spec: dict, meta, public_url: str | None = None):
        self.spec = spec
        self.settings = Settings.from_config(spec["settings"])
        self.public_url = public_url
        self.definitions = Definitions(meta, Sealer(spec["keysDir"]), self.settings.allow_private_targets)
        self.outbox = Outbox(os.path.join(spec["store"], "state", "webhooks"), durable=spec["durable"])
        self.doorbell = Doorbell(self.outbox.root)

    @classmethod
    def of(cls, registry) -> Webhooks:
        config = registry.config
        return cls(spec_of(config), registry.meta, config.public_url)

    # --- recording --------------------------------------------------------------------------------

    def occurrence(self, event, kind: str, event_id: str | None = None) -> dict:
        details, base = request_details()
        details.update(id=event.request_id, addr=event.client_addr)
        return {"id": event_id or event_ids.next(), "event": kind, "timestamp": event.timestamp,
                "repository": event.repository, "tag": event.tag, "digest": event.digest,
                "mediaType": event.media_type, "size": event.size, "previousDigest": event.previous_digest,
                "actor": event.actor, "commentId": event.comment_id, "request": details, "instance": INSTANCE,
                "baseUrl": (self.public_url or base or "http://localhost").rstrip("/")}

    def record(self, event) -> int:
        """Record `event` for every hook that wants it (one line of the process's journal, split
        into deliveries by the delivering process: outbox.py); how many hooks want it."""
        kind = webhook_event(event)
        if kind is None or not event.repository:
            return 0
        wanted = [(hook["id"], hook["format"], hook["repository"]) for hook in self.definitions.list(event.repository)
                  if wants(hook["active"], hook["events"], hook.get("tags"), kind, event.tag)]
        wanted += [(endpoint.key, endpoint.format, None) for endpoint in self.settings.endpoints
                   if fnmatch.fnmatchcase(event.repository, endpoint.repositories)
                   and wants(endpoint.active, endpoint.events, endpoint.tags, kind, event.tag)]
        if not wanted:
            return 0
        self.outbox.record_event(self.occurrence(event, kind), [
            {"hook": key, "format": fmt, "repository": repository} for key, fmt, repository in wanted])
        self.doorbell.ring()
        return len(wanted)

    def queue_delivery(self, name: str, delivery: dict, occurrence: dict) -> None:
        """Queue one hook's delivery of a recorded event (outbox.split_events), under the event's name."""
        self.outbox.enqueue(*self.prepare(name, delivery, occurrence), name)

    def prepare(self, name: str, delivery: dict, occurrence: dict) -> tuple[str, dict]:
        """(hook, pending delivery) of one hook's delivery of a recorded event, for the Worker to
        send or queue under the event's name."""
        key = delivery["hook"]
        return key, self.delivery_record(key, delivery["format"], delivery["repository"], occurrence)

    def enqueue(self, key: str, fmt: str, repository: str | None, occurrence: dict, name: str | None = None) -> dict:
        record = self.delivery_record(key, fmt, repository, occurrence)
        self.outbox.enqueue(key, record, name)
        return record

    def delivery_record(self, key: str, fmt: str, repository: str | None, occurrence: dict) -> dict:
        """A pending delivery of `occurrence` to hook `key`, its body in the hook's format."""
        now = time.time()
        return {"id": occurrence["id"], "hook": key, "repository": repository, "event": occurrence["event"],
                  "format": fmt, "contentType": payloads.CONTENT_TYPES[fmt],
                  "body": payloads.body(fmt, occurrence, key).decode(), "createdAt": now_iso(), "created": now,
                  "deadline": now + self.settings.max_age, "state": "pending", "nextAttemptAt": now,
                  "attempts": []}

    def deliveries(self, key: str, limit: int = 100) -> list[dict]:
        """The hook's deliveries, newest first: those of recorded events not in the hook's queue
        or log (pending: not split yet, or being sent from memory), then the queue and the log."""
        unsplit = self.outbox.unsplit(key)
        known = set(self.outbox.names(key, "queue")) | set(self.outbox.names(key, "log")) if unsplit else set()
        unsplit = [self.delivery_record(key, delivery["format"], delivery["repository"], occurrence)
                   for name, delivery, occurrence in reversed(unsplit) if name not in known][:limit]
        shown = {record["id"] for record in unsplit}  # (one queued or logged meanwhile is in both)
        return unsplit + [record for record in self.outbox.deliveries(key, limit=limit - len(unsplit))
                          if record["id"] not in shown]

    def ping(self, hook: dict, event) -> dict:
        """Queue a `ping` delivery to `hook` (its format, its secret) and wake the delivery process."""
        record = self.enqueue(hook["id"], hook["format"], hook["repository"], self.occurrence(event, "ping"))
        self.doorbell.ring()
        return record

    def redeliver(self, key: str, event_id: str) -> dict | None:
        """Put a delivered or failed delivery back in the queue, with a new `maxAge`; None when
        there is no such delivery. A pending one is left as it is (and returned)."""
        found = self.outbox.find(key, event_id)
        if found is None:
            for _, delivery, occurrence in self.outbox.unsplit(key):
                if occurrence["id"] == event_id:  # recorded, not queued yet: pending as it is
                    return self.delivery_record(key, delivery["format"], delivery["repository"], occurrence)
            return None
        where, name, record = found
        if where == "log":
            now = time.time()
            record.update(state="pending", nextAttemptAt=now, deadline=now + self.settings.max_age)
            self.outbox.requeue(key, name, record)
            self.doorbell.ring()
        return record

    # --- delivering -------------------------------------------------------------------------------

    def hook_for(self, record: dict) -> tuple[str, str]:
        """The URL and secret a delivery goes to now (a hook's URL or secret may have changed
        since the event); HookGone when its hook was removed or its secret cannot be opened."""
        if record["repository"] is None:
            for endpoint in self.settings.endpoints:
                if endpoint.key == record["hook"]:
                    return endpoint.url, endpoint.secret
            raise HookGone(f"registry.yaml has no webhook endpoint {record['hook'].removeprefix('registry-')} any more")
        document = self.definitions.hook(record["repository"], record["hook"])
        if document is None:
            raise HookGone("the webhook was removed")
        try:
            return document["url"], self.definitions.secret(document)
        except SecretUnavailable as e:
            raise HookGone(str(e)) from None
