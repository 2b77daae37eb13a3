"""Manifests: pushing (validate, store the bytes, record the graph node, tag), pulling, deleting.

The bytes a client pushed are stored once as a blob and served unchanged; the repository's
metadata records the graph node (`_manifests/…`), the tag (`_tags/…`) and, for a manifest with
a subject, an entry in the referrers index (`_referrers/…`). One push is one commit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.events import Event, event, ignore
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, Transaction
from registry_core.names import check_digest, check_name, check_tag, digest_of, is_digest, split_digest
from registry_core.registry.blobs import BlobService
from registry_core.registry.mediatypes import ParsedManifest, parse_manifest
from registry_core.registry.repositories import RepositoryService, name_unknown

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Manifest bodies kept per worker process, most recently used first: a hot manifest is a few KB,
# so 16 MiB holds thousands; 64 MiB per worker was a fifth of the server's memory under the soak.
_CACHE_BYTES = 16 * 1024 * 1024


@dataclass
class Reference:
    """A manifest reference from a URL: a tag or a digest, checked by the spec's grammar."""

    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> "Reference":
        if is_digest(reference):
            return cls(tag=None, digest=check_digest(reference))
        return cls(tag=check_tag(reference), digest=None)


def manifest_unknown(name: str, reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", f"manifest {reference} is not in repository {name}",
                         detail={"name": name, "reference": reference})


class ManifestService:
    def __init__(self, meta: MetaStore, blobs: BlobService, repositories: RepositoryService,
                 notify: Callable[[Event], None] = ignore,
                 guard: Callable[..., None] = ignore,
                 validators: Callable[..., list[str]] | None = None,
                 max_bytes: int = MAX_MANIFEST_BYTES):
        self.meta = meta
        self.blobs = blobs
        self.repositories = repositories
        self.notify = notify
        self.guard = guard
        self.validators = validators
        self.max_bytes = max_bytes
        self._content: OrderedDict[str, bytes] = OrderedDict()
        self._content_size = 0
        self._content_lock = threading.Lock()

    # --- pull -----------------------------------------------------------------------------------

    def resolve(self, name: str, reference: str) -> dict:
        """The graph node (manifest document) that `reference` names in repository `name`."""
        check_name(name)
        try:
            ref = Reference.parse(reference)
        except RegistryError:  # nothing can be stored under an invalid reference: it is unknown
            raise RegistryError("MANIFEST_UNKNOWN", f"{reference!r} is neither a valid tag nor a valid "
                                f"digest, so no manifest in {name} has it", detail={"reference": reference})
        snapshot = self.meta.snapshot()
        digest = ref.digest
        if ref.tag is not None:
            tag = snapshot.get(meta_paths.tag(name, ref.tag))
            if tag is None:
                raise self._unknown(snapshot, name, reference)
            digest = tag["digest"]
        document = snapshot.get(meta_paths.manifest(name, digest))
        if document is None:
            raise self._unknown(snapshot, name, reference)
        return document

    def _unknown(self, snapshot, name: str, reference: str) -> RegistryError:
        if self.repositories.get(name, snapshot) is None:
            return name_unknown(name)
        return manifest_unknown(name, reference)

    def content(self, digest: str) -> bytes:
        with self._content_lock:
            data = self._content.get(digest)
            if data is not None:
                self._content.move_to_end(digest)
                return data
        data = self.blobs.read(digest)
        with self._content_lock:
            if digest not in self._content:
                self._content[digest] = data
                self._content_size += len(data)
                while self._content_size > _CACHE_BYTES:
                    _, evicted = self._content.popitem(last=False)
                    self._content_size -= len(evicted)
        return data

    # --- push -----------------------------------------------------------------------------------

    def put(self, name: str, reference: str, body: bytes, content_type: str | None,
            context: Context, require_references: bool = True) -> tuple[str, ParsedManifest]:
        """Store a manifest. `require_references=False` (mirror fills) skips the checks that the
        blobs and child manifests it refers to are already in the repository."""
        check_name(name)
        ref = Reference.parse(reference)
        if len(body) > self.max_bytes:
            raise RegistryError("MANIFEST_INVALID", f"the manifest is {len(body)} bytes; the limit is "
                                f"{self.max_bytes} bytes", status=413)
        algorithm = split_digest(ref.digest)[0] if ref.digest else "sha256"
        digest = digest_of(body, algorithm)
        if ref.digest is not None and ref.digest != digest:
            raise RegistryError("DIGEST_INVALID", f"the manifest's digest is {digest}, not {ref.digest} "
                                "as the URL says", detail={"expected": ref.digest, "actual": digest})
        parsed = parse_manifest(body, content_type)
        problems = self.validators(repository=name, reference=reference, manifest=parsed, body=body,
                                   context=context) if self.validators else []
        if problems:
            raise RegistryError("MANIFEST_INVALID", "; ".join(problems), detail={"problems": problems})
        current = self.meta.snapshot().get(meta_paths.tag(name, ref.tag)) if ref.tag is not None else None
        self.guard(event("push", context, repository=name, digest=digest, tag=ref.tag,
                         media_type=parsed.media_type, size=len(body),
                         previous_digest=current["digest"] if current else None), manifest=parsed)
        blobs = ([parsed.config] if parsed.config else []) + parsed.layers if require_references else []
        for blob in blobs:
            if not blob.get("urls") and not self.blobs.is_linked(name, blob["digest"]):
                raise RegistryError(
                    "MANIFEST_BLOB_UNKNOWN", f"the manifest refers to blob {blob['digest']}, which is not "
                    f"in repository {name}: push (or mount) the blob first", detail={"digest": blob["digest"]})
        self.blobs.put(body, digest)

        def change(txn: Transaction):
            created = self.repositories.ensure(txn, name, context)
            for child in parsed.manifests if require_references else []:
                if not txn.exists(meta_paths.manifest(name, child["digest"])):
                    raise RegistryError(
                        "MANIFEST_BLOB_UNKNOWN", f"the index refers to manifest {child['digest']}, which is "
                        f"not in repository {name}: push the child manifests first",
                        detail={"digest": child["digest"]})
            path = meta_paths.manifest(name, digest)
            if not txn.exists(path):
                txn.put(path, graph_node(digest, len(body), parsed, context))
            previous = None
            if ref.tag is not None:
                old = txn.get(meta_paths.tag(name, ref.tag))
                previous = old["digest"] if old else None
                if previous != digest:
                    txn.put(meta_paths.tag(name, ref.tag), {
                        "kind": "tag", "schemaVersion": 1, "name": ref.tag, "digest": digest,
                        "mediaType": parsed.media_type, "size": len(body),
                        "pushedBy": context.actor, "pushedAt": now_iso()})
            if parsed.subject is not None:
                referrer = meta_paths.referrer(name, parsed.subject["digest"], digest)
                if not txn.exists(referrer):
                    txn.put(referrer, {"kind": "referrer", "schemaVersion": 1,
                                       "descriptor": referrer_descriptor(digest, len(body), parsed)})
            return created, previous

        target = f"{name}:{ref.tag}" if ref.tag else f"{name}@{digest}"
        created, previous = self.meta.transact(change, context, f"Push {target}\n\nManifest {digest} "
                                               f"({parsed.media_type}, {len(body)} bytes)")
        if created:
            self.notify(event("repository-created", context, repository=name))
        self.notify(event("push", context, repository=name, digest=digest, tag=ref.tag,
                          media_type=parsed.media_type, size=len(body)))
        if ref.tag is not None and previous != digest:
            self.notify(event("tag", context, repository=name, digest=digest, tag=ref.tag,
                              media_type=parsed.media_type, previous_digest=previous))
        return digest, parsed

    # --- delete ---------------------------------------------------------------------------------

    def delete(self, name: str, reference: str, context: Context) -> None:
        check_name(name)
        ref = Reference.parse(reference)

        def untag(txn: Transaction):
            if self.repositories.get(name, txn) is None:
                raise name_unknown(name)
            old = txn.get(meta_paths.tag(name, ref.tag))
            if old is None:
                raise manifest_unknown(name, reference)
            txn.delete(meta_paths.tag(name, ref.tag))
            return old

        def delete_manifest(txn: Transaction):
            if self.repositories.get(name, txn) is None:
                raise name_unknown(name)
            document = txn.get(meta_paths.manifest(name, ref.digest))
            if document is None:
                raise manifest_unknown(name, reference)
            txn.delete(meta_paths.manifest(name, ref.digest))
            removed_tags = []
            for bucket in bucket_folders(txn, meta_paths.tags_dir(name)):
                for tag_file in txn.names(bucket):
                    tag = txn.get(f"{bucket}/{tag_file}")
                    if tag is not None and tag["digest"] == ref.digest:
                        txn.delete(f"{bucket}/{tag_file}")
                        removed_tags.append(tag["name"])
            if "subject" in document:
                txn.delete(meta_paths.referrer(name, document["subject"]["digest"], ref.digest))
            return document, removed_tags

        self.guard(event("delete", context, repository=name, tag=ref.tag, digest=ref.digest))
        if ref.tag is not None:
            old = self.meta.transact(untag, context, f"Untag {name}:{ref.tag}\n\nIt pointed to {reference}")
            self.notify(event("untag", context, repository=name, tag=ref.tag, digest=old["digest"]))
        else:
            document, removed = self.meta.transact(delete_manifest, context, f"Delete {name}@{ref.digest}")
            for tag in removed:
                self.notify(event("untag", context, repository=name, tag=tag, digest=ref.digest))
            self.notify(event("delete", context, repository=name, digest=ref.digest,
                              media_type=document["mediaType"]))


def bucket_folders(txn: Transaction, folder: str, levels: int | None = None) -> Iterator[str]:
    """The paths of the buckets of a fanned-out folder (meta/paths.py `fan_out`) as `txn` sees them."""
    levels = meta_paths.FANOUT_LEVELS if levels is None else levels
    for name in txn.names(folder):
        if levels == 1:
            yield f"{folder}/{name}"
        else:
            yield from bucket_folders(txn, f"{folder}/{name}", levels - 1)


def graph_node(digest: str, size: int, parsed: ParsedManifest, context: Context) -> dict:
    node = {"kind": "manifest", "schemaVersion": 1, "digest": digest, "mediaType": parsed.media_type,
            "size": size}
    if parsed.artifact_type:
        node["artifactType"] = parsed.artifact_type
    if parsed.config is not None:
        node["config"] = parsed.config
    if parsed.layers:
        node["layers"] = parsed.layers
    if parsed.manifests:
        node["manifests"] = parsed.manifests
    if parsed.subject is not None:
        node["subject"] = parsed.subject
    if parsed.annotations:
        node["annotations"] = parsed.annotations
    node["pushedBy"] = context.actor
    node["pushedAt"] = now_iso()
    return node


def referrer_descriptor(digest: str, size: int, parsed: ParsedManifest) -> dict:
    descriptor = {"mediaType": parsed.media_type, "digest": digest, "size": size}
    artifact_type = parsed.referrer_artifact_type()
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if parsed.annotations:
        descriptor["annotations"] = parsed.annotations
    return descriptor
