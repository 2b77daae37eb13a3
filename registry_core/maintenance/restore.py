"""`registry tag restore NAME:TAG --at COMMIT|DATE`: point a tag back to the digest it had then.

The tag's document is read from the commit (given by id, or the newest at or before a date:
history.py), and the restore is a new commit by the acting user through the store's own
transaction (meta/store.py `transact`), so it is a commit like any other and the history keeps
what happened in between. The image must still be whole: the manifest's bytes and every blob it
refers to (config, layers, and those of the manifests of an index, recursively) must be in blob
storage; otherwise nothing is changed and the missing digests are named (garbage collection
removes what no manifest needed after a tag moved away and the old manifest was deleted).

What the restored tag needs is put back with it: the manifest documents of the image graph (when
the manifest was deleted since; taken from the same commit), the referrer entry of a manifest with
a subject, and the links that let the repository read its blobs (storage/paths.py `link_path`,
written before the commit, as a push writes them before its manifest). A garbage collection
running at the same moment could remove a blob between the check and the commit, the race a push
has too; `registry fsck` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygit2
import yaml

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.maintenance.history import COMMIT_ID_RE, RESTORE_SUBJECT, DATE_FORMS, DATE_RE, HistoryError, commit_at, \
    find_commit, iso, parse_date, walk
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, Transaction
from registry_core.names import check_digest
from registry_core.registry.blobs import BlobService

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Restored:
    """What a restore did: the tag's digest then and now (None: it did not exist), the commit it
    restored from, and the new commit (None when the tag already pointed there)."""

    name: str
    tag: str
    digest: str
    source: str            # the commit the digest was read from
    source_time: int
    previous: str | None
    commit: str | None

    def lines(self) -> list[str]:
        then = f"as of commit {self.source[:12]} ({iso(self.source_time)})"
        if self.commit is None:
            return [f"{self.name}:{self.tag} already points to {self.digest} ({then}): nothing changed"]
        was = f"it pointed to {self.previous}" if self.previous else "it did not exist"
        return [f"Restored {self.name}:{self.tag} to {self.digest} {then}; {was}",
                f"commit {self.commit}"]


class MissingBlobs(RegistryError):
    """The image the tag had is no longer whole in blob storage."""

    def __init__(self, name: str, tag: str, digest: str, missing: list[str]):
        super().__init__("BLOB_UNKNOWN", f"cannot restore {name}:{tag} to {digest}: "
                         f"{len(missing)} blob(s) it needs are no longer in blob storage "
                         f"(removed by garbage collection?): {', '.join(missing)}; nothing was changed",
                         detail={"missing": missing})
        self.missing = missing


def find_source(repo: pygit2.Repository, at: str) -> pygit2.Commit:
    """The commit `at` names: a commit id (4 to 64 hex digits, a prefix of one commit of main's
    history) or a date (history.py), checked as a whole string."""
    if COMMIT_ID_RE.fullmatch(at):
        return find_commit(repo, at)
    if DATE_RE.fullmatch(at):
        try:
            when = parse_date(at)
        except HistoryError as e:
            raise HistoryError(f"--at {e.message}") from None
        return commit_at(repo, when)
    raise HistoryError(f"--at {at!r} is neither a commit id (4 to 64 lowercase hex digits) nor a date "
                       f"({DATE_FORMS})")


class TagRestorer:
    """Restores tags of one store: its metadata, blob storage, and who acts."""

    def __init__(self, meta: MetaStore, blobs: BlobService, context: Context):
        self.meta = meta
        self.blobs = blobs
        self.context = context

    def restore(self, name: str, tag: str, at: str) -> Restored:
        repo = self.meta.repo
        source = find_source(repo, at)
        when = f"at commit {str(source.id)[:12]} ({iso(source.author.time)})"
        tag_document = document_at(repo, source, meta_paths.tag(name, tag))
        if tag_document is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"{name}:{tag} did not exist {when}: see its history with "
                                f"`registry audit {name}`", detail={"repository": name, "tag": tag})
        digest = check_digest(tag_document["digest"])
        graph = self.image_graph(repo, source, name, digest, when)
        missing = [d for d in self.needed_blobs(graph) if not self.blobs.exists(d)]
        if missing:
            raise MissingBlobs(name, tag, digest, missing)
        for document in graph.values():
            for blob in layer_and_config_digests(document):
                if not self.blobs.is_linked(name, blob):
                    self.blobs.link(name, blob)

        def change(txn: Transaction):
            if not txn.exists(meta_paths.repository(name)):
                raise RegistryError("NAME_UNKNOWN", f"repository {name} no longer exists: nothing to restore "
                                    "the tag into", detail={"repository": name})
            current = txn.get(meta_paths.tag(name, tag))
            if current is not None and current.get("digest") == digest:
                return False, digest
            for manifest_digest, document in graph.items():
                path = meta_paths.manifest(name, manifest_digest)
                if not txn.exists(path):
                    txn.put(path, document)
                subject = document.get("subject")
                if subject is not None:
                    entry = meta_paths.referrer(name, subject["digest"], manifest_digest)
                    old_entry = document_at(repo, source, entry)
                    if old_entry is not None and not txn.exists(entry):
                        txn.put(entry, old_entry)
            restored = {key: tag_document[key] for key in ("kind", "schemaVersion", "name", "digest",
                                                           "mediaType", "size") if key in tag_document}
            txn.put(meta_paths.tag(name, tag), {**restored, "pushedBy": self.context.actor, "pushedAt": now_iso()})
            return True, current.get("digest") if current is not None else None

        message = (f"{RESTORE_SUBJECT}{name}:{tag} to {digest}\n\nAs it was at commit {source.id} "
                   f"({iso(source.author.time)})")
        before = self.meta.snapshot().tip
        changed, previous = self.meta.transact(change, self.context, message)
        commit = self.made_since(before, message) if changed else None
        self.meta.settle()  # the merge of small packs a commit may start: done before the command exits
        return Restored(name, tag, digest, str(source.id), source.author.time, previous, commit)

    def made_since(self, before: pygit2.Oid | None, message: str) -> str | None:
        """The id of the commit with `message` that this process just made (other writers may have
        committed after it: the branch is walked back to where it was before)."""
        repo = self.meta.repo
        for commit in walk(repo):
            if commit.id == before:
                break
            if commit.message.startswith(message) and commit.author.name == self.context.actor:
                return str(commit.id)
        return None

    def image_graph(self, repo: pygit2.Repository, source: pygit2.Commit, name: str, digest: str,
                    when: str) -> dict[str, dict]:
        """The manifest documents of the image `digest` as they were at `source`: its own and,
        for an index, those of its manifests, recursively (by digest)."""
        graph: dict[str, dict] = {}
        pending = [digest]
        while pending:
            current = pending.pop()
            if current in graph:
                continue
            document = document_at(repo, source, meta_paths.manifest(name, check_digest(current)))
            if document is None:
                raise RegistryError("MANIFEST_UNKNOWN", f"the manifest {current} of {name} has no document "
                                    f"{when} (run `registry fsck` on the store)", detail={"digest": current})
            graph[current] = document
            pending.extend(child["digest"] for child in document.get("manifests", ()))
        return graph

    @staticmethod
    def needed_blobs(graph: dict[str, dict]) -> list[str]:
        """Every blob the image needs, each once, in a stable order: the manifests' own bytes,
        then their configs and layers (not those a descriptor says are fetched from `urls`)."""
        needed = list(graph)
        for document in graph.values():
            needed.extend(d for d in layer_and_config_digests(document) if d not in needed)
        return needed


def layer_and_config_digests(document: dict) -> list[str]:
    descriptors = ([document["config"]] if "config" in document else []) + list(document.get("layers", ()))
    return [d["digest"] for d in descriptors if not d.get("urls")]


def document_at(repo: pygit2.Repository, commit: pygit2.Commit, path: str) -> dict | None:
    """The document at `path` in `commit`'s tree, or None."""
    try:
        blob = commit.tree[path]
    except KeyError:
        return None
    if not isinstance(blob, pygit2.Blob):
        return None
    document = yaml.load(blob.data, Loader=_Loader)
    return document if isinstance(document, dict) else None


def parse_target(text: str) -> tuple[str, str]:
    """NAME:TAG (checked by the caller with registry_core.names)."""
    name, colon, tag = text.rpartition(":")
    if not colon or not name or "/" in tag:
        raise HistoryError(f"{text!r} is not NAME:TAG (for example library/alpine:3.19)")
    return name, tag

