"""The metadata store: one bare git repository whose `refs/heads/main` is the current state.

Every change is one commit, authored by the acting user, with trailers (Actor, Client-Addr,
Request-Id) so that `git log` is the audit trail. Commits are compare-and-swap: a transaction
reads a snapshot, records its writes, builds the new tree by rewriting only the trees on the
changed paths, writes the new objects and the commit as one small pack (packs.py), and moves
`main` from the snapshot's tip with git's lock-file protocol (branch.py). If another writer
(thread, process or node) moved it first, the move is refused, and the transaction is re-run on
the new tip with its preconditions checked again; a lock another writer holds is waited for
(branch.py), so each attempt writes one pack, and only a moved branch makes another attempt.

Readers use a `Snapshot` of one tip; documents are parsed once per blob id (see documents.py).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import gc
import logging
import os
import random
import threading
import time
from typing import Callable, TypeVar

import pygit2

from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.meta import documents, packs, signing
from registry_core.meta.lookups import tree_entry
from registry_core.meta.branch import Branch
from registry_core.meta.writers import make_writer

BRANCH = "refs/heads/main"
COMMITTER = ("registry", "registry@localhost")
_DELETE_TREE = object()
_UNKNOWN = object()  # MetaStore._signer before the first commit looked for the key
_REPLACE = object()  # key in write_tree's nested changes: build this folder from empty (it was deleted)
# Open exactly the repository at the path: never search upwards into an enclosing work tree (an
# empty or half-created meta.git inside a git checkout would otherwise open the checkout's repo).
_OPEN_FLAGS = pygit2.enums.RepositoryOpenFlag.NO_SEARCH
T = TypeVar("T")
log = logging.getLogger("registry_core")
REOPEN_AFTER = 0.1  # seconds: a thread's Repository is not reopened more often (MetaStore.repo)

# libgit2's limits per process (its defaults: every pack file kept open and up to 8 GiB of packs
# mapped): under sustained pushes a worker held ~1,100 mappings of small and merged packs and grew
# to gigabytes. Past these limits libgit2 closes the least recently used pack files and windows,
# and opens them again when needed. Mapped pages count in a worker's resident memory: with 256 MiB
# allowed, each of the soak's workers held 81 MiB of them after 3 minutes (the tree 339 MiB);
# with 64 MiB, 34-39 MiB (the tree 232 MiB), pushes and reads as fast (bench/profiles/notes.md).
OPEN_PACK_FILES = 128
MAPPED_PACK_BYTES = 64 << 20
OBJECT_CACHE_BYTES = 32 << 20
pygit2.settings.mwindow_file_limit = OPEN_PACK_FILES
pygit2.settings.mwindow_mapped_limit = MAPPED_PACK_BYTES
pygit2.settings.cache_max_size(OBJECT_CACHE_BYTES)

def limit_caches(object_bytes: int, mapped_bytes: int | None = None, documents: int | None = None) -> None:
    """Set this process's caches: libgit2's object cache (OBJECT_CACHE_BYTES by default), the
    bytes of packs it keeps mapped (MAPPED_PACK_BYTES) and the parsed documents kept
    (_PARSED_LIMIT). libgit2 counts an object by its size in the pack, but a parsed tree takes
    about 5.6 times that in memory: the 32 MiB default holds up to ~180 MiB of trees once a
    process has read enough distinct ones (a walk of 200,000 tree entries here). A process that
    reads each object once (garbage-collect's mark) gains nothing from any of them."""
    global _documents_kept
    pygit2.settings.cache_max_size(object_bytes)
    if mapped_bytes is not None:
        pygit2.settings.mwindow_mapped_limit = mapped_bytes
    if documents is not None:
        _documents_kept = documents


def _return_freed_memory() -> None:
    """glibc keeps freed memory for the process's next allocations; malloc_trim gives it back."""
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to give back this way
        pass


_parsed: dict[pygit2.Oid, dict] = {}
_trees = packs.TreeCache()
# Parsed documents kept per process: a manifest document is 2-3 KB as Python objects, so 200,000
# of them were half a gigabyte (garbage-collect of a 100,000-push store grew past 540 MB reading
# them); 20,000 hold every repository document of a 10,000-repository catalog and the hot tags.
_PARSED_LIMIT = 20_000
_documents_kept = _PARSED_LIMIT


class StoreUnavailable(RegistryError):
    """meta.git exists but this process cannot open it (another user's, or not a repository)."""

    def __init__(self, message: str):
        super().__init__("UNAVAILABLE", message, status=503)


def unopenable(path: str, error: Exception) -> str:
    """What to do about a meta.git libgit2 will not open: libgit2, like git, refuses a repository
    another user owns (git's safe.directory)."""
    if "not owned by current user" in str(error):
        owner = os.stat(path).st_uid
        try:
            import pwd
            name = pwd.getpwuid(owner).pw_name
            run_as = f"as {name} (`runuser -u {name} -- registry …`)"
        except (KeyError, ImportError):
            name = run_as = f"the user with uid {owner}"
            run_as = f"as {run_as}"
        return (f"{path} belongs to {name}, and git refuses to open another user's repository: run the "
                f"command {run_as}, or add the folder to safe.directory in your git config "
                f"(`git config --global --add safe.directory {path}`)")
    return f"{path} cannot be opened as a git repository ({error}): see `registry fsck`"


def author(context: Context) -> tuple[str, str]:
    """The (name, email) a commit made for `context` is authored by: the account name, checked
    when the context was made (context.py), and an email derived from it."""
    return context.actor, f"{context.actor}@registry"


def one_line(text: str, limit: int = 100) -> str:
    """User-supplied text (a token's description) as it may appear in a commit's subject line:
    control characters and line breaks become spaces, so it can neither add a line nor a trailer."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def trailers(context: Context) -> str:
    lines = [f"Actor: {context.actor}"]
    if context.client_addr:
        lines.append(f"Client-Addr: {context.client_addr}")
    if context.request_id:
        lines.append(f"Request-Id: {context.request_id}")
    return "\n".join(lines)


class ConflictRetriesExhausted(RegistryError):
    """Another writer kept moving the branch; the change was not made (503: the client tries again)."""

    def __init__(self, message: str):
        super().__init__("UNAVAILABLE", f"{message}: other writers kept changing the metadata; nothing "
                         "was changed, try again", headers={"Retry-After": "1"})


class Snapshot:
    """A read-only view of the metadata at one commit."""

    def __init__(self, repo: pygit2.Repository, commit: pygit2.Commit | None):
        self.repo = repo
        self.commit = commit
        self.root = commit.tree if commit is not None else None

    @property
    def tip(self) -> pygit2.Oid | None:
        return self.commit.id if self.commit is not None else None

    @staticmethod
    def read(look: Callable[[], T]) -> T:
        """`look()`, a read of libgit2 objects of this snapshot, looked at again when libgit2 says
        an object is missing: a merge in another process may have moved its pack out of
        objects/pack/ just as libgit2 listed it (packs.read_again_if_missing). The one way readers
        touch libgit2 objects beyond this class's own methods, which use it too."""
        return packs.read_again_if_missing(look)

    def entry(self, path: str):
        if self.root is None:
            return None
        return self.read(lambda: tree_entry(self.root, path))

    def tree(self, path: str) -> pygit2.Tree | None:
        if not path:
            return self.root
        obj = self.entry(path)
        if not isinstance(obj, pygit2.Tree):
            return None
        self.read(lambda: len(obj))  # read now, not on the caller's first look
        return obj

    def get(self, path: str) -> dict | None:
        """The document at `path`, or None. The returned dict is shared: do not modify it."""
        obj = self.entry(path)
        if not isinstance(obj, pygit2.Blob):
            return None
        return load_blob(obj, path)

    def exists(self, path: str) -> bool:
        return self.entry(path) is not None

    def names(self, path: str) -> list[str]:
        tree = self.tree(path)
        return self.read(lambda: [entry.name for entry in tree]) if tree is not None else []


def load_blob(blob: pygit2.Blob, path: str) -> dict:
    document = _parsed.get(blob.id)
    if document is None:
        document = documents.parse(Snapshot.read(lambda: blob.data), path)
        if len(_parsed) >= _documents_kept:
            _parsed.clear()
        if _documents_kept:
            _parsed[blob.id] = document
    return document


class Transaction(Snapshot):
    """A snapshot plus pending writes; reads see the transaction's own writes."""

    def __init__(self, repo, commit):
        super().__init__(repo, commit)
        self.changes: dict[str, object] = {}

    def get(self, path: str) -> dict | None:
        if path in self.changes:
            change = self.changes[path]
            return copy.deepcopy(change) if isinstance(change, dict) else None
        if self._under_deleted_tree(path):
            return None
        document = super().get(path)
        return copy.deepcopy(document) if document is not None else None

    def exists(self, path: str) -> bool:
        if path in self.changes:
            return isinstance(self.changes[path], dict)
        return not self._under_deleted_tree(path) and super().exists(path)

    def put(self, path: str, document: dict) -> None:
        documents.validate(document, path)
        self.changes[path] = copy.deepcopy(document)

    def delete(self, path: str) -> None:
        self.changes[path] = None

    def delete_tree(self, path: str) -> None:
        for pending in [p for p in self.changes if p.startswith(path + "/")]:
            del self.changes[pending]  # earlier writes below the folder go with it
        self.changes[path] = _DELETE_TREE

    def names(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        touched = [(p, change) for p, change in self.changes.items() if p == path or p.startswith(prefix)]
        if not touched:
            return super().names(path)
        names = [] if self._under_deleted_tree(path) else super().names(path)
        for p, change in touched:
            if p == path:  # the folder itself was deleted (writes below it may follow)
                names = []
                continue
            first, _, rest = p[len(prefix):].partition("/")
            if isinstance(change, dict):
                if first not in names:
                    names.append(first)
            elif not rest and first in names:
                names.remove(first)
        return names

    def _under_deleted_tree(self, path: str) -> bool:
        return any(change is _DELETE_TREE and path.startswith(p + "/")
                   for p, change in self.changes.items())

    def write_tree(self, objects: dict[bytes, tuple[int, bytes]]) -> bytes:
        """The new root tree's id; the new objects (documents, trees) are added to `objects`."""
        nested: dict = {}
        for path, change in self.changes.items():
            *folders, leaf = path.split("/")
            level = nested
            for folder in folders:
                child = level.get(folder)
                if child is None:
                    child = level[folder] = {}
                elif child is _DELETE_TREE:  # deleted earlier in this transaction, now written below
                    child = level[folder] = {_REPLACE: True}
                elif not isinstance(child, dict):  # a file replaced by a folder: not a shape we write
                    raise ValueError(f"cannot write below the document {path}")
                level = child
            if change is None or change is _DELETE_TREE:
                level[leaf] = _DELETE_TREE
            else:
                data = documents.serialize(change)  # validated by put()
                level[leaf] = packs.object_id(packs.BLOB, data)
                objects[level[leaf]] = (packs.BLOB, data)
        root = self.root.id.raw if self.root is not None else None
        return _rewrite(self.repo, root, nested, objects) or _add_tree(packs.TreeEntries(), objects)


def _rewrite(repo: pygit2.Repository, tree: bytes | None, changes: dict,
             objects: dict[bytes, tuple[int, bytes]]) -> bytes | None:
    """The id of `tree` with `changes` applied (None if it ends up empty). Only the trees on the
    changed paths are rebuilt; they are added to `objects`."""
    if changes.get(_REPLACE):
        tree = None
    entries = _trees.get(repo, tree).copy() if tree is not None else packs.TreeEntries()
    for name, change in changes.items():
        if name is _REPLACE:
            continue
        key = name.encode()
        if isinstance(change, dict):
            existing = entries.get(key)
            subtree = existing[1] if existing is not None and existing[0] == packs.TREE_MODE else None
            new = _rewrite(repo, subtree, change, objects)
            if new is None:
                entries.remove(key)
            else:
                entries.set(key, packs.TREE_MODE, new)
        elif change is _DELETE_TREE:
            entries.remove(key)
        else:
            entries.set(key, packs.BLOB_MODE, change)
    if len(entries) == 0:
        return None
    return _add_tree(entries, objects)


def _add_tree(entries: packs.TreeEntries, objects: dict[bytes, tuple[int, bytes]]) -> bytes:
    data = entries.encode()
    raw = packs.object_id(packs.TREE, data)
    objects[raw] = (packs.TREE, data)
    _trees.put(raw, entries)
    return raw


def _file_stamp(path: str) -> tuple | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


class MetaStore:
    """The bare git repository at `path` (created with an initial commit when missing)."""

    def __init__(self, path: str, create: bool = True, durable: bool = False, writer: str = "packs"):
        """`durable` (registry.yaml storage.durable): each commit's objects and the moved branch
        are on disk (fsync) before transact returns. `writer` (storage.metaWriter): how commits are
        written, writers.py."""
        self.path = path
        self.durable = durable
        self.branch = Branch(path, BRANCH, durable)
        self._merge_stamp_path = os.path.join(path, packs.MERGES_DIR, packs.MERGE_STAMP)
        self._local = threading.local()
        self.writer = make_writer(writer, path, self.branch, durable)
        self._commit_lock = threading.RLock()  # one committing thread per process (transact)
        # Called each time another writer moved the branch first and a change is run again
        # (the web layer counts these: registry_core/observability/metrics.py).
        self.on_conflict: Callable[[], None] | None = None
        self._signer = _UNKNOWN
        try:
            pygit2.Repository(path, _OPEN_FLAGS)
        except pygit2.GitError as error:
            if os.path.exists(os.path.join(path, "HEAD")):  # a repository that cannot be opened: never made anew
                raise StoreUnavailable(unopenable(path, error)) from None
            if not create:
                raise
            repo = pygit2.init_repository(path, bare=True, initial_head="main")
            tree = repo.TreeBuilder().write()
            signature = pygit2.Signature(*COMMITTER)
            sign = self._sign()
            if sign is None:
                repo.create_commit(BRANCH, signature, signature, "Initialise registry metadata\n", tree, [])
            else:
                text = repo.create_commit_string(signature, signature, "Initialise registry metadata\n", tree, [])
                repo.references.create(BRANCH, repo.create_commit_with_signature(text, sign(text.encode())))
        self.branch.prepare_spares()

    @property
    def repo(self) -> pygit2.Repository:
        """This thread's Repository (libgit2 objects are not meant to be shared between threads).

        Opened again after small packs were merged (the merge stamp changed), at most once every
        REOPEN_AFTER seconds: libgit2 never forgets a pack it has seen, so a long-lived Repository
        would go on searching the indexes of every deleted one (packs.py); reopening on each merge
        cost 7 % of a tag push (a merge every 8 pushes, in every thread)."""
        repo = getattr(self._local, "repo", None)
        if repo is not None and time.monotonic() - self._local.opened < REOPEN_AFTER:
            return repo
        stamp = _file_stamp(self._merge_stamp_path)
        if repo is None or self._local.merge_stamp != stamp:
            repo = self._local.repo = pygit2.Repository(self.path, _OPEN_FLAGS)
            self._local.merge_stamp = stamp
            self._local.snapshot = None
        self._local.opened = time.monotonic()
        return repo

    def _sign(self) -> Callable[[bytes], str] | None:
        """How this process signs commits: with the store's key (made on the first commit of a
        store that has none; meta/signing.py), or not at all when it cannot be made."""
        if self._signer is _UNKNOWN:
            self._signer = signing.load_signer(self.path, create=True)
        return self._signer.sign if self._signer is not None else None

    def release_caches(self) -> None:
        """Forget this thread's Repository and snapshot, the parsed documents and trees of the
        process, and give the freed memory back to the system. For a job that has just read
        every document of the store once (garbage-collect's mark) and now runs git: what it
        read is not needed again, and it would be held while git's pack-objects takes its own
        hundreds of MiB (bench/profiles/notes.md, "garbage-collect's memory")."""
        self._local.__dict__.clear()
        _parsed.clear()
        _trees.clear()
        gc.collect()
        _return_freed_memory()

    def settle(self, timeout: float = 60) -> bool:
        """Wait until the writer's housekeeping (merging small packs) is done; False on timeout."""
        return self.writer.settle(timeout)

    def _tip(self, repo: pygit2.Repository) -> pygit2.Commit | None:
        """The branch's commit; None for a repository without the branch."""
        try:
            target = repo.lookup_reference(BRANCH).target
        except (KeyError, pygit2.GitError):
            return None
        return Snapshot.read(lambda: repo[target])

    def snapshot(self) -> Snapshot:
        """The current state, as of this call.

        Every commit replaces the branch's ref file by rename (another inode, the same one again
        only branch.SPARES commits later, with a newer modification time), so a stat of that file
        tells whether the cached snapshot is still current: the ref is read again only when the
        stat changed (or the ref is packed). Other processes' and nodes' commits are seen at once.
        """
        stamp = self._ref_stamp()
        cached = getattr(self._local, "snapshot", None)
        if cached is not None and stamp is not None and self._local.stamp == stamp:
            return cached
        repo = self.repo
        snapshot = Snapshot(repo, self._tip(repo))
        self._local.snapshot, self._local.stamp = snapshot, stamp
        return snapshot

    def _ref_stamp(self) -> tuple | None:
        return _file_stamp(self.branch.path)

    def transact(self, change: Callable[[Transaction], T], context: Context, message: str,
                 attempts: int = 100) -> T:
        """Run `change` on a transaction and commit its writes; re-run it if the branch moved.

        `change` may raise to abort (nothing is written). With no writes, no commit is made.
        Raises ConflictRetriesExhausted after `attempts` moves of the branch by others, and
        branch.BranchLocked when its lock stays held (both 503 UNAVAILABLE with Retry-After).

        One thread of a process commits at a time: threads racing each other for the branch
        would each lose the compare-and-swap to the others and redo change, trees and pack (under
        eight concurrent pushers into one repository, about ten times the work of an uncontended
        push, bench/profiles/notes.md). Other processes and nodes still race, and lose to each
        other only.
        """
        with self._commit_lock:
            return self._transact(change, context, message, attempts)

    def _transact(self, change: Callable[[Transaction], T], context: Context, message: str, attempts: int) -> T:
        repo = self.repo
        for attempt in range(attempts):
            # First from this thread's current snapshot (no read of the branch if it has not
            # moved since); after a refused move, from the branch as it is now.
            tip = self.snapshot().commit if attempt == 0 else self._tip(repo)
            txn = Transaction(repo, tip)
            result = change(txn)
            if not txn.changes:
                return result
            objects: dict[bytes, tuple[int, bytes]] = {}
            tree = txn.write_tree(objects)
            if tip is not None and tree == tip.tree_id.raw:
                return result
            text = f"{message.rstrip()}\n\n{trailers(context)}\n"
            data = packs.encode_commit(tree, [tip.id.raw] if tip is not None else [],
                                       author(context), COMMITTER, text, sign=self._sign())
            commit = packs.object_id(packs.COMMIT, data)
            objects[commit] = (packs.COMMIT, data)
            written = self.writer.write_objects(repo, objects)
            if self.writer.move_branch(repo, tip.id if tip is not None else None, pygit2.Oid(raw=commit)):
                self.writer.committed(written, len(objects))
                return result
            if self.on_conflict is not None:
                self.on_conflict()
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise ConflictRetriesExhausted(f"gave up after {attempts} attempts: {message}")
