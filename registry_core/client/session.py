"""The v2 client for one registry: every request of the distribution API the client makes, with
authentication, retries of idempotent requests, and the registry's JSON errors turned into
ClientErrors a person can act on.

Plain HTTP is used for loopback hosts (as docker treats 127.0.0.0/8) and with `insecure=True`;
everything else is HTTPS with certificate verification.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from registry_core import __version__ as VERSION  # noqa: N812
from registry_core.client import manifests as mf
from registry_core.client.auth import Authenticator, repository_scope
from registry_core.client.credentials import IDENTITY_TOKEN_USER, CredentialStore
from registry_core.client.errors import (AuthError, ClientError, NetworkError, NotFound,
                                         RegistryResponseError, VerificationError)
from registry_core.client.references import is_loopback

USER_AGENT = f"registry-core/{VERSION}"
RETRIES = 4
SEND_BLOCK = 1 << 20  # bytes per socket write when sending a blob (urllib3's default is 16 KiB)
TRANSIENT_STATUSES = (429, 502, 503, 504)
_NOT_FOUND_CODES = ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN")


class _BlockAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["blocksize"] = SEND_BLOCK
        super().init_poolmanager(*args, **kwargs)


class Retryable(Exception):
    """A request that failed in a way a resumable operation can recover from (dropped
    connection, a 5xx, a token that expired mid-body)."""


@dataclass
class ManifestResponse:
    body: bytes
    media_type: str
    digest: str

    @property
    def descriptor(self) -> mf.Descriptor:
        return mf.Descriptor(self.media_type, self.digest, len(self.body))


class RegistrySession:
    def __init__(self, host: str, *, insecure: bool = False, credentials: CredentialStore | None = None,
                 connections: int = 8, timeout: float = 60, api_host: str | None = None):
        self.host = host
        self.api_host = api_host or host
        self.scheme = "http" if insecure or is_loopback(self.api_host) else "https"
        self.base = f"{self.scheme}://{self.api_host}"
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        if is_loopback(self.api_host):
            self.http.trust_env = False  # a host's HTTP(S)_PROXY must not capture loopback traffic
        adapter = _BlockAdapter(pool_connections=4, pool_maxsize=max(connections, 4))
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        store = credentials or CredentialStore()
        self.auth = Authenticator(self.http, lambda: store.get(host), user_agent=USER_AGENT)
        self.requests_made = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path)

    # --- the one request function -------------------------------------------------------------

    def request(self, method: str, path: str, scopes: list[str], *, expect=(200,), headers=None,
                data=None, params=None, stream: bool = False, retry: bool | None = None,
                what: str = "") -> requests.Response:
        """Send a request, answering one authentication challenge; raise a ClientError unless the
        status is in `expect`. Idempotent requests without a streamed body are retried on dropped
        connections and 429/5xx; a request with a streamed body raises Retryable instead."""
        url = self.url(path)
        headers = dict(headers or {})
        replayable = data is None or isinstance(data, (bytes, str))
        if retry is None:
            retry = method in ("GET", "HEAD", "PUT", "DELETE") and replayable
        attempts, answered = _Attempts(method, url, retry), False
        while True:
            authorization = self.auth.authorization(scopes)
            if authorization:
                headers["Authorization"] = authorization
            else:
                headers.pop("Authorization", None)
            try:
                response = self._send(method, url, headers=headers, data=data, params=params, stream=stream,
                                      allow_redirects=True)
            except (requests.ConnectionError, requests.Timeout) as e:
                if not replayable:
                    raise Retryable(str(e)) from e
                attempts.after_network_error(e)
                continue
            if response.status_code == 401 and not answered:
                answered = True
                scopes = self.auth.learn(response.headers.get("WWW-Authenticate"), scopes, authorization)
                response.close()
                if not replayable:
                    raise Retryable("authorization required")
                continue
            if response.status_code in TRANSIENT_STATUSES:
                if not replayable:
                    response.close()
                    raise Retryable(f"HTTP {response.status_code}")
                if attempts.again_after(response):
                    continue
            if response.status_code in expect:
                return response
            raise self._error(method, url, response, what)

    def _send(self, method: str, url: str, **options) -> requests.Response:
        with self._count_lock:
            self.requests_made += 1
        return self.http.request(method, url, timeout=(10, self.timeout), **options)

    def _error(self, method: str, url: str, response: requests.Response, what: str) -> ClientError:
        codes, messages = [], []
        if method != "HEAD":
            try:
                for error in response.json().get("errors") or []:
                    codes.append(str(error.get("code", "")))
                    messages.append(str(error.get("message", "")))
            except (ValueError, AttributeError):
                pass
        response.close()
        subject = what or f"{method} {urlsplit(url).path}"
        detail = "; ".join(f"{c}: {m}" if m else c for c, m in zip(codes, messages)) or \
            f"HTTP {response.status_code} {response.reason or ''}".strip()
        code = codes[0] if codes else f"HTTP_{response.status_code}"
        status = response.status_code
        if status == 401 or status == 403 or code in ("UNAUTHORIZED", "DENIED"):
            who = repr(self.auth.credential.username) if self.auth.credential else "anonymous requests"
            return AuthError(f"{subject}: access denied for {who} ({detail})", code=code if codes else "DENIED")
        if status == 404 or code in _NOT_FOUND_CODES:
            return NotFound(f"{subject}: not found ({detail})", code=code if codes else "NOT_FOUND")
        if code in ("DIGEST_INVALID", "SIZE_INVALID"):
            return VerificationError(f"{subject}: the registry says {detail}", code=code)
        return RegistryResponseError(f"{subject}: {detail}", code=code)

    # --- version check and manifests ----------------------------------------------------------

    def ping(self) -> requests.Response:
        return self.request("GET", "/v2/", [], expect=(200,), what=f"{self.host}/v2/")

    def get_manifest(self, repository: str, reference: str) -> ManifestResponse:
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}",
                                [repository_scope(repository, "pull")], headers={"Accept": mf.ACCEPT},
                                stream=True, what=f"manifest {repository}:{reference}"
                                if ":" not in reference else f"manifest {repository}@{reference}")
        body = _read_limited(response, mf.MAX_MANIFEST_SIZE, f"manifest {repository}:{reference}")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in mf.MANIFEST_TYPES:
            media_type = mf.parse(body).media_type
        if ":" in reference:  # asked by digest: the body must be exactly that
            mf.check_digest(reference)
            actual = mf.digest_of(body, reference.split(":", 1)[0])
            if actual != reference:
                raise VerificationError(f"manifest {repository}@{reference}: the registry sent content "
                                        f"with digest {actual}", detail={"expected": reference, "actual": actual})
            return ManifestResponse(body, media_type, reference)
        digest = mf.digest_of(body)
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise VerificationError(f"manifest {repository}:{reference}: the registry says its digest is "
                                    f"{claimed} but the content's is {digest}",
                                    detail={"expected": claimed, "actual": digest})
        return ManifestResponse(body, media_type, digest)

    def head_manifest(self, repository: str, reference: str) -> mf.Descriptor | None:
        response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}",
                                [repository_scope(repository, "pull")], headers={"Accept": mf.ACCEPT},
                                expect=(200, 404), what=f"manifest {repository}:{reference}")
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            return None
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        return mf.Descriptor(media_type, digest, int(response.headers.get("Content-Length") or 0))

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}",
                                [repository_scope(repository, "pull", "push")],
                                headers={"Content-Type": media_type}, data=body, expect=(201, 200, 202),
                                what=f"pushing manifest {repository}:{reference}")
        digest = mf.digest_of(body)
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise VerificationError(f"the registry stored manifest {repository}:{reference} as {returned}, "
                                    f"not {digest}")
        return digest

    def delete_manifest(self, repository: str, reference: str) -> None:
        self.request("DELETE", f"/v2/{repository}/manifests/{reference}",
                     [repository_scope(repository, "delete")], expect=(202, 200, 204),
                     what=f"deleting {repository}@{reference}")

    # --- the Index's JSON API (/api/v1/) -------------------------------------------------------

    def api_request(self, method: str, path: str, *, document=None, params=None, expect=(200,),
                    what: str = "") -> requests.Response:
        """A request to the Index's JSON API (`/api/v1/…`), with the stored login for this host sent
        up front as Basic credentials: that API wants a user's own login, not a registry token, so
        there is no challenge to answer. Without a login the request goes anonymously. GET, PUT and
        DELETE are retried on dropped connections and 429/5xx, like `request`."""
        url = self.url(path)
        credential = self.auth.credential
        auth = None
        if credential is not None and credential.username != IDENTITY_TOKEN_USER:
            auth = (credential.username, credential.password)
        attempts = _Attempts(method, url, retry=method in ("GET", "PUT", "DELETE"))
        while True:
            try:
                response = self._send(method, url, json=document, params=params, auth=auth,
                                      headers={"Accept": "application/json"})
            except (requests.ConnectionError, requests.Timeout) as e:
                attempts.after_network_error(e)
                continue
            if response.status_code in TRANSIENT_STATUSES and attempts.again_after(response):
                continue
            if response.status_code in expect:
                return response
            if response.status_code == 401 and auth is None:
                response.close()
                raise AuthError(f"{what or f'{method} {urlsplit(url).path}'}: the registry needs a login: "
                                f"run `registry login {self.host}` first")
            raise self._error(method, url, response, what)

    # --- listings -----------------------------------------------------------------------------

    def tags(self, repository: str, page_size: int | None = None) -> list[str]:
        tags: list[str] = []
        path = f"/v2/{repository}/tags/list"
        params = {"n": page_size} if page_size else None
        while path:
            response = self.request("GET", path, [repository_scope(repository, "pull")], params=params,
                                    what=f"tags of {repository}")
            tags += response.json().get("tags") or []
            path = _next_link(response)
            params = None
        return tags

    def referrers(self, repository: str, digest: str) -> list[mf.Descriptor]:
        """Manifests whose subject is `digest`: the referrers API, else the tag schema
        (`sha256-<hex>`) that registries without the API (Distribution 2.8) hold."""
        response = self.request("GET", f"/v2/{repository}/referrers/{digest}",
                                [repository_scope(repository, "pull")], expect=(200, 404, 400, 405),
                                what=f"referrers of {repository}@{digest}")
        if response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
            return [mf.Descriptor.from_json(d) for d in response.json().get("manifests") or []]
        response.close()
        fallback = digest.replace(":", "-")
        try:
            index = self.get_manifest(repository, fallback)
        except NotFound:
            return []
        return mf.parse(index.body, index.media_type).manifests

    # --- blobs --------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                [repository_scope(repository, "pull", "push")], expect=(200, 404),
                                what=f"blob {repository}@{digest}")
        response.close()
        return response.status_code == 200

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET of the blob from byte `offset` (Range), the body not yet read."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.request("GET", f"/v2/{repository}/blobs/{digest}",
                            [repository_scope(repository, "pull")], headers=headers, expect=(200, 206),
                            stream=True, what=f"blob {repository}@{digest}")

    def mount(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link a blob it holds in `source` into `repository` (201), without
        sending it. A registry that cannot answers 202 with an upload session, which is cancelled."""
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/",
                                [repository_scope(repository, "pull", "push"), repository_scope(source, "pull")],
                                params={"mount": digest, "from": source}, headers={"Content-Length": "0"},
                                data=b"", expect=(201, 202), what=f"mounting {digest} from {source}")
        if response.status_code == 201:
            return True
        if response.headers.get("Location"):
            self.cancel_upload(repository, response.headers["Location"])
        return False

    def start_upload(self, repository: str) -> str:
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/",
                                [repository_scope(repository, "pull", "push")], data=b"",
                                headers={"Content-Length": "0"}, expect=(202,),
                                what=f"starting an upload to {repository}")
        return self._location(response)

    def upload_chunk(self, repository: str, location: str, body, start: int, length: int) -> tuple[str, int]:
        """PATCH one chunk; returns the next location and the upload's size according to the server."""
        response = self.request("PATCH", location, [repository_scope(repository, "pull", "push")],
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Range": f"{start}-{start + length - 1}",
                                         "Content-Length": str(length)},
                                data=body, expect=(202,), what=f"uploading to {repository}")
        return self._location(response, location), _range_end(response, start + length)

    def upload_status(self, repository: str, location: str) -> tuple[str, int] | None:
        """Where an interrupted upload stands: (location, bytes received), or None if it is gone."""
        try:
            response = self.request("GET", location, [repository_scope(repository, "pull", "push")],
                                    expect=(204, 200), what=f"upload status in {repository}")
        except (NotFound, RegistryResponseError):
            return None
        return self._location(response, location), _range_end(response, 0)

    def finish_upload(self, repository: str, location: str, digest: str) -> None:
        response = self.request("PUT", _with_query(location, digest=digest),
                                [repository_scope(repository, "pull", "push")], data=b"",
                                headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
                                expect=(201, 204), what=f"completing blob {digest} in {repository}")
        response.close()

    def cancel_upload(self, repository: str, location: str) -> None:
        try:
            self.request("DELETE", location, [repository_scope(repository, "pull", "push")],
                         expect=(204, 200, 202, 404), retry=False).close()
        except ClientError:
            pass

    def _location(self, response: requests.Response, previous: str | None = None) -> str:
        location = response.headers.get("Location")
        response.close()
        if not location:
            if previous:
                return previous
            raise RegistryResponseError("the registry started an upload without a Location header")
        return urljoin(response.url, location)


def _read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        response.close()
        raise ClientError(f"{what} is {length} bytes, over the {limit}-byte limit for manifests",
                          code="MANIFEST_TOO_LARGE")
    parts, size = [], 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > limit:
            response.close()
            raise ClientError(f"{what} is over the {limit}-byte limit for manifests", code="MANIFEST_TOO_LARGE")
        parts.append(chunk)
    return b"".join(parts)


def _range_end(response: requests.Response, default: int) -> int:
    """The upload's size from `Range: 0-<last>` (Distribution writes `bytes=0-<last>` on some versions)."""
    value = response.headers.get("Range", "").strip().removeprefix("bytes=")
    start, sep, end = value.partition("-")
    if sep and end.isdigit():
        return 0 if end == "0" else int(end) + 1  # "0-0" is how Distribution says "empty"
    return default


def _with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _next_link(response: requests.Response) -> str | None:
    link = response.links.get("next")
    return link["url"] if link else None


class _Attempts:
    """The retries of one request: up to RETRIES more after a dropped connection or a 429/5xx,
    waiting 0.4 s, 0.8 s, … (at most 3 s), or as long as the server's Retry-After says."""

    def __init__(self, method: str, url: str, retry: bool):
        self.method, self.url, self.retry = method, url, retry
        self.made = 0

    def after_network_error(self, error: Exception) -> None:
        """Wait before the next attempt, or raise NetworkError if there is none."""
        self.made += 1
        if not self.retry or self.made > RETRIES or _refused(error):
            raise NetworkError(f"{self.method} {self.url}: {_reason(error)}") from None
        time.sleep(min(0.2 * 2 ** self.made, 3))

    def again_after(self, response: requests.Response) -> bool:
        """After a transient status: wait and return True if another attempt follows."""
        if not self.retry or self.made >= RETRIES:
            return False
        self.made += 1
        delay = _retry_after(response) or min(0.2 * 2 ** self.made, 3)
        response.close()
        time.sleep(delay)
        return True


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 10) if value.isdigit() else None


def _refused(error: Exception) -> bool:
    """Nothing listens there (or the name does not resolve): retrying only delays the error."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _reason(error: Exception) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Connection aborted", "Failed to resolve"):
        if marker in text:
            return marker.lower()
    return text[:300]
