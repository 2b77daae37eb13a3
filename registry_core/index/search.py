"""Search over repository names and descriptions: the Index's search API and Docker's v1 search.

A query matches the repositories whose name or description holds every word of it (lower-case
substrings; an empty query matches all), ranks those whose names hold every word first, then the
others, each group by name, and shows only those the caller may pull.

What a query costs: what its page needs, not what the store holds.

- Names and descriptions live in a per-process `SearchIndex`, kept current from git diffs like the
  catalog (meta/diffs.py): an update costs what the change touched, a changed `_repository.yaml`
  is parsed once. The index is saved as `<store>/state/search/<tree id>` (the text it searches,
  about 40 bytes per repository plus its description) after a build from scratch and every
  `SAVE_AFTER` changed files, so a new process reads that copy and applies the diff since (a few
  ms for 10,000 repositories) instead of reading every repository's document (2 to 4 s here for
  10,000); only a store without a usable copy pays that, once.
- The text searched is two strings: every name, one a line, in order; and every lower-cased
  "name, newline, description", NUL-separated, in the same order. The first query after a few
  names or descriptions changed patches them (per change: a `str.find` for the entry and one for
  its successor, then a copy; about 0.1 ms per 10,000 repositories); after many, or in a new
  process, they are made anew (about 1 ms per 10,000 repositories). A word is found by
  `str.find` on them (C: tens of µs for 10,000 repositories), each hit is cut out to its entry and
  checked for the other words (the rarest word drives: `str.count` picks it), and hits come in
  name order; so the ranked matches are produced lazily, the names group first.
- Access is the costly part (one `permission_allowed` decision, 13 to 23 µs here, per
  repository): it is decided for the ranked matches in order, a batch at a time, only until the
  page and one more repository are found. A query for a page of 25 therefore judges 26
  repositories when the caller may pull them all, whatever matched.
- So `num_results` is what was found so far: exact when `more` is false (every match was seen),
  else a lower bound (the page, what came before it, and one more), and `num_pages` follows from
  it. Counting every visible match would cost an access decision per match, and counting matches
  regardless of access would reveal repositories the caller may not pull; so neither is done.
- For the page shown: one tree lookup per result for its star count and one cached document read.

A caller who may pull few of many matches (an anonymous one on a mostly private store) still
costs a decision per match passed over until the page is filled: access belongs to plugins, so it
cannot be indexed ahead.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pygit2

from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import Change, DiffView, SavedViews, outside_underscore_folders, present, \
    saved_views
from registry_core.meta.store import MetaStore, Snapshot, load_blob
from registry_core.registry.repositories import RepositoryService, take_visible

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
OFFICIAL_NAMESPACE = "library/"
_REPOSITORY_SUFFIX = "/" + meta_paths.REPOSITORY_DOC
_NAME_END = "\n"   # ends every name in the names string (names never hold one)
_TEXT_END = "\x00"  # ends every entry of the texts string (taken out of descriptions)
_PARTS = "\x01"     # between the two strings in a saved copy (names never hold one)
_MOST_PATCHES = 16  # changed entries patched into the strings; more, and they are made anew


@dataclass
class SearchPage:
    query: str
    page: int
    page_size: int
    num_results: int
    results: list[dict] = field(default_factory=list)
    more: bool = False  # a match the caller may pull follows the page (`num_results` is then a lower bound)

    @property
    def num_pages(self) -> int:
        return math.ceil(self.num_results / self.page_size)


class Search:
    def __init__(self, meta: MetaStore, repositories: RepositoryService, star_count: Callable[[str, Snapshot], int]):
        self.meta = meta
        self.star_count = star_count
        self.index = SearchIndex(repositories, saved_views(meta, "search"))

    def query(self, text: str, visible: Callable[[list[str]], list[str]], page: int = 1,
              page_size: int = DEFAULT_PAGE_SIZE) -> SearchPage:
        """Repositories whose name or description holds every word of `text` (any case; an empty
        `text` matches all), those whose names hold every word first, then by name; only those
        `visible` keeps (it filters a list of names by what the caller may pull, keeping their
        order), and only as many as the page needs (see the module's docstring)."""
        snapshot = self.meta.snapshot()
        start = (page - 1) * page_size
        shown = take_visible(self.index.ranked(snapshot, text.lower().split()), visible, start + page_size + 1)
        results = [self.result(name, snapshot) for name in shown[start:start + page_size]]
        more = len(shown) > start + page_size
        return SearchPage(text, page, page_size, len(shown), results, more)

    def result(self, name: str, snapshot: Snapshot) -> dict:
        document = snapshot.get(meta_paths.repository(name)) or {}
        return {"name": name, "description": document.get("description", ""),
                "visibility": document.get("visibility", "private"),
                "star_count": self.star_count(name, snapshot),
                "is_official": name.startswith(OFFICIAL_NAMESPACE)}


class SearchIndex(DiffView):
    """name → the lower-case text searched ("name\\ndescription"), per process, kept current from
    git diffs and saved for the next process; and the two strings a query scans, made from it
    when first needed (see the module's docstring for the costs)."""

    def __init__(self, repositories: RepositoryService, saved: SavedViews | None = None):
        super().__init__(meta_paths.REPOSITORIES, saved)
        self.repositories = repositories
        self._texts: dict[str, str] = {}
        self._names: list[str] = []
        self._strings: tuple[str, str] | None = None  # (names, texts); None until a query needs them
        self._patches: dict[str, str | None] = {}  # name → its text (None: gone), not yet in the strings

    def ranked(self, snapshot: Snapshot, terms: list[str]) -> Iterator[str]:
        """The names matching every term, ranked, lazily. The strings it scans are immutable, so
        it goes on without the lock and stays true to `snapshot` whatever other threads sync."""
        with self.lock:
            self.sync(snapshot)
            if self._strings is None:
                tail = 1 if self._names else 0
                self._strings = (_NAME_END + _NAME_END.join(self._names) + _NAME_END * tail,
                                 _TEXT_END + _TEXT_END.join(map(self._texts.__getitem__, self._names))
                                 + _TEXT_END * tail)
            elif self._patches:
                self._strings = _patched(*self._strings, self._patches, self._names)
            self._patches = {}
            names, texts = self._strings
        return _ranked(names, texts, terms)

    def match(self, snapshot: Snapshot, terms: list[str]) -> list[str]:
        """Every name matching every term, ranked (all of them: for tests and tools)."""
        return list(self.ranked(snapshot, terms))

    def clear(self) -> None:
        self._texts, self._names, self._strings, self._patches = {}, [], None, {}

    def descend(self, path: str) -> bool:
        return outside_underscore_folders(path)

    def rebuild(self, snapshot: Snapshot) -> None:
        for name in self.repositories.names(snapshot):
            blob = snapshot.entry(meta_paths.repository(name))
            if isinstance(blob, pygit2.Blob):
                self._set(name, blob, meta_paths.repository(name))
        self._names = sorted(self._texts)
        self._strings, self._patches = None, {}

    def apply(self, repo: pygit2.Repository, delta: Change) -> None:
        file = delta.new_file if present(delta) else delta.old_file
        path = "/" + file.path
        if not path.endswith(_REPOSITORY_SUFFIX):
            return
        name = path[1:-len(_REPOSITORY_SUFFIX)]
        index = bisect.bisect_left(self._names, name)
        found = index < len(self._names) and self._names[index] == name
        if present(delta):
            self._set(name, repo[file.id], f"{meta_paths.REPOSITORIES}/{file.path}")
            if not found:
                self._names.insert(index, name)
        else:
            self._texts.pop(name, None)
            if found:
                del self._names[index]
        if self._strings is not None:
            self._patches[name] = self._texts.get(name)
            if len(self._patches) > _MOST_PATCHES:  # cheaper made anew
                self._strings, self._patches = None, {}

    def dump(self) -> bytes:
        return (_PARTS.join((_NAME_END.join(self._names),
                             _TEXT_END.join(map(self._texts.__getitem__, self._names))))).encode()

    def load(self, data: bytes) -> None:
        names, separator, texts = data.decode().partition(_PARTS)
        names = names.split(_NAME_END) if names else []
        texts = texts.split(_TEXT_END) if names else []
        if not separator or len(names) != len(texts):
            raise ValueError(f"{len(names)} names but {len(texts)} texts")
        self._names, self._texts, self._strings, self._patches = names, dict(zip(names, texts)), None, {}

    def _set(self, name: str, blob: pygit2.Blob, path: str) -> None:
        description = load_blob(blob, path).get("description") or ""
        self._texts[name] = f"{name}\n{description}".lower().replace(_TEXT_END, " ")


def _patched(names: str, texts: str, patches: dict[str, str | None], order: list[str]) -> tuple[str, str]:
    """The two strings with each patched entry taken out and, unless it is gone, put back with its
    new text before the first following name (`order`: every name now, sorted) already in them."""
    for name in patches:
        at = names.find(_NAME_END + name + _NAME_END)
        if at != -1:
            names = names[:at + 1] + names[at + len(name) + 2:]
            start = texts.index(_TEXT_END + name + "\n")
            texts = texts[:start] + texts[texts.index(_TEXT_END, start + 1):]
    waiting = {name for name, text in patches.items() if text is not None}
    for name in sorted(waiting):
        waiting.discard(name)
        index = bisect.bisect_right(order, name)
        while index < len(order) and order[index] in waiting:
            index += 1
        text = patches[name] + _TEXT_END
        if index == len(order):
            names, texts = names + name + _NAME_END, texts + text
        else:
            at = names.index(_NAME_END + order[index] + _NAME_END) + 1
            names = names[:at] + name + _NAME_END + names[at:]
            at = texts.index(_TEXT_END + order[index] + "\n") + 1
            texts = texts[:at] + text + texts[at:]
    return names, texts


def _ranked(names: str, texts: str, terms: list[str]) -> Iterator[str]:
    if not terms:
        yield from _entries(names, _NAME_END)
        return
    if any(_TEXT_END in term for term in terms):
        return  # no text holds one (and a word never holds a newline: words are split on it)
    yield from _holding(names, _NAME_END, terms)
    for text in _holding(texts, _TEXT_END, terms):
        name = text[:text.index("\n")]
        if not all(term in name for term in terms):
            yield name


def _entries(string: str, end: str) -> Iterator[str]:
    """Every entry of `string` (`end` + entries each followed by `end`), in order."""
    start, size = 1, len(string)
    while start < size:
        stop = string.index(end, start)
        yield string[start:stop]
        start = stop + 1


def _holding(string: str, end: str, terms: list[str]) -> Iterator[str]:
    """The entries of `string` that hold every term, in order: the rarest term's hits are found by
    `str.find`, each cut out to its entry, and the entry checked for the other terms."""
    driver = terms[0] if len(terms) == 1 else min(terms, key=string.count)
    find, rfind = string.find, string.rfind
    hit = find(driver)
    while hit != -1:
        stop = find(end, hit)
        entry = string[rfind(end, 0, hit) + 1:stop]
        if all(term in entry for term in terms):
            yield entry
        hit = find(driver, stop)
