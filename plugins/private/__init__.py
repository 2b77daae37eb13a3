"""A private registry behind a firewall: the built-in plugin `private` (`plugins: [private]`).

- Every request needs a login: anonymous callers get 401 with the usual challenge on every path
  (`/v2/`, the APIs, search), web pages send them to the UI's login page, and an anonymous token
  permits nothing; `/token` answers only
  those who bring credentials. The catalog and search then list what the caller may pull.
- Allow and deny lists of client networks, registry-wide and per class of request (pull, push,
  delete, token, api, ui: firewall.py), with trusted proxies whose X-Forwarded-For names the client;
  optionally a client-certificate header the TLS proxy sets. A refusal is 403 DENIED naming the
  rule, logged once with the address.
- Behind a trusted proxy, the client's address becomes the request's REMOTE_ADDR, so the core's
  failed-login limits, commit trailers and events see the client rather than the proxy.

settings.py reads `pluginConfig.private`; firewall.py decides; profile.py writes the registry.yaml
of `registry init DIR --profile private`. Written against docs/plugins.md only.
"""

from __future__ import annotations

import json
import logging

import bottle

from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry

from .firewall import Firewall
from .settings import SCHEMA, Settings, parse_network

PEER_KEY = "registry_core.private.peer"  # the environ's REMOTE_ADDR as it came from the server
log = logging.getLogger("registry_core.private")
@per_registry
def firewall(registry) -> Firewall:
    """The firewall of `registry`, made from its config."""
    return Firewall(Settings.from_config(registry.config.plugin_config.get("private")))


@hookimpl
def plugin_config_schema():
    return {"private": SCHEMA}


@hookimpl
def plugin_config_formats():
    return {"cidr": parse_network}


@hookimpl
def filter_request(request, registry):
    environ = request.environ
    guard = firewall(registry)
    header = guard.settings.certificate_header
    certificate = environ.get("HTTP_" + header.upper().replace("-", "_")) if header else None
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO") or "/"
    verdict = guard.judge(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), method, path,
                          certificate)
    if verdict.refused:
        via = f" via {verdict.peer}" if verdict.client is None or str(verdict.client) != verdict.peer else ""
        log.warning("private: refused %s%s: %s %s %r: %s", verdict.client or "an unknown address", via,
                    verdict.action, method, path, verdict.refused)
        return RegistryError("DENIED", verdict.refused)
    environ.setdefault(PEER_KEY, environ.get("REMOTE_ADDR"))
    environ["REMOTE_ADDR"] = str(verdict.client)
    return login_required(request, registry, verdict.action)


def login_required(request, registry, action: str) -> RegistryError | bottle.HTTPResponse | None:
    """401 to a caller without credentials. `/token` checks the credentials it is given itself
    (Basic on GET, the form on POST: every POST brings some), so only a GET without any is refused
    there; everywhere else the request's login is checked as the core's routes check it."""
    anonymous = not request.environ.get("HTTP_AUTHORIZATION")
    if action == "ui":
        # Pages log their visitors in with the web UI's own form and session cookie (browsers send
        # no Authorization header): with anonymous pulls off, the UI sends a visitor who has not
        # logged in to /login, and permission_allowed lets the anonymous see nothing.
        return None
    if action == "token":
        if anonymous and request.environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return token_refusal(registry, "this registry is private: ask for a token with your credentials "
                                 "(Basic auth); anonymous tokens are not issued")
        return None
    try:
        registry.authorize(request, None, "login")
    except RegistryError as refused:
        if anonymous and refused.code == "UNAUTHORIZED":
            return RegistryError("UNAUTHORIZED", "this registry is private: log in first", headers=refused.headers)
        return refused
    return None


def token_refusal(registry, message: str) -> bottle.HTTPResponse:
    """401 in the shape the token endpoint answers its refusals (OAuth2's, with Docker's `details`)."""
    body = {"error": "invalid_request", "error_description": message, "details": message}
    return bottle.HTTPResponse(json.dumps(body), status=401, headers={
        "Content-Type": "application/json", "Cache-Control": "no-store",
        "WWW-Authenticate": f'Basic realm="{registry.config.auth.service}"'})


@hookimpl
def permission_allowed(actor):
    """Nothing for the anonymous, nor for a token issued to nobody (whose actor is `anonymous`,
    a name no account may have)."""
    if actor is None or actor.name == "anonymous":
        return False
    return None
