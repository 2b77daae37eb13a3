"""Authentication and the default access policy, as a plugin (registered when `auth.enabled`).

Who is acting: a Bearer token the Index signed (the Docker token flow), or Basic credentials
(password, personal access token, robot token) checked directly. What they may do: for a token,
exactly what it grants; otherwise the AccessPolicy (registry_core/index/policy.py).
"""

from __future__ import annotations

import base64
import binascii

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.index.tokens import InvalidToken, token_allows

TOKEN_ACTOR = "jwt"


def unauthorized(registry, request, message: str, error: str | None = None) -> RegistryError:
    return RegistryError("UNAUTHORIZED", message, headers=registry.challenge(request, error=error))


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


def _token_actor(request, registry, token: str) -> Actor:
    try:
        claims = registry.token_verifier.verify(token)
    except InvalidToken as e:
        raise unauthorized(registry, request, f"the bearer token is not valid ({e}): log in again",
                           error="invalid_token") from None
    subject = claims.get("sub") or ""
    if subject and registry.accounts is not None and registry.accounts.actor_for(subject) is None:
        raise unauthorized(registry, request, f"the account {subject} is disabled or gone", error="invalid_token")
    return Actor(name=subject or "anonymous", kind=TOKEN_ACTOR, extra={"claims": claims})


def _basic_actor(request, registry, credentials: str) -> Actor:
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized(registry, request, "malformed Basic credentials") from None
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
    if actor is not None and actor.kind == TOKEN_ACTOR:
        return token_permits(actor, action, repository)
    return registry.policy.permission(actor, action, repository)
