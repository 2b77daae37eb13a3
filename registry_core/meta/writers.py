"""How a commit reaches meta.git: its new objects are written, then the branch is moved from the
commit's parent to it (compare-and-swap). One seam, two writers, chosen by registry.yaml's
`storage.metaWriter`:

- `packs` (PackWriter, the default): the objects as one small pack of whole objects (packs.py), the
  branch moved through recycled spare files (branch.py), small packs merged by tiers afterwards.
  Fast: the measurements are in bench/RESULTS.md and bench/profiles/notes.md.
- `libgit2` (LibgitWriter, the reference): every object made by libgit2 itself from its fields
  (blobs, trees through a TreeBuilder, the commit through create_commit) with libgit2's strict
  object creation, so a tree naming a missing object or a malformed signature is refused there;
  each object's id must equal the one the transaction computed, so the two encoders are checked
  against each other on every commit. The branch moves in a libgit2 reference transaction.

Both take the same lock git takes (`refs/heads/main.lock`, created exclusively, renamed over the
branch), so the two writers, git and libgit2 write beside each other; tests/test_meta_writers.py is
the conformance suite both pass.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

import pygit2

from registry_core.meta import packs
from registry_core.meta.branch import Branch
from registry_core.meta.lookups import call_with_path

WRITERS = ("packs", "libgit2")
log = logging.getLogger("registry_core")

Objects = dict[bytes, tuple[int, bytes]]  # id -> (kind, data), every object before the ones naming it


class Writer(Protocol):
    def write_objects(self, repo: pygit2.Repository, objects: Objects) -> object:
        """Store `objects` (ordered so that an object comes after those it names); returns what
        `committed` needs to know of them."""

    def move_branch(self, repo: pygit2.Repository, old: pygit2.Oid | None, new: pygit2.Oid) -> bool:
        """Move the branch from `old` to `new`; False when it no longer points at `old` or another
        writer holds its lock (the caller builds the commit again on the new tip)."""

    def committed(self, written: object, objects: int) -> None:
        """Housekeeping after a commit was made (never fails the commit)."""

    def settle(self, timeout: float = 60) -> bool:
        """Wait for housekeeping still running in the background; False on timeout."""


class PackWriter:
    """The objects as one small pack (packs.write_pack), the branch through spare files."""

    def __init__(self, repo_path: str, branch: Branch, durable: bool = False):
        self.repo_path = repo_path
        self.branch = branch
        self.durable = durable
        self.pack_dir = os.path.join(repo_path, "objects", "pack")
        self.merges = packs.MergePolicy()

    def write_objects(self, repo: pygit2.Repository, objects: Objects) -> str:
        return packs.write_pack(self.pack_dir, {raw: packs.encode_entry(kind, data)
                                                for raw, (kind, data) in objects.items()}, self.durable)

    def move_branch(self, repo: pygit2.Repository, old: pygit2.Oid | None, new: pygit2.Oid) -> bool:
        return self.branch.move(old, new)

    def committed(self, written: str, objects: int) -> None:
        """Merging small packs is housekeeping: a failure (a full disk, a file system without
        flock) is logged, and the caller still hears that its change was committed."""
        try:
            self.merges.after_commit(self.repo_path, written, objects, self.durable)
        except Exception:  # noqa: BLE001
            log.exception("merging the small packs of %s failed; the commit stands", self.repo_path)

    def settle(self, timeout: float = 60) -> bool:
        return self.merges.settle(timeout)


class LibgitWriter:
    """Every object made by libgit2 from its fields; the branch moved in a libgit2 transaction."""

    def __init__(self, repo_path: str, branch: Branch, durable: bool = False):
        self.repo_path = repo_path
        self.branch = branch
        if durable:  # process-wide in libgit2: objects and references are fsynced when written
            pygit2.settings.enable_fsync_gitdir(True)

    def write_objects(self, repo: pygit2.Repository, objects: Objects) -> None:
        for raw, (kind, data) in objects.items():
            if kind == packs.BLOB:
                made = repo.create_blob(data)
            elif kind == packs.TREE:
                builder = repo.TreeBuilder()
                for name, mode, target in packs.TreeEntries.parse(data).items():
                    call_with_path(lambda key: builder.insert(key, pygit2.Oid(raw=target), mode), name.decode())
                made = builder.write()
            elif kind == packs.COMMIT:
                made = _create_commit(repo, packs.parse_commit(data))
            else:
                raise ValueError(f"no object of kind {kind} is written to meta.git")
            if made.raw != raw:
                raise packs.InvalidCommit(f"libgit2 made {made} where the transaction computed {raw.hex()} "
                                          f"(object kind {kind}): the two encoders disagree")

    def move_branch(self, repo: pygit2.Repository, old: pygit2.Oid | None, new: pygit2.Oid) -> bool:
        """As the pack writer: a held lock is waited for (and removed once stale) by the branch's
        own wait, so both writers treat a dead writer's lock alike."""
        def attempt() -> bool | None:
            try:
                with repo.transaction() as txn:
                    txn.lock_ref(self.branch.name)
                    if self.branch.read_target()[0] != old:
                        raise _BranchMoved
                    txn.set_target(self.branch.name, new)
            except _BranchMoved:
                return False
            except pygit2.GitError as error:
                # libgit2's GIT_ELOCKED ("failed to lock file", "failed to create locked file"),
                # which pygit2 raises as a plain GitError
                if "lock" not in str(error):
                    raise
                return None
            return True
        return bool(self.branch.wait_while_locked(old, attempt))

    def committed(self, written: object, objects: int) -> None:
        pass  # loose objects: `registry garbage-collect` packs them

    def settle(self, timeout: float = 60) -> bool:
        return True


class _BranchMoved(Exception):
    pass


def _create_commit(repo: pygit2.Repository, fields: packs.CommitFields) -> pygit2.Oid:
    """The commit made by libgit2 from its fields; a signed one (meta/signing.py) from libgit2's
    own text of those fields, which must be what was signed, and the signature."""
    author, committer = (pygit2.Signature(name, email, when, offset) for name, email, when, offset
                         in (fields.author, fields.committer))
    tree, parents = pygit2.Oid(raw=fields.tree), [pygit2.Oid(raw=parent) for parent in fields.parents]
    if fields.signature is None:
        return repo.create_commit(None, author, committer, fields.message, tree, parents)
    text = repo.create_commit_string(author, committer, fields.message, tree, parents)
    if text.encode() != fields.payload:
        raise packs.InvalidCommit("libgit2 writes the signed commit's fields otherwise than the transaction "
                                  "signed them: the two encoders disagree")
    return repo.create_commit_with_signature(text, fields.signature, "gpgsig")


def make_writer(kind: str, repo_path: str, branch: Branch, durable: bool = False) -> Writer:
    if kind == "packs":
        return PackWriter(repo_path, branch, durable)
    if kind == "libgit2":
        return LibgitWriter(repo_path, branch, durable)
    raise ValueError(f"unknown metadata writer {kind!r}: use one of {', '.join(WRITERS)}")
