"""The Index's community services of one store, made once per process and shared by the community
API (index/community_routes.py) and the web UI (ui/pages.py): stars, comments, READMEs,
bookmarks, image graphs and search. Sharing matters for memory and for time: the search index
(names and descriptions of every repository) and the star index (who starred what) are
per-process views kept current from git diffs, so one copy each is kept and brought up to date
once per change, not once per user of it. `Registry.community` holds the instance."""

from __future__ import annotations

from registry_core.index.community import Bookmarks, Comments, Readmes, Stars
from registry_core.index.graph import ImageGraphs
from registry_core.index.search import Search


class CommunityServices:
    def __init__(self, registry):
        hooks = {"guard": registry.check, "notify": registry.notify}
        self.stars = Stars(registry.meta, registry.repositories, **hooks)
        self.comments = Comments(registry.meta, **hooks)
        self.readmes = Readmes(registry.meta, **hooks)
        self.bookmarks = Bookmarks(registry.meta, **hooks)
        self.graphs = ImageGraphs(registry)
        self.search = Search(registry.meta, registry.repositories, self.stars.count)
