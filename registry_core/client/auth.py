"""Answering a registry's authentication challenges: Basic, and Bearer per the Docker token
authentication specification (the one docker, podman and Distribution implement).

A registry that wants credentials answers 401 with `WWW-Authenticate: Basic realm=…` or
`Bearer realm="https://auth/token",service="…",scope="repository:name:pull"`. For Bearer the client
asks the realm for a token (`GET realm?service=…&scope=…&account=…`, with Basic credentials when it
has a login, anonymously when it has none) and sends `Authorization: Bearer <token>`. A login kept
as an identity token is exchanged by the OAuth2 form (`POST realm`, grant_type=refresh_token).

Tokens are cached per set of scopes until shortly before they expire; a cached token whose scopes
cover a request (push covers pull) is reused, so one push asks the token service once or twice,
not once per blob. Once a registry has shown its challenge, later requests carry the
authorization up front instead of collecting a 401 first.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

from registry_core.client.credentials import IDENTITY_TOKEN_USER, Credential
from registry_core.client.errors import AuthError, NetworkError

EXPIRY_MARGIN = 10  # seconds: renew a token this long before it runs out
DEFAULT_EXPIRY = 60  # the spec's default (and minimum) token lifetime

_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


@dataclass
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> list[str]:
        return self.params.get("scope", "").split()


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (RFC 9110 §11.6.1): one or more `scheme param=value, …`."""
    challenges: list[Challenge] = []
    position = 0
    while position < len(header):
        scheme = _SCHEME_RE.match(header, position)
        if not scheme or header[scheme.end():scheme.end() + 1] == "=":
            break
        challenge = Challenge(scheme.group(1).lower())
        position = scheme.end()
        while True:
            param = _PARAM_RE.match(header, position)
            if not param or not param.group(1):
                break
            if param.end() == position:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            challenge.params[param.group(1).lower()] = value
            position = param.end()
        challenges.append(challenge)
        if position >= len(header) or not challenge.params:
            break
    return challenges


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def _scope_map(scopes) -> dict[tuple[str, str], set[str]]:
    """`repository:a/b:pull,push` → {("repository", "a/b"): {"pull", "push"}} (names may hold ':')."""
    result: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        result.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    return result


def merge_scopes(*groups) -> list[str]:
    merged = _scope_map([s for group in groups for s in group])
    return sorted(f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in merged.items())


def _covers(granted: dict, wanted: dict) -> bool:
    return all(actions <= granted.get(key, set()) for key, actions in wanted.items())


@dataclass
class Token:
    value: str
    scopes: dict
    expires_at: float

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - EXPIRY_MARGIN


class Authenticator:
    """The authorization for one registry host, shared by every thread talking to it."""

    def __init__(self, http: requests.Session, credential: Callable[[], Credential | None],
                 timeout: float = 30, user_agent: str = "registry-core"):
        self.http = http
        self._credential = credential
        self._credential_loaded = False
        self._cached_credential: Credential | None = None
        self.timeout = timeout
        self.user_agent = user_agent
        self.challenge: Challenge | None = None
        self.tokens: list[Token] = []
        self.token_requests = 0
        self._lock = threading.Lock()
        self._credential_lock = threading.Lock()

    @property
    def credential(self) -> Credential | None:
        """The login for this host, looked up once (a credential helper is a process to run)."""
        with self._credential_lock:
            if not self._credential_loaded:
                self._cached_credential = self._credential()
                self._credential_loaded = True
        return self._cached_credential

    def authorization(self, scopes: list[str]) -> str | None:
        """The Authorization header for a request needing `scopes`, once a challenge is known."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return _basic(self.credential) if self.credential else None
        if challenge.scheme == "bearer":
            token = self.token(scopes)
            return f"Bearer {token}" if token else None
        return None

    def learn(self, header: str | None, scopes: list[str], rejected: str | None) -> list[str]:
        """Take in a 401's challenge; returns the scopes to retry with. Raises AuthError when
        retrying cannot help (a rejected login, a scheme we do not speak)."""
        challenges = parse_challenges(header or "")
        known = [c for c in challenges if c.scheme in ("bearer", "basic")]
        if not known:
            raise AuthError(f"the registry refused the request and offered no usable authentication "
                            f"(WWW-Authenticate: {header or 'none'})")
        challenge = next((c for c in known if c.scheme == "bearer"), known[0])
        if challenge.scheme == "basic":
            if not self.credential:
                raise AuthError("the registry needs a login: run `registry login HOST` first")
            if rejected and rejected.startswith("Basic"):
                raise AuthError(f"the registry rejected the login of {self.credential.username!r} "
                                f"(from {self.credential.source or 'the auth file'}): run `registry login` again")
        wanted = merge_scopes(scopes, challenge.scopes)
        if challenge.scheme == "bearer" and rejected and rejected.startswith("Bearer"):
            needed = _scope_map(wanted)
            with self._lock:  # that token was not enough: forget the tokens that claim these scopes
                self.tokens = [t for t in self.tokens if not _covers(t.scopes, needed)]
            if challenge.params.get("error") == "insufficient_scope" and _covers(_scope_map(scopes), needed):
                # The token service already left out what we asked for: retrying cannot help.
                # (An expired or revoked token, `invalid_token`, is renewed by the retry instead.)
                who = repr(self.credential.username) if self.credential else "anonymous requests"
                hint = "" if self.credential else " (run `registry login HOST` first)"
                raise AuthError(f"access denied for {who} to {' '.join(wanted) or 'this registry'}{hint}",
                                code="DENIED")
        self.challenge = challenge
        return wanted

    def token(self, scopes: list[str]) -> str | None:
        wanted = _scope_map(scopes)
        with self._lock:
            for cached in self.tokens:
                if cached.fresh and _covers(cached.scopes, wanted):
                    return cached.value
            token = self._fetch(scopes)
            self.tokens = [t for t in self.tokens if t.fresh] + [token]
            return token.value

    def _fetch(self, scopes: list[str]) -> Token:
        challenge = self.challenge
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError("the registry's Bearer challenge names no realm (token service)")
        service = challenge.params.get("service")
        credential = self.credential
        self.token_requests += 1
        headers = {"User-Agent": self.user_agent}
        try:
            if credential and credential.username == IDENTITY_TOKEN_USER:
                form = {"grant_type": "refresh_token", "refresh_token": credential.password,
                        "client_id": "registry-core", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                response = self.http.post(realm, data=form, headers=headers, timeout=self.timeout)
            else:
                params = [("scope", s) for s in scopes]
                if service:
                    params.insert(0, ("service", service))
                if credential:
                    params.append(("account", credential.username))
                    headers["Authorization"] = _basic(credential)
                response = self.http.get(realm, params=params, headers=headers, timeout=self.timeout)
        except requests.RequestException as e:
            raise NetworkError(f"cannot reach the token service {realm}: {e}") from None
        if response.status_code in (401, 403):
            who = f"the login of {credential.username!r}" if credential else "an anonymous request"
            raise AuthError(f"the token service {realm} refused {who} (HTTP {response.status_code})"
                            + ("" if credential else ": run `registry login HOST` first"))
        if response.status_code != 200:
            raise AuthError(f"the token service {realm} answered HTTP {response.status_code}: "
                            f"{response.text[:200]}", code="TOKEN_ERROR")
        try:
            answer = response.json()
            value = answer.get("token") or answer.get("access_token")
        except ValueError:
            value = None
        if not value:
            raise AuthError(f"the token service {realm} answered without a token", code="TOKEN_ERROR")
        try:
            lifetime = max(int(answer.get("expires_in") or DEFAULT_EXPIRY), DEFAULT_EXPIRY)
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRY
        return Token(value, _scope_map(scopes), time.monotonic() + lifetime)


def _basic(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
