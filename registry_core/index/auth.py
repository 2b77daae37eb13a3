"""Authentication and the default access policy, as a plugin (registered when `auth.enabled`).

Who is acting: a Bearer token the Index signed (the Docker token flow), or Basic credentials
(password, personal access token, robot token) checked directly. What they may do: for a token,
exactly what it grants; otherwise the AccessPolicy (registry_core/index/policy.py).
"""

from __future__ import annotations

import base64

from registry_core.access import TOKEN_ACTOR
from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.index.tokens import InvalidToken, token_allows
from registry_core.names import is_account_name


def unauthorized(registry, request, message: str, error: str | None = None) -> RegistryError:
    return RegistryError("UNAUTHORIZED", message, headers=registry.requests.challenge(request, error=error))


@hookimpl
def actor_from_request(request, registry):
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return _token_actor(request, registry, credentials.strip())
    if scheme == "basic":
        return _basic_actor(request, registry, credentials.strip())
    return None


class TokenActors:
    """The actor of each Bearer token seen lately, kept until the token expires or the next commit
    (which may have disabled its account). A request with a known token then costs a stat of the
    branch and a dictionary lookup instead of the verifier's cache, the account's document and a
    new Actor: authorizing was 10 % of a manifest GET's CPU with a token, against 1.3 % on an
    open registry (bench/profiles/notes.md). The actors are shared: never change one."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._known: dict[str, tuple[object, float, Actor]] = {}  # token -> (tip, expires, actor)

    def get(self, token: str, tip, now: float) -> Actor | None:
        known = self._known.get(token)
        if known is None or known[0] != tip or now > known[1]:
            return None
        return known[2]

    def put(self, token: str, tip, expires: float, actor: Actor) -> None:
        if len(self._known) >= self.limit:
            self._known.clear()
        self._known[token] = (tip, expires, actor)


def _token_actor(request, registry, token: str) -> Actor:
    verifier = registry.token_verifier
    tip, now = registry.meta.snapshot().tip, verifier.clock()
    actor = registry.token_actors.get(token, tip, now)
    if actor is not None:
        return actor
    try:
        claims = verifier.verify(token)
    except InvalidToken as e:
        raise unauthorized(registry, request, f"the bearer token is not valid ({e}): log in again",
                           error="invalid_token") from None
    subject = claims.get("sub") or ""
    if subject and not is_account_name(subject):
        raise unauthorized(registry, request, f"the bearer token's subject {subject!r} is not an account name",
                           error="invalid_token")
    if subject and registry.accounts is not None and registry.accounts.actor_for(subject) is None:
        raise unauthorized(registry, request, f"the account {subject} is disabled or gone", error="invalid_token")
    actor = Actor(name=subject or "anonymous", kind=TOKEN_ACTOR, extra={"claims": claims})
    registry.token_actors.put(token, tip, claims["exp"] + verifier.leeway, actor)
    return actor


def _basic_actor(request, registry, credentials: str) -> Actor:
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 (UnicodeDecodeError)
        raise unauthorized(registry, request, "malformed Basic credentials: send the base64 of "
                           "<username>:<password>") from None
    if registry.accounts is None:
        raise unauthorized(registry, request, "this registry node accepts only bearer tokens from its Index")
    actor = registry.accounts.authenticate(user, password, request.environ.get("REMOTE_ADDR"))
    if actor is None:
        raise unauthorized(registry, request, "wrong username or password, or a disabled account, "
                           "or an expired or revoked token")
    return actor


def token_permits(actor: Actor, action: str, repository: str | None) -> bool:
    """What a bearer token permits is exactly what it grants (the Docker token model)."""
    claims = actor.extra["claims"]
    if repository is not None:
        return token_allows(claims, "repository", repository, action)
    if action == "catalog":
        return token_allows(claims, "registry", "catalog", "*")
    return action == "login"


@hookimpl
def permission_allowed(actor, action, repository, registry):
    """A token's answer is exact (True or False). The policy's grants True and otherwise has no
    opinion (None), never False: with nothing else said the request is still denied, a plugin's
    False still denies, and a plugin's True can grant more than the policy does (the vendor
    plugin's public namespaces, the sponsor plugin's `signup`)."""
    if actor is not None and actor.kind == TOKEN_ACTOR:
        return token_permits(actor, action, repository)
    return True if registry.policy.permission(actor, action, repository) else None
