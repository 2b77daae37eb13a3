"""The web UI's pages for browsing: home, search, a repository, a tag, its history, a user or
organisation, and the static files. Nothing here changes the store."""

from __future__ import annotations

import bottle

from registry_core.index import repository_history
from registry_core.names import canonical_name, is_tag
from registry_core.ui.graph_svg import layout
from registry_core.ui.panels import panels
from registry_core.ui.site import Site
from registry_core.web import whole_number


class BrowseRoutes(Site):
    def home(self):
        _, actor = self.visitor()
        return self.page("home.html", panels=panels(self.registry, "home", None, actor), **self.pages.home(actor))

    def search(self):
        query = bottle.request.query
        text = query.getunicode("q", default="") or ""
        page = whole_number(query.get("page"), "page", 1, minimum=1)
        _, actor = self.visitor()
        return self.page("search.html", found=self.pages.search(actor, text, page))

    def repository(self, name: str):
        if canonical_name(name) != name:
            return self.redirect(f"/r/{canonical_name(name)}")
        _, actor = self.visitor()
        shown = self.pages.repository(actor, name)
        if shown is None:
            return self.not_found()
        return self.page("repository.html", repository=shown, host=self._host(),
                         panels=panels(self.registry, "repository", name, actor))

    def tag(self, name: str, tag: str):
        if canonical_name(name) != name and is_tag(tag):
            return self.redirect(f"/r/{canonical_name(name)}/tags/{tag}")
        _, actor = self.visitor()
        shown = self.pages.tag(actor, name, tag)
        if shown is None:
            return self.not_found()
        return self.page("tag.html", image=shown, host=self._host(), drawing=layout(shown["graph"]))

    def history(self, name: str):
        if canonical_name(name) != name:
            return self.redirect(f"/r/{canonical_name(name)}/history")
        longer = self._named_like_a_page(name, "history")
        if longer is not None:
            return self.repository(longer)
        _, actor = self.visitor()
        if not self.pages.readable(actor, name):
            return self.not_found()
        before = bottle.request.query.get("before") or None
        page = repository_history.history(self.registry.meta, name, before,
                                          admin=self.registry.access.may(actor, name, "admin"))
        return self.page("history.html", name=name, history=page, first=before is None)

    def account(self, account: str):
        _, actor = self.visitor()
        shown = self.pages.account(actor, account)
        if shown is None:
            return self.not_found()
        return self.page("account.html", account=shown)

    def stylesheet(self):
        return bottle.HTTPResponse(self.stylesheet_bytes, headers={
            "Content-Type": "text/css; charset=utf-8", "Cache-Control": "public, max-age=3600"})

    def script(self):
        return bottle.HTTPResponse(self.script_bytes, headers={
            "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=3600"})
