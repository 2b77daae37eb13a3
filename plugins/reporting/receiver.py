"""The Index side: reports of trusted nodes, recorded in the Index's meta.git.

`POST /api/v1/nodes/reports` (routes.py) takes one signed report (signing.py); a report that no
trusted node signed, or that is out of date, is refused with 401 before anything is read from it.
A report is then applied as one commit, as the push or delete on the node would have made it:

- `push`: the repository is created if the Index has none (owner: the author below, visibility:
  the Index's `repositories.defaultVisibility`, as a first push makes it), the manifest's document
  (digest, media type, size: the Index keeps no blobs, so no layers) and, with a tag, the tag's;
- `untag`: the tag's document goes, if it still points to the reported digest;
- `delete`: the manifest's document goes, with the tags that point to it.

The commit is authored by the actor the report names when that is an active account of the Index
(the node acted on a token the Index issued to them); otherwise by `registry`, the name the
registry's own commits carry. Its message names the node and the report id either way.

Applying a report twice changes nothing the second time (the documents are already so), and the
ids applied are remembered for SEEN_FOR seconds, much longer than a signed report is accepted
(signing.LIFETIME), under `<store>/state/node-reports/<node>/<id>`: a report replayed while its
signature is still good is answered `duplicate` and not applied again, so it cannot undo a newer
change. Nodes send their reports in order, each once the one before was accepted.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time

from registry_core.context import Context, is_trailer_value
from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.documents import DocumentInvalid
from registry_core.names import DIGEST_RE, is_account_name, is_tag, is_valid_name
from registry_core.registry.manifests import bucket_folders

from . import signing

REPORT_ID = re.compile(r"[0-9a-f]{32}")
ACTIONS = ("push", "untag", "delete")
SEEN_FOR = 86400.0
PRUNE_EVERY = 256         # reports applied by a process between two prunings of the ids seen
MAX_NAMES = 1000          # repositories one access question may name
SYSTEM_AUTHOR = "registry"


def bad_report(message: str, what: str = "the report cannot be applied") -> RegistryError:
    return RegistryError("UNSUPPORTED", f"{what}: {message}", status=400)


def trusted_keys(settings) -> dict:
    """{node name: public key} of `pluginConfig.reporting.nodes`; a key that cannot be read stops
    start-up with the file or key that is wrong."""
    keys = {}
    for index, node in enumerate(settings.nodes):
        where = f"pluginConfig/reporting/nodes/{index}"
        if node.key_file is not None:
            try:
                with open(node.key_file) as f:
                    text = f.read()
            except OSError as e:
                raise DocumentInvalid(node.key_file, f"cannot read the public key of node {node.name}: "
                                      f"{e.strerror}") from None
            where = node.key_file
        else:
            text = node.public_key
        if node.name in keys:
            raise DocumentInvalid(where, f"node {node.name} is listed twice")
        keys[node.name] = signing.parse_public_key(text, where)
    return keys


def checked(report, node: str) -> dict:
    """The report, after checking every field; 400 naming the first that is wrong."""
    if not isinstance(report, dict):
        raise bad_report("no report in the signed message")
    known = {"id", "node", "action", "repository", "digest", "tag", "mediaType", "size", "actor", "time"}
    unknown = sorted(set(report) - known)
    if unknown:
        raise bad_report(f"unknown field {', '.join(unknown)}")
    rules = {
        "id": lambda v: isinstance(v, str) and REPORT_ID.fullmatch(v),
        "node": lambda v: v == node,
        "action": lambda v: v in ACTIONS,
        "repository": lambda v: isinstance(v, str) and is_valid_name(v),
        "digest": lambda v: isinstance(v, str) and DIGEST_RE.fullmatch(v) and re.fullmatch(r"[a-z0-9]+:[a-f0-9]{32,}", v),
        "actor": lambda v: isinstance(v, str) and len(v) <= 256,
        "time": lambda v: isinstance(v, str) and _time(v) is not None,
    }
    optional = {
        "tag": lambda v: isinstance(v, str) and is_tag(v),
        "mediaType": lambda v: isinstance(v, str) and 0 < len(v) <= 255 and v.isprintable(),
        "size": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 53,
    }
    for key, rule in rules.items():
        if key not in report or not rule(report[key]):
            raise bad_report(f"{key} is missing or not valid" + (f" (signed by node {node})" if key == "node" else ""))
    for key, rule in optional.items():
        if key in report and not rule(report[key]):
            raise bad_report(f"{key} is not valid")
    if report["action"] == "push" and ("mediaType" not in report or "size" not in report):
        raise bad_report("a push names the manifest's mediaType and size")
    if report["action"] == "untag" and "tag" not in report:
        raise bad_report("an untag names the tag")
    return report


def _time(text: str) -> str | None:
    """An ISO 8601 time with its zone as the documents write it (UTC, seconds, Z), or None."""
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class SeenReports:
    """The report ids applied lately, one empty file each, per node."""

    def __init__(self, root: str):
        self.root = root
        self._count = 0
        self._lock = threading.Lock()

    def _path(self, node: str, report_id: str) -> str:
        return os.path.join(self.root, node, report_id)

    def has(self, node: str, report_id: str) -> bool:
        return os.path.exists(self._path(node, report_id))

    def add(self, node: str, report_id: str) -> None:
        os.makedirs(os.path.join(self.root, node), exist_ok=True)
        with open(self._path(node, report_id), "w"):
            pass
        with self._lock:
            self._count += 1
            prune = self._count % PRUNE_EVERY == 0
        if prune:
            self.prune(node)

    def prune(self, node: str, now: float | None = None) -> None:
        folder = os.path.join(self.root, node)
        limit = (now if now is not None else time.time()) - SEEN_FOR
        for entry in os.scandir(folder):
            try:
                if entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass


class NodeReports:
    """Reports and access questions of the nodes the Index trusts."""

    def __init__(self, registry, settings):
        self.registry = registry
        self.meta = registry.meta
        self.repositories = registry.repositories
        self.trusted = trusted_keys(settings)
        self.seen = SeenReports(os.path.join(registry.config.store, "state", "node-reports"))

    def verify(self, body: bytes) -> dict:
        try:
            return signing.verify(body, self.trusted)
        except signing.NotSigned as e:
            raise RegistryError("UNAUTHORIZED", str(e)) from None

    # --- reports ---------------------------------------------------------------------------------

    def receive(self, body: bytes, client_addr: str | None, request_id: str | None) -> dict:
        """Verify and apply one report; what happened, for the node's log."""
        claims = self.verify(body)
        node = claims["iss"]
        report = checked(claims.get("report"), node)
        if self.seen.has(node, report["id"]):
            return {"id": report["id"], "applied": False, "duplicate": True}
        changed = self.apply(report, Context(actor=self.author(report["actor"]),
                                             client_addr=client_addr if is_trailer_value(client_addr) else None,
                                             request_id=request_id))
        self.seen.add(node, report["id"])
        return {"id": report["id"], "applied": True, "changed": changed}

    def author(self, actor: str) -> str:
        accounts = self.registry.accounts
        if is_account_name(actor) and accounts is not None and accounts.actor_for(actor) is not None:
            return actor
        return SYSTEM_AUTHOR

    def apply(self, report: dict, context: Context) -> bool:
        """Record the report in one commit; False when the Index already says so (no commit)."""
        name, digest, tag = report["repository"], report["digest"], report.get("tag")
        node, when = report["node"], _time(report["time"])
        about = f"Reported by node {node} for {report['actor'][:64]}, report {report['id']}"
        changed = []

        if report["action"] == "push":
            def change(txn):
                self.repositories.ensure(txn, name, context)
                path = meta_paths.manifest(name, digest)
                if not txn.exists(path):
                    txn.put(path, {"kind": "manifest", "schemaVersion": 1, "digest": digest,
                                   "mediaType": report["mediaType"], "size": report["size"],
                                   "pushedBy": context.actor, "pushedAt": when})
                if tag is not None:
                    old = txn.get(meta_paths.tag(name, tag))
                    if old is None or old["digest"] != digest:
                        txn.put(meta_paths.tag(name, tag), {
                            "kind": "tag", "schemaVersion": 1, "name": tag, "digest": digest,
                            "mediaType": report["mediaType"], "size": report["size"],
                            "pushedBy": context.actor, "pushedAt": when})
                changed.append(bool(txn.changes))
            target = f"{name}:{tag}" if tag else f"{name}@{digest}"
            message = f"Push {target}\n\nManifest {digest} ({report['mediaType']}, {report['size']} bytes)\n{about}"
        elif report["action"] == "untag":
            def change(txn):
                old = txn.get(meta_paths.tag(name, tag))
                if old is not None and old["digest"] == digest:
                    txn.delete(meta_paths.tag(name, tag))
                changed.append(bool(txn.changes))
            message = f"Untag {name}:{tag}\n\nIt pointed to {digest}\n{about}"
        else:
            def change(txn):
                if txn.exists(meta_paths.manifest(name, digest)):
                    txn.delete(meta_paths.manifest(name, digest))
                    for bucket in bucket_folders(txn, meta_paths.tags_dir(name)):
                        for tag_file in txn.names(bucket):
                            document = txn.get(f"{bucket}/{tag_file}")
                            if document is not None and document["digest"] == digest:
                                txn.delete(f"{bucket}/{tag_file}")
                changed.append(bool(txn.changes))
            message = f"Delete {name}@{digest}\n\n{about}"
        self.meta.transact(change, context, message)
        return changed[-1]

    # --- access ----------------------------------------------------------------------------------

    def visible(self, body: bytes) -> list[str]:
        """Which of the repositories a node asks about its token's user may pull here."""
        claims = self.verify(body)
        subject, names = claims.get("subject"), claims.get("repositories")
        if not isinstance(subject, str) or (subject and not is_account_name(subject)):
            raise bad_report("subject is not an account name", "the access question cannot be answered")
        if not isinstance(names, list) or len(names) > MAX_NAMES or not all(isinstance(n, str) for n in names):
            raise bad_report(f"repositories is not a list of at most {MAX_NAMES} names",
                             "the access question cannot be answered")
        accounts = self.registry.accounts
        actor = accounts.actor_for(subject) if subject and accounts is not None else None
        return [n for n in names if is_valid_name(n) and self.registry.may(actor, n, "pull")]
