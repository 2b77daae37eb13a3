"""What every page family of the web UI shares: who is visiting (the session cookie, ui/sessions.py),
checked forms (CSRF), the answers (a rendered page, a redirect, the HTML error pages) and the
`UiResponses` bottle plugin that turns failures into those pages and puts the security headers on
every answer. The page families (browse_routes.py, community_forms.py, settings_routes.py,
account_routes.py) subclass `Site`; routes.py puts them together.
"""

from __future__ import annotations

import http
import re
from importlib import resources
from urllib.parse import quote, urlsplit

import bottle

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.index.keys import keys_dir
from registry_core.ui.pages import Pages
from registry_core.ui.render import render
from registry_core.ui.sessions import Session, Sessions, load_or_create_key
from registry_core.web import base_url, content_length, drain_body

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
                secured(result)
            return result
        return wrapper


def secured(response: bottle.HTTPResponse) -> bottle.HTTPResponse:
    """`response` with the security headers every answer of the UI carries."""
    for header, value in SECURITY_HEADERS.items():
        response.set_header(header, value)
    return response


def wants_a_page(environ: dict) -> bool:
    """Whether the request comes from a browser: it accepts HTML, or it sends a form. (A script
    that asks for JSON or sends no form gets the spec's JSON error, as from the API.)"""
    form_type = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    return "text/html" in (environ.get("HTTP_ACCEPT") or "").lower() or \
        form_type in ("application/x-www-form-urlencoded", "multipart/form-data")


class Site:
    def __init__(self, registry):
        self.registry = registry
        self.config = registry.config
        self.accounts = registry.accounts
        self.pages = Pages(registry, registry.access.may)
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
        if route.rule in OPEN_PAGES or self.visitor()[1] is not None or self.registry.access.may(None, None, "catalog"):
            return None
        path = bottle.request.environ.get("PATH_INFO") or "/"
        if bottle.request.method != "GET":
            return self.redirect("/login")
        return self.redirect("/login" + ("" if path == "/" else f"?next={quote(local_path(path), safe='/')}"))

    def signup_open(self) -> bool:
        """Whether the anonymous may make an account: the access decision `signup` (a plugin's,
        such as the sponsor plugin's `signup: open`), the one `POST /api/v1/users` asks."""
        return self.registry.access.may(None, None, "signup")

    def _logged_in(self) -> Actor:
        _, actor = self.visitor()
        if actor is None:
            raise LoginNeeded()
        return actor

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

    def refusal_page(self, error: RegistryError) -> bottle.HTTPResponse | None:
        """The page a browser gets when a `filter_request` plugin refuses a request for one of the
        UI's pages before it reaches the page (the sponsor plugin's sign-up limit: 429 with
        Retry-After; a firewall's 403): the error page with the refusal's status, message and
        headers. None for other clients, who get the spec's JSON (web.refusal_response)."""
        if not wants_a_page(bottle.request.environ):
            return None
        drain_body(bottle.request.environ)
        return secured(self.error_page(error))

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

    # --- which repository a path names ----------------------------------------------------------

    def _named_like_a_page(self, name: str, page: str) -> str | None:
        """`<name>/<page>` when the visitor may not see `name` but may see a repository so named
        (`/r/a/history` is then a/history's page, not the history of a)."""
        _, actor = self.visitor()
        longer = f"{name}/{page}"
        if not self.pages.readable(actor, name) and self.pages.readable(actor, longer):
            return longer
        return None
