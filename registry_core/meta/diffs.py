"""Per-process views of one folder of the metadata tree, kept current from git diffs.

A view is built once per process from the folder as it is at some tip; when a later request brings
a snapshot whose folder has another tree id, the view applies `old.diff_to_tree(new)`. libgit2
skips subtrees whose ids did not change, so an update costs what the change touched (the trees on
the changed paths), not what the store holds. Every method runs under the view's lock; the view
keeps only the folder's tree id, never a libgit2 object, since those belong to one thread.
"""

from __future__ import annotations

import threading

import pygit2

from registry_core.meta.store import Snapshot


class DiffView:
    """Subclasses say how to build the view from scratch (`rebuild`), how to apply one changed
    file (`apply`), and how to forget everything (`clear`); readers call `sync(snapshot)` under
    `self.lock` before they read."""

    def __init__(self, folder: str):
        self.folder = folder
        self.lock = threading.RLock()
        self._tree_id: pygit2.Oid | None = None

    def sync(self, snapshot: Snapshot) -> None:
        """Bring the view to `snapshot` (forwards or backwards). Call with `self.lock` held."""
        tree = snapshot.tree(self.folder)
        if tree is None:
            if self._tree_id is not None:
                self.clear()
            self._tree_id = None
            return
        if self._tree_id == tree.id:
            return
        old = snapshot.repo.get(self._tree_id) if self._tree_id is not None else None
        if old is None:
            self.clear()
            self.rebuild(snapshot)
        else:
            for delta in old.diff_to_tree(tree).deltas:
                self.apply(snapshot.repo, delta)
        self._tree_id = tree.id

    # --- for subclasses -----------------------------------------------------------------------

    def clear(self) -> None:
        raise NotImplementedError

    def rebuild(self, snapshot: Snapshot) -> None:
        raise NotImplementedError

    def apply(self, repo: pygit2.Repository, delta: pygit2.DiffDelta) -> None:
        """One changed file; `delta.status` is added, deleted or modified, and paths are relative
        to the folder."""
        raise NotImplementedError


def added(delta: pygit2.DiffDelta) -> bool:
    return delta.status == pygit2.GIT_DELTA_ADDED


def deleted(delta: pygit2.DiffDelta) -> bool:
    return delta.status == pygit2.GIT_DELTA_DELETED


def present(delta: pygit2.DiffDelta) -> bool:
    """The file exists after the change (added, modified, or changed type)."""
    return delta.status != pygit2.GIT_DELTA_DELETED
