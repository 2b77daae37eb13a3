"""What a store holds, as the maintenance jobs walk it: blob files, links and upload sessions in the
storage driver, and the repositories of the metadata tree with their manifest documents and tags.

Paths are driver paths (storage/paths.py) and metadata paths (meta/paths.py). A file's age comes
from the driver's `modified(path)` when it has one, else from the modification time of its local
file; when a driver can tell neither, the age is None and the jobs treat the file as young.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pygit2

from registry_core.context import Context
from registry_core.meta import paths as meta_paths
from registry_core.meta.documents import DocumentInvalid
from registry_core.meta.store import ConflictRetriesExhausted, MetaStore, Snapshot, Transaction, load_blob
from registry_core.names import ALGORITHMS
from registry_core.registry.uploads import UPLOAD_ID_RE
from registry_core.storage import paths
from registry_core.storage.driver import PathNotFound, StorageDriver

# FilesystemDriver.put_content writes here first; a crash between write and rename leaves it behind.
TEMPORARY_PREFIX = ".tmp-"
# Folders that make a folder of repositories/ a repository (one of them is enough).
_REPOSITORY_MARKERS = {meta_paths.REPOSITORY_DOC, "_manifests", "_tags", "_referrers"}


# --- files in the storage driver -----------------------------------------------------------------

def modified(driver: StorageDriver, path: str) -> float | None:
    """When the file at `path` was last written (seconds since the epoch); None when unknown or gone."""
    ask = getattr(driver, "modified", None)
    if ask is not None:
        return ask(path)
    local = driver.local_path(path)
    if local is None:
        return None
    try:
        return os.stat(local).st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None


def size(driver: StorageDriver, path: str) -> int:
    try:
        return driver.size(path)
    except PathNotFound:
        return 0


def is_temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_PREFIX)


def digest_from_name(algorithm: str, name: str) -> str | None:
    """The digest a file named `name` in a folder of `algorithm` stands for; None if it is no digest."""
    shape = ALGORITHMS.get(algorithm)
    return f"{algorithm}:{name}" if shape is not None and shape.fullmatch(name) else None


@dataclass(frozen=True)
class StoredFile:
    """A file in blobs/ or links/: `digest` is None for a temporary file or one whose name is no digest."""

    path: str
    digest: str | None = None
    repository: str | None = None  # links only
    temporary: bool = False


def blob_files(driver: StorageDriver) -> Iterator[StoredFile]:
    """Every file in blobs/<alg>/<hh>/ (a blob is named by its digest, in the folder of its first two hex digits)."""
    for algorithm in driver.list(paths.BLOBS):
        for prefix in driver.list(f"{paths.BLOBS}/{algorithm}"):
            folder = f"{paths.BLOBS}/{algorithm}/{prefix}"
            for name in driver.list(folder):
                path = f"{folder}/{name}"
                if is_temporary(name):
                    yield StoredFile(path, temporary=True)
                    continue
                digest = digest_from_name(algorithm, name)
                yield StoredFile(path, digest if digest is not None and name[:2] == prefix else None)


def link_files(driver: StorageDriver) -> Iterator[StoredFile]:
    """Every file in links/<ns…>/<name>/_blobs/<alg>/."""
    yield from _links(driver, paths.LINKS, "")


def _links(driver: StorageDriver, folder: str, repository: str) -> Iterator[StoredFile]:
    names = driver.list(folder)
    if repository and paths.LINK_FOLDER in names:
        for algorithm in driver.list(f"{folder}/{paths.LINK_FOLDER}"):
            links = f"{folder}/{paths.LINK_FOLDER}/{algorithm}"
            for name in driver.list(links):
                if is_temporary(name):
                    yield StoredFile(f"{links}/{name}", repository=repository, temporary=True)
                else:
                    yield StoredFile(f"{links}/{name}", digest_from_name(algorithm, name), repository)
    for name in names:
        if not name.startswith(("_", ".")):  # (repository name components never start with either)
            yield from _links(driver, f"{folder}/{name}", f"{repository}/{name}" if repository else name)


@dataclass
class UploadSession:
    id: str
    path: str
    started: float | None         # from started_at; None when missing or unreadable
    last_written: float | None    # the newest modification time of the session's files
    size: int                     # bytes received so far
    temporary: list[str] = field(default_factory=list)


def upload_sessions(driver: StorageDriver) -> Iterator[UploadSession]:
    for upload_id in driver.list(paths.UPLOADS):
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            continue
        folder = paths.upload_dir(upload_id)
        try:
            started = parse_time(driver.get_content(paths.upload_started_path(upload_id)).decode())
        except (PathNotFound, UnicodeDecodeError):
            started = None
        names = driver.list(folder)
        times = [t for t in (modified(driver, f"{folder}/{name}") for name in names) if t is not None]
        yield UploadSession(upload_id, folder, started, max(times, default=modified(driver, folder)),
                            size(driver, paths.upload_data_path(upload_id)),
                            [f"{folder}/{name}" for name in names if is_temporary(name)])


def parse_time(text) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (a 'Z' suffix included); None if it is none."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


# --- the metadata tree ---------------------------------------------------------------------------

def repositories(snapshot: Snapshot) -> Iterator[str]:
    """The name of every folder of repositories/ that holds a repository's document, manifests,
    tags or referrers (a repository whose `_repository.yaml` went missing is still found)."""
    root = snapshot.tree(meta_paths.REPOSITORIES)
    if root is not None:
        yield from _repositories(root, "")


def _repositories(tree: pygit2.Tree, prefix: str) -> Iterator[str]:
    if prefix and any(entry.name in _REPOSITORY_MARKERS for entry in tree):
        yield prefix
    for entry in tree:
        if isinstance(entry, pygit2.Tree) and not entry.name.startswith("_"):
            yield from _repositories(entry, f"{prefix}/{entry.name}" if prefix else entry.name)


def documents_in(snapshot: Snapshot, folder: str) -> Iterator[tuple[str, str, str, pygit2.Blob]]:
    """(path, alg, file name, blob) of every file below `folder`/<alg>/ at any depth (the layout of
    `_manifests`: its buckets, meta/paths.py `fan_out`, and the files a store from before them kept
    directly in `<alg>/`, so that garbage collection keeps what those need until `registry fsck
    --repair` moves them)."""
    tree = snapshot.tree(folder)
    for algorithm in tree or ():
        if isinstance(algorithm, pygit2.Tree):
            for path, blob in files_below(algorithm, f"{folder}/{algorithm.name}/"):
                yield path, algorithm.name, blob.name, blob


def files_below(tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, pygit2.Blob]]:
    """(prefix + path, blob) of every file in `tree` and its folders."""
    for entry in tree:
        if isinstance(entry, pygit2.Tree):
            yield from files_below(entry, f"{prefix}{entry.name}/")
        elif isinstance(entry, pygit2.Blob):
            yield f"{prefix}{entry.name}", entry


def references(document: dict) -> Iterator[str]:
    """The digests of the blobs a manifest document needs: its own bytes, config, layers, children."""
    yield document["digest"]
    if "config" in document:
        yield document["config"]["digest"]
    for descriptor in document.get("layers", ()):
        yield descriptor["digest"]
    for descriptor in document.get("manifests", ()):
        yield descriptor["digest"]


def tag_files(snapshot: Snapshot, name: str):
    """(path, blob) of every tag document of a repository: those in the buckets of `_tags/`, and
    any a store from before them left elsewhere in `_tags/` (directly, or in buckets of another
    shape; meta/paths.py `tag_bucket`), so that garbage collection keeps what they tag until
    `registry fsck --repair` moves them."""
    tree = snapshot.tree(meta_paths.tags_dir(name))
    if tree is not None:
        for path, blob in files_below(tree, meta_paths.tags_dir(name) + "/"):
            if blob.name.endswith(".yaml"):
                yield path, blob


@dataclass
class RepositoryGraph:
    """One repository's image graph: its manifest documents (by digest) and its tags."""

    name: str
    manifests: dict[str, dict] = field(default_factory=dict)
    manifest_paths: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)              # tag -> digest
    tag_paths: dict[str, str] = field(default_factory=dict)         # tag -> its document's path
    invalid: list[DocumentInvalid] = field(default_factory=list)

    @classmethod
    def read(cls, snapshot: Snapshot, name: str, tags: bool = True) -> "RepositoryGraph":
        """Read the graph as of `snapshot` (its manifests only, without `tags`); documents that
        fail their schema go to `invalid`."""
        graph = cls(name)
        for path, algorithm, file_name, blob in documents_in(snapshot, meta_paths.manifests_dir(name)):
            if not file_name.endswith(".yaml"):
                continue
            digest = f"{algorithm}:{file_name[:-len('.yaml')]}"
            try:
                document = load_blob(blob, path)
            except DocumentInvalid as e:
                graph.invalid.append(e)
                continue
            # A document in its place wins over a copy left at an older place (fsck reports that).
            if graph.manifest_paths.get(digest) != meta_paths.manifest(name, digest):
                graph.manifests[digest] = document
                graph.manifest_paths[digest] = path
        for path, entry in tag_files(snapshot, name) if tags else ():
            tag = entry.name[:-len(".yaml")]
            try:
                document = load_blob(entry, path)
            except DocumentInvalid as e:
                graph.invalid.append(e)
                continue
            if graph.tag_paths.get(tag) != meta_paths.tag(name, tag):
                graph.tags[tag] = document["digest"]
                graph.tag_paths[tag] = path
        return graph

    def reachable(self) -> set[str]:
        """The digests a tag reaches: tagged manifests, the children of reached indexes, and the
        referrers of reached manifests (whatever names a reached manifest as its subject)."""
        children: dict[str, list[str]] = {}
        referrers: dict[str, list[str]] = {}
        for digest, document in self.manifests.items():
            children[digest] = [child["digest"] for child in document.get("manifests", ())]
            if "subject" in document:
                referrers.setdefault(document["subject"]["digest"], []).append(digest)
        reached: set[str] = set()
        pending = list(self.tags.values())
        while pending:
            digest = pending.pop()
            if digest not in reached:
                reached.add(digest)
                pending.extend(children.get(digest, ()))
                pending.extend(referrers.get(digest, ()))
        return reached


# --- changes to the metadata ---------------------------------------------------------------------

class _Replan(Exception):
    """What to change differs on the tip the commit would go on: plan again."""


def commit_planned(meta: MetaStore, context: Context, plan: Callable[[Snapshot], list],
                   apply: Callable[[Transaction, list], None], message: Callable[[list], str],
                   attempts: int = 100) -> list:
    """Commit the changes that `plan` finds necessary on the current tip, with a message that names
    exactly those: when another writer moved the tip and the plan differs there, plan again.
    Returns what was committed ([] when nothing needed doing)."""
    for _ in range(attempts):
        planned = plan(meta.snapshot())
        if not planned:
            return []

        def change(txn: Transaction):
            if plan(txn) != planned:
                raise _Replan
            apply(txn, planned)
        try:
            meta.transact(change, context, message(planned))
            return planned
        except _Replan:
            continue
    raise ConflictRetriesExhausted(f"gave up after {attempts} attempts: {message(planned)}")
