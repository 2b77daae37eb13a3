"""The web UI's routes: parse the request, find the visitor, ask ui/pages.py, render a template.

    GET  /                          repositories recently pushed and most starred; a search box
    GET  /search?q=&page=           search results, 25 a page
    GET  /r/<name>                  a repository: description, pull command, tags, stars, comments
    GET  /r/<name>/tags/<tag>       a tag: digest, labels, its image graph as SVG, platforms, layers
    GET  /r/<name>/history?before=  its events from meta.git, 25 a page (index/repository_history.py)
    GET  /r/<name>/settings         its admins: visibility, description, README, delete a tag
    GET  /u/<name>                  a user's or organisation's repositories; your stars and bookmarks
    GET  /settings/tokens           your access tokens (a new one's secret shown once) and password
    POST /r/<name>/star, /unstar, /bookmark, /unbookmark                      (logged in)
    POST /r/<name>/comments, /r/<name>/comments/<id>/edit, …/<id>/delete      (logged in)
    POST /r/<name>/settings, /r/<name>/settings/delete-tag                   (its admins)
    POST /settings/tokens, /settings/tokens/<id>/revoke, /settings/password (logged in)
    GET  /login, POST /login        password login; `next` is followed only when it is a local path
    POST /logout
    GET  /static/ui.css

Who is visiting: the session cookie (ui/sessions.py), never an Authorization header; a logged-in
visitor is judged by the access policy as the user themself. Every POST carries the session's
CSRF token (403 without it). Every answer carries the security headers (`SECURITY_HEADERS`: no
script may run, no page may be framed). Failures are HTML pages: a RegistryError raised by a route
or a service becomes a page with its status and message, and every 404 is one page whatever the
cause, so a private repository cannot be told from a missing one. Anything unexpected is left to
`web.ErrorsAsJson`, which logs it and answers the JSON 500 naming the request id (no traceback
reaches the visitor).
"""

from __future__ import annotations

import http
import re
from importlib import resources
from urllib.parse import quote, urlsplit

import bottle

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.index import collaborators as repository_access, repository_history
from registry_core.index.accounts import check_account_name, parse_token_secret
from registry_core.index.api import TOKEN_ID_RE, check_password, token_days
from registry_core.index.keys import keys_dir
from registry_core.names import canonical_name, is_tag, is_valid_name
from registry_core.ui.graph_svg import layout
from registry_core.ui.pages import Pages
from registry_core.ui.panels import panels
from registry_core.ui.render import render
from registry_core.ui.sessions import Session, Sessions, load_or_create_key
from registry_core.web import base_url, content_length, drain_body, request_context, whole_number

COOKIE = "registry_session"
FORM_LIMIT = 64 * 1024
MAX_USERNAME = 256
MAX_PASSWORD = 1024
MAX_DESCRIPTION = 4096
MAX_EMAIL = 256
TOKEN_ACTIONS_BY_FIELD = {"pull": ["pull"], "push": ["pull", "push"]}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# A path of this site: one "/" then no "/" or "\" (browsers read "//host" and "/\host" as another
# site); printable ASCII only (no spaces or line breaks: it becomes a Location header).
_LOCAL_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")
_VISITOR_KEY = "registry_core.ui.visitor"
# Served to every visitor, even where anonymous pulls are off (/signup answers 404 unless sign-up is open).
OPEN_PAGES = ("/login", "/signup", "/static/ui.css", "/static/ui.js")


def local_path(value: str | None, default: str = "/") -> str:
    """`value` when it is a path on this site (so a redirect to it stays here), else `default`."""
    if value and _LOCAL_PATH.fullmatch(value) and not urlsplit(value).netloc:
        return value
    return default


def build_ui_app(registry) -> bottle.Bottle:
    """The UI's pages on a bottle app of their own (their bottle plugin applies to them only),
    for `app.build_app` to merge into the root."""
    app = bottle.Bottle()
    register_ui_routes(app, registry)
    return app


def register_ui_routes(app: bottle.Bottle, registry) -> None:
    """Add the pages to `app`, as a plugin's `register_routes` would."""
    ui = WebUi(registry)
    app.install(UiResponses(ui.error_page, ui.login_gate))
    route = app.route
    route("/", "GET", ui.home, name="ui_home")
    route("/search", "GET", ui.search, name="ui_search")
    route("/login", "GET", ui.login_form, name="ui_login")
    route("/login", "POST", ui.login)
    route("/logout", "POST", ui.logout, name="ui_logout")
    route("/signup", "GET", ui.signup_form, name="ui_signup")
    route("/signup", "POST", ui.signup)
    route("/static/ui.css", "GET", ui.stylesheet, name="ui_css")
    route("/static/ui.js", "GET", ui.script, name="ui_js")
    route("/u/<account>", "GET", ui.account, name="ui_account")
    route("/settings/tokens", "GET", ui.tokens, name="ui_tokens")
    route("/settings/tokens", "POST", ui.create_token)
    route("/settings/tokens/<token_id>/revoke", "POST", ui.revoke_token, name="ui_revoke_token")
    route("/settings/password", "POST", ui.change_password, name="ui_password")
    route("/r/<name:path>/tags/<tag>", "GET", ui.tag, name="ui_tag")
    route("/r/<name:path>/history", "GET", ui.history, name="ui_history")
    route("/r/<name:path>/settings", "GET", ui.repository_settings, name="ui_repository_settings")
    route("/r/<name:path>/settings", "POST", ui.save_repository_settings)
    route("/r/<name:path>/settings/delete-tag", "POST", ui.delete_tag, name="ui_delete_tag")
    route("/r/<name:path>/settings/collaborators", "POST", ui.set_collaborator, name="ui_collaborators")
    route("/r/<name:path>/settings/collaborators/<user>/remove", "POST", ui.remove_collaborator,
          name="ui_remove_collaborator")
    route("/r/<name:path>/star", "POST", ui.star, name="ui_star")
    route("/r/<name:path>/unstar", "POST", ui.unstar, name="ui_unstar")
    route("/r/<name:path>/bookmark", "POST", ui.bookmark, name="ui_bookmark")
    route("/r/<name:path>/unbookmark", "POST", ui.unbookmark, name="ui_unbookmark")
    route("/r/<name:path>/comments/<comment_id>/edit", "POST", ui.edit_comment, name="ui_edit_comment")
    route("/r/<name:path>/comments/<comment_id>/delete", "POST", ui.delete_comment, name="ui_delete_comment")
    route("/r/<name:path>/comments", "POST", ui.add_comment, name="ui_comments")
    route("/r/<name:path>", "GET", ui.repository, name="ui_repository")


class NotFound(Exception):
    """Raised by a route for the one 404 page (a repository the visitor may not see, or none)."""


class LoginNeeded(Exception):
    """Raised by a route that needs a logged-in visitor: the answer is the login page, back here after."""


def text_field(form: bottle.FormsDict, key: str) -> str:
    """A form's text field with a browser's CRLF line ends as LF (what the API stores)."""
    return (form.getunicode(key) or "").replace("\r\n", "\n").replace("\r", "\n")


class UiResponses:
    """Bottle plugin of the UI's routes: a RegistryError (or bottle's own HTTPError) becomes an HTML
    error page, and every response gets the security headers."""

    name = "ui_responses"
    api = 2

    def __init__(self, error_page, gate):
        self.error_page = error_page
        self.gate = gate

    def apply(self, callback, route):
        def wrapper(*args, **kwargs):
            try:
                result = self.gate(route) or callback(*args, **kwargs)
            except NotFound:
                drain_body(bottle.request.environ)
                result = self.error_page(RegistryError("NAME_UNKNOWN", "not found", status=404))
            except LoginNeeded:
                drain_body(bottle.request.environ)
                path = local_path(bottle.request.environ.get("PATH_INFO") or "/")
                result = bottle.HTTPResponse(status=303, headers={
                    "Location": "/login?next=" + quote(path, safe="/"), "Cache-Control": "no-store"})
            except RegistryError as error:
                drain_body(bottle.request.environ)
                result = self.error_page(error)
            except bottle.HTTPError as error:
                result = self.error_page(RegistryError("UNKNOWN", error.body if isinstance(error.body, str)
                                                       else None, status=error.status_code))
            if isinstance(result, bottle.HTTPResponse):
                for header, value in SECURITY_HEADERS.items():
                    result.set_header(header, value)
            return result
        return wrapper


class WebUi:
    def __init__(self, registry):
        self.registry = registry
        self.config = registry.config
        self.accounts = registry.accounts
        self.pages = Pages(registry, registry.may)
        self.sessions = Sessions(load_or_create_key(keys_dir(registry.config)))
        self.secure_cookies = (registry.config.public_url or "").lower().startswith("https://")
        self.stylesheet_bytes = resources.files("registry_core.ui").joinpath("static/ui.css").read_bytes()
        self.script_bytes = resources.files("registry_core.ui").joinpath("static/ui.js").read_bytes()

    # --- who is visiting ------------------------------------------------------------------------

    def visitor(self) -> tuple[Session | None, Actor | None]:
        """The request's session (None without a valid one) and the user it is logged in as."""
        environ = bottle.request.environ
        if _VISITOR_KEY not in environ:
            session = self.sessions.decode(bottle.request.get_cookie(COOKIE))
            environ[_VISITOR_KEY] = session, self._actor(session)
        return environ[_VISITOR_KEY]

    def _actor(self, session: Session | None) -> Actor | None:
        """The session's user while their account is active and their password unchanged."""
        if session is None or session.user is None:
            return None
        user = self.accounts.user(session.user)
        if user is None or user.get("disabled") or user.get("robot") or \
                self.sessions.fingerprint(user.get("passwordHash")) != session.password:
            return None
        return self.accounts.actor_of(user)

    def checked_form(self) -> tuple[bottle.FormsDict, Session]:
        """The POSTed form, after checking its CSRF token against the session cookie (403 otherwise)."""
        length = content_length(bottle.request.environ.get("CONTENT_LENGTH"))
        if length is not None and length > FORM_LIMIT:
            raise RegistryError("SIZE_INVALID", f"the form is {length} bytes; the limit is {FORM_LIMIT}",
                                status=413)
        form = bottle.request.forms
        session, _ = self.visitor()
        if not self.sessions.csrf_matches(session, form.getunicode("csrf")):
            raise RegistryError("DENIED", "this form has expired or did not come from this site: reload "
                                "the page and send it again (your browser must accept this site's cookie)")
        return form, session

    def login_gate(self, route) -> bottle.HTTPResponse | None:
        """Where the anonymous may not even list the catalog (`auth.anonymousPull: false`, a private
        registry's plugin), a visitor who has not logged in sees only the login page: every other
        page redirects there."""
        if route.rule in OPEN_PAGES or self.visitor()[1] is not None or self.registry.may(None, None, "catalog"):
            return None
        path = bottle.request.environ.get("PATH_INFO") or "/"
        if bottle.request.method != "GET":
            return self.redirect("/login")
        return self.redirect("/login" + ("" if path == "/" else f"?next={quote(local_path(path), safe='/')}"))

    # --- answers --------------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, session: Session | None = None, headers: dict | None = None,
             **values) -> bottle.HTTPResponse:
        """A rendered page; with `session`, the session cookie is (re)set to it."""
        current, actor = self.visitor()
        shown = session or current
        if session is not None:
            actor = self._actor(session)
        body = render(template, visitor=actor.name if actor else None,
                      csrf=self.sessions.csrf_token(shown) if shown else "",
                      signup_open=actor is None and self.signup_open(), **values)
        response = bottle.HTTPResponse(body, status=status, headers={
            "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", **(headers or {})})
        if session is not None:
            self._set_cookie(response, session)
        return response

    def error_page(self, error: RegistryError) -> bottle.HTTPResponse:
        """Every 404 is the same page (a private repository looks missing); others say what failed."""
        if error.status == 404:
            return self.not_found()
        try:
            title = http.HTTPStatus(error.status).phrase
        except ValueError:
            title = "Error"
        return self.page("error.html", error.status, headers=error.headers, title=title, message=error.message)

    def not_found(self) -> bottle.HTTPResponse:
        return self.page("error.html", 404, title="Not found",
                         message="There is nothing here, or you may not see it. Logging in may show more.")

    def redirect(self, path: str, session: Session | None = None, end_session: bool = False) -> bottle.HTTPResponse:
        response = bottle.HTTPResponse(status=303, headers={"Location": path, "Cache-Control": "no-store"})
        if session is not None:
            self._set_cookie(response, session)
        if end_session:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure_cookies)
        return response

    def _set_cookie(self, response: bottle.HTTPResponse, session: Session) -> None:
        response.set_cookie(COOKIE, self.sessions.encode(session), path="/", httponly=True, samesite="lax",
                            secure=self.secure_cookies)

    def _host(self) -> str:
        return urlsplit(base_url(bottle.request, self.config.public_url)).netloc

    # --- pages ----------------------------------------------------------------------------------

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

    def stylesheet(self):
        return bottle.HTTPResponse(self.stylesheet_bytes, headers={
            "Content-Type": "text/css; charset=utf-8", "Cache-Control": "public, max-age=3600"})

    def script(self):
        return bottle.HTTPResponse(self.script_bytes, headers={
            "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=3600"})

    # --- stars ----------------------------------------------------------------------------------

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
                                   moderator=self.registry.may(actor, name, "admin"))
        return self.redirect(f"/r/{name}#comments")

    # --- a repository's settings ----------------------------------------------------------------

    def _admin_of(self, name: str) -> Actor:
        """The visitor, an admin of repository `name`; the 404 page to those who may not see it,
        the 403 page to its other readers."""
        _, actor = self.visitor()
        if not self.pages.readable(actor, name):
            raise NotFound()
        if actor is None or not self.registry.may(actor, name, "admin"):
            raise RegistryError("DENIED", f"only the admins of {name} change its settings")
        return actor

    def _named_like_a_page(self, name: str, page: str) -> str | None:
        """`<name>/<page>` when the visitor may not see `name` but may see a repository so named
        (`/r/a/history` is then a/history's page, not the history of a)."""
        _, actor = self.visitor()
        longer = f"{name}/{page}"
        if not self.pages.readable(actor, name) and self.pages.readable(actor, longer):
            return longer
        return None

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
                                          admin=self.registry.may(actor, name, "admin"))
        return self.page("history.html", name=name, history=page, first=before is None)

    def repository_settings(self, name: str):
        if canonical_name(name) != name:
            return self.redirect(f"/r/{canonical_name(name)}/settings")
        longer = self._named_like_a_page(name, "settings")
        if longer is not None:
            return self.repository(longer)
        self._admin_of(name)
        shown = self.pages.repository(self.visitor()[1], name)
        collaborators = sorted(repository_access.collaborators(self.registry.meta, name), key=lambda c: c["user"])
        return self.page("repository_settings.html", repository=shown, message=None, collaborators=collaborators,
                         roles=repository_access.ROLES, webhooks=self.registry.plugins.get_plugin("webhooks") is not None,
                         site=base_url(bottle.request, self.config.public_url))

    def save_repository_settings(self, name: str):
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        context = request_context(bottle.request, actor)
        document = self.registry.repositories.require(name)
        visibility = form.getunicode("visibility") or document["visibility"]
        # A field the form leaves out is kept as it is (a missing README field is not an empty README).
        description = text_field(form, "description") if "description" in form else document.get("description", "")
        if "\n" in description:
            raise RegistryError("UNSUPPORTED", "the short description is one line: the README takes the rest",
                                status=400)
        if len(description) > MAX_DESCRIPTION:
            raise RegistryError("UNSUPPORTED", f"the short description is {len(description)} characters long; "
                                f"the limit is {MAX_DESCRIPTION}", status=400)
        changed_visibility = visibility if visibility != document["visibility"] else None
        changed_description = description if description != document.get("description", "") else None
        if changed_visibility is not None or changed_description is not None:
            repository_access.set_visibility(self.registry.meta, context, name, changed_visibility,
                                             changed_description)
        if "readme" in form:
            self.pages.readmes.set(context, name, text_field(form, "readme"))
        if not self.pages.readable(actor, name):
            return self.redirect("/")
        return self.redirect(f"/r/{name}/settings")

    def delete_tag(self, name: str):
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        tag = form.getunicode("tag") or ""
        if not is_tag(tag):
            raise RegistryError("TAG_INVALID", "give the name of one of the repository's tags", status=400)
        if not self.registry.may(actor, name, "delete"):
            raise RegistryError("DENIED", f"{actor.name} may not delete tags of {name}")
        self.registry.manifests.delete(name, tag, request_context(bottle.request, actor))
        return self.redirect(f"/r/{name}/settings")

    def set_collaborator(self, name: str):
        """Give a user a role on the repository, or change their role (one commit by the admin)."""
        form, _ = self.checked_form()
        actor = self._admin_of(name)
        user = (form.getunicode("user") or "").strip()
        check_account_name(user)
        repository_access.set_collaborator(self.registry.meta, request_context(bottle.request, actor), name, user,
                                           form.getunicode("role") or "")
        return self.redirect(f"/r/{name}/settings#collaborators")

    def remove_collaborator(self, name: str, user: str):
        self.checked_form()
        actor = self._admin_of(name)
        check_account_name(user)
        repository_access.set_collaborator(self.registry.meta, request_context(bottle.request, actor), name, user,
                                           None)
        return self.redirect(f"/r/{name}/settings#collaborators")

    # --- users, organisations, tokens and passwords ---------------------------------------------

    def account(self, account: str):
        _, actor = self.visitor()
        shown = self.pages.account(actor, account)
        if shown is None:
            return self.not_found()
        return self.page("account.html", account=shown)

    def _logged_in(self) -> Actor:
        _, actor = self.visitor()
        if actor is None:
            raise LoginNeeded()
        return actor

    def tokens(self, secret: str | None = None, created: dict | None = None, message: str | None = None,
               status: int = 200):
        actor = self._logged_in()
        tokens = sorted((token for token in self.accounts.tokens(actor.name) if token.get("purpose") == "access"),
                        key=lambda t: (t.get("createdAt", ""), t["id"]))
        return self.page("tokens.html", status, tokens=tokens, secret=secret, created=created, message=message)

    def create_token(self):
        form, _ = self.checked_form()
        actor = self._logged_in()
        description = (form.getunicode("description") or "").strip()
        if len(description) > 256:
            raise RegistryError("UNSUPPORTED", "a token's description is at most 256 characters", status=400)
        actions = TOKEN_ACTIONS_BY_FIELD.get(form.getunicode("actions") or "")
        if actions is None:
            raise RegistryError("UNSUPPORTED", "choose what the token may do: pull, or pull and push", status=400)
        days_text = (form.getunicode("days") or "").strip()
        days = token_days(whole_number(days_text, "days")) if days_text else None
        secret, document = self.accounts.create_token(request_context(bottle.request, actor), actor.name, "access",
                                                      description or None, actions, None, days)
        return self.tokens(secret=secret, created=document)

    def revoke_token(self, token_id: str):
        self.checked_form()
        actor = self._logged_in()
        if not TOKEN_ID_RE.fullmatch(token_id):
            return self.not_found()
        self.accounts.revoke_token(request_context(bottle.request, actor), actor.name, token_id)
        return self.redirect("/settings/tokens")

    def change_password(self):
        form, _ = self.checked_form()
        actor = self._logged_in()
        current = form.getunicode("current") or ""
        new, again = form.getunicode("new") or "", form.getunicode("again") or ""
        if len(current) > MAX_PASSWORD or len(new) > MAX_PASSWORD:
            raise RegistryError("UNSUPPORTED", f"a password is at most {MAX_PASSWORD} characters", status=400)
        if new != again:
            return self.tokens(message="The two new passwords differ: type the same one twice.", status=400)
        try:
            check_password(new)
        except RegistryError as error:
            return self.tokens(message=error.message, status=400)
        try:
            confirmed = self.accounts.authenticate(actor.name, current, bottle.request.environ.get("REMOTE_ADDR"))
        except RegistryError as error:
            if error.code != "TOOMANYREQUESTS":
                raise
            return self.tokens(message=error.message, status=error.status)
        if confirmed is None or confirmed.kind != "user":
            return self.tokens(message="Your current password is not that one.", status=400)
        document = self.accounts.update_user(request_context(bottle.request, actor), actor.name,
                                             f"Change the password of {actor.name}", password=new)
        return self.redirect("/settings/tokens", session=self.sessions.new(actor.name, document.get("passwordHash")))

    # --- logging in and out ---------------------------------------------------------------------

    def login_form(self):
        session, actor = self.visitor()
        target = local_path(bottle.request.query.getunicode("next"))
        if actor is not None:
            return self.redirect(target)
        return self.page("login.html", session=session or self.sessions.new(), next=target, username="",
                         message=None)

    def login(self):
        form, session = self.checked_form()
        username = form.getunicode("username") or ""
        password = form.getunicode("password") or ""
        target = local_path(form.getunicode("next"))
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            raise RegistryError("UNSUPPORTED", f"a username is at most {MAX_USERNAME} characters and a password "
                                f"at most {MAX_PASSWORD}", status=400)

        def again(message: str, status: int = 200, headers: dict | None = None):
            return self.page("login.html", status, headers=headers, next=target, username=username,
                             message=message)
        if parse_token_secret(password) is not None:
            return again("Log in with your password: access tokens are for docker login and scripts.")
        try:
            actor = self.accounts.authenticate(username, password, bottle.request.environ.get("REMOTE_ADDR"))
        except RegistryError as error:
            if error.code != "TOOMANYREQUESTS":
                raise
            return again(error.message, error.status, error.headers)
        user = self.accounts.user(actor.name) if actor is not None else None
        if user is None or actor.kind != "user":
            return again("Wrong username or password (or the account is disabled).")
        return self.redirect(target, session=self.sessions.new(actor.name, user.get("passwordHash")))

    def logout(self):
        self.checked_form()
        return self.redirect("/", end_session=True)

    # --- signing up -----------------------------------------------------------------------------

    def signup_open(self) -> bool:
        """Whether the anonymous may make an account: the access decision `signup` (a plugin's,
        such as the sponsor plugin's `signup: open`), the one `POST /api/v1/users` asks."""
        return self.registry.may(None, None, "signup")

    def signup_form(self):
        if not self.signup_open():
            return self.not_found()
        session, actor = self.visitor()
        if actor is not None:
            return self.redirect("/")
        return self.page("signup.html", session=session or self.sessions.new(), username="", email="", message=None)

    def signup(self):
        """An account made by the person who will use it, as `POST /api/v1/users` makes it without
        credentials: the commit authored by the new user; then they are logged in."""
        form, _ = self.checked_form()
        if not self.signup_open():
            return self.not_found()
        username = (form.getunicode("username") or "").strip()
        email = (form.getunicode("email") or "").strip()
        password, again = form.getunicode("password") or "", form.getunicode("again") or ""
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD or len(email) > MAX_EMAIL:
            raise RegistryError("UNSUPPORTED", f"a username is at most {MAX_USERNAME} characters, a password at "
                                f"most {MAX_PASSWORD} and an email address at most {MAX_EMAIL}", status=400)

        def again_with(message: str, status: int = 400):
            return self.page("signup.html", status, username=username, email=email, message=message)
        if password != again:
            return again_with("The two passwords differ: type the same one twice.")
        try:
            check_account_name(username)
            check_password(password)
            document = self.accounts.create_user(request_context(bottle.request, Actor(name=username)), username,
                                                 password, email or None)
        except RegistryError as error:
            if error.status >= 500:
                raise
            return again_with(error.message, error.status)
        return self.redirect(f"/u/{username}", session=self.sessions.new(username, document.get("passwordHash")))
