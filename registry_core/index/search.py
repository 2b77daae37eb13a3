"""Search over repository names and descriptions: the Index's search API and Docker's v1 search.

What a query costs. Names and descriptions live in a per-process `SearchIndex`, so a query reads
no document and walks no tree to match:

- once per process, the index is built from the catalog index's names (registry_core/registry/
  repositories.py): one tree lookup per repository for its `_repository.yaml`, parsed once per
  blob id (documents.py caches parses by blob id, and the index keeps each description with the
  blob id it came from);
- after that, whenever a request's snapshot has another `repositories/` tree, the index applies the
  git diff between the two trees: libgit2 skips unchanged subtrees by id, so this costs what the
  change touched (a push reads the trees on its path; a changed `_repository.yaml` is parsed once);
- the match itself is in memory: one lower-case substring test per term per repository
  (O(repositories × terms); measured here at about 6 ms per 10,000 repositories), then one access
  decision (the `permission_allowed` hook: a few cached document lookups) per matching repository,
  because only repositories the caller may pull are shown and counted. Those decisions dominate a
  broad query on a large registry: 13–23 µs each here, so about 0.2 s for 10,000 matches;
- for the page shown, one tree lookup per result for its star count and one cached document read.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable

import pygit2

from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import DiffView, present
from registry_core.meta.store import MetaStore, Snapshot, load_blob
from registry_core.registry.repositories import RepositoryService

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
OFFICIAL_NAMESPACE = "library/"
_REPOSITORY_SUFFIX = "/" + meta_paths.REPOSITORY_DOC


@dataclass
class SearchPage:
    query: str
    page: int
    page_size: int
    num_results: int
    results: list[dict] = field(default_factory=list)

    @property
    def num_pages(self) -> int:
        return math.ceil(self.num_results / self.page_size)


class Search:
    def __init__(self, meta: MetaStore, repositories: RepositoryService, star_count: Callable[[str, Snapshot], int]):
        self.meta = meta
        self.star_count = star_count
        self.index = SearchIndex(repositories)

    def query(self, text: str, visible: Callable[[list[str]], list[str]], page: int = 1,
              page_size: int = DEFAULT_PAGE_SIZE) -> SearchPage:
        """Repositories whose name or description holds every word of `text` (any case; an empty
        `text` matches all), those whose names hold every word first, then by name; only those
        `visible` keeps (it filters a list of names by what the caller may pull)."""
        snapshot = self.meta.snapshot()
        shown = visible(self.index.match(snapshot, text.lower().split()))
        start = (page - 1) * page_size
        results = [self.result(name, snapshot) for name in shown[start:start + page_size]]
        return SearchPage(text, page, page_size, len(shown), results)

    def result(self, name: str, snapshot: Snapshot) -> dict:
        document = snapshot.get(meta_paths.repository(name)) or {}
        return {"name": name, "description": document.get("description", ""),
                "visibility": document.get("visibility", "private"),
                "star_count": self.star_count(name, snapshot),
                "is_official": name.startswith(OFFICIAL_NAMESPACE)}


class SearchIndex(DiffView):
    """name → (blob id of its `_repository.yaml`, description, lower-case text to match), per
    process, kept current from git diffs (see the module's docstring for the costs)."""

    def __init__(self, repositories: RepositoryService):
        super().__init__(meta_paths.REPOSITORIES)
        self.repositories = repositories
        self._entries: dict[str, tuple[pygit2.Oid, str, str]] = {}
        self._names: list[str] = []

    def match(self, snapshot: Snapshot, terms: list[str]) -> list[str]:
        with self.lock:
            self.sync(snapshot)
            entries, names = self._entries, self._names
            in_name, in_description = [], []
            for name in names:
                text = entries[name][2]
                if all(term in text for term in terms):
                    (in_name if all(term in name for term in terms) else in_description).append(name)
        return in_name + in_description

    def clear(self) -> None:
        self._entries, self._names = {}, []

    def rebuild(self, snapshot: Snapshot) -> None:
        for name in self.repositories.names(snapshot):
            blob = snapshot.entry(meta_paths.repository(name))
            if isinstance(blob, pygit2.Blob):
                self._set(name, blob, meta_paths.repository(name))
        self._names = sorted(self._entries)

    def apply(self, repo: pygit2.Repository, delta: pygit2.DiffDelta) -> None:
        file = delta.new_file if present(delta) else delta.old_file
        path = "/" + file.path
        if not path.endswith(_REPOSITORY_SUFFIX):
            return
        name = path[1:-len(_REPOSITORY_SUFFIX)]
        index = bisect.bisect_left(self._names, name)
        found = index < len(self._names) and self._names[index] == name
        if present(delta):
            entry = self._entries.get(name)
            if entry is None or entry[0] != file.id:
                self._set(name, repo.get(file.id), f"{meta_paths.REPOSITORIES}/{file.path}")
            if not found:
                self._names.insert(index, name)
        else:
            self._entries.pop(name, None)
            if found:
                del self._names[index]

    def _set(self, name: str, blob: pygit2.Blob, path: str) -> None:
        description = load_blob(blob, path).get("description") or ""
        self._entries[name] = (blob.id, description, f"{name}\n{description}".lower())
