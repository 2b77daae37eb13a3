"""The web layer's shared pieces: reading request bodies as streams, and errors as spec JSON.

Bodies are read from `wsgi.input` in chunks, to Content-Length or, for chunked transfer-encoding,
until the server signals the end: bottle's `request.body` would answer 400 for chunked bodies and
spool large ones to a temporary file.
"""

from __future__ import annotations

import json
import uuid
from typing import Iterator

import bottle

from registry_core.context import Context
from registry_core.errors import RegistryError

CHUNK = 1 << 20
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
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                raise RegistryError(code, f"the request body ended after {total - remaining} of the "
                                    f"{total} bytes announced by Content-Length; resend the rest")
            remaining -= len(chunk)
            yield chunk
    elif chunked:
        while chunk := stream.read(CHUNK):
            yield chunk


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
    """Bottle plugin for /v2/ routes: a RegistryError raised by a route becomes the spec's JSON
    error response, and every response carries the API version header."""

    name = "registry_errors"
    api = 2

    def apply(self, callback, route):
        def wrapper(*args, **kwargs):
            try:
                result = callback(*args, **kwargs)
            except RegistryError as error:
                return error_response(error)
            if isinstance(result, bottle.HTTPResponse):
                result.set_header(*API_VERSION_HEADER)
            return result
        return wrapper


def request_context(request: bottle.BaseRequest, actor: str = "anonymous") -> Context:
    request_id = request.environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
    return Context(actor=actor, client_addr=request.environ.get("REMOTE_ADDR"), request_id=request_id,
                   user_agent=request.environ.get("HTTP_USER_AGENT"))


def base_url(request: bottle.BaseRequest, public_url: str | None = None) -> str:
    if public_url:
        return public_url.rstrip("/")
    scheme, host = request.urlparts[:2]
    return f"{scheme}://{host}"
