"""One upstream registry, as the core's pull-through asks it (see `resolve_upstream` in
docs/plugins.md): its manifests, blobs, tags and referrers over the distribution API.

Authentication is the client's (registry_core.client.auth): a 401's challenge is answered with
Basic credentials or by the Docker token flow (Bearer: a token from the realm, with the login when
there is one, kept until shortly before it expires and reused for every repository it covers).

Nothing is retried here and every wait is bounded (`timeout`): a mirror answers from its cache
at once rather than retrying an upstream in trouble. Failures are RegistryErrors with a 5xx
status the client of the mirror can act on: 504 when the upstream timed out, 502 when it could
not be reached, refused the mirror or answered an error, 503 with its Retry-After when it
answered 429. A 404 from the upstream is `None`: there is no such thing there.
"""

from __future__ import annotations

import requests
import urllib3

from registry_core.client.auth import Authenticator, repository_scope
from registry_core.client.credentials import Credential
from registry_core.client.errors import ClientError
from registry_core.errors import RegistryError
from registry_core.names import digest_of

from .settings import UpstreamSettings, is_loopback

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
MANIFEST_LIMIT = 4 << 20
BLOB_CHUNK = 1 << 20
_BROKEN = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


class Upstream:
    def __init__(self, settings: UpstreamSettings, timeout: float, visibility: str = "public"):
        self.settings = settings
        self.url = settings.url
        self.timeout = timeout
        self.visibility = visibility
        self.tag_ttl = settings.tag_ttl
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "registry-core-mirror"
        host = self.url.split("://", 1)[1].rsplit(":", 1)[0]
        if is_loopback(host):
            self.http.trust_env = False   # a host's HTTP(S)_PROXY must not capture loopback traffic
        credential = Credential(settings.username, settings.password, "pluginConfig.mirror") \
            if settings.username else None
        self.auth = Authenticator(self.http, lambda: credential, timeout=timeout,
                                  user_agent="registry-core-mirror")
        self.requests_made = 0

    def describe(self, name: str) -> str:
        return f"{self.url}/{self.settings.remote_name(name)}"

    # --- the pull-through's questions ---------------------------------------------------------

    def manifest(self, name: str, reference: str) -> tuple[bytes, str | None] | None:
        what = f"manifest {self._ref(name, reference)}"
        response = self._get(name, f"manifests/{reference}", what, headers={"Accept": MANIFEST_ACCEPT},
                             stream=True)
        if response is None:
            return None
        with response:
            body = self._read(response, what)
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
        return body, media_type

    def head_manifest(self, name: str, tag: str) -> str | None:
        what = f"manifest {self._ref(name, tag)}"
        response = self._request("HEAD", name, f"manifests/{tag}", what, headers={"Accept": MANIFEST_ACCEPT})
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        fetched = self.manifest(name, tag)   # an upstream that does not say: ask for the content
        return digest_of(fetched[0]) if fetched else None

    def blob(self, name: str, digest: str):
        what = f"blob {self._ref(name, digest)}"
        response = self._get(name, f"blobs/{digest}", what, stream=True)
        if response is None:
            return None
        length = response.headers.get("Content-Length", "")
        return BlobBody(response, int(length) if length.isdigit() else None, what, self)

    def tags(self, name: str) -> list[str] | None:
        tags, path, what = [], "tags/list", f"the tags of {self.settings.remote_name(name)} at {self.url}"
        for _ in range(100):   # pages of the upstream's own size; a loop of links ends here
            response = self._get(name, path, what)
            if response is None:
                return None if not tags else tags
            with response:
                try:
                    tags += [t for t in (response.json().get("tags") or []) if isinstance(t, str)]
                except (ValueError, AttributeError):
                    raise self._failure(what, "answered something that is not a tags list") from None
                link = response.links.get("next", {}).get("url")
            if not link:
                break
            path = "tags/list?" + link.split("?", 1)[1] if "?" in link else None
            if path is None:
                break
        return tags

    def referrers(self, name: str, digest: str) -> list[dict]:
        what = f"the referrers of {self._ref(name, digest)}"
        response = self._request("GET", name, f"referrers/{digest}", what, accept=(200, 404, 400, 405))
        if response is None or response.status_code != 200:
            return []
        with response:
            try:
                return [d for d in response.json().get("manifests") or [] if isinstance(d, dict)]
            except (ValueError, AttributeError):
                return []

    # --- HTTP ---------------------------------------------------------------------------------

    def _ref(self, name: str, reference: str) -> str:
        separator = "@" if ":" in reference else ":"
        return f"{self.settings.remote_name(name)}{separator}{reference} at {self.url}"

    def _get(self, name: str, path: str, what: str, headers=None, stream: bool = False):
        return self._request("GET", name, path, what, headers=headers, stream=stream)

    def _request(self, method: str, name: str, path: str, what: str, headers=None, stream: bool = False,
                 accept=(200,)) -> requests.Response | None:
        """The response (status in `accept`), None for a 404, or the failure raised."""
        remote = self.settings.remote_name(name)
        url = f"{self.url}/v2/{remote}/{path}"
        scopes = [repository_scope(remote, "pull")]
        headers = dict(headers or {})
        for attempt in (1, 2):
            try:
                authorization = self.auth.authorization(scopes)
            except ClientError as e:
                raise self._failure(what, f"its token service failed: {e}") from None
            if authorization:
                headers["Authorization"] = authorization
            self.requests_made += 1
            try:
                response = self.http.request(method, url, headers=headers, stream=stream, allow_redirects=True,
                                             timeout=(min(self.timeout, 10), self.timeout))
            except requests.Timeout:
                raise self._failure(what, f"did not answer within {self.timeout:g} s", status=504) from None
            except _BROKEN as e:
                raise self._failure(what, f"could not be reached ({_reason(e)})") from None
            if response.status_code == 401 and attempt == 1:
                response.close()
                try:
                    scopes = self.auth.learn(response.headers.get("WWW-Authenticate"), scopes, authorization)
                except ClientError:
                    break   # its login was refused (or none fits): answered below as the refusal it is
                continue
            break
        if response.status_code in accept:
            return response
        response.close()
        if response.status_code == 404:
            return None
        raise self._status_failure(what, response)

    def _status_failure(self, what: str, response: requests.Response) -> RegistryError:
        status = response.status_code
        if status == 429:
            retry_after = response.headers.get("Retry-After", "").strip()
            headers = {"Retry-After": retry_after} if retry_after.isdigit() and len(retry_after) < 10 else {}
            later = f"; retry after {retry_after} s" if headers else "; retry later"
            return self._failure(what, f"answered 429 Too Many Requests{later}", status=503, headers=headers,
                                 upstream_status=429)
        if status in (401, 403):
            return self._failure(what, f"refused the mirror (HTTP {status}): {self._login_hint()}",
                                 upstream_status=status)
        return self._failure(what, f"answered HTTP {status} {response.reason or ''}".rstrip(),
                             upstream_status=status)

    def _login_hint(self) -> str:
        """What the operator can check when the upstream refuses the mirror."""
        if self.settings.username:
            return (f"it did not accept the mirror's login {self.settings.username!r}, or that login may not "
                    "pull this repository: check this upstream's username and password in "
                    "pluginConfig.mirror, and that the repository exists there")
        return ("the mirror has no login for it: give this upstream a username and password in "
                "pluginConfig.mirror, or check that the repository exists there")

    @staticmethod
    def _failure(what: str, how: str, status: int = 502, headers=None,
                 upstream_status: int | None = None) -> RegistryError:
        """`upstream_status`: the HTTP status the upstream answered (none when it did not answer)."""
        detail = {"upstreamStatus": upstream_status} if upstream_status is not None else None
        return RegistryError("UNAVAILABLE", f"the upstream failed for {what}: it {how}", status=status,
                             headers=headers, detail=detail)

    def _read(self, response: requests.Response, what: str) -> bytes:
        parts, size = [], 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > MANIFEST_LIMIT:
                    raise self._failure(what, f"sent a manifest over {MANIFEST_LIMIT} bytes")
                parts.append(chunk)
        except requests.Timeout:
            raise self._failure(what, f"stopped sending for {self.timeout:g} s", status=504) from None
        except _BROKEN as e:
            raise self._failure(what, f"broke off ({_reason(e)})") from None
        return b"".join(parts)


class BlobBody:
    """A blob's bytes as the upstream sends them, with its announced `size`; a transfer that
    breaks off raises a RegistryError (the core then stores nothing and aborts its own answer)."""

    def __init__(self, response: requests.Response, size: int | None, what: str, upstream: Upstream):
        self.response, self.size, self.what, self.upstream = response, size, what, upstream

    def __iter__(self):
        try:
            yield from self.response.iter_content(BLOB_CHUNK)
        except requests.Timeout:
            raise Upstream._failure(self.what, f"stopped sending for {self.upstream.timeout:g} s",
                                    status=504) from None
        except _BROKEN as e:
            raise Upstream._failure(self.what, f"broke off mid-blob ({_reason(e)})") from None

    def close(self) -> None:
        self.response.close()


def _reason(error: Exception) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Connection aborted", "Failed to resolve", "IncompleteRead", "Connection broken"):
        if marker in text:
            return marker.lower()
    return text[:300]
