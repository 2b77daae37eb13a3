"""Repositories: their documents, the catalog, and tag listings, with paging by `n` and `last`.

Listings never walk the store per request. A repository's tags are cached by the id of its
`_tags` tree, which changes only when that repository's tags do, and each of its folders by the
folder's tree id (`TagNames`: a listing after a push reads the folders on the pushed tag's path). The
catalog is a sorted list of
every repository's name (`CatalogIndex`), kept per process and brought up to date from the diff
between the tree it was made for and the current one (meta/diffs.py: it skips subtrees whose ids
did not change and never enters `_tags`, `_manifests`, …, so it costs the folders on the changed
paths; a tag push or a new repository costs about 0.3 ms here with 10,000 repositories); a page
is a binary search and a slice, so it costs what the page holds.

Where a process's catalog comes from, and what that costs (measured here, 10,000 repositories):
- the list is saved as `<store>/state/catalog/<tree id of repositories/>`, one name a line (about
  130 KB), after a build from scratch and after every `SAVE_AFTER` changed files (diffs.py);
- a new process's first catalog request reads the newest such copy whose tree is still in the
  repository (about 1 ms) and applies the diff from that tree to the current one; so the first
  request after start-up costs what it costs on a store of 100 repositories (about 17 ms
  in-process here, mostly the first request's own start: documents parsed, access decided);
- only a store that has no usable copy (one written before copies existed, or by a bulk import)
  walks `repositories/` once (0.4 to 1 s here: one tree read per repository), and saves the
  result for every later process;
- another process's or node's commit is seen by the next request: the diff brings the list to
  the request's own snapshot, so a saved copy only decides where the catch-up starts.

`catalog(n, last, visible)` fills a page with names the caller may pull, deciding access in
order and only until the page and one more are found (`take_visible`, which search uses too).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from itertools import chain, islice
from typing import Callable, Iterable

import pygit2

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import DiffView, SavedViews, outside_underscore_folders, present, saved_views
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
        self._catalog = CatalogIndex(saved_views(meta, "catalog"))
        self._tags = TagNames()

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
        return paginate(self._tags.names(snapshot, tree) if tree is not None else [], n, last)

    def tag_count(self, name: str, snapshot: Snapshot) -> int:
        tree = snapshot.tree(meta_paths.tags_dir(name))
        return len(self._tags.names(snapshot, tree)) if tree is not None else 0

    def catalog(self, n: int | None = None, last: str | None = None,
                visible: Callable[[list[str]], list[str]] | None = None) -> tuple[list[str], bool]:
        """The page of at most `n` names after `last`, and whether more follow. With `visible`
        (it keeps, in order, the names of a list that the caller may pull), the page holds only
        names it keeps, and is filled with them: access is decided for the names in order, a
        batch at a time, only until the page and one more are found; `more` then says whether
        the caller may pull a name after the page (so a next link never leads to nothing, and
        never shows a name the caller may not see)."""
        names = self._catalog.names(self.meta.snapshot())
        n = min(n if n is not None else DEFAULT_PAGE, MAX_PAGE)
        if visible is None:
            return paginate(names, n, last)
        start = bisect.bisect_right(names, last) if last else 0
        found = take_visible(islice(names, start, None), visible, n + 1)
        return found[:n], len(found) > n

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


def take_visible(names: Iterable[str], visible: Callable[[list[str]], list[str]], count: int) -> list[str]:
    """The first `count` of `names` (an iterator, in order) that `visible` keeps; access is asked
    for in batches of what is still missing, so no more names are judged than the answer needs
    (when every name is visible, exactly `count`)."""
    names = iter(names)
    found: list[str] = []
    while len(found) < count:
        batch = list(islice(names, count - len(found)))
        if not batch:
            break
        found.extend(visible(batch))
    return found


class TagNames:
    """The sorted tag names of `_tags/` trees, cached by tree id.

    `_tags/` is fanned out (meta/paths.py `tag_bucket`: FANOUT_LEVELS levels of 16 folders), so a
    push changes one folder at each level: the names below each folder are cached by the folder's
    tree id too, and a changed `_tags/` reads only the folders it does not know (a listing after a
    push reads the FANOUT_LEVELS folders on the pushed tag's path, not every tag). Files at other
    depths (an older layout, which `registry fsck --repair` moves) are not tags the registry sees.
    """

    def __init__(self, lists: int = 1024, buckets: int = 65536):
        self._lists: OrderedDict[pygit2.Oid, list[str]] = OrderedDict()
        self._buckets: OrderedDict[tuple[pygit2.Oid, int], list[str]] = OrderedDict()
        self._limits = lists, buckets
        self._lock = threading.Lock()

    def names(self, snapshot: Snapshot, tags_tree: pygit2.Tree) -> list[str]:
        """The sorted names (do not modify the list)."""
        with self._lock:
            names = self._lists.get(tags_tree.id)
            if names is None:
                names = snapshot.read(lambda: sorted(self._folder(tags_tree, meta_paths.FANOUT_LEVELS)))
                _remember(self._lists, tags_tree.id, names, self._limits[0])
            return names

    def _folder(self, folder: pygit2.Tree, levels: int) -> list[str]:
        """The tag names in the buckets `levels` folders below `folder` (0: `folder` is a bucket)."""
        key = (folder.id, levels)
        names = self._buckets.get(key)
        if names is None:
            if levels == 0:
                names = [entry.name[:-5] for entry in folder
                         if entry.name.endswith(".yaml") and isinstance(entry, pygit2.Blob)]
            else:
                names = list(chain.from_iterable(self._folder(entry, levels - 1) for entry in folder
                                                 if isinstance(entry, pygit2.Tree)))
            _remember(self._buckets, key, names, self._limits[1])
        return names


def _remember(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)


class CatalogIndex(DiffView):
    """The sorted names of all repositories, kept current from git diffs and saved for the next
    process (meta/diffs.py; the costs are in the module's docstring)."""

    def __init__(self, saved: SavedViews | None = None):
        super().__init__(meta_paths.REPOSITORIES, saved)
        self._names: list[str] = []

    def names(self, snapshot: Snapshot) -> list[str]:
        """The sorted names; the list returned is never changed afterwards (updates replace it)."""
        with self.lock:
            self.sync(snapshot)
            return self._names

    def clear(self) -> None:
        self._names = []

    def descend(self, path: str) -> bool:
        return outside_underscore_folders(path)

    def rebuild(self, snapshot: Snapshot) -> None:
        self._names = sorted(_walk(snapshot.tree(meta_paths.REPOSITORIES), ""))

    def apply_all(self, repo: pygit2.Repository, deltas) -> None:
        # The list is replaced, never changed in place (readers page it without the lock), so a
        # diff's names are applied to one copy: a few by binary search, many by one sort.
        added, removed = set(), set()
        for delta in deltas:
            path = "/" + (delta.new_file.path if present(delta) else delta.old_file.path)
            if path.endswith(_REPOSITORY_SUFFIX):
                (added if present(delta) else removed).add(path[1:-len(_REPOSITORY_SUFFIX)])
        if not added and not removed:
            return
        if len(added) + len(removed) > 64:
            self._names = sorted(set(self._names).difference(removed).union(added))
            return
        names = list(self._names)
        for name in removed:
            index = bisect.bisect_left(names, name)
            if index < len(names) and names[index] == name:
                del names[index]
        for name in added:
            index = bisect.bisect_left(names, name)
            if index == len(names) or names[index] != name:
                names.insert(index, name)
        self._names = names

    def dump(self) -> bytes:
        return "\n".join(self._names).encode()

    def load(self, data: bytes) -> None:
        text = data.decode()
        self._names = text.split("\n") if text else []


def _walk(tree: pygit2.Tree, prefix: str):
    for entry in tree:
        if entry.name == meta_paths.REPOSITORY_DOC:
            yield prefix.rstrip("/")
        elif entry.type_str == "tree" and not entry.name.startswith("_"):
            yield from _walk(entry, prefix + entry.name + "/")  # (iterating a tree yields its objects)
