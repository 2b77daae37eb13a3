"""The OCI Distribution API (/v2/) routes: parse the request, call a service, shape the response.

Every route is named after the spec's endpoint table (end-1 … end-13 of distribution-spec v1.1).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import bottle

from registry_core import socket_bodies
from registry_core.errors import RegistryError
from registry_core.events import event
from registry_core.names import check_digest, check_name
from registry_core.registry.repositories import paginate
from registry_core.registry.uploads import parse_content_range, range_header
from registry_core.web import (RegistryErrors, base_url, body_chunks, content_length, has_body,
                               json_response, read_body, whole_number)

BLOB_CONTENT_TYPE = "application/octet-stream"
# At most 19 digits: int64 offsets, and never a number Python refuses to convert (over 4,300 digits).
_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


def build_registry_app(registry) -> bottle.Bottle:
    """The /v2/ API over a `registry_core.app.Registry` (its services, access policy and config)."""
    app = bottle.Bottle()
    app.install(RegistryErrors())
    api = Api(registry)

    route = app.route
    route("/v2/", "GET", api.version_check, name="base")
    route("/v2", "GET", api.version_check)
    route("/v2/_catalog", "GET", api.catalog, name="catalog")
    route("/v2/<name:path>/tags/list", "GET", api.tags_list, name="tags")
    route("/v2/<name:path>/manifests/<reference>", ["GET", "HEAD"], api.get_manifest, name="manifest")
    route("/v2/<name:path>/manifests/<reference>", "PUT", api.put_manifest)
    route("/v2/<name:path>/manifests/<reference>", "DELETE", api.delete_manifest)
    route("/v2/<name:path>/blobs/uploads/", "POST", api.start_upload, name="uploads")
    route("/v2/<name:path>/blobs/uploads", "POST", api.start_upload)
    route("/v2/<name:path>/blobs/uploads/<upload_id>", "GET", api.upload_status, name="upload")
    route("/v2/<name:path>/blobs/uploads/<upload_id>", "PATCH", api.upload_chunk)
    route("/v2/<name:path>/blobs/uploads/<upload_id>", "PUT", api.finish_upload)
    route("/v2/<name:path>/blobs/uploads/<upload_id>", "DELETE", api.cancel_upload)
    route("/v2/<name:path>/blobs/<digest>", ["GET", "HEAD"], api.get_blob, name="blob")
    route("/v2/<name:path>/blobs/<digest>", "DELETE", api.delete_blob)
    route("/v2/<name:path>/referrers/<digest>", "GET", api.referrers, name="referrers")

    return app


class Api:
    def __init__(self, registry):
        self.registry = registry
        self.manifests = registry.manifests
        self.blobs = registry.blobs
        self.uploads = registry.uploads
        self.repositories = registry.repositories
        self.referrer_service = registry.referrers

    def _context(self, name: str | None, action: str):
        """Who is asking, after the access policy allowed `action` on repository `name`."""
        return self.registry.requests.authorize(bottle.request, name, action)

    def _url(self, path: str) -> str:
        return base_url(bottle.request, self.registry.config.public_url) + path

    # end-1
    def version_check(self):
        self._context(None, "login")
        return json_response({})

    # --- manifests (end-3, end-7, end-9) ------------------------------------------------------

    def get_manifest(self, name: str, reference: str):
        check_name(name)
        context = self._context(name, "pull")
        document = self.registry.pull_through.resolve_manifest(name, reference, context)
        headers = self.registry.before_pull(context, name, document, reference, bottle.request.method)
        headers.update({"Content-Type": document["mediaType"], "Docker-Content-Digest": document["digest"],
                        "Content-Length": str(document["size"]), "ETag": f'"{document["digest"]}"'})
        if bottle.request.method == "HEAD":
            return bottle.HTTPResponse(b"", 200, headers)
        body = self.manifests.content(document["digest"])
        self.registry.pulled(context, name, document, reference)
        return bottle.HTTPResponse(body, 200, headers)

    def put_manifest(self, name: str, reference: str):
        check_name(name)
        context = self._context(name, "push")
        body = read_body(bottle.request.environ, self.registry.config.manifest_limit)
        digest, parsed = self.manifests.put(name, reference, body, bottle.request.content_type, context)
        headers = {"Location": self._url(f"/v2/{name}/manifests/{digest}"), "Docker-Content-Digest": digest,
                   "Content-Length": "0"}
        if parsed.subject is not None:
            headers["OCI-Subject"] = parsed.subject["digest"]
        return bottle.HTTPResponse(b"", 201, headers)

    def delete_manifest(self, name: str, reference: str):
        check_name(name)
        context = self._context(name, "delete")
        self.manifests.delete(name, reference, context)
        return bottle.HTTPResponse(b"", 202, {"Content-Length": "0"})

    # --- blobs (end-2, end-10) ----------------------------------------------------------------

    def get_blob(self, name: str, digest: str):
        check_name(name)
        check_digest(digest)
        context = self._context(name, "pull")
        requested = bottle.request.environ.get("HTTP_RANGE")
        whole = bottle.request.method == "GET" and not requested
        redirect = self.blobs.redirect_url(digest) if whole else None
        # A whole GET served from here opens the blob at once: the read tells its size, so the
        # store is asked for the link and the bytes only (no HEAD of the blob for its size).
        opens = whole and redirect is None
        try:
            stream, size = self.blobs.open(name, digest) if opens else (None, self.blobs.size(name, digest))
        except RegistryError:
            pull_through = self.registry.pull_through
            if whole:
                streamed = pull_through.stream_blob(name, digest, context)
                if streamed is not None:  # sent while it is stored: see registry/pullthrough.py
                    return bottle.HTTPResponse(streamed, 200, {
                        "Docker-Content-Digest": digest, "Content-Type": BLOB_CONTENT_TYPE,
                        "Content-Length": str(streamed.size), "ETag": f'"{digest}"'})
            elif not pull_through.blob(name, digest, context):
                raise
            stream, size = self.blobs.open(name, digest) if opens else (None, self.blobs.size(name, digest))
        headers = {"Docker-Content-Digest": digest, "Content-Type": BLOB_CONTENT_TYPE,
                   "Accept-Ranges": "bytes", "ETag": f'"{digest}"',
                   "Cache-Control": "max-age=31536000"}
        start, end, status = 0, size - 1, 200
        if requested:
            start, end = parse_range(requested, size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        headers["Content-Length"] = str(length)
        if bottle.request.method == "HEAD":
            return bottle.HTTPResponse(b"", status, headers)
        if redirect is not None:  # the storage serves it (S3 `redirect: true`): a presigned URL
            self.registry.blob_pulled(context, name, digest, size)
            return bottle.HTTPResponse(b"", 307, {"Location": redirect, "Docker-Content-Digest": digest,
                                                  "Content-Length": "0"})
        if stream is None:  # a range: read from its start (`size` above checked the repository's link)
            stream = self.blobs.reader(digest, start)
        try:
            self.registry.blob_pulled(context, name, digest, size)
        except BaseException:
            stream.close()
            raise
        return bottle.HTTPResponse(limited(stream, length, bottle.request.environ), status, headers)

    def delete_blob(self, name: str, digest: str):
        check_name(name)
        check_digest(digest)
        context = self._context(name, "delete")
        self.registry.blob_links.delete(context, name, digest)
        return bottle.HTTPResponse(b"", 202, {"Content-Length": "0"})

    # --- uploads (end-4a/4b, end-5, end-6, end-11, end-13) ------------------------------------

    def start_upload(self, name: str):
        check_name(name)
        query = bottle.request.query
        mount_from = query.get("from") if query.get("mount") else None
        context = self.registry.requests.authorize(bottle.request, name, "push", mount_from)
        self.registry.check(event("push", context, repository=name))
        if query.get("mount"):
            digest = check_digest(query.get("mount"))
            source = query.get("from")
            if self.registry.blob_links.mount(context, name, digest, source):
                return self._blob_created(name, digest)
        if query.get("digest"):
            digest = check_digest(query.get("digest"))
            upload_id = self.uploads.start(name)
            try:
                size = self.uploads.finish(name, upload_id, digest, body_chunks(bottle.request.environ))
            except BaseException:
                self.uploads.cancel_quietly(upload_id)
                raise
            self.registry.blob_pushed(context, name, digest, size)
            return self._blob_created(name, digest)
        upload_id = self.uploads.start(name)
        size = 0
        if has_body(bottle.request.environ):  # POST with a body but no digest: keep the bytes
            size = self.uploads.append(name, upload_id, body_chunks(bottle.request.environ))
        return self._upload_response(name, upload_id, 202, size)

    def upload_status(self, name: str, upload_id: str):
        check_name(name)
        self._context(name, "push")
        return self._upload_response(name, upload_id, 204, self.uploads.offset(name, upload_id))

    def upload_chunk(self, name: str, upload_id: str):
        check_name(name)
        self._context(name, "push")
        environ = bottle.request.environ
        start = None
        content_range = environ.get("HTTP_CONTENT_RANGE")
        if content_range:
            start, end = parse_content_range(content_range)
            length = content_length(environ.get("CONTENT_LENGTH"))
            if length is not None and length != end - start + 1:
                raise RegistryError("RANGE_INVALID", f"Content-Range {content_range} covers {end - start + 1} "
                                    f"bytes but Content-Length is {length}")
        size = self.uploads.append(name, upload_id, body_chunks(environ), start=start)
        return self._upload_response(name, upload_id, 202, size)

    def finish_upload(self, name: str, upload_id: str):
        check_name(name)
        context = self._context(name, "push")
        digest = bottle.request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "closing an upload needs ?digest=<digest of the whole blob>")
        check_digest(digest)
        environ = bottle.request.environ
        chunks = body_chunks(environ) if has_body(environ) else None
        # A last chunk sent with the PUT must start where the upload ends, like a PATCH (416 if not).
        start = None
        if chunks is not None and environ.get("HTTP_CONTENT_RANGE"):
            start, _ = parse_content_range(environ["HTTP_CONTENT_RANGE"])
        size = self.uploads.finish(name, upload_id, digest, chunks, start=start)
        self.registry.blob_pushed(context, name, digest, size)
        return self._blob_created(name, digest)

    def cancel_upload(self, name: str, upload_id: str):
        check_name(name)
        self._context(name, "push")
        self.uploads.cancel(name, upload_id)
        return bottle.HTTPResponse(b"", 204)

    def _upload_response(self, name: str, upload_id: str, status: int, size: int):
        """The answer about an upload session that holds `size` bytes (its Range)."""
        return bottle.HTTPResponse(b"", status, {
            "Location": self._url(f"/v2/{name}/blobs/uploads/{upload_id}"),
            "Range": range_header(size), "Docker-Upload-UUID": upload_id, "Content-Length": "0",
            "OCI-Chunk-Min-Length": "0"})

    def _blob_created(self, name: str, digest: str):
        return bottle.HTTPResponse(b"", 201, {"Location": self._url(f"/v2/{name}/blobs/{digest}"),
                                              "Docker-Content-Digest": digest, "Content-Length": "0"})

    # --- listings (end-8, end-12, catalog) ----------------------------------------------------

    def tags_list(self, name: str):
        check_name(name)
        self._context(name, "pull")
        n, last = page_query()
        mirrored = self.registry.pull_through.tags(name)  # None: not a mirror's repository
        tags, more = self.repositories.tags(name, n, last) if mirrored is None else paginate(mirrored, n, last)
        headers = {}
        if more and tags:
            headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
        return json_response({"name": name, "tags": tags}, headers=headers)

    def catalog(self):
        self._context(None, "catalog")
        n, last = page_query()
        names, more = self.repositories.catalog(
            n, last, lambda page: self.registry.requests.visible_repositories(bottle.request, page))
        headers = {}
        if more and names:
            headers["Link"] = next_link("/v2/_catalog", n, names[-1])
        return json_response({"repositories": names}, headers=headers)

    def referrers(self, name: str, digest: str):
        check_name(name)
        self._context(name, "pull")
        artifact_type = bottle.request.query.get("artifactType")
        index = self.referrer_service.referrers(name, digest, artifact_type)
        index["manifests"] = [d for d in self.registry.pull_through.referrers(name, digest, index["manifests"])
                              if artifact_type is None or d.get("artifactType") == artifact_type]
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        return json_response(index, content_type=index["mediaType"], headers=headers)


def page_query() -> tuple[int | None, str | None]:
    """`n` (None when not given) and `last` of a paginated listing."""
    query = bottle.request.query
    return whole_number(query.get("n"), "n"), query.get("last") or None


def next_link(path: str, n: int | None, last: str) -> str:
    query = {"last": last}
    if n is not None:
        query["n"] = n
    return f'<{quote(path)}?{urlencode(query)}>; rel="next"'


def parse_range(header: str, size: int) -> tuple[int, int]:
    """One `bytes=start-end` range (RFC 9110), clamped to the blob; 416 when unsatisfiable."""
    match = _RANGE_RE.fullmatch(header.strip())
    unsatisfiable = RegistryError("RANGE_INVALID", f"cannot serve range {header!r} of a {size}-byte blob: "
                                  "ask for one range bytes=<start>-<end> within the blob",
                                  headers={"Content-Range": f"bytes */{size}"})
    if not match or match.groups() == ("", ""):
        raise unsatisfiable
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise unsatisfiable
    return start, end


def limited(stream, length: int, environ: dict):
    """The response body: the open file itself when the server can sendfile it (gunicorn stops at
    Content-Length); a RelayedBody when the server can relay the stream's socket to the
    client's through one buffer (an S3 object over plain HTTP: registry_core/socket_bodies.py);
    otherwise a generator that reads exactly `length` bytes.

    The file is returned bare: bottle wraps a file-like body in `wsgi.file_wrapper` itself, and
    gunicorn sends only a `wsgi.file_wrapper` instance with sendfile. An already wrapped file is
    not file-like to bottle (no `read`), so bottle would iterate it into a plain generator and
    gunicorn would copy the blob through user space in 1 MiB reads."""
    if "gunicorn" in environ.get("SERVER_SOFTWARE", "") and "wsgi.file_wrapper" in environ:
        if _is_file(stream):
            return stream
        if socket_bodies.can_relay(environ, stream):
            return socket_bodies.RelayedBody(stream, length)

    def read():
        remaining = length
        try:
            while remaining > 0:
                chunk = stream.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            stream.close()
    return read()


def _is_file(stream) -> bool:
    """Whether `stream` is an open file of the operating system (what sendfile needs); a stream
    from S3 is not, and is read through `limited`'s generator, which stops at the range's end."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
