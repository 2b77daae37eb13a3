"""The web layer's shared pieces: reading request bodies as streams, numbers from query strings,
and errors as spec JSON.

Bodies are read from `wsgi.input` in chunks, to Content-Length or, for chunked transfer-encoding,
until the server signals the end: bottle's `request.body` would answer 400 for chunked bodies and
spool large ones to a temporary file.

Errors: a route raises RegistryError, and `RegistryErrors` (the bottle plugin of the /v2/, token
and /api/v1/ routes) answers it. Whatever else escapes the app, on any route, a plugin's included,
reaches `ErrorsAsJson`, the WSGI middleware around the whole app: a full disk (ENOSPC, EDQUOT)
answers 507 INSUFFICIENT_STORAGE, anything unexpected 500 UNKNOWN with the request's id, logged
with its traceback; never bottle's HTML page.
"""

from __future__ import annotations

import http
import itertools
import json
import logging
import os
import re
import secrets
from typing import Iterator

import bottle

from registry_core import json_text
from registry_core.context import Actor, Context, is_trailer_value
from registry_core.errors import RegistryError, bad_request, is_storage_full
from registry_core.names import canonical_name

CHUNK = 120 * 1024  # under glibc's mmap threshold: see serving.BODY_RECV
DRAIN_LIMIT = 8 << 20  # bytes of an unwanted body read (and dropped) before the connection is closed instead
API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")
REQUEST_ID_KEY = "registry_core.request_id"
ACTOR_KEY = "registry_core.actor"  # the request's Actor (or None), once web_access.RequestAccess.actor judged it
_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII digits only (int() also takes "٣", " 3", "3_0"); 64 bits
log = logging.getLogger("registry_core")


def body_chunks(environ: dict, code: str = "BLOB_UPLOAD_INVALID") -> Iterator[bytes]:
    """Yield the request body in chunks; raise `code` if the client sent less than it announced."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length and not chunked:
        remaining = content_length(length)
        if remaining is None:
            raise RegistryError("SIZE_INVALID", f"Content-Length {length!r} is not a byte count")
        total = remaining
        while remaining > 0:
            chunk = _read(stream, min(CHUNK, remaining), code)
            if not chunk:
                raise RegistryError(code, f"the request body ended after {total - remaining} of the "
                                    f"{total} bytes announced by Content-Length; resend the rest")
            remaining -= len(chunk)
            yield chunk
    elif chunked:
        while chunk := _read(stream, CHUNK, code):
            yield chunk


def content_length(value: str | None) -> int | None:
    """A Content-Length header's number; None when absent, or not 1 to 18 ASCII digits."""
    return int(value) if value and _NUMBER.fullmatch(value) else None


def _read(stream, size: int, code: str) -> bytes:
    """One read of the body; the server's own failures (connection lost, a chunked encoding cut
    short or malformed) become `code` (400) rather than a 500 page."""
    try:
        return stream.read(size)
    except Exception as e:
        raise RegistryError(code, f"the request body could not be read ({type(e).__name__}: {e}); "
                            "resend it") from None


def drain_body(environ: dict, limit: int = DRAIN_LIMIT) -> None:
    """Read and drop what is left of a refused request's body (a manifest over the limit, a chunk
    out of order), so the connection can carry the client's next request: gunicorn reads at most
    64 KiB of a body the app left unread and otherwise closes the connection, although its response
    said keep-alive. Only where the server ends the input at the body's end
    (`wsgi.input_terminated`, else a read could block), and at most `limit` bytes."""
    if not environ.get("wsgi.input_terminated") or not has_body(environ):
        return
    length = content_length(environ.get("CONTENT_LENGTH"))
    if length is not None and length > limit:
        return
    stream, drained = environ["wsgi.input"], 0
    try:
        while drained <= limit and (chunk := stream.read(CHUNK)):
            drained += len(chunk)
    except Exception:
        pass  # a broken body: the server closes the connection itself


def has_body(environ: dict) -> bool:
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def read_body(environ: dict, limit: int, code: str = "MANIFEST_INVALID") -> bytes:
    """The whole (small) body, refusing with 413 anything over `limit` bytes."""
    length = content_length(environ.get("CONTENT_LENGTH"))
    if length is not None and length > limit:
        raise RegistryError(code, f"the request body is {length} bytes; the limit is {limit} bytes",
                            status=413)
    parts, size = [], 0
    for chunk in body_chunks(environ, code):
        size += len(chunk)
        if size > limit:
            raise RegistryError(code, f"the request body is over the limit of {limit} bytes", status=413)
        parts.append(chunk)
    return b"".join(parts)


def json_body(fields: tuple[str, ...], required: tuple[str, ...] = (), limit: int = 64 * 1024) -> dict:
    """The request's body: a JSON object (json_text.parse) of at most `limit` bytes, with only
    `fields`, and all of `required`. The /api/v1/ routes and plugins' routes read bodies here."""
    raw = read_body(bottle.request.environ, limit, "SIZE_INVALID")
    try:
        document = json_text.parse(raw) if raw.strip() else {}
    except json_text.JsonRefused as e:
        raise bad_request(f"the request body {e}") from None
    if not isinstance(document, dict):
        raise bad_request("the request body must be a JSON object")
    unknown = sorted(set(document) - set(fields))
    if unknown:
        raise bad_request(f"unknown field {', '.join(unknown)}: expected {', '.join(fields)}")
    missing = [key for key in required if document.get(key) is None]
    if missing:
        raise bad_request(f"missing field {', '.join(missing)}")
    return document


def whole_number(value: str | None, key: str, default: int | None = None, minimum: int = 0,
                 code: str = "PAGINATION_NUMBER_INVALID") -> int | None:
    """The query parameter `key`'s `value` as a whole number from `minimum` up, in at most 18
    ASCII digits (a 64-bit number, as Distribution takes `n`); `default` when it is absent or
    empty; 400 `code` otherwise."""
    if value is None or value == "":
        return default
    if _NUMBER.fullmatch(value) and int(value) >= minimum:
        return int(value)
    raise RegistryError(code, f"{key}={value!r} is not a whole number from {minimum} up, "
                        "in at most 18 digits 0-9")


def error_response(error: RegistryError) -> bottle.HTTPResponse:
    body = json.dumps(error.to_json())
    headers = {"Content-Type": "application/json; charset=utf-8", API_VERSION_HEADER[0]: API_VERSION_HEADER[1]}
    headers.update(error.headers)
    return bottle.HTTPResponse(body, status=error.status, headers=headers)


# A bottle app whose routes answer failures with pages of their own (the web UI) names, in its
# config under this key, `render(error) -> HTTPResponse | None`: what a request refused before
# routing gets from it (None: the spec's JSON after all). See `refusal_response`.
ERROR_PAGE = "registry_core.error_page"


def refusal_response(error: RegistryError, request: bottle.BaseRequest) -> bottle.HTTPResponse:
    """The answer to a request a `filter_request` plugin refused (a rate limit, a firewall), which
    no route has seen yet: what the app of the route it would have reached renders (`ERROR_PAGE`:
    the web UI's HTML page, for a browser), else the spec's JSON error."""
    try:
        route, _ = request.app.router.match(request.environ)
    except bottle.HTTPError:  # no route (404) or not this method (405): nobody renders pages here
        return error_response(error)
    render = route.config.get(ERROR_PAGE)
    answer = render(error) if render is not None else None
    return answer if answer is not None else error_response(error)


def json_response(document, status: int = 200, content_type: str = "application/json; charset=utf-8",
                  headers: dict | None = None) -> bottle.HTTPResponse:
    all_headers = {"Content-Type": content_type}
    all_headers.update(headers or {})
    return bottle.HTTPResponse(json.dumps(document), status=status, headers=all_headers)


class RegistryErrors:
    """Bottle plugin for /v2/ routes: short repository names become canonical (`alpine` →
    `library/alpine`), a RegistryError raised by a route becomes the spec's JSON error response,
    and every response carries the API version header."""

    name = "registry_errors"
    api = 2

    def apply(self, callback, route):
        def wrapper(*args, **kwargs):
            if "name" in kwargs:
                kwargs["name"] = canonical_name(kwargs["name"])
            try:
                result = callback(*args, **kwargs)
            except RegistryError as error:
                drain_body(bottle.request.environ)
                return error_response(error)
            if isinstance(result, bottle.HTTPResponse):
                result.set_header(*API_VERSION_HEADER)
            return result
        return wrapper


def _new_process_ids() -> None:
    global _process_tag, _request_ids
    _process_tag = f"{os.getpid():x}-{secrets.token_hex(3)}"
    _request_ids = itertools.count(1)


_new_process_ids()
os.register_at_fork(after_in_child=_new_process_ids)  # gunicorn workers are forked after import


def new_request_id() -> str:
    """Unique per store (a random tag per process, and a counter), and far cheaper than a uuid4
    on every request."""
    return f"{_process_tag}-{next(_request_ids):x}"


def request_id(environ: dict) -> str:
    """The request's id, the same all through one request (its events, its error, its log
    lines, its commit's trailer, the response's X-Request-Id): the client's X-Request-Id when the
    whole of it is 1 to 200 characters of printable ASCII without spaces (context.is_trailer_value),
    else a new one."""
    found = environ.get(REQUEST_ID_KEY)
    if found is None:
        given = environ.get("HTTP_X_REQUEST_ID")
        found = environ[REQUEST_ID_KEY] = given if is_trailer_value(given) \
            else new_request_id()
    return found


def request_context(request: bottle.BaseRequest, identity: Actor | None = None) -> Context:
    """The request's context; its client address and request id become commit trailers
    (context.is_trailer_value)."""
    environ = request.environ
    address = environ.get("REMOTE_ADDR")
    return Context(actor=identity.name if identity else "anonymous", identity=identity,
                   client_addr=address if is_trailer_value(address) else None, request_id=request_id(environ),
                   user_agent=environ.get("HTTP_USER_AGENT"))


class ErrorsAsJson:
    """WSGI middleware around the whole app (`registry_core.web_app.build_app`), the last resort for
    what no route answered: a RegistryError raised outside the routes that answer it (a plugin's
    route or hook), a full disk anywhere (507 INSUFFICIENT_STORAGE; the services write content
    and metadata so that a failed write leaves nothing half-visible), and anything unexpected:
    500 UNKNOWN naming the request's id (which observability/middleware.py, around this one,
    sends in X-Request-Id), whose traceback is logged. The bottle app must have `catchall` off,
    or bottle answers these itself with an HTML page."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ: dict, start_response):
        try:
            return self.app(environ, start_response)
        except Exception as exc:  # the last resort
            error, headers = self._error(environ, exc), []
            drain_body(environ)
            body = json.dumps(error.to_json()).encode()
            headers += [("Content-Type", "application/json; charset=utf-8"), API_VERSION_HEADER,
                        ("Content-Length", str(len(body))), *error.headers.items()]
            try:
                reason = http.HTTPStatus(error.status).phrase
            except ValueError:
                reason = "Error"
            start_response(f"{error.status} {reason}", headers, (type(exc), exc, exc.__traceback__))
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    @staticmethod
    def _error(environ: dict, exc: Exception) -> RegistryError:
        where = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')!r}"  # repr: no line breaks
        if isinstance(exc, RegistryError):
            return exc
        if is_storage_full(exc):
            log.error("storage full: %s failed (request %s): %s", where, request_id(environ), exc)
            return RegistryError("INSUFFICIENT_STORAGE", detail={"error": exc.strerror or str(exc)})
        log.error("unexpected error in %s (request %s)", where, request_id(environ),
                  exc_info=(type(exc), exc, exc.__traceback__))
        return RegistryError("UNKNOWN", f"internal error; report request id {request_id(environ)}")


def base_url(request: bottle.BaseRequest, public_url: str | None = None) -> str:
    if public_url:
        return public_url.rstrip("/")
    scheme, host = request.urlparts[:2]
    return f"{scheme}://{host}"
