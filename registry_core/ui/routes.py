"""The web UI's routes: parse the request, find the visitor, ask ui/pages.py, render a template.

    GET  /                          repositories recently pushed and most starred; a search box
    GET  /search?q=&page=           search results, 25 a page
    GET  /r/<name>                  a repository: description, pull command, tags, stars, comments
    GET  /r/<name>/tags/<tag>       a tag: digest, media type, platforms, layers
    POST /r/<name>/star, /unstar    (logged in)
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
from registry_core.index.accounts import parse_token_secret
from registry_core.index.keys import keys_dir
from registry_core.names import canonical_name, is_tag, is_valid_name
from registry_core.ui.pages import Pages
from registry_core.ui.render import render
from registry_core.ui.sessions import Session, Sessions, load_or_create_key
from registry_core.web import base_url, content_length, drain_body, request_context, whole_number

COOKIE = "registry_session"
FORM_LIMIT = 64 * 1024
MAX_USERNAME = 256
MAX_PASSWORD = 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# A path of this site: one "/" then no "/" or "\" (browsers read "//host" and "/\host" as another
# site); printable ASCII only (no spaces or line breaks: it becomes a Location header).
_LOCAL_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")
_VISITOR_KEY = "registry_core.ui.visitor"
OPEN_PAGES = ("/login", "/static/ui.css")  # served to every visitor, even where anonymous pulls are off


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
    route("/static/ui.css", "GET", ui.stylesheet, name="ui_css")
    route("/r/<name:path>/tags/<tag>", "GET", ui.tag, name="ui_tag")
    route("/r/<name:path>/star", "POST", ui.star, name="ui_star")
    route("/r/<name:path>/unstar", "POST", ui.unstar, name="ui_unstar")
    route("/r/<name:path>", "GET", ui.repository, name="ui_repository")


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
                      csrf=self.sessions.csrf_token(shown) if shown else "", **values)
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
        return self.page("home.html", **self.pages.home(actor))

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
        return self.page("repository.html", repository=shown, host=self._host())

    def tag(self, name: str, tag: str):
        if canonical_name(name) != name and is_tag(tag):
            return self.redirect(f"/r/{canonical_name(name)}/tags/{tag}")
        _, actor = self.visitor()
        shown = self.pages.tag(actor, name, tag)
        if shown is None:
            return self.not_found()
        return self.page("tag.html", image=shown, host=self._host())

    def stylesheet(self):
        return bottle.HTTPResponse(self.stylesheet_bytes, headers={
            "Content-Type": "text/css; charset=utf-8", "Cache-Control": "public, max-age=3600"})

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
