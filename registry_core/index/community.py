"""Stars, comments, READMEs and bookmarks: the community documents.

    repositories/<name>/_stars/<user>.yaml      kind star: user, starredAt
    repositories/<name>/_comments/<id>.yaml     kind comment: id, author, body, createdAt[, editedAt]
    repositories/<name>/_readme.yaml            kind readme: body (Markdown), updatedBy, updatedAt
    users/<user>/bookmarks.yaml                 kind bookmarks: user, repositories [{name, bookmarkedAt}]

Comments and READMEs are Markdown: the documents keep the source, and readers get it beside its
sanitised HTML (index/markdown.py). Bookmarks live under the user, not the repository, because
they are private: nothing that shows a repository (its pages, its history) sees who bookmarked it.

Every star, unstar, comment, edit, deletion, README change and bookmark is one commit authored by
the acting user; plugins see `star`, `unstar`, `comment`, `comment-edited`, `comment-deleted`,
`readme`, `bookmark` and `unbookmark` events (`before_event` may refuse them, as read-only mode
does). Nothing here walks the store on a request: a repository's star count is the
length of its `_stars` tree (one tree lookup, no document read); its comment ids are cached per
process by the id of its `_comments` tree; and who starred what is a `StarIndex`, built once per
process and then kept current from git diffs.

Who may do what is decided by the routes (registry_core/index/community_routes.py) through the
access policy and its plugins; these services check what belongs to the documents: that the
repository exists, and that only a comment's author, or someone the caller says moderates the
repository, deletes it.
"""

from __future__ import annotations

import bisect
import datetime
import re
import secrets
import threading
from collections import OrderedDict
from typing import Callable

import pygit2

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.index import markdown
from registry_core.events import Event, event, ignore
from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import DiffView, SavedViews, added, deleted, saved_views
from registry_core.meta.store import MetaStore, Snapshot
from registry_core.registry.repositories import RepositoryService, name_unknown, paginate

MAX_COMMENT = 4096
MAX_README = 32768
MAX_BOOKMARKS = 1000
DEFAULT_COMMENT_PAGE = 100
COMMENT_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{11}")
_STAR_PATH_RE = re.compile(r"(?P<name>.+)/_stars/(?P<user>[^/]+)\.yaml")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def new_comment_id(moment: datetime.datetime) -> str:
    """`20261127T053012Z-0c35a9f3e21`: the second, the microsecond (5 hex digits, so that ids
    written in the same second still sort by time), and 6 random hex digits (so that two
    processes writing in the same microsecond do not collide)."""
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{moment.microsecond:05x}{secrets.token_hex(3)}"


def existing_comment(txn, name: str, comment_id: str) -> tuple[str, dict]:
    """(path, document) of comment `comment_id` of repository `name` in `txn`; NAME_UNKNOWN or
    the comment's own unknown error otherwise."""
    if not txn.exists(meta_paths.repository(name)):
        raise name_unknown(name)
    path = meta_paths.comment(name, comment_id)
    document = txn.get(path) if COMMENT_ID_RE.fullmatch(comment_id) else None
    if document is None:
        raise comment_unknown(name, comment_id)
    return path, document


def comment_unknown(name: str, comment_id: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"{name} has no comment {comment_id}",
                         detail={"name": name, "comment": comment_id})


def comment_view(document: dict) -> dict:
    """A comment as the API and the pages show it: its Markdown source and that source as
    sanitised HTML; `editedAt` is None until its author edits it."""
    view = {key: document[key] for key in ("id", "author", "body", "createdAt")}
    view["editedAt"] = document.get("editedAt")
    view["html"] = markdown.render(document["body"])
    return view


def readme_path(name: str) -> str:
    return f"{meta_paths.repository_dir(name)}/_readme.yaml"


def bookmarks_path(user: str) -> str:
    return f"users/{user}/bookmarks.yaml"


# --- stars --------------------------------------------------------------------------------------

class Stars:
    def __init__(self, meta: MetaStore, repositories: RepositoryService,
                 guard: Callable[[Event], None] = ignore, notify: Callable[[Event], None] = ignore):
        self.meta = meta
        self.repositories = repositories
        self.guard = guard
        self.notify = notify
        self._index = StarIndex(repositories, saved_views(meta, "stars"))

    def count(self, name: str, snapshot: Snapshot | None = None) -> int:
        """How many users starred `name`: the number of entries of its `_stars` tree."""
        tree = (snapshot or self.meta.snapshot()).tree(meta_paths.stars_dir(name))
        return len(tree) if tree is not None else 0

    def get(self, name: str, user: str, snapshot: Snapshot | None = None) -> dict | None:
        """`user`'s star on `name`, or None."""
        return (snapshot or self.meta.snapshot()).get(meta_paths.star(name, user))

    def star(self, context: Context, name: str) -> tuple[dict, bool]:
        """Star `name` as the acting user; (the star, whether it is new). Starring twice changes nothing."""
        self.guard(event("star", context, repository=name))

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            path = meta_paths.star(name, context.actor)
            existing = txn.get(path)
            if existing is not None:
                return existing, False
            document = {"kind": "star", "schemaVersion": 1, "user": context.actor, "starredAt": _iso(_now())}
            txn.put(path, document)
            return document, True
        document, created = self.meta.transact(change, context, f"Star {name}")
        if created:
            self.notify(event("star", context, repository=name))
        return document, created

    def unstar(self, context: Context, name: str) -> bool:
        """Take back the acting user's star on `name`; False if there was none."""
        self.guard(event("unstar", context, repository=name))

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            path = meta_paths.star(name, context.actor)
            if not txn.exists(path):
                return False
            txn.delete(path)
            return True
        removed = self.meta.transact(change, context, f"Unstar {name}")
        if removed:
            self.notify(event("unstar", context, repository=name))
        return removed

    def starred_by(self, user: str, snapshot: Snapshot | None = None) -> list[str]:
        """The repositories `user` starred, sorted by name (a new list)."""
        return self._index.starred_by(user, snapshot or self.meta.snapshot())

    def most_starred(self, snapshot: Snapshot | None = None) -> list[str]:
        """The repositories starred at least once, most stars first, then by name: counted from
        the star index (a pass over every star), not a tree lookup per repository."""
        counts = self._index.counts(snapshot or self.meta.snapshot())
        return sorted(counts, key=lambda name: (-counts[name], name))

    def stargazers(self, name: str, snapshot: Snapshot | None = None) -> list[str]:
        """The users who starred `name`, sorted: the entry names of its `_stars` tree (no document read)."""
        tree = (snapshot or self.meta.snapshot()).tree(meta_paths.stars_dir(name))
        return sorted(entry.name[:-5] for entry in tree if entry.name.endswith(".yaml")) if tree is not None else []


class StarIndex(DiffView):
    """Who starred what (user → sorted repository names), per process.

    Kept current from the diff of `repositories/` between tips, entering only repositories'
    folders and their `_stars` (never `_tags`, `_manifests`, …), so an update costs what the change
    touched; saved under `<store>/state/stars/` like the catalog (meta/diffs.py), so a new process
    starts from a copy. Only a store with no copy is looked at whole: each repository's `_stars`
    tree (names from the catalog index: one tree lookup per repository, no document read)."""

    def __init__(self, repositories: RepositoryService, saved: SavedViews | None = None):
        super().__init__(meta_paths.REPOSITORIES, saved)
        self.repositories = repositories
        self._by_user: dict[str, list[str]] = {}

    def starred_by(self, user: str, snapshot: Snapshot) -> list[str]:
        with self.lock:
            self.sync(snapshot)
            return list(self._by_user.get(user, ()))

    def counts(self, snapshot: Snapshot) -> dict[str, int]:
        """Repository → its number of stars, for those starred at least once."""
        with self.lock:
            self.sync(snapshot)
            counted: dict[str, int] = {}
            for names in self._by_user.values():
                for name in names:
                    counted[name] = counted.get(name, 0) + 1
            return counted

    def clear(self) -> None:
        self._by_user = {}

    def descend(self, path: str) -> bool:
        last = path.rpartition("/")[2]
        return not last.startswith("_") or last == "_stars"

    def dump(self) -> bytes:
        # One line a user: the user's name, then the repositories it starred; names hold no spaces.
        return "\n".join(" ".join([user, *names]) for user, names in sorted(self._by_user.items())).encode()

    def load(self, data: bytes) -> None:
        by_user = {}
        for line in data.decode().splitlines():
            user, *names = line.split(" ")
            if not names or names != sorted(names):
                raise ValueError(f"not a line of the stars view: {line[:80]!r}")
            by_user[user] = names
        self._by_user = by_user

    def rebuild(self, snapshot: Snapshot) -> None:
        by_user: dict[str, list[str]] = {}
        for name in self.repositories.names(snapshot):  # sorted, so each user's list is too
            tree = snapshot.tree(meta_paths.stars_dir(name))
            for entry in tree if tree is not None else ():
                if entry.name.endswith(".yaml"):
                    by_user.setdefault(entry.name[:-5], []).append(name)
        self._by_user = by_user

    def apply(self, repo: pygit2.Repository, delta: pygit2.DiffDelta) -> None:
        if not (added(delta) or deleted(delta)):
            return
        match = _STAR_PATH_RE.fullmatch((delta.new_file if added(delta) else delta.old_file).path)
        if match is None:
            return
        name, user = match.group("name"), match.group("user")
        names = self._by_user.setdefault(user, []) if added(delta) else self._by_user.get(user, [])
        index = bisect.bisect_left(names, name)
        found = index < len(names) and names[index] == name
        if added(delta) and not found:
            names.insert(index, name)
        elif deleted(delta) and found:
            del names[index]
            if not names:
                del self._by_user[user]


# --- comments -----------------------------------------------------------------------------------

class Comments:
    def __init__(self, meta: MetaStore, guard: Callable[[Event], None] = ignore,
                 notify: Callable[[Event], None] = ignore):
        self.meta = meta
        self.guard = guard
        self.notify = notify
        self._ids: OrderedDict[pygit2.Oid, list[str]] = OrderedDict()
        self._ids_lock = threading.Lock()

    @staticmethod
    def check_body(body) -> str:
        if not isinstance(body, str) or not body.strip():
            raise RegistryError("UNSUPPORTED", "a comment needs a body: a non-empty string", status=400)
        if len(body) > MAX_COMMENT:
            raise RegistryError("UNSUPPORTED", f"the comment is {len(body)} characters long; the limit is "
                                f"{MAX_COMMENT}", status=400)
        return body

    def add(self, context: Context, name: str, body: str) -> dict:
        """Comment on `name` as the acting user; returns the comment."""
        self.check_body(body)
        self.guard(event("comment", context, repository=name))

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            moment = _now()
            comment_id = new_comment_id(moment)
            while txn.exists(meta_paths.comment(name, comment_id)):
                comment_id = new_comment_id(moment)
            document = {"kind": "comment", "schemaVersion": 1, "id": comment_id, "author": context.actor,
                        "body": body, "createdAt": _iso(moment)}
            txn.put(meta_paths.comment(name, comment_id), document)
            return document
        document = self.meta.transact(change, context, f"Comment on {name}")
        self.notify(event("comment", context, repository=name, comment_id=document["id"]))
        return document

    def get(self, name: str, comment_id: str, snapshot: Snapshot | None = None) -> dict | None:
        if not COMMENT_ID_RE.fullmatch(comment_id):
            return None
        return (snapshot or self.meta.snapshot()).get(meta_paths.comment(name, comment_id))

    def page(self, name: str, n: int | None = None, last: str | None = None) -> tuple[list[dict], bool]:
        """The comments on `name` after the id `last`, oldest first, at most `n` (default 100);
        and whether more follow. Only the page's documents are read."""
        snapshot = self.meta.snapshot()
        if snapshot.get(meta_paths.repository(name)) is None:
            raise name_unknown(name)
        tree = snapshot.tree(meta_paths.comments_dir(name))
        if tree is None:
            return [], False
        with self._ids_lock:
            ids = self._ids.get(tree.id)
            if ids is None:
                ids = sorted(entry.name[:-5] for entry in tree if entry.name.endswith(".yaml"))
                self._ids[tree.id] = ids
                while len(self._ids) > 1024:
                    self._ids.popitem(last=False)
        chosen, more = paginate(ids, n if n is not None else DEFAULT_COMMENT_PAGE, last)
        return [snapshot.get(meta_paths.comment(name, comment_id)) for comment_id in chosen], more

    def edit(self, context: Context, name: str, comment_id: str, body: str) -> dict:
        """Replace the body of the acting user's own comment (nobody edits another's, admins
        included: they may delete it); `editedAt` records when. The same body changes nothing."""
        self.check_body(body)
        self.guard(event("comment-edited", context, repository=name, comment_id=comment_id))

        def change(txn):
            path, document = existing_comment(txn, name, comment_id)
            if document["author"] != context.actor:
                raise RegistryError("DENIED", f"{context.actor} may not edit the comment {comment_id} of "
                                    f"{document['author']}: only its author may")
            if document["body"] == body:
                return document, False
            document = {**document, "body": body, "editedAt": _iso(_now())}
            txn.put(path, document)
            return document, True
        document, changed = self.meta.transact(change, context, f"Edit comment {comment_id} on {name}")
        if changed:
            self.notify(event("comment-edited", context, repository=name, comment_id=comment_id))
        return document

    def delete(self, context: Context, name: str, comment_id: str, moderator: bool = False) -> dict:
        """Delete a comment: the acting user's own, or anyone's if `moderator` (a repository admin)."""
        self.guard(event("comment-deleted", context, repository=name, comment_id=comment_id))

        def change(txn):
            path, document = existing_comment(txn, name, comment_id)
            if document["author"] != context.actor and not moderator:
                raise RegistryError("DENIED", f"{context.actor} may not delete the comment {comment_id} of "
                                    f"{document['author']}: only its author and the admins of {name} may")
            txn.delete(path)
            return document
        document = self.meta.transact(change, context, f"Delete comment {comment_id} on {name}")
        self.notify(event("comment-deleted", context, repository=name, comment_id=comment_id))
        return document


# --- READMEs ------------------------------------------------------------------------------------

class Readmes:
    """A repository's long description: Markdown, beside the short `description` of _repository.yaml
    (which search reads; the README is read only by the repository's own page and API)."""

    def __init__(self, meta: MetaStore, guard: Callable[[Event], None] = ignore,
                 notify: Callable[[Event], None] = ignore):
        self.meta = meta
        self.guard = guard
        self.notify = notify

    def get(self, name: str, snapshot: Snapshot | None = None) -> dict | None:
        return (snapshot or self.meta.snapshot()).get(readme_path(name))

    def set(self, context: Context, name: str, body) -> dict | None:
        """Replace the README of `name` (an empty or blank body removes it); the document, or None
        when there is none now. Whether the actor may (a repository admin) is the caller's to decide."""
        if not isinstance(body, str):
            raise RegistryError("UNSUPPORTED", "a README is a string of Markdown", status=400)
        if len(body) > MAX_README:
            raise RegistryError("UNSUPPORTED", f"the README is {len(body)} characters long; the limit is "
                                f"{MAX_README}", status=400)
        self.guard(event("readme", context, repository=name))

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            existing = txn.get(readme_path(name))
            if not body.strip():
                if existing is not None:
                    txn.delete(readme_path(name))
                return None, existing is not None
            if existing is not None and existing["body"] == body:
                return existing, False
            document = {"kind": "readme", "schemaVersion": 1, "body": body, "updatedBy": context.actor,
                        "updatedAt": now_iso()}
            txn.put(readme_path(name), document)
            return document, True
        message = f"Remove the README of {name}" if not body.strip() else f"Write the README of {name}"
        document, changed = self.meta.transact(change, context, message)
        if changed:
            self.notify(event("readme", context, repository=name))
        return document


def readme_view(name: str, document: dict | None) -> dict:
    if document is None:
        return {"name": name, "body": "", "html": "", "updatedBy": None, "updatedAt": None}
    return {"name": name, "body": document["body"], "html": markdown.render(document["body"]),
            "updatedBy": document["updatedBy"], "updatedAt": document["updatedAt"]}


# --- bookmarks ----------------------------------------------------------------------------------

class Bookmarks:
    """Each user's bookmarks: one document of theirs, read and written by them alone."""

    def __init__(self, meta: MetaStore, guard: Callable[[Event], None] = ignore,
                 notify: Callable[[Event], None] = ignore):
        self.meta = meta
        self.guard = guard
        self.notify = notify

    def of(self, user: str, snapshot: Snapshot | None = None) -> list[dict]:
        """`user`'s bookmarks, [{name, bookmarkedAt}] sorted by name."""
        document = (snapshot or self.meta.snapshot()).get(bookmarks_path(user))
        return list(document["repositories"]) if document is not None else []

    def has(self, user: str, name: str, snapshot: Snapshot | None = None) -> bool:
        return any(entry["name"] == name for entry in self.of(user, snapshot))

    def add(self, context: Context, name: str) -> dict:
        """Bookmark `name` for the acting user (again: no change); returns the bookmark."""
        self.guard(event("bookmark", context, repository=name))

        def change(txn):
            if not txn.exists(meta_paths.repository(name)):
                raise name_unknown(name)
            entries = self._entries(txn, context.actor)
            for entry in entries:
                if entry["name"] == name:
                    return entry, False
            if len(entries) >= MAX_BOOKMARKS:
                raise RegistryError("DENIED", f"{context.actor} has {len(entries)} bookmarks, the most one may "
                                    "keep: remove some first", status=409)
            entry = {"name": name, "bookmarkedAt": now_iso()}
            self._save(txn, context.actor, sorted([*entries, entry], key=lambda e: e["name"]))
            return entry, True
        entry, created = self.meta.transact(change, context, f"Bookmark {name}")
        if created:
            self.notify(event("bookmark", context, repository=name))
        return entry

    def remove(self, context: Context, name: str) -> bool:
        """Take `name` out of the acting user's bookmarks (even if it no longer exists); False if it was not in."""
        self.guard(event("unbookmark", context, repository=name))

        def change(txn):
            entries = self._entries(txn, context.actor)
            kept = [entry for entry in entries if entry["name"] != name]
            if len(kept) == len(entries):
                return False
            self._save(txn, context.actor, kept)
            return True
        removed = self.meta.transact(change, context, f"Remove the bookmark of {name}")
        if removed:
            self.notify(event("unbookmark", context, repository=name))
        return removed

    @staticmethod
    def _entries(txn, user: str) -> list[dict]:
        document = txn.get(bookmarks_path(user))
        return list(document["repositories"]) if document is not None else []

    @staticmethod
    def _save(txn, user: str, entries: list[dict]) -> None:
        if entries:
            txn.put(bookmarks_path(user), {"kind": "bookmarks", "schemaVersion": 1, "user": user,
                                           "repositories": entries})
        else:
            txn.delete(bookmarks_path(user))
