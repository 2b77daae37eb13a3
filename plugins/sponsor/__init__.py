"""A sponsor's community registry: the built-in plugin `sponsor` (`plugins: [sponsor]`), for a
third party that hosts images for its customers and the community.

- Self sign-up (`signup: open`, the default): `POST /api/v1/users` without credentials makes an
  account (`{"name", "password", "email"?}`), whose user owns the namespace of their name like
  every user; at most `signupLimit` (default 10 an hour) per client address. `closed`: only
  admins add users. The web UI's `/signup` page asks the same decision and shares the limit.
- Anonymous pulls, limited per client as Docker Hub limits them: manifest GETs (a HEAD is not
  counted) per client address for the anonymous (`pullLimit`, default 100/6h; an IPv6 client
  counts by its /64) and per user for the logged-in (`userPullLimit`, default twice as many).
  Manifest answers carry `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining: 99;w=21600`
  (HEAD too, without counting: how a client checks what is left) and `Docker-RateLimit-Source`;
  past the limit a GET gets 429 TOOMANYREQUESTS with Retry-After (seconds to the window's end).
  The counters (limits.py) are shared by every worker and survive restarts.
- Storage quotas per namespace (`quota`, `quotas`): the distinct blobs and manifests the
  namespace's manifests refer to (quotas.py: a layer shared by several images counts once). A
  manifest push that would go over gets 403 DENIED naming the quota, and the blobs uploaded for
  it that no manifest of the repository uses are unlinked (`registry garbage-collect` then frees
  them); a blob upload into a namespace already at its quota is refused as it starts. The usage
  is at `GET /api/v1/namespaces/<namespace>/usage`, for the namespace's user, its organisation's
  members and registry admins.

settings.py reads `pluginConfig.sponsor`; profile.py writes the registry.yaml of
`registry init DIR --profile sponsor`. Written against docs/plugins.md only.
"""

from __future__ import annotations

import ipaddress
import os

import bottle

from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry
from registry_core.web import json_response

from . import quotas
from .limits import Counters
from .settings import FORMATS, SCHEMA, Settings

USERS_PATH = "/api/v1/users"
UI_SIGNUP_PATH = "/signup"
USAGE_ROUTE = "/api/v1/namespaces/<namespace>/usage"
class State:
    """One registry's settings and counters."""

    def __init__(self, registry):
        self.settings = Settings.from_config(registry.config.plugin_config.get("sponsor"))
        self.counters = Counters(os.path.join(registry.config.store, "state", "sponsor", "counters.sqlite"))


@per_registry
def state(registry) -> State:
    return State(registry)


def client_key(address: str | None) -> str:
    """The counter of a client address: the address, or its /64 for IPv6 (one household or
    server gets a /64, as Docker Hub counts it)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return "address:unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"address:{parsed.ipv4_mapped}"
        return f"address:{ipaddress.IPv6Network((parsed, 64), strict=False)}"
    return f"address:{parsed}"


@hookimpl
def plugin_config_schema():
    return {"sponsor": SCHEMA}


@hookimpl
def plugin_config_formats():
    return FORMATS


# --- sign-up -------------------------------------------------------------------------------------

@hookimpl
def permission_allowed(actor, action, repository, registry):
    if action == "signup" and repository is None and actor is None:
        return True if state(registry).settings.signup_open else None
    return None


@hookimpl
def filter_request(request, registry):
    """Sign-ups are counted per client address (each costs a password hash): the API's, and the
    web UI's form (`POST /signup`, which reads no Authorization header)."""
    environ = request.environ
    path = environ.get("PATH_INFO")
    if environ.get("REQUEST_METHOD") != "POST" or not (
            (path == USERS_PATH and not environ.get("HTTP_AUTHORIZATION")) or path == UI_SIGNUP_PATH):
        return None
    current = state(registry)
    if not current.settings.signup_open:
        return None
    limit = current.settings.signup_limit
    count = current.counters.take("signup:" + client_key(environ.get("REMOTE_ADDR")), limit)
    if count.allowed:
        return None
    return RegistryError("TOOMANYREQUESTS", f"too many sign-ups from this address ({limit.text}: "
                         f"pluginConfig.sponsor.signupLimit); try again in {count.reset} seconds",
                         headers={"Retry-After": str(count.reset)})


# --- pull limits ---------------------------------------------------------------------------------

@hookimpl
def before_pull(event, method, registry):
    current = state(registry)
    if event.actor == "anonymous":
        limit, key, source = current.settings.pull_limit, client_key(event.client_addr), "pullLimit"
        who = key.removeprefix("address:")
    else:
        limit, key, source = current.settings.user_pull_limit, f"user:{event.actor}", "userPullLimit"
        who = event.actor
    count = current.counters.take(key, limit) if method == "GET" else current.counters.peek(key, limit)
    headers = {"RateLimit-Limit": limit.header(limit.count), "RateLimit-Remaining": limit.header(count.remaining),
               "Docker-RateLimit-Source": who}
    if count.allowed or method != "GET":
        return headers
    hint = "; log in for a higher limit" if event.actor == "anonymous" else ""
    return RegistryError("TOOMANYREQUESTS", f"you have reached your pull rate limit of {limit.text} manifest "
                         f"pulls ({who}: pluginConfig.sponsor.{source}); try again in {count.reset} seconds"
                         f"{hint}", headers={**headers, "Retry-After": str(count.reset)})


# --- quotas --------------------------------------------------------------------------------------

@hookimpl
def before_event(event, manifest, registry):
    if event.action != "push" or event.repository is None:
        return None
    namespace = quotas.namespace_of(event.repository)
    quota = state(registry).settings.quota_of(namespace)
    if quota is None:
        return None
    limit, named = quota
    if manifest is None:
        if event.digest is None:  # a blob upload starts
            used = quotas.usage(registry, namespace)
            if used.bytes >= limit:
                return RegistryError("DENIED", f"the namespace {namespace} is full: it uses "
                                     f"{quotas.human(used.bytes)} ({used.bytes} bytes) of its quota of {named}; "
                                     "delete images you no longer need, then push again")
        return None
    used = quotas.usage(registry, namespace)
    referred = quotas.referred_by({"digest": event.digest, "size": event.size, "config": manifest.config,
                                   "layers": manifest.layers})
    after = used.adding(referred)
    if after <= limit:
        return None
    kept = used.by_repository.get(event.repository, set())
    for digest in referred:
        if digest != event.digest and digest not in kept:
            registry.blobs.unlink(event.repository, digest)
    target = f"{event.repository}:{event.tag}" if event.tag else f"{event.repository}@{event.digest}"
    return RegistryError("DENIED", f"pushing {target} would bring the namespace {namespace} to "
                         f"{quotas.human(after)} ({after} bytes), over its quota of {named}: delete images you "
                         "no longer need, then push again (the layers uploaded for this push were removed)",
                         detail={"namespace": namespace, "usedBytes": used.bytes, "quotaBytes": limit,
                                 "bytesAfterPush": after})


@hookimpl
def register_routes(app, registry):
    @app.route(USAGE_ROUTE, "GET")
    def namespace_usage(namespace: str):
        context = registry.authorize(bottle.request, None, "login")
        actor = context.identity
        org = registry.accounts.org(namespace) if registry.accounts is not None else None
        if not (registry.may(actor, None, "admin") or actor.name == namespace
                or (org is not None and actor.name in org["members"])):
            raise RegistryError("DENIED", f"only {namespace}, its organisation's members and registry admins "
                                "may see its storage")
        used = quotas.usage(registry, namespace)
        quota = state(registry).settings.quota_of(namespace)
        return json_response({"namespace": namespace, "usedBytes": used.bytes,
                              "quotaBytes": quota[0] if quota else None,
                              "quota": quota[1] if quota else None, "repositories": len(used.by_repository),
                              "manifests": used.manifests})
