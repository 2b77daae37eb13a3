"""The web side of access: who a request's actor is, whether the `filter_request` hook turns the
request away, and the request's Context once the access decisions (registry_core/access.py)
allowed what it asks. Routes (the core's and plugins') call this; it reads the request and
asks `Access`, which reads none.
"""

from __future__ import annotations

from typing import Callable

import bottle

from registry_core.access import Access
from registry_core.context import Actor, Context, InvalidIdentity
from registry_core.errors import RegistryError
from registry_core.web import ACTOR_KEY, base_url, refusal_response, request_context


class RequestAccess:
    """Built by `web_app.build_app` (as `registry.requests`) from the registry's `Access`, the
    public URL, and the request hooks as plain calls of the request (None where no plugin
    implements them): `actor_from_request(request)` and `filter_request(request)`."""

    def __init__(self, access: Access, public_url: str | None,
                 actor_from_request: Callable[[bottle.BaseRequest], object] | None = None,
                 filter_request: Callable[[bottle.BaseRequest], object] | None = None):
        self.access = access
        self.public_url = public_url
        self._actor_from_request = actor_from_request
        self._filter_request = filter_request

    def filter_request(self, request: bottle.BaseRequest) -> None:
        """Run the `filter_request` hook; raises the response that rejects the request, if any."""
        if self._filter_request is None:
            return
        answer = self._filter_request(request)
        if isinstance(answer, RegistryError):
            raise refusal_response(answer, request)
        if isinstance(answer, bottle.HTTPResponse):
            raise answer

    def actor(self, request: bottle.BaseRequest) -> Actor | None:
        """The request's actor (None: anonymous), asked of `actor_from_request` once per request
        and kept in its environ (where the access log reads it too)."""
        environ = request.environ
        if ACTOR_KEY not in environ:
            found = None
            if self._actor_from_request is not None:
                try:
                    found = Actor.coerce(self._actor_from_request(request))
                except InvalidIdentity as e:  # a plugin's identity that may not author commits
                    raise RegistryError("UNAUTHORIZED", f"the identity of this request cannot be used: {e}") from None
            environ[ACTOR_KEY] = found
        return environ[ACTOR_KEY]

    def authorize(self, request: bottle.BaseRequest, name: str | None, action: str,
                  mount_from: str | None = None) -> Context:
        """The request's context if `action` on repository `name` is allowed; raises otherwise.
        `mount_from`: the repository a cross-repository mount reads (its challenge asks for it too)."""
        identity = self.actor(request)
        if not self.access.may(identity, name, action):
            raise self.denied(request, identity, name, action, mount_from)
        return request_context(request, identity)

    def denied(self, request: bottle.BaseRequest, actor: Actor | None, name: str | None, action: str,
               mount_from: str | None = None) -> RegistryError:
        """The refusal of `action` on `name` to `actor` (Access.denied), challenging to this request's base URL."""
        return self.access.denied(actor, name, action, base_url=base_url(request, self.public_url),
                                  mount_from=mount_from)

    def challenge(self, request: bottle.BaseRequest, scope: str | None = None, error: str | None = None) -> dict:
        """The WWW-Authenticate header that sends clients to the token service."""
        return self.access.challenge(base_url(request, self.public_url), scope, error)

    def visible_repositories(self, request: bottle.BaseRequest, names: list[str]) -> list[str]:
        """The repositories of `names` the request's actor may pull (Access.visible)."""
        if self.access.open_registry:  # not even the actor is needed
            return names
        return self.access.visible(self.actor(request), names)
