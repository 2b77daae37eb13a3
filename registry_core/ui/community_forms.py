"""The web UI's forms of a repository's readers: star, bookmark, comment (write, edit, delete).
Each calls the API's service with the visitor's Context: one commit authored by them."""

from __future__ import annotations

import bottle

from registry_core.context import Actor
from registry_core.names import is_valid_name
from registry_core.ui.site import NotFound, Site, text_field
from registry_core.web import request_context


class CommunityForms(Site):
    # --- stars and bookmarks --------------------------------------------------------------------

    def star(self, name: str):
        return self._star(name, self.pages.star)

    def unstar(self, name: str):
        return self._star(name, self.pages.unstar)

    def _star(self, name: str, change):
        self.checked_form()
        if not is_valid_name(name):
            return self.not_found()
        _, actor = self.visitor()
        if actor is None:
            return self.redirect(f"/login?next=/r/{name}")
        if not change(request_context(bottle.request, actor), name):
            return self.not_found()
        return self.redirect(f"/r/{name}")

    def bookmark(self, name: str):
        return self._star(name, self.pages.bookmark)

    def unbookmark(self, name: str):
        return self._star(name, self.pages.unbookmark)

    # --- comments -------------------------------------------------------------------------------

    def _reader_form(self, name: str) -> tuple[bottle.FormsDict, Actor | None]:
        """The checked form of a POST about repository `name`, and the visitor; NotFound (the 404
        page) when the name is outside the grammar or the visitor may not see it."""
        form, _ = self.checked_form()
        _, actor = self.visitor()
        if not self.pages.readable(actor, name):
            raise NotFound()
        return form, actor

    def add_comment(self, name: str):
        form, actor = self._reader_form(name)
        if actor is None:
            return self.redirect(f"/login?next=/r/{name}")
        comment = self.pages.comments.add(request_context(bottle.request, actor), name, text_field(form, "body"))
        return self.redirect(f"/r/{name}#comment-{comment['id']}")

    def edit_comment(self, name: str, comment_id: str):
        form, actor = self._reader_form(name)
        if actor is None:
            return self.redirect(f"/login?next=/r/{name}")
        self.pages.comments.edit(request_context(bottle.request, actor), name, comment_id, text_field(form, "body"))
        return self.redirect(f"/r/{name}#comment-{comment_id}")

    def delete_comment(self, name: str, comment_id: str):
        _, actor = self._reader_form(name)
        if actor is None:
            return self.redirect(f"/login?next=/r/{name}")
        self.pages.comments.delete(request_context(bottle.request, actor), name, comment_id,
                                   moderator=self.registry.access.may(actor, name, "admin"))
        return self.redirect(f"/r/{name}#comments")
