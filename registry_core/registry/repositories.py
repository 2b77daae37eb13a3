"""Repositories: their documents, the catalog, and tag listings, with paging by `n` and `last`.

Listings never walk the store per request: the catalog is a sorted list kept per process and
brought up to date from the git diff between the tree it was built from and the current one (git
skips unchanged subtrees by id, so the cost follows the size of the change); a repository's tags
are cached by the id of its `_tags` tree, which changes only when that repository's tags do.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict

import pygit2

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import DiffView, present
from registry_core.meta.store import MetaStore, Snapshot, Transaction
from registry_core.names import check_name

DEFAULT_PAGE = 1000
MAX_PAGE = 10000
_REPOSITORY_SUFFIX = "/" + meta_paths.REPOSITORY_DOC


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"repository {name} is not known to this registry",
                         detail={"name": name})


class RepositoryService:
    def __init__(self, meta: MetaStore, default_visibility: str = "private"):
        self.meta = meta
        self.default_visibility = default_visibility
        self._catalog = CatalogIndex()
        self._tags: OrderedDict[pygit2.Oid, list[str]] = OrderedDict()
        self._tags_lock = threading.Lock()

    def get(self, name: str, snapshot: Snapshot | None = None) -> dict | None:
        return (snapshot or self.meta.snapshot()).get(meta_paths.repository(name))

    def require(self, name: str, snapshot: Snapshot | None = None) -> dict:
        check_name(name)
        document = self.get(name, snapshot)
        if document is None:
            raise name_unknown(name)
        return document

    def ensure(self, txn: Transaction, name: str, context: Context) -> bool:
        """Create the repository's document in `txn` if it has none; True when created."""
        path = meta_paths.repository(name)
        if txn.exists(path):
            return False
        txn.put(path, {"kind": "repository", "schemaVersion": 1, "name": name,
                       "visibility": self.default_visibility, "owner": context.actor,
                       "createdBy": context.actor, "createdAt": now_iso()})
        return True

    def tags(self, name: str, n: int | None = None, last: str | None = None) -> tuple[list[str], bool]:
        snapshot = self.meta.snapshot()
        self.require(name, snapshot)
        tree = snapshot.tree(meta_paths.tags_dir(name))
        if tree is None:
            return paginate([], n, last)
        with self._tags_lock:
            names = self._tags.get(tree.id)
            if names is None:
                names = sorted(entry.name[:-5] for entry in tree if entry.name.endswith(".yaml"))
                self._tags[tree.id] = names
                while len(self._tags) > 1024:
                    self._tags.popitem(last=False)
        return paginate(names, n, last)

    def catalog(self, n: int | None = None, last: str | None = None) -> tuple[list[str], bool]:
        return paginate(self._catalog.names(self.meta.snapshot()), n if n is not None else DEFAULT_PAGE, last)

    def names(self, snapshot: Snapshot | None = None) -> list[str]:
        """Every repository's name, sorted, from the catalog index (do not modify the list)."""
        return self._catalog.names(snapshot or self.meta.snapshot())


def paginate(names: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The page of sorted `names` after `last`, at most `n` long; and whether more follow."""
    start = bisect.bisect_right(names, last) if last else 0
    if n is None:
        return names[start:], False
    n = min(n, MAX_PAGE)
    return names[start:start + n], start + n < len(names)


class CatalogIndex(DiffView):
    """The sorted names of all repositories, kept current from git diffs (meta/diffs.py)."""

    def __init__(self):
        super().__init__(meta_paths.REPOSITORIES)
        self._names: list[str] = []

    def names(self, snapshot: Snapshot) -> list[str]:
        """The sorted names; the list returned is never changed afterwards (updates replace it)."""
        with self.lock:
            self.sync(snapshot)
            return self._names

    def clear(self) -> None:
        self._names = []

    def rebuild(self, snapshot: Snapshot) -> None:
        self._names = sorted(_walk(snapshot.tree(meta_paths.REPOSITORIES), ""))

    def apply(self, repo: pygit2.Repository, delta: pygit2.DiffDelta) -> None:
        path = "/" + (delta.new_file.path if present(delta) else delta.old_file.path)
        if not path.endswith(_REPOSITORY_SUFFIX):
            return
        name = path[1:-len(_REPOSITORY_SUFFIX)]
        names = list(self._names)
        index = bisect.bisect_left(names, name)
        found = index < len(names) and names[index] == name
        if present(delta) and not found:
            names.insert(index, name)
        elif not present(delta) and found:
            del names[index]
        self._names = names


def _walk(tree: pygit2.Tree, prefix: str):
    for entry in tree:
        if entry.name == meta_paths.REPOSITORY_DOC:
            yield prefix.rstrip("/")
        elif entry.type_str == "tree" and not entry.name.startswith("_"):
            yield from _walk(tree[entry.name], prefix + entry.name + "/")
