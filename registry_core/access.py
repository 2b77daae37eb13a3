"""Access decisions: may this actor do this to this repository, which repositories of a listing
may they see, and what a refusal answers (401 with a challenge, or 403).

`Access` is the one object that decides; it reads no request. The web side
(registry_core/web_access.py) finds the request's actor and base URL and asks it. Where the
answers come from: the `permission_allowed` hook (every plugin's answer; with auth on, that of
the Index's rules in index/policy.py among them), or nothing at all on an open registry (auth off
and no other plugin with an opinion: everything is allowed without a hook call).
"""

from __future__ import annotations

from typing import Callable

from registry_core.context import Actor
from registry_core.errors import RegistryError
from registry_core.names import is_valid_name

TOKEN_ACTOR = "jwt"  # Actor.kind of a bearer token the Index signed (index/auth.py)


class Access:
    """Built by `registry_core.app.Registry` from plain values and callables:

    - `permission_allowed(actor=, action=, repository=)`: the hook's answers, a list;
    - `open_registry`: no plugin but the open policy answers, so everything is allowed;
    - `auth_enabled`, `realm` (None: `<base URL>/token`) and `service`: what a challenge says;
    - `token_user(subject)`: the Actor of a bearer token's user, whose access a listing shows
      (the token itself grants only its scopes); None where there is no token service;
    - `keeps_accounts`: whether this node keeps the accounts it judges token users by.

    `visible_to_account`, set by a plugin at startup where this node keeps no accounts:
    (subject, names) -> the names that token user may pull, asked of the Index
    (plugins/reporting)."""

    def __init__(self, permission_allowed: Callable[..., list], *, open_registry: bool = False,
                 auth_enabled: bool = False, realm: str | None = None, service: str = "registry",
                 token_user: Callable[[str], Actor | None] | None = None, keeps_accounts: bool = False):
        self._permission_allowed = permission_allowed
        self.open_registry = open_registry
        self.auth_enabled = auth_enabled
        self.realm = realm
        self.service = service
        self._token_user = token_user
        self._keeps_accounts = keeps_accounts
        self.visible_to_account: Callable[[str, list[str]], list[str]] | None = None

    def may(self, actor: Actor | None, name: str | None, action: str) -> bool:
        """Whether `actor` (None: anonymous) may do `action` on repository `name` (None: on the
        registry: `catalog`, `login`, `admin`, `signup`): some plugin says yes and none says no."""
        if self.open_registry:
            return True
        answers = self._permission_allowed(actor=actor, action=action, repository=name)
        return False not in answers and True in answers

    def visible(self, actor: Actor | None, names: list[str]) -> list[str]:
        """The repositories of `names` that `actor` may pull. A bearer token is judged by its
        user's access, not its scopes: a token for one repository still lists the others its
        user may see."""
        if self.open_registry:
            return names
        if actor is not None and actor.kind == TOKEN_ACTOR:
            subject = actor.extra["claims"].get("sub") or ""
            if not self._keeps_accounts and self.visible_to_account is not None:
                return self.visible_to_account(subject, names)
            actor = self._token_user(subject) if subject else None
        return [name for name in names if self.may(actor, name, "pull")]

    def denied(self, actor: Actor | None, name: str | None, action: str, *, base_url: str,
               mount_from: str | None = None) -> RegistryError:
        """401 with a challenge to the unauthenticated and to token holders (whose token lacks the
        scope); 403 to users who authenticated directly. The same answer whether or not `name`
        exists, so a private repository cannot be told from a missing one. A mount's challenge
        also asks for pull on the repository it reads (`mount_from`), as Distribution's does: a
        client that asks the token service for exactly the challenge's scopes then gets a token
        the mount can use. `base_url`: this registry's, for the token service's realm."""
        message = denial_message(actor.name if actor else None, name, action)
        if actor is None or actor.kind == TOKEN_ACTOR:
            if not self.auth_enabled:
                return RegistryError("UNAUTHORIZED", message, headers={"WWW-Authenticate": 'Basic realm="registry"'})
            scope = challenge_scope(name, action, mount_from)
            error = "insufficient_scope" if actor is not None else None
            return RegistryError("UNAUTHORIZED", message, headers=self.challenge(base_url, scope, error))
        return RegistryError("DENIED", message)

    def challenge(self, base_url: str, scope: str | None = None, error: str | None = None) -> dict:
        """The WWW-Authenticate header that sends clients to the token service."""
        realm = self.realm or base_url + "/token"
        parts = [f'realm="{realm}"', f'service="{self.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return {"WWW-Authenticate": "Bearer " + ",".join(parts)}


def challenge_scope(name: str | None, action: str, mount_from: str | None = None) -> str | None:
    """The scope a challenge names: space-separated scopes, as the token spec writes several.
    `mount_from` is added (pull) only when it is a valid repository name: it comes from the query
    and goes into a header."""
    if name is None:
        return "registry:catalog:*" if action == "catalog" else None
    actions = {"pull": "pull", "push": "pull,push", "delete": "delete"}.get(action, "pull")
    scope = f"repository:{name}:{actions}"
    if mount_from and mount_from != name and is_valid_name(mount_from):
        scope += f" repository:{mount_from}:pull"
    return scope


def denial_message(user: str | None, name: str | None, action: str) -> str:
    """What a refused request is told: who may not do what, and what to do about it."""
    if action == "login":  # the API's base (/v2/) and the Index's own API
        return ("authentication required: log in first (docker login, registry login)" if user is None
                else f"{user} may not use this registry")
    target = f" on {name}" if name else ""
    return f"{user or 'anonymous'} may not {action}{target}" + ("" if user else ": log in first")
