"""Repository hooks as metadata documents (kind `webhook`, schemas/webhook.yaml) at
`repositories/<name>/_webhooks/<id>.yaml`: each change one commit authored by the acting user, so
the history shows who configured which hook. The secret is sealed (sealing.py) before it is
written. Checks of what a request asks for live here; who may ask is the routes' business.

The hooks of a repository are read on every event the repository has (service.py records it for
those that want it): `list` keeps them by the object id of their `_webhooks` tree, which a push,
a tag or anything else but a change of its hooks leaves as it is, so an event of a repository
whose hooks did not change reads no hook document; a change by any process (another id) is seen
at once.
"""

from __future__ import annotations

import fnmatch
import re
import secrets as random

import pygit2

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError, bad_request
from registry_core.meta import paths as meta_paths

from . import targets
from .sealing import Sealer
from .settings import DEFAULT_EVENTS, EVENTS, FORMATS

FIELDS = ("url", "secret", "events", "format", "tags", "active")
VIEW_FIELDS = ("id", "repository", "url", "events", "format", "tags", "active", "createdBy", "createdAt",
               "updatedBy", "updatedAt")
MIN_SECRET, MAX_SECRET = 16, 1024
LISTS_KEPT = 1024  # `_webhooks` trees whose hooks a process keeps (Definitions.list), at most
_HOOK_ID = re.compile(r"[0-9a-f]{12}")


def hooks_dir(name: str) -> str:
    return f"{meta_paths.repository_dir(name)}/_webhooks"


def hook_path(name: str, hook_id: str) -> str:
    return f"{hooks_dir(name)}/{hook_id}.yaml"


def view(document: dict) -> dict:
    """What the API shows of a hook: never its secret, sealed or not."""
    return {key: document[key] for key in VIEW_FIELDS if key in document}


def wants(active: bool, events, tags: str | None, event: str, tag: str | None) -> bool:
    """Does a hook (`active`, its `events` and `tags` glob) want `event` for `tag`? With a glob,
    events without a tag (a push by digest) are not sent."""
    if not active or event not in events:
        return False
    return tags is None or (tag is not None and fnmatch.fnmatchcase(tag, tags))


class Definitions:
    def __init__(self, meta, sealer: Sealer, allow_private: bool):
        self.meta = meta
        self.sealer = sealer
        self.allow_private = allow_private
        self._lists: dict[bytes, list[dict]] = {}  # the hooks of a `_webhooks` tree, by its id

    # --- checks ---------------------------------------------------------------------------------

    def _checked(self, body: dict, creating: bool) -> dict:
        """The fields of `body` checked, with defaults when creating."""
        fields = {}
        if "url" in body or creating:
            fields["url"] = targets.check_new(body.get("url"), self.allow_private)
        if body.get("secret") is not None:
            secret = body["secret"]
            if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
                raise bad_request(f"secret must be a string of {MIN_SECRET} to {MAX_SECRET} characters "
                                  "(leave it out and the registry makes one, shown once)")
            fields["secret"] = secret
        if "events" in body or creating:
            events = body.get("events", list(DEFAULT_EVENTS))
            if not isinstance(events, list) or not events or not all(e in EVENTS for e in events) \
                    or len(set(events)) != len(events):
                raise bad_request(f"events must be a non-empty list of distinct events from {', '.join(EVENTS)}")
            fields["events"] = events
        if "format" in body or creating:
            fmt = body.get("format", "distribution")
            if fmt not in FORMATS:
                raise bad_request(f"format must be one of {', '.join(FORMATS)}")
            fields["format"] = fmt
        if body.get("tags") is not None:
            if not isinstance(body["tags"], str) or not 1 <= len(body["tags"]) <= 256:
                raise bad_request("tags must be a glob of 1 to 256 characters, such as \"v*\" (or left out for every tag)")
            fields["tags"] = body["tags"]
        if "active" in body or creating:
            active = body.get("active", True)
            if not isinstance(active, bool):
                raise bad_request("active must be true or false")
            fields["active"] = active
        return fields

    # --- changes --------------------------------------------------------------------------------

    def create(self, context: Context, name: str, body: dict) -> tuple[dict, str | None]:
        """The new hook's document, and its secret when the registry made it (to show once)."""
        fields = self._checked(body, creating=True)
        generated = None
        if "secret" not in fields:
            fields["secret"] = generated = random.token_urlsafe(32)
        hook_id = random.token_hex(6)
        document = {"kind": "webhook", "schemaVersion": 1, "id": hook_id, "repository": name,
                    "url": fields["url"], "sealedSecret": self.sealer.seal(fields["secret"]),
                    "events": fields["events"], "format": fields["format"], "active": fields["active"],
                    "createdBy": context.actor, "createdAt": now_iso()}
        if "tags" in fields:
            document["tags"] = fields["tags"]

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            txn.put(hook_path(name, hook_id), document)
        self.meta.transact(change, context, f"Add webhook {hook_id} to {name}\n\nSends {', '.join(document['events'])} "
                                            f"events as {document['format']} to {document['url']}")
        return document, generated

    def update(self, context: Context, name: str, hook_id: str, body: dict) -> dict:
        fields = self._checked(body, creating=False)
        if not fields and "tags" not in body:
            raise bad_request(f"nothing to change: give one of {', '.join(FIELDS)}")

        def change(txn):
            current = txn.get(hook_path(name, hook_id))
            if current is None:
                raise hook_unknown(name, hook_id)
            document = dict(current)
            for key, value in fields.items():
                if key == "secret":
                    document["sealedSecret"] = self.sealer.seal(value)
                else:
                    document[key] = value
            if "tags" in body and body["tags"] is None:
                document.pop("tags", None)
            document.update(updatedBy=context.actor, updatedAt=now_iso())
            txn.put(hook_path(name, hook_id), document)
            return document
        changed = ", ".join(sorted(set(fields) | ({"tags"} if "tags" in body else set())))
        return self.meta.transact(change, context, f"Change {changed} of webhook {hook_id} of {name}")

    def delete(self, context: Context, name: str, hook_id: str) -> None:
        def change(txn):
            if not txn.exists(hook_path(name, hook_id)):
                raise hook_unknown(name, hook_id)
            txn.delete(hook_path(name, hook_id))
        self.meta.transact(change, context, f"Remove webhook {hook_id} from {name}")

    # --- reading --------------------------------------------------------------------------------

    def repository_exists(self, name: str) -> bool:
        return self.meta.snapshot().exists(meta_paths.repository(name))

    def list(self, name: str, snapshot=None) -> list[dict]:
        """The repository's hooks, oldest first. The list and its documents are shared: do not
        modify them."""
        snapshot = snapshot or self.meta.snapshot()
        directory = hooks_dir(name)
        tree = snapshot.entry(directory)
        if not isinstance(tree, pygit2.Tree):
            return []
        key = tree.id.raw
        hooks = self._lists.get(key)
        if hooks is None:
            found = [snapshot.get(f"{directory}/{entry}") for entry in snapshot.names(directory)
                     if entry.endswith(".yaml")]
            hooks = sorted((d for d in found if d is not None), key=lambda d: (d.get("createdAt", ""), d["id"]))
            if len(self._lists) >= LISTS_KEPT:
                self._lists.clear()
            self._lists[key] = hooks
        return hooks

    def get(self, name: str, hook_id: str) -> dict | None:
        if not _HOOK_ID.fullmatch(hook_id):
            return None
        return self.meta.snapshot().get(hook_path(name, hook_id))

    def hook(self, name: str, hook_id: str) -> dict | None:
        """The repository's hook `hook_id` from its list (`list`: read again only when its hooks
        changed), for the delivering process, which looks hooks up on every round. Shared: do not
        modify it."""
        for document in self.list(name):
            if document["id"] == hook_id:
                return document
        return None

    def secret(self, document: dict) -> str:
        return self.sealer.open(document["sealedSecret"])


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"repository {name} is not known to this registry", detail={"name": name})


def hook_unknown(name: str, hook_id: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"{name} has no webhook {hook_id}")

