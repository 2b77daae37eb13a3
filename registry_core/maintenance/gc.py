"""Garbage collection: mark and sweep over the whole store, as CNCF Distribution's
registry/storage/garbagecollect.go does, but safe to run while the registry serves.

What goes, in this order:

1. Upload sessions started (uploads/<uuid>/started_at) more than `upload_age` ago and not written
   to within `grace`, unless a request holds the session's lock at that moment; and temporary
   files (`.tmp-*`, which the filesystem driver leaves when it dies between a write and its rename)
   older than `grace`.
2. With `delete_untagged`: manifests that no tag reaches (directly, as a child of a reached index,
   or as a referrer of a reached subject) and that were pushed more than `grace` ago (an index's
   children are pushed before the index). One commit per repository, authored by the acting
   user; each commit re-checks reachability on the tip it commits on, so a tag pushed meanwhile
   keeps its manifest.
3. Mark: the digest of every blob that a manifest document of any repository needs (its own
   bytes, config, layers, child manifests), read from the metadata tree.
4. Sweep: blob files that no manifest needs, older than `grace` and linked nowhere within `grace`
   (a push in progress has uploaded its layers but not yet its manifest: those are young); then
   the links of each repository that are older than `grace` and whose blob is gone or that no
   manifest of that repository needs.
5. meta.git's objects (the small packs commits write, and loose files of older stores) are
   written as one pack whose trees are stored as deltas, by git's pack-objects (meta/packing.py), and
   the packs that commits merged into bigger ones are deleted. Nothing of the history goes;
   objects no commit reaches (a commit that lost its race with another writer) go once they are
   older than `grace`. The space this frees is measured (objects/ before and after) and counted
   in the report's "freed".

A file's age is the time since it was last written. A finished upload is moved into blobs/ with
the time of its last chunk, but the link it writes at the same moment is new, so the blob counts
as young through its link; an upload of content the store already has, and a cross-repository
mount, also write a new link.

Beside a serving registry: before each removal the metadata's tip is read again, and the manifests
committed since the mark are marked too, so a manifest push that lands during the sweep keeps its
blobs. The race this accepts: **a blob uploaded more than `grace` ago whose manifest never arrived
is removed** (with its links), even if that manifest is still on its way; its push then fails with
MANIFEST_BLOB_UNKNOWN and the client must upload the blob again. The same holds for an old blob no
manifest needs that a client links into a repository (mount, or upload of content the store has)
after this job read that repository's links, and, with `delete_untagged`, for an untagged manifest
first pushed more than `grace` ago that a client pushes again as a child of a new index while this
job deletes it (the index's push fails; pushing again works). Left is a window of microseconds: a manifest whose
blobs the registry checked just before one of them was removed, and committed just after the
last look at the tip, refers to a missing blob; `registry fsck` reports it and pushing the image
again repairs it. Choose `grace` longer than any push takes from its first blob to its manifest.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re
import time
from dataclasses import asdict, dataclass, field

import pygit2

from registry_core.context import Context
from registry_core.meta import paths as meta_paths
from registry_core.meta.documents import DocumentInvalid
from registry_core.meta.packing import PackResult, pack_metadata
from registry_core.meta.store import MetaStore, Snapshot, Transaction, load_blob
from registry_core.maintenance import inventory, marking
from registry_core.maintenance.inventory import RepositoryGraph
from registry_core.registry.blobs import links_removed_path, note_links_removed
from registry_core.storage import paths
from registry_core.storage.driver import StorageDriver

HOUR = 3600.0
# A manifest document in its bucket (meta/paths.py `fan_out`) or at an older place of `_manifests/`.
_MANIFEST_PATH = re.compile(rf"{meta_paths.REPOSITORIES}/(?P<name>.+)/_manifests/"
                            r"(?P<algorithm>[a-z0-9]+)/(?:[0-9a-f]+/)*(?P<encoded>[a-f0-9]+)\.yaml")


class GarbageCollectionRefused(Exception):
    """The metadata cannot be read completely, so what is in use is unknown; nothing was removed."""

    def __init__(self, problems: list[str], midway: bool = False):
        self.problems = problems
        outcome = ("it stopped midway: what it removed before is not listed" if midway
                   else "nothing was removed")
        super().__init__("garbage collection needs every manifest document (and tag document, to delete "
                         "untagged manifests) to be valid, and "
                         f"{len(problems)} are not ({outcome}; `registry fsck` lists them):\n  "
                         + "\n  ".join(problems))


@dataclass
class Options:
    dry_run: bool = False
    delete_untagged: bool = False
    upload_age: float = 24 * HOUR    # seconds
    grace: float = 1 * HOUR          # seconds


@dataclass
class Removal:
    """One thing removed (or, in a dry run, that would be)."""

    kind: str                        # upload | temporary | manifest | blob | link
    path: str                        # driver path, or the metadata path of a manifest document
    size: int = 0
    repository: str | None = None
    digest: str | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "upload":
            return f"upload session {self.path} ({human_size(self.size)}; {self.reason})"
        if self.kind == "temporary":
            return f"temporary file {self.path} ({human_size(self.size)})"
        if self.kind == "manifest":
            return f"manifest {self.repository}@{self.digest} ({self.reason})"
        if self.kind == "blob":
            return f"blob {self.digest} ({human_size(self.size)}; {self.reason})"
        return f"link {self.path} ({self.reason})"

    def as_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


KINDS = ("upload", "temporary", "manifest", "blob", "link")
_NOUNS = {"upload": ("upload session", "upload sessions"), "temporary": ("temporary file", "temporary files"),
          "manifest": ("untagged manifest", "untagged manifests"), "blob": ("blob", "blobs"),
          "link": ("link", "links")}


@dataclass
class Report:
    store: str
    dry_run: bool
    grace: float
    delete_untagged: bool = False
    removed: list[Removal] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("blobsInUse", "blobsYoung", "blobsRecentlyLinked", "linksInUse", "linksYoung",
         "uploadsActive", "uploadsLocked", "manifestsReachable", "manifestsYoung"), 0))
    commits: int = 0                 # in meta.git, one per repository that lost manifests
    metadata: PackResult = field(default_factory=PackResult)   # meta.git packed into one pack

    @property
    def bytes_freed(self) -> int:
        """What was removed, and how much less meta.git's objects take once packed (in a dry run,
        only what certainly goes there: how small the one pack will be is known once written)."""
        return sum(removal.size for removal in self.removed) + self.metadata.bytes_freed

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for r in self.removed if r.kind == kind) for kind in KINDS}

    def as_json(self) -> dict:
        return {"store": self.store, "dryRun": self.dry_run, "counts": self.counts(),
                "bytesFreed": self.bytes_freed, "kept": self.kept, "commits": self.commits,
                "metadataPacked": self.metadata.as_json(),
                "removed": [removal.as_json() for removal in self.removed]}

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb}: {removal.describe()}" for removal in self.removed]
        counts = self.counts()
        parts = [plural(n, *_NOUNS[kind]) for kind, n in counts.items() if n]
        what = ", ".join(parts) if parts else "nothing"
        head = (f"Dry run on {self.store} (nothing was changed): would remove {what}; would free "
                if self.dry_run else f"Garbage collection of {self.store}: removed {what}; freed ")
        in_meta = f" ({human_size(self.metadata.bytes_freed)} of it in meta.git)" if self.metadata.bytes_freed else ""
        lines.append(head + human_size(self.bytes_freed) + in_meta + ".")
        k, recent = self.kept, f"within the last {self.grace / 60:g} minutes"
        kept = [f"{plural(k['blobsInUse'], 'blob')} in use, {k['blobsYoung'] + k['blobsRecentlyLinked']} "
                f"unused but written or linked {recent}",
                f"{plural(k['linksInUse'], 'link')} in use, {k['linksYoung']} written {recent}",
                f"{plural(k['uploadsActive'] + k['uploadsLocked'], 'upload session')}"]
        if self.delete_untagged:
            kept.insert(0, f"{plural(k['manifestsReachable'], 'manifest')} a tag reaches, "
                           f"{k['manifestsYoung']} untagged but pushed {recent}")
        lines.append("Kept " + "; ".join(kept) + ".")
        if self.metadata.objects:
            packed = self.metadata
            lines.append(f"meta.git: {'would pack' if self.dry_run else 'packed'} "
                         f"{plural(packed.objects, 'object')} ({plural(packed.loose_objects, 'loose file')} and "
                         f"{plural(packed.packs, 'pack')}, {human_size(packed.bytes_before)} on disk)"
                         + ("." if self.dry_run else f" into one pack of {human_size(packed.pack_bytes)}."))
        if self.commits:
            lines.append(f"The manifests were deleted in {self.commits} commit{'s' if self.commits != 1 else ''}: "
                         f"git --git-dir {os.path.join(self.store, 'meta.git')} log")
        return lines


class GarbageCollector:
    """One run over one store; `run()` returns the report. `now` is the time ages are measured from."""

    def __init__(self, driver: StorageDriver, meta: MetaStore, context: Context, options: Options,
                 store: str = "", now: float | None = None, mark_workers: int | None = None):
        self.driver = driver
        self.meta = meta
        self.context = context
        self.options = options
        self.now = time.time() if now is None else now
        self.report = Report(store, options.dry_run, options.grace, options.delete_untagged)
        self.marked: set[str] = set()
        self.referenced: dict[str, set[str]] = {}           # repository -> digests its manifests need
        self.excluded: dict[tuple[str, str], dict] = {}      # (repository, digest) deleted, with its document
        self._mark_tree_id: pygit2.Oid | None = None
        self._mark_tip: pygit2.Oid | None = None
        self.mark_workers = mark_workers  # processes that read the documents (marking.py); None: by size

    def run(self) -> Report:
        plan = self.survey(self.meta.snapshot())   # raises before anything is changed
        self.collect_uploads()
        self.delete_manifests(plan)
        removed_blobs = self.sweep_blobs()
        self.sweep_links(removed_blobs)
        # What the mark read (trees, documents, the digests) is not needed again: give it back
        # before git's pack-objects takes its own memory, so the two do not add up.
        self.marked, self.referenced, self.excluded = set(), {}, {}
        self.meta.release_caches()
        self.report.metadata = pack_metadata(self.meta.path, dry_run=self.options.dry_run, durable=self.meta.durable,
                                             grace=self.options.grace, now=self.now)
        return self.report

    def old(self, when: float | None, limit: float) -> bool:
        """Whether `when` is more than `limit` seconds ago; an unknown time is never old."""
        return when is not None and self.now - when > limit

    # --- reading the metadata: what no tag reaches, and what every manifest needs ---------------

    def survey(self, snapshot: Snapshot) -> dict[str, dict[str, dict]]:
        """Mark what every manifest needs; return the untagged manifests to delete, by repository
        (empty without `delete_untagged`). Those are left out of the marks."""
        rules = marking.Rules(self.options.delete_untagged, self.options.grace, self.now)
        found = marking.read_all(self.meta.path, snapshot, rules, workers=self.mark_workers)
        if found.problems:
            raise GarbageCollectionRefused(found.problems)
        self.referenced = found.referenced
        for needed in found.referenced.values():
            self.marked |= needed
        for name, untagged in found.untagged.items():
            for digest, document in untagged.items():
                self.excluded[(name, digest)] = document
        self.report.kept["manifestsReachable"] += found.reachable
        self.report.kept["manifestsYoung"] += found.young
        self._mark_tree_id, self._mark_tip = (snapshot.root.id if snapshot.root is not None else None), snapshot.tip
        return found.untagged

    def mark(self, name: str, document: dict) -> None:
        needed = set(inventory.references(document))
        self.marked |= needed
        self.referenced.setdefault(name, set()).update(needed)

    def refresh(self) -> None:
        """Mark what the manifests committed since the last look need (pushes during the sweep)."""
        snapshot = self.meta.snapshot()
        if snapshot.tip == self._mark_tip or snapshot.root is None:
            return
        if self._mark_tree_id is None:
            changed = []
        else:
            old = self._mark_tree_id
            changed = snapshot.read(lambda: list(snapshot.repo[old].diff_to_tree(snapshot.root).deltas))
        for delta in changed:
            if delta.status == pygit2.GIT_DELTA_DELETED:
                continue
            match = _MANIFEST_PATH.fullmatch(delta.new_file.path)
            if match is None:
                continue
            try:
                document = load_blob(snapshot.repo[delta.new_file.id], delta.new_file.path)
            except DocumentInvalid as e:
                raise GarbageCollectionRefused([str(e)], midway=True) from None
            self.mark(match["name"], document)
            self.excluded.pop((match["name"], document["digest"]), None)
        # A deleted manifest pushed again with the very same document bytes is no change to git.
        # (A dry run deleted nothing: its excluded manifests all exist.)
        for (name, digest), document in [] if self.options.dry_run else list(self.excluded.items()):
            if snapshot.exists(meta_paths.manifest(name, digest)):
                self.mark(name, document)
                del self.excluded[(name, digest)]
        if self._mark_tree_id is None:
            for name in inventory.repositories(snapshot):
                for document in RepositoryGraph.read(snapshot, name, tags=False).manifests.values():
                    self.mark(name, document)
        self._mark_tree_id, self._mark_tip = snapshot.root.id, snapshot.tip

    # --- upload sessions and temporary files ----------------------------------------------------

    def collect_uploads(self) -> None:
        for session in inventory.upload_sessions(self.driver):
            started = session.started if session.started is not None else session.last_written
            if not (self.old(started, self.options.upload_age)
                    and self.old(session.last_written, self.options.grace)):
                self.report.kept["uploadsActive"] += 1
                for path in session.temporary:
                    self.temporary(path)
                continue
            if not self._remove_session(session.path):
                self.report.kept["uploadsLocked"] += 1
                continue
            when = (datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds")
                    .replace("+00:00", "Z"))
            self.report.removed.append(Removal("upload", session.path, session.size, reason=f"started {when}"))

    def _remove_session(self, folder: str) -> bool:
        """Remove the session unless a request holds its lock (uploads.py takes it for every write)."""
        if self.options.dry_run:
            return True
        lock = self.driver.local_path(f"{folder}/lock")
        try:
            descriptor = os.open(lock, os.O_RDWR) if lock is not None else None
        except FileNotFoundError:
            descriptor = None
        if descriptor is None:
            self.driver.delete(folder)
            return True
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.driver.delete(folder)
            return True
        finally:
            os.close(descriptor)

    def temporary(self, path: str) -> None:
        if self.old(inventory.modified(self.driver, path), self.options.grace):
            size = inventory.size(self.driver, path)
            if not self.options.dry_run:
                self.driver.delete(path)
            self.report.removed.append(Removal("temporary", path, size))

    # --- untagged manifests ---------------------------------------------------------------------

    def delete_manifests(self, plan: dict[str, dict[str, dict]]) -> None:
        for name, planned in plan.items():
            deleted = list(planned) if self.options.dry_run else self._delete_unreachable(name, planned)
            for digest, document in planned.items():
                if digest in deleted:
                    self.report.removed.append(Removal(
                        "manifest", meta_paths.manifest(name, digest), repository=name, digest=digest,
                        reason="no tag reaches it"))
                else:  # a tag reached it before the commit: it stays, and so does what it needs
                    self.excluded.pop((name, digest), None)
                    self.mark(name, document)
                    self.report.kept["manifestsReachable"] += 1

    def _delete_unreachable(self, name: str, planned: dict[str, dict]) -> list[str]:
        """Delete those of `planned` that are still unreachable, in one commit; return their digests."""

        found: dict[str, str] = {}  # digest -> the path of its document (an older place, before fsck --repair)

        def unreachable(snapshot: Snapshot) -> list[str]:
            graph = RepositoryGraph.read(snapshot, name)
            if graph.invalid:
                raise GarbageCollectionRefused([str(e) for e in graph.invalid])
            reachable = graph.reachable()
            found.update(graph.manifest_paths)
            return sorted(d for d in planned if d in graph.manifests and d not in reachable)

        def delete(txn: Transaction, doomed: list[str]) -> None:
            for digest in doomed:
                txn.delete(meta_paths.manifest(name, digest))
                txn.delete(found.get(digest, meta_paths.manifest(name, digest)))
                subject = planned[digest].get("subject")
                if subject is not None:
                    txn.delete(meta_paths.referrer(name, subject["digest"], digest))

        def message(doomed: list[str]) -> str:
            noun = "manifest" if len(doomed) == 1 else "manifests"
            return (f"Garbage-collect {len(doomed)} untagged {noun} of {name}\n\n"
                    "No tag reaches them (directly, through an index, or as a referrer of a "
                    "reachable manifest), and they were pushed more than "
                    f"{self.options.grace / 60:g} minutes ago:\n" + "".join(f"- {d}\n" for d in doomed))

        deleted = inventory.commit_planned(self.meta, self.context, unreachable, delete, message)
        if deleted:
            self.report.commits += 1
        return deleted

    # --- sweep ----------------------------------------------------------------------------------

    def sweep_blobs(self) -> set[str]:
        """Remove the blobs no manifest needs that are old and not recently linked; return their digests."""
        kept = self.report.kept
        candidates: dict[str, str] = {}
        for stored in inventory.blob_files(self.driver):
            if stored.temporary:
                self.temporary(stored.path)
            elif stored.digest is None:
                continue  # not a blob's name: `registry fsck` reports it
            elif stored.digest in self.marked:
                kept["blobsInUse"] += 1
            elif not self.old(inventory.modified(self.driver, stored.path), self.options.grace):
                kept["blobsYoung"] += 1
            else:
                candidates[stored.digest] = stored.path
        for link in inventory.link_files(self.driver):
            if link.temporary:
                self.temporary(link.path)
            elif link.digest in candidates and not self.old(inventory.modified(self.driver, link.path),
                                                             self.options.grace):
                del candidates[link.digest]
                kept["blobsRecentlyLinked"] += 1
        removed = set()
        for digest, path in candidates.items():
            self.refresh()
            if digest in self.marked:
                kept["blobsInUse"] += 1
                continue
            if not self.old(inventory.modified(self.driver, path), self.options.grace):
                kept["blobsYoung"] += 1
                continue
            size = inventory.size(self.driver, path)
            if not self.options.dry_run:
                self.driver.delete(path)
            removed.add(digest)
            self.report.removed.append(Removal("blob", path, size, digest=digest,
                                               reason="no manifest refers to it"))
        return removed

    def sweep_links(self, removed_blobs: set[str]) -> None:
        kept = self.report.kept
        removed = False
        for link in inventory.link_files(self.driver):
            if link.temporary or link.digest is None:
                continue
            if not self.old(inventory.modified(self.driver, link.path), self.options.grace):
                kept["linksYoung"] += 1
                continue
            self.refresh()
            if link.digest in removed_blobs:
                reason = "its blob is removed"
            elif not self.driver.exists(paths.blob_path(link.digest)):
                reason = "its blob is gone"
            elif link.digest not in self.referenced.get(link.repository, ()):
                reason = f"no manifest of {link.repository} refers to it"
            else:
                kept["linksInUse"] += 1
                continue
            if not self.options.dry_run:
                self.driver.delete(link.path)
                removed = True
            self.report.removed.append(Removal("link", link.path, repository=link.repository,
                                               digest=link.digest, reason=reason))
        if removed and self.report.store:  # processes that remember links forget them (registry/blobs.py)
            note_links_removed(links_removed_path(self.report.store))


def plural(count: int, singular: str, many: str | None = None) -> str:
    return f"{count} {singular if count == 1 else many or singular + 's'}"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"
