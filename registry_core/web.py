"""The web layer's shared pieces: reading request bodies as streams, and errors as spec JSON.

Bodies are read from `wsgi.input` in chunks, to Content-Length or, for chunked transfer-encoding,
until the server signals the end: bottle's `request.body` would answer 400 for chunked bodies and
spool large ones to a temporary file.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from typing import Iterator

import bottle

from registry_core.context import Actor, Context, is_trailer_value
from registry_core.errors import RegistryError
from registry_core.names import canonical_name

CHUNK = 120 * 1024  # under glibc's mmap threshold: see serving.BODY_RECV
DRAIN_LIMIT = 8 << 20  # bytes of an unwanted body read (and dropped) before the connection is closed instead
API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")


def body_chunks(environ: dict, code: str = "BLOB_UPLOAD_INVALID") -> Iterator[bytes]:
    """Yield the request body in chunks; raise `code` if the client sent less than it announced."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length and not chunked:
        try:
            remaining = int(length)
        except ValueError:
            raise RegistryError("SIZE_INVALID", f"Content-Length {length!r} is not a number") from None
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
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
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
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        raise RegistryError(code, f"the request body is {length} bytes; the limit is {limit} bytes",
                            status=413)
    parts, size = [], 0
    for chunk in body_chunks(environ, code):
        size += len(chunk)
        if size > limit:
            raise RegistryError(code, f"the request body is over the limit of {limit} bytes", status=413)
        parts.append(chunk)
    return b"".join(parts)


def error_response(error: RegistryError) -> bottle.HTTPResponse:
    body = json.dumps(error.to_json())
    headers = {"Content-Type": "application/json; charset=utf-8", API_VERSION_HEADER[0]: API_VERSION_HEADER[1]}
    headers.update(error.headers)
    return bottle.HTTPResponse(body, status=error.status, headers=headers)


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


def request_context(request: bottle.BaseRequest, identity: Actor | None = None) -> Context:
    """The request's context. A client's own X-Request-Id is kept only where it can be written
    into a commit trailer as it is (context.is_trailer_value); otherwise the request gets a new one."""
    request_id = request.environ.get("HTTP_X_REQUEST_ID")
    if not is_trailer_value(request_id):
        request_id = new_request_id()
    address = request.environ.get("REMOTE_ADDR")
    return Context(actor=identity.name if identity else "anonymous", identity=identity,
                   client_addr=address if is_trailer_value(address) else None, request_id=request_id,
                   user_agent=request.environ.get("HTTP_USER_AGENT"))


def base_url(request: bottle.BaseRequest, public_url: str | None = None) -> str:
    if public_url:
        return public_url.rstrip("/")
    scheme, host = request.urlparts[:2]
    return f"{scheme}://{host}"
