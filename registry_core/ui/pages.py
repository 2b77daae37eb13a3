"""What each page of the web UI shows, for one visitor: the service behind the UI's routes (ui/routes.py).

Visibility is decided exactly as the API decides it: `may(actor, name, "pull")` is
`Registry.access.may`, the `permission_allowed` hook (the Index's access policy and any plugin's). A
repository the visitor may not pull is answered like a missing one (None here, the same 404 page
there). Nothing here imports bottle; the routes hand in the actor and shape the answer.

What a page costs: the home page's two lists are ranked once per store tip (the names of the
repositories pushed to in the last `RECENT_COMMITS` commits, newest first, each checked to exist;
the starred repositories by star count, from the star index the API keeps: a pass over every
star, no tree lookup) and then filtered per visitor, judging access only until each
list is full (`take_visible`); search is `index/search.py`'s; a repository page reads the
documents of its first `TAG_ROWS` tags and their manifests.
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
from typing import Callable

from registry_core.context import Actor, Context
from registry_core.errors import RegistryError
from registry_core.index.community import comment_view, readme_view
from registry_core.index.graph import platform_text
from registry_core.index.search import DEFAULT_PAGE_SIZE, SearchPage
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import Snapshot
from registry_core.names import is_account_name, is_tag, is_valid_name
from registry_core.registry.mediatypes import INDEXES
from registry_core.registry.repositories import take_visible

HOME_ROWS = 10
TAG_ROWS = 100
COMMENT_ROWS = 100
USER_ROWS = 100
RECENT_COMMITS = 500
# The message ManifestService.put gives a push's commit: "Push <name>:<tag>" or "Push <name>@<digest>".
_PUSH_MESSAGE = re.compile(r"Push (?P<name>[a-z0-9._/-]+)[:@]")

May = Callable[[Actor | None, str | None, str], bool]


class Pages:
    def __init__(self, registry, may: May):
        self.meta = registry.meta
        self.repositories = registry.repositories
        self.manifests = registry.manifests
        self.may = may
        services = registry.community  # the API's own instances (index/community_services.py)
        self.stars = services.stars
        self.comments = services.comments
        self.readmes = services.readmes
        self.bookmarks = services.bookmarks
        self.accounts = registry.accounts
        self.graphs = services.graphs
        self.search_service = services.search
        self._rankings: tuple | None = None  # (tip, recently pushed names, names by stars)
        self._rankings_lock = threading.Lock()

    def visible(self, actor: Actor | None) -> Callable[[list[str]], list[str]]:
        return lambda names: [name for name in names if self.may(actor, name, "pull")]

    # --- home and search ------------------------------------------------------------------------

    def home(self, actor: Actor | None) -> dict:
        snapshot = self.meta.snapshot()
        recent, starred = self._ranked(snapshot)
        visible = self.visible(actor)
        return {"recent": [self.search_service.result(name, snapshot)
                           for name in take_visible(recent, visible, HOME_ROWS)],
                "starred": [self.search_service.result(name, snapshot)
                            for name in take_visible(starred, visible, HOME_ROWS)]}

    def search(self, actor: Actor | None, text: str, page: int) -> SearchPage:
        return self.search_service.query(text, self.visible(actor), page, DEFAULT_PAGE_SIZE)

    def _ranked(self, snapshot: Snapshot) -> tuple[list[str], list[str]]:
        with self._rankings_lock:
            if self._rankings is not None and self._rankings[0] == snapshot.tip:
                return self._rankings[1], self._rankings[2]
        starred = self.stars.most_starred(snapshot)
        recent = [name for name in recently_pushed(snapshot, RECENT_COMMITS)
                  if self.repositories.get(name, snapshot) is not None]
        with self._rankings_lock:
            self._rankings = (snapshot.tip, recent, starred)
        return recent, starred

    # --- a repository ---------------------------------------------------------------------------

    def readable(self, actor: Actor | None, name: str) -> bool:
        """Whether `actor` may see `name`'s pages (false alike for a missing and a private one)."""
        return is_valid_name(name) and self.may(actor, name, "pull") and self.repositories.get(name) is not None

    def repository(self, actor: Actor | None, name: str) -> dict | None:
        """The repository page of `name`, or None when the visitor may not see it (or it is missing)."""
        if not self.readable(actor, name):
            return None
        snapshot = self.meta.snapshot()
        document = self.repositories.get(name, snapshot)
        if document is None:
            return None
        tag_names, more_tags = self.repositories.tags(name, n=TAG_ROWS)
        comments, more_comments = self.comments.page(name, n=COMMENT_ROWS)
        starred = actor is not None and self.stars.get(name, actor.name, snapshot) is not None
        bookmarked = actor is not None and self.bookmarks.has(actor.name, name, snapshot)
        return {"readme": readme_view(name, self.readmes.get(name, snapshot)), "bookmarked": bookmarked,
                "admin": self.may(actor, name, "admin"), "name": name, "description": document.get("description", ""),
                "visibility": document["visibility"], "owner": document.get("owner"),
                "official": name.startswith("library/"),
                "star_count": self.stars.count(name, snapshot), "starred": starred,
                "tags": [row for row in (self._tag_row(snapshot, name, tag) for tag in tag_names) if row],
                "tag_count": self.repositories.tag_count(name, snapshot), "more_tags": more_tags,
                "pull_tag": "latest" if "latest" in tag_names else (tag_names[0] if tag_names else None),
                "comments": [comment_view(comment) for comment in comments], "more_comments": more_comments}

    def _tag_row(self, snapshot: Snapshot, name: str, tag: str) -> dict | None:
        document = snapshot.get(meta_paths.tag(name, tag))
        if document is None:
            return None
        manifest = snapshot.get(meta_paths.manifest(name, document["digest"])) or {}
        children = [self._child(snapshot, name, entry) for entry in manifest.get("manifests", [])]
        size = sum(child["size"] or 0 for child in children) if children else image_size(manifest)
        return {"tag": tag, "digest": document["digest"], "media_type": document["mediaType"],
                "size": size, "platforms": [child["platform"] for child in children if child["platform"]],
                "pushed_at": document.get("pushedAt"), "pushed_by": document.get("pushedBy")}

    def tag(self, actor: Actor | None, name: str, tag: str) -> dict | None:
        """The tag page of `name:tag`, or None when the visitor may not see it or it is missing."""
        if not is_tag(tag) or not self.readable(actor, name):
            return None
        snapshot = self.meta.snapshot()
        document = snapshot.get(meta_paths.tag(name, tag))
        manifest = snapshot.get(meta_paths.manifest(name, document["digest"])) if document else None
        if manifest is None:
            return None
        is_index = manifest["mediaType"] in INDEXES
        return {"name": name, "tag": tag, "digest": manifest["digest"], "media_type": manifest["mediaType"],
                "size": manifest["size"], "is_index": is_index, "pushed_at": document.get("pushedAt"),
                "pushed_by": document.get("pushedBy"), "config": manifest.get("config"),
                "layers": manifest.get("layers", []), "total": image_size(manifest),
                "children": [self._child(snapshot, name, entry) for entry in manifest.get("manifests", [])],
                "graph": self.graphs.graph(name, tag)}

    def _child(self, snapshot: Snapshot, name: str, entry: dict) -> dict:
        """A manifest an index lists: its platform, and its layers when this repository holds it."""
        node = snapshot.get(meta_paths.manifest(name, entry["digest"])) or {}
        return {"digest": entry["digest"], "media_type": entry.get("mediaType"),
                "platform": platform_text(entry.get("platform")), "manifest_size": entry.get("size"),
                "artifact_type": entry.get("artifactType") or node.get("artifactType"),
                "config": node.get("config"), "layers": node.get("layers", []),
                "size": image_size(node) if node else None}

    # --- a user or an organisation ----------------------------------------------------------------

    def account(self, actor: Actor | None, account: str) -> dict | None:
        """The page of user or organisation `account`: the repositories of its namespace that the
        visitor may see (the first USER_ROWS); its stars and bookmarks when the visitor is that user."""
        if not is_account_name(account):
            return None
        snapshot = self.meta.snapshot()
        user = self.accounts.user(account, snapshot)
        org = self.accounts.org(account, snapshot) if user is None else None
        if user is None and org is None:
            return None
        names = self.repositories.names(snapshot)
        prefix = f"{account}/"
        start = bisect.bisect_left(names, prefix)
        own = itertools.takewhile(lambda name: name.startswith(prefix), names[start:])
        visible = self.visible(actor)
        shown = take_visible(own, visible, USER_ROWS + 1)
        page = {"name": account, "kind": "organisation" if org is not None else "user",
                "description": (org or {}).get("description", ""), "myself": actor is not None and actor.name == account,
                "repositories": [self.search_service.result(name, snapshot) for name in shown[:USER_ROWS]],
                "more_repositories": len(shown) > USER_ROWS, "starred": [], "bookmarks": []}
        if page["myself"]:
            page["starred"] = visible(self.stars.starred_by(account, snapshot))[:USER_ROWS]
            page["bookmarks"] = visible([entry["name"] for entry in self.bookmarks.of(account, snapshot)])[:USER_ROWS]
        return page

    # --- stars ----------------------------------------------------------------------------------

    def star(self, context: Context, name: str) -> bool:
        """Star `name` as the acting user; False (nothing done) when they may not see it."""
        if not self.readable(context.identity, name):
            return False
        self.stars.star(context, name)
        return True

    def unstar(self, context: Context, name: str) -> bool:
        """Take back the acting user's star, even from a repository they can no longer see (as the
        API does); False when they may not see it and have no star on it."""
        if not is_valid_name(name):
            return False
        if not self.readable(context.identity, name) and self.stars.get(name, context.actor) is None:
            return False
        try:
            self.stars.unstar(context, name)
        except RegistryError as error:
            if error.code != "NAME_UNKNOWN":
                raise
            return False
        return True

    # --- bookmarks ------------------------------------------------------------------------------

    def bookmark(self, context: Context, name: str) -> bool:
        """Bookmark `name` for the acting user; False (nothing done) when they may not see it."""
        if not self.readable(context.identity, name):
            return False
        self.bookmarks.add(context, name)
        return True

    def unbookmark(self, context: Context, name: str) -> bool:
        """Take `name` out of the acting user's bookmarks, even when they can no longer see it;
        False when they may not see it and it is not among them."""
        if not self.readable(context.identity, name) and not self.bookmarks.has(context.actor, name):
            return False
        self.bookmarks.remove(context, name)
        return True


def image_size(manifest: dict) -> int:
    """What pulling an image manifest downloads: its config and layers (0 for an index)."""
    config = manifest.get("config") or {}
    return (config.get("size") or 0) + sum(layer.get("size") or 0 for layer in manifest.get("layers", []))


def recently_pushed(snapshot: Snapshot, commits: int) -> list[str]:
    """The repositories pushed to in the last `commits` commits of the store, newest first."""
    def walk() -> list[str]:
        names: dict[str, None] = {}
        commit = snapshot.commit
        for _ in range(commits):
            if commit is None:
                break
            match = _PUSH_MESSAGE.match(commit.message)
            if match:
                names.setdefault(match.group("name"))
            commit = commit.parents[0] if commit.parents else None
        return list(names)
    return snapshot.read(walk)
