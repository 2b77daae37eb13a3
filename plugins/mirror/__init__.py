"""A pull-through cache: the built-in plugin `mirror` (`plugins: [mirror]`).

- Upstream registries by namespace prefix (settings.py), each with its own credentials; Basic and
  Docker token auth towards them (upstream.py). The core's pull-through (registry_core/registry/
  pullthrough.py) asks them through `resolve_upstream`: it fills misses, revalidates tags after
  their TTL, streams blobs while it stores them, and serves its cache when the upstream fails.
- Who may pull is the mirror's own policy, the same for what is cached and what is not:
  `pull: anyone` (the default; anonymous too, with `auth.anonymousPull`) or `pull: users`.
  Filled repositories belong to the mirror (authored `registry`) and are public unless
  `visibility: private`.
- Writes (`/v2/` requests other than GET and HEAD) are refused with 405 UNSUPPORTED saying this is
  a mirror; with `allowPush: true`, names no upstream serves take pushes as usual.

profile.py writes the registry.yaml of `registry init DIR --profile mirror`. Written against
docs/plugins.md only.
"""

from __future__ import annotations

import re

from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry

from .settings import SCHEMA, Settings, check_url
from .upstream import Upstream

_WRITE_PATH = re.compile(r"/v2/(.+?)/(?:manifests/[^/]*|blobs/uploads(?:/[^/]*)?|blobs/[^/]*)", re.DOTALL)
class Mirror:
    """The settings and the upstream clients of one registry."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.upstreams = {u.prefix: Upstream(u, settings.timeout, settings.visibility) for u in settings.upstreams}

    def upstream(self, name: str) -> Upstream | None:
        found = self.settings.upstream_for(name)
        return None if found is None else self.upstreams[found.prefix]

    def describe(self) -> str:
        return ", ".join(f"{u.prefix or '*'} -> {u.url}" for u in self.settings.upstreams)


@per_registry
def mirror(registry) -> Mirror:
    return Mirror(Settings.from_config(registry.config.plugin_config.get("mirror")))


@hookimpl
def plugin_config_schema():
    return {"mirror": SCHEMA}


@hookimpl
def plugin_config_formats():
    return {"upstream-url": check_url}


@hookimpl
def resolve_upstream(repository, registry):
    return mirror(registry).upstream(repository)


@hookimpl
def permission_allowed(actor, action, repository, registry):
    """`pull: users`: nothing for the anonymous (nor for a token issued to nobody, whose actor is
    `anonymous`) on what the mirror serves, cached or not."""
    if action != "pull" or repository is None:
        return None
    found = mirror(registry)
    if found.settings.pull == "users" and (actor is None or actor.name == "anonymous") \
            and found.upstream(repository) is not None:
        return False
    return None


@hookimpl
def filter_request(request, registry):
    environ = request.environ
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return None
    path = environ.get("PATH_INFO") or "/"
    if not (path == "/v2" or path.startswith("/v2/")):
        return None
    found = mirror(registry)
    if found.settings.allow_push:
        write = _WRITE_PATH.fullmatch(path)
        if write is None or found.upstream(write.group(1)) is None:
            return None
        return RegistryError("UNSUPPORTED", f"{write.group(1)} is mirrored from "
                             f"{found.upstream(write.group(1)).url}: this registry only caches it; push "
                             "to the upstream instead")
    return RegistryError("UNSUPPORTED", f"this registry is a pull-through mirror ({found.describe()}): "
                         "it takes no pushes or deletes; push to the upstream instead")
