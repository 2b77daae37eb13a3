"""The webhooks API, JSON under /api/v1/repositories/<name>/webhooks, for the repository's admins
(action `admin` of the access policy: the same people who change its visibility and
collaborators). To anyone else a hook of a private repository answers as a missing repository
does (Registry.authorize answers alike whether or not the repository exists).

    POST   …/webhooks                                         201, the hook (and its secret, once)
    GET    …/webhooks                                         the hooks
    GET    …/webhooks/<id>       PATCH …/webhooks/<id>        DELETE …/webhooks/<id>  (204)
    GET    …/webhooks/<id>/deliveries                         the delivery log, newest first
    POST   …/webhooks/<id>/deliveries/<event id>/redeliver    202, the delivery queued again
    POST   …/webhooks/<id>/ping                               202, a `ping` delivery queued
"""

from __future__ import annotations

import datetime

import bottle

from registry_core.errors import RegistryError
from registry_core.events import event
from registry_core.names import canonical_name, check_name
from registry_core.web import json_body, json_response, whole_number

from .definitions import FIELDS, hook_unknown, name_unknown, view

PREFIX = "/api/v1/repositories/<name:path>/webhooks"
BODY_LIMIT = 16 * 1024


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def delivery_view(record: dict) -> dict:
    attempts = record["attempts"]
    last = attempts[-1] if attempts else {}
    return {"id": record["id"], "event": record["event"], "state": record["state"], "attempts": len(attempts),
            "lastStatus": last.get("status"), "lastError": last.get("error"), "durationMs": last.get("durationMs"),
            "nextAttemptAt": _when(record.get("nextAttemptAt")), "createdAt": record["createdAt"],
            "history": [{"at": _when(entry["at"]), **{key: entry[key] for key in
                                                      ("status", "error", "durationMs", "response") if key in entry}}
                        for entry in attempts]}


class WebhooksApi:
    def __init__(self, registry, service):
        self.registry = registry
        self.service = service
        self.definitions = service.definitions

    def register(self, app: bottle.Bottle) -> None:
        # The most specific first: `<name:path>` would take the rest of the path.
        app.route(f"{PREFIX}/<hook_id>/deliveries/<event_id>/redeliver", "POST", self.redeliver)
        app.route(f"{PREFIX}/<hook_id>/deliveries", "GET", self.deliveries)
        app.route(f"{PREFIX}/<hook_id>/ping", "POST", self.ping)
        app.route(f"{PREFIX}/<hook_id>", "GET", self.get)
        app.route(f"{PREFIX}/<hook_id>", "PATCH", self.update)
        app.route(f"{PREFIX}/<hook_id>", "DELETE", self.delete)
        app.route(PREFIX, "GET", self.list)
        app.route(PREFIX, "POST", self.create)

    # --- who is asking ----------------------------------------------------------------------------

    def _admin(self, name: str):
        """(canonical name, context) for an admin of an existing repository `name`; raises otherwise."""
        name = check_name(canonical_name(name))
        context = self.registry.authorize(bottle.request, name, "admin")
        if not self.definitions.repository_exists(name):
            raise name_unknown(name)
        return name, context

    def _hook(self, name: str, hook_id: str):
        name, context = self._admin(name)
        document = self.definitions.get(name, hook_id)
        if document is None:
            raise hook_unknown(name, hook_id)
        return name, context, document

    # --- hooks ------------------------------------------------------------------------------------

    def create(self, name: str):
        name, context = self._admin(name)
        document, generated = self.definitions.create(context, name, json_body(FIELDS, limit=BODY_LIMIT))
        answer = view(document)
        if generated:
            answer["secret"] = generated  # shown this once; only its sealed form is kept
        return json_response(answer, 201, headers={"Location": f"/api/v1/repositories/{name}/webhooks/{document['id']}"})

    def list(self, name: str):
        name, _ = self._admin(name)
        return json_response({"repository": name, "webhooks": [view(d) for d in self.definitions.list(name)]})

    def get(self, name: str, hook_id: str):
        _, _, document = self._hook(name, hook_id)
        return json_response(view(document))

    def update(self, name: str, hook_id: str):
        name, context, _ = self._hook(name, hook_id)
        return json_response(view(self.definitions.update(context, name, hook_id, json_body(FIELDS, limit=BODY_LIMIT))))

    def delete(self, name: str, hook_id: str):
        name, context, _ = self._hook(name, hook_id)
        self.definitions.delete(context, name, hook_id)
        return bottle.HTTPResponse(status=204)

    # --- deliveries -------------------------------------------------------------------------------

    def deliveries(self, name: str, hook_id: str):
        _, _, document = self._hook(name, hook_id)
        n = whole_number(bottle.request.query.get("n"), "n", default=100, minimum=1)
        records = self.service.deliveries(document["id"], limit=min(n, 1000))
        return json_response({"webhook": document["id"], "deliveries": [delivery_view(r) for r in records]})

    def redeliver(self, name: str, hook_id: str, event_id: str):
        name, _, document = self._hook(name, hook_id)
        record = self.service.redeliver(document["id"], event_id)
        if record is None:
            raise RegistryError("NAME_UNKNOWN", f"webhook {hook_id} of {name} has no delivery {event_id}")
        return json_response(delivery_view(record), 202)

    def ping(self, name: str, hook_id: str):
        name, context, document = self._hook(name, hook_id)
        record = self.service.ping(document, event("ping", context, repository=name))
        return json_response(delivery_view(record), 202)
