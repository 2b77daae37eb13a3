"""The Index's community API: repository summaries, stars, bookmarks, comments, READMEs and search.

    GET    /api/v1/search?q=&n=&page=                           repositories the caller may pull
    GET    /v1/search?q=&n=&page=                               the same, shaped as Docker's v1 search
    GET    /api/v1/users/<user>/starred?n=&last=                the caller's own stars
    GET    /api/v1/users/<user>/bookmarks?n=&last=              the caller's own bookmarks (nobody else's)
    GET    /api/v1/repositories/<name>                          summary: stars, tags, starred by the caller
    PUT    /api/v1/repositories/<name>/star                     star it (again: no change)
    DELETE /api/v1/repositories/<name>/star                     take the star back
    GET    /api/v1/repositories/<name>/stars?n=&last=           the star count and who starred it
    PUT    /api/v1/repositories/<name>/bookmark                 bookmark it (again: no change)
    DELETE /api/v1/repositories/<name>/bookmark                 take the bookmark back
    GET    /api/v1/repositories/<name>/graph/<reference>        the image graph of a tag or digest (index/graph.py)
    GET    /api/v1/repositories/<name>/history?before=          its events, newest first (index/repository_history.py)
    GET    /api/v1/repositories/<name>/readme                   the README: Markdown `body` and its `html`
    PUT    /api/v1/repositories/<name>/readme                   {"body": "…"} (admins; "" removes it)
    GET    /api/v1/repositories/<name>/comments?n=&last=        oldest first
    POST   /api/v1/repositories/<name>/comments                 {"body": "…"} (Markdown)
    GET    /api/v1/repositories/<name>/comments/<id>
    PATCH  /api/v1/repositories/<name>/comments/<id>            {"body": "…"}: its author only
    DELETE /api/v1/repositories/<name>/comments/<id>            its author, or an admin of the repository

A comment and a README are answered with their Markdown source (`body`) and that source rendered
and sanitised (`html`, index/markdown.py); a comment's `editedAt` is when its author last changed it.

Who may: reading (summary, comments) needs `pull` on the repository, as the access policy and its
plugins decide; a private repository and a missing one answer alike (401 with the challenge to the
anonymous, 403 DENIED to others, as everywhere in the registry). Starring and commenting need
`pull` too, and a user's own login (a password), like managing accounts: access tokens, robot
tokens and registry tokens are for pushing and pulling. A user may always take back their own
star, even from a repository they can no longer see, and their bookmark likewise. Bookmarks are
private: only their owner lists them (registry admins included, nobody else). Who starred a
repository is shown, as its star count is, to those who may pull it (to others the repository does
not exist). Search shows, and counts, only repositories
the caller may pull; `docker search` asks anonymously, so it finds the public ones. Search decides
access only until its page and one more result are found (registry_core/index/search.py), so
`num_results` counts what was found so far: exact when `more` is false, else a lower bound that
says another page follows (`num_pages` is then the page asked for plus one).
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import quote

import bottle

from registry_core.access import TOKEN_ACTOR
from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.index.accounts import not_found
from registry_core.index.api import PREFIX, json_body, own_login
from registry_core.index.community import comment_unknown, comment_view, readme_view
from registry_core.index import repository_history
from registry_core.index.search import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SearchPage
from registry_core.names import check_name
from registry_core.registry.repositories import DEFAULT_PAGE, paginate
from registry_core.registry.routes import next_link, page_query
from registry_core.web import json_response, whole_number


def register_community_routes(app: bottle.Bottle, registry) -> Callable[[], None]:
    """Add the community routes but the summary; returns what adds the summary (GET
    `<name:path>`), to be called once every other `/repositories/<name:path>/…` route of the app
    is in (bottle tries dynamic routes in the order they were added, and `<name:path>` would
    swallow the rest of the path). Call this before the accounts API's routes, whose PATCH
    `<name:path>` would otherwise take a comment's PATCH."""
    api = CommunityApi(registry)
    route = app.route
    route(f"{PREFIX}/search", "GET", api.search, name="api_search")
    route("/v1/search", "GET", api.docker_search, name="docker_search")
    route(f"{PREFIX}/users/<user>/starred", "GET", api.starred, name="api_starred")
    route(f"{PREFIX}/users/<user>/bookmarks", "GET", api.bookmarks, name="api_bookmarks")
    route(f"{PREFIX}/repositories/<name:path>/star", "PUT", api.star, name="api_star")
    route(f"{PREFIX}/repositories/<name:path>/star", "DELETE", api.unstar)
    route(f"{PREFIX}/repositories/<name:path>/stars", "GET", api.stargazers, name="api_stargazers")
    route(f"{PREFIX}/repositories/<name:path>/bookmark", "PUT", api.bookmark, name="api_bookmark")
    route(f"{PREFIX}/repositories/<name:path>/bookmark", "DELETE", api.unbookmark)
    route(f"{PREFIX}/repositories/<name:path>/readme", "GET", api.readme, name="api_readme")
    route(f"{PREFIX}/repositories/<name:path>/readme", "PUT", api.set_readme)
    route(f"{PREFIX}/repositories/<name:path>/graph/<reference>", "GET", api.graph, name="api_graph")
    route(f"{PREFIX}/repositories/<name:path>/history", "GET", api.history, name="api_history")
    route(f"{PREFIX}/repositories/<name:path>/comments/<comment_id>", "GET", api.get_comment, name="api_comment")
    route(f"{PREFIX}/repositories/<name:path>/comments/<comment_id>", "PATCH", api.edit_comment)
    route(f"{PREFIX}/repositories/<name:path>/comments/<comment_id>", "DELETE", api.delete_comment)
    route(f"{PREFIX}/repositories/<name:path>/comments", "GET", api.list_comments, name="api_comments")
    route(f"{PREFIX}/repositories/<name:path>/comments", "POST", api.add_comment)

    def add_summary() -> None:
        route(f"{PREFIX}/repositories/<name:path>", "GET", api.summary, name="api_repository_summary")
    return add_summary


class CommunityApi:
    def __init__(self, registry):
        self.registry = registry
        self.meta = registry.meta
        self.repositories = registry.repositories
        services = registry.community  # shared with the web UI
        self.stars = services.stars
        self.comments = services.comments
        self.readmes = services.readmes
        self.bookmark_service = services.bookmarks
        self.graphs = services.graphs
        self.search_service = services.search

    # --- who is asking ------------------------------------------------------------------------

    def _reader(self, name: str) -> Context:
        """The context of a caller who may pull `name`; raises 401/403 (alike for missing names)."""
        check_name(name)
        return self.registry.requests.authorize(bottle.request, name, "pull")

    def _member(self, what: str) -> Context:
        return own_login(self.registry, what, "are for pushing and pulling")

    # --- search -------------------------------------------------------------------------------

    def _search(self) -> SearchPage:
        query = bottle.request.query
        text = query.getunicode("q", default="") or ""
        n = whole_number(query.get("n"), "n", DEFAULT_PAGE_SIZE, minimum=1)
        if n > MAX_PAGE_SIZE:
            raise RegistryError("PAGINATION_NUMBER_INVALID",
                                f"n={n} is over the limit of {MAX_PAGE_SIZE} results per page")
        page = whole_number(query.get("page"), "page", 1, minimum=1)
        return self.search_service.query(
            text, lambda names: self.registry.requests.visible_repositories(bottle.request, names), page, n)

    def search(self):
        found = self._search()
        return json_response({"query": found.query, "page": found.page, "page_size": found.page_size,
                              "num_pages": found.num_pages, "num_results": found.num_results,
                              "more": found.more, "results": found.results})

    def docker_search(self):
        """Docker's v1 search (what `docker search HOST/TERM` asks for), as Docker Hub answered it
        (its shape has no `more`: `num_pages` past the page asked for says the same)."""
        found = self._search()
        return json_response({"num_results": found.num_results, "num_pages": found.num_pages,
                              "page": found.page, "page_size": found.page_size, "query": found.query,
                              "results": [{"name": r["name"], "description": r["description"],
                                           "star_count": r["star_count"], "is_official": r["is_official"],
                                           "is_automated": False} for r in found.results]})

    # --- repositories and stars ---------------------------------------------------------------

    def summary(self, name: str):
        context = self._reader(name)
        snapshot = self.meta.snapshot()
        document = self.repositories.require(name, snapshot)
        identity = context.identity
        starred = identity is not None and identity.kind in ("user", TOKEN_ACTOR) and \
            self.stars.get(name, identity.name, snapshot) is not None
        return json_response({"name": name, "visibility": document["visibility"],
                              "description": document.get("description", ""), "owner": document.get("owner"),
                              "star_count": self.stars.count(name, snapshot),
                              "tag_count": self.repositories.tag_count(name, snapshot), "starred": starred})

    def star(self, name: str):
        context = self._member("starring")
        self._reader(name)
        document, _ = self.stars.star(context, name)
        return json_response({"name": name, "starred": True, "starredAt": document["starredAt"],
                              "star_count": self.stars.count(name)})

    def unstar(self, name: str):
        context = self._member("unstarring")
        check_name(name)
        may_pull = self.registry.access.may(context.identity, name, "pull")
        if not may_pull and self.stars.get(name, context.actor) is None:
            raise self.registry.requests.denied(bottle.request, context.identity, name, "pull")
        self.stars.unstar(context, name)
        answer = {"name": name, "starred": False}
        if may_pull:
            answer["star_count"] = self.stars.count(name)
        return json_response(answer)

    def starred(self, user: str):
        context = self._member("listing stars")
        admin = self.registry.access.may(context.identity, None, "admin")
        if user != context.actor and not admin:
            raise RegistryError("DENIED", f"{context.actor} may not list the stars of {user}: only their own")
        if admin and self.registry.accounts.user(user) is None:
            raise not_found(f"no user {user}")
        n, last = page_query()
        snapshot = self.meta.snapshot()
        names = self.registry.requests.visible_repositories(bottle.request, self.stars.starred_by(user, snapshot))
        chosen, more = paginate(names, n if n is not None else DEFAULT_PAGE, last)
        starred = []
        for name in chosen:
            document = self.stars.get(name, user, snapshot)
            starred.append({"name": name, "starredAt": document["starredAt"] if document else None})
        headers = {"Link": next_link(f"{PREFIX}/users/{user}/starred", n, chosen[-1])} if more and chosen else {}
        return json_response({"user": user, "repositories": starred}, headers=headers)

    def stargazers(self, name: str):
        self._reader(name)
        snapshot = self.meta.snapshot()
        self.repositories.require(name, snapshot)
        users = self.stars.stargazers(name, snapshot)
        n, last = page_query()
        chosen, more = paginate(users, n if n is not None else DEFAULT_PAGE, last)
        headers = {"Link": next_link(f"{PREFIX}/repositories/{name}/stars", n, chosen[-1])} if more and chosen else {}
        return json_response({"name": name, "star_count": len(users), "stargazers": chosen}, headers=headers)

    # --- bookmarks ----------------------------------------------------------------------------

    def bookmark(self, name: str):
        context = self._member("bookmarking")
        self._reader(name)
        entry = self.bookmark_service.add(context, name)
        return json_response({"name": name, "bookmarked": True, "bookmarkedAt": entry["bookmarkedAt"]})

    def unbookmark(self, name: str):
        context = self._member("removing bookmarks")
        check_name(name)
        if not self.registry.access.may(context.identity, name, "pull") and \
                not self.bookmark_service.has(context.actor, name):
            raise self.registry.requests.denied(bottle.request, context.identity, name, "pull")
        self.bookmark_service.remove(context, name)
        return json_response({"name": name, "bookmarked": False})

    def bookmarks(self, user: str):
        context = self._member("listing bookmarks")
        if user != context.actor:
            raise RegistryError("DENIED", f"{context.actor} may not list the bookmarks of {user}: bookmarks "
                                "are private, only their owner lists them")
        n, last = page_query()
        by_name = {entry["name"]: entry for entry in self.bookmark_service.of(user)}
        names = self.registry.requests.visible_repositories(bottle.request, sorted(by_name))
        chosen, more = paginate(names, n if n is not None else DEFAULT_PAGE, last)
        headers = {"Link": next_link(f"{PREFIX}/users/{user}/bookmarks", n, chosen[-1])} if more and chosen else {}
        return json_response({"user": user, "repositories": [by_name[name] for name in chosen]}, headers=headers)

    def graph(self, name: str, reference: str):
        self._reader(name)
        return json_response(self.graphs.graph(name, reference))

    def history(self, name: str):
        context = self._reader(name)
        self.repositories.require(name)
        page = repository_history.history(self.meta, name, bottle.request.query.get("before") or None,
                                          admin=self.registry.access.may(context.identity, name, "admin"))
        headers = {"Link": f'<{quote(f"{PREFIX}/repositories/{name}/history")}?before={page.next}>; rel="next"'} \
            if page.next else {}
        return json_response({"name": name, "entries": page.entries, "next": page.next}, headers=headers)

    # --- READMEs ------------------------------------------------------------------------------

    def readme(self, name: str):
        self._reader(name)
        snapshot = self.meta.snapshot()
        self.repositories.require(name, snapshot)
        return json_response(readme_view(name, self.readmes.get(name, snapshot)))

    def set_readme(self, name: str):
        self._member("writing a README")
        check_name(name)
        context = self.registry.requests.authorize(bottle.request, name, "admin")
        body = json_body(("body",), required=("body",))
        document = self.readmes.set(context, name, body["body"])
        return json_response(readme_view(name, document))

    # --- comments -----------------------------------------------------------------------------

    def list_comments(self, name: str):
        self._reader(name)
        n, last = page_query()
        comments, more = self.comments.page(name, n, last)
        headers = {}
        if more and comments:
            headers["Link"] = next_link(f"{PREFIX}/repositories/{name}/comments", n, comments[-1]["id"])
        return json_response({"name": name, "comments": [comment_view(c) for c in comments]}, headers=headers)

    def add_comment(self, name: str):
        context = self._member("commenting")
        self._reader(name)
        body = json_body(("body",), required=("body",))
        document = self.comments.add(context, name, body["body"])
        location = quote(f"{PREFIX}/repositories/{name}/comments/{document['id']}")
        return json_response(comment_view(document), 201, headers={"Location": location})

    def get_comment(self, name: str, comment_id: str):
        self._reader(name)
        self.repositories.require(name)
        document = self.comments.get(name, comment_id)
        if document is None:
            raise comment_unknown(name, comment_id)
        return json_response(comment_view(document))

    def edit_comment(self, name: str, comment_id: str):
        context = self._member("editing comments")
        self._reader(name)
        body = json_body(("body",), required=("body",))
        return json_response(comment_view(self.comments.edit(context, name, comment_id, body["body"])))

    def delete_comment(self, name: str, comment_id: str):
        context = self._member("deleting comments")
        self._reader(name)
        moderator = self.registry.access.may(context.identity, name, "admin")
        self.comments.delete(context, name, comment_id, moderator)
        return bottle.HTTPResponse(status=204)
