"""Builds the registry for a role: plugins, storage driver, metadata store, services, bottle app.

`Registry` is what the web layer and plugins talk to: the services of one store, and the few
decisions that go through plugin hooks (who is acting, what they may do, what happened).
"""

from __future__ import annotations

import functools
import json
import logging
import os

import bottle

from registry_core.config import Config
from registry_core.context import Actor, Context, InvalidIdentity
from registry_core.errors import RegistryError
from registry_core.events import Event, event
from registry_core.meta.store import MetaStore
from registry_core.names import is_valid_name
from registry_core.plugins import Hooks, make_plugin_manager, validate_plugin_config
from registry_core.registry.blobs import BlobService, links_removed_path
from registry_core.registry.manifests import ManifestService
from registry_core.registry.pullthrough import PullThrough
from registry_core.registry.referrers import ReferrerService
from registry_core.registry.repositories import RepositoryService
from registry_core.registry.uploads import UploadService
from registry_core.web import ACTOR_KEY as _ACTOR_KEY
from registry_core.web import ErrorsAsJson, base_url, error_response, request_context

META_DIR = "meta.git"
log = logging.getLogger("registry_core")


class Registry:
    """The services of one store, and the decisions the web layer asks of them."""

    def __init__(self, config: Config, plugins=None):
        self.config = config
        self.plugins = plugins or make_plugin_manager(config.plugins, config.plugins_dir, config.auth.enabled)
        self.check_config(config, self.plugins)
        self.hooks = Hooks(self.plugins)  # how the core calls every hook (plugins.Hooks)
        os.makedirs(config.store, exist_ok=True)
        self.driver = self._open_driver()
        self.meta = MetaStore(os.path.join(config.store, META_DIR), durable=config.durable,
                              writer=config.meta_writer)
        self.blobs = BlobService(self.driver, links_removed_path(config.store))
        self.uploads = UploadService(self.driver, self.blobs)
        self.repositories = RepositoryService(self.meta, config.default_visibility)
        self.manifests = ManifestService(self.meta, self.blobs, self.repositories, notify=self.notify,
                                         guard=self.check, validators=self._validate_manifest,
                                         max_bytes=config.manifest_limit)
        self.referrers = ReferrerService(self.meta, self.repositories)
        self.pull_through = PullThrough(self)
        self.accounts = self.policy = self.token_issuer = self.token_verifier = None
        self.token_users = None  # who a token's subject is, for listings (see visible_repositories)
        # Where this node keeps no accounts, a plugin that can ask the Index which repositories a
        # token's user may see sets this: (subject, names) -> the names they may pull
        # (plugins/reporting). Without it, the store's own accounts judge.
        self.visible_to_account = None
        if config.auth.enabled:
            self._build_index(config)
        self._open_registry = [name for name, _ in self.hooks.each("permission_allowed")] == ["open_access"]

    def _build_index(self, config: Config) -> None:
        from registry_core.index.accounts import Accounts
        from registry_core.index.auth import TokenActors
        from registry_core.index.policy import AccessPolicy
        from registry_core.index.ratelimit import LoginLimiter
        from registry_core.index.tokens import build_token_service

        if config.role != "registry":
            limiter = LoginLimiter(os.path.join(config.store, "state", "login-failures"),
                                   config.auth.login_attempts, config.auth.login_window)
            self.accounts = Accounts(self.meta, limiter)
        # A registry-role node takes no logins, but judges a token's user for listings by the
        # accounts of its store: those of its Index when the two share the store.
        self.token_users = self.accounts or Accounts(self.meta)
        unheld = self.pull_through.visibility if self.hooks.implemented("resolve_upstream") else None
        self.policy = AccessPolicy(self.meta, config.auth.anonymous_pull, unheld)
        self.token_issuer, self.token_verifier = build_token_service(config)
        self.token_actors = TokenActors()

    @staticmethod
    def check_config(config: Config, plugins) -> None:
        """Raise DocumentInvalid when a plugin's config section does not match its schema."""
        validate_plugin_config(plugins, config.plugin_config, config.source or "registry.yaml")

    def _open_driver(self):
        factories = {}
        for registered in self.hooks.register_storage_drivers():
            factories.update(registered or {})
        factory = factories.get(self.config.storage_driver)
        if factory is None:
            raise RegistryError("UNSUPPORTED", f"unknown storage driver {self.config.storage_driver!r} "
                                f"(available: {', '.join(sorted(factories))})")
        return factory(root=self.config.store, options={**self.config.storage_options, "durable": self.config.durable})

    # --- requests and access ------------------------------------------------------------------

    def filter_request(self, request: bottle.BaseRequest) -> None:
        """Run the `filter_request` hook; raises the response that rejects the request, if any."""
        answer = self.hooks.filter_request(request=request, registry=self)
        if isinstance(answer, RegistryError):
            raise error_response(answer)
        if isinstance(answer, bottle.HTTPResponse):
            raise answer

    def actor(self, request: bottle.BaseRequest) -> Actor | None:
        environ = request.environ
        if _ACTOR_KEY not in environ:
            found = None
            if self.hooks.implemented("actor_from_request"):
                try:
                    found = Actor.coerce(self.hooks.actor_from_request(request=request, registry=self))
                except InvalidIdentity as e:  # a plugin's identity that may not author commits
                    raise RegistryError("UNAUTHORIZED", f"the identity of this request cannot be used: {e}") from None
            environ[_ACTOR_KEY] = found
        return environ[_ACTOR_KEY]

    def authorize(self, request: bottle.BaseRequest, name: str | None, action: str,
                  mount_from: str | None = None) -> Context:
        """The request's context if `action` on repository `name` is allowed; raises otherwise.
        `mount_from`: the repository a cross-repository mount reads (its challenge asks for it too)."""
        identity = self.actor(request)
        if not self.may(identity, name, action):
            raise self.denied(identity, name, action, mount_from)
        return request_context(request, identity)

    def may(self, actor: Actor | None, name: str | None, action: str) -> bool:
        if self._open_registry:
            return True
        answers = self.hooks.permission_allowed(actor=actor, action=action, repository=name, registry=self)
        return False not in answers and True in answers

    def denied(self, actor: Actor | None, name: str | None, action: str,
               mount_from: str | None = None) -> RegistryError:
        """401 with a challenge to the unauthenticated and to token holders (whose token lacks the
        scope); 403 to users who authenticated directly. The same answer whether or not `name`
        exists, so a private repository cannot be told from a missing one. A mount's challenge
        also asks for pull on the repository it reads, as Distribution's does: a client that asks
        the token service for exactly the challenge's scopes then gets a token the mount can use."""
        target = f" on {name}" if name else ""
        message = f"{actor.name if actor else 'anonymous'} may not {action}{target}" + (
            "" if actor else ": log in first")
        if actor is None or actor.kind == "jwt":
            if not self.config.auth.enabled:
                return RegistryError("UNAUTHORIZED", message, headers={"WWW-Authenticate": 'Basic realm="registry"'})
            scope = challenge_scope(name, action, mount_from)
            error = "insufficient_scope" if actor is not None else None
            return RegistryError("UNAUTHORIZED", message, headers=self.challenge(bottle.request, scope, error))
        return RegistryError("DENIED", message)

    def challenge(self, request: bottle.BaseRequest, scope: str | None = None, error: str | None = None) -> dict:
        """The WWW-Authenticate header that sends clients to the token service."""
        auth = self.config.auth
        realm = auth.realm or base_url(request, self.config.public_url) + "/token"
        parts = [f'realm="{realm}"', f'service="{auth.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return {"WWW-Authenticate": "Bearer " + ",".join(parts)}

    def visible_repositories(self, request: bottle.BaseRequest, names: list[str]) -> list[str]:
        if self._open_registry:
            return names
        identity = self.actor(request)
        if identity is not None and identity.kind == "jwt":  # judge the token's user, not the token
            subject = identity.extra["claims"].get("sub") or ""
            if self.accounts is None and self.visible_to_account is not None:
                return self.visible_to_account(subject, names)
            identity = self.token_users.actor_for(subject) if subject else None
        return [name for name in names if self.may(identity, name, "pull")]

    # --- content checks and events ------------------------------------------------------------

    def _validate_manifest(self, **kwargs) -> list[str]:
        problems = []
        for answer in self.hooks.validate_manifest(registry=self, **kwargs):
            problems.extend([answer] if isinstance(answer, str) else answer or [])
        return problems

    def check(self, happening: Event, manifest=None) -> None:
        """Ask `before_event` plugins whether `happening` may go ahead; raises their refusal.
        `manifest`: the ParsedManifest of a manifest push."""
        answer = self.hooks.before_event(event=happening, manifest=manifest, registry=self)
        if isinstance(answer, str):
            answer = RegistryError("DENIED", answer)
        if isinstance(answer, RegistryError):
            raise answer

    def notify(self, happened: Event) -> None:
        """Run every `track_event` implementation; one that fails is logged and never fails the request."""
        for plugin, call in self.hooks.each("track_event"):
            try:
                call(event=happened, registry=self)
            except Exception:
                log.exception("track_event of plugin %s failed for %s", plugin, happened.action)

    @functools.cached_property
    def community(self):
        """The Index's community services (index/community_services.py): one set per process,
        shared by the community API and the web UI, so one search index and one star index."""
        from registry_core.index.community_services import CommunityServices
        return CommunityServices(self)

    def ui_panels(self, page: str, repository: str | None, actor: Actor | None) -> list[dict]:
        panels = []
        for answer in self.hooks.ui_panels(page=page, repository=repository, actor=actor, registry=self):
            panels.extend(answer if isinstance(answer, list) else [answer])
        return panels

    def upstream(self, name: str):
        return self.hooks.resolve_upstream(repository=name, registry=self)

    def before_pull(self, context: Context, name: str, document: dict, reference: str, method: str) -> dict:
        """Ask `before_pull` plugins (in pluggy's order) whether the manifest `document` may be
        served; the headers they add to the answer. Raises the first refusal; the plugins after it
        are not asked (a rate limit does not count a pull another plugin refused)."""
        if not self.hooks.implemented("before_pull"):
            return {}
        happening = event("pull", context, repository=name, digest=document["digest"],
                          tag=None if ":" in reference else reference, media_type=document["mediaType"],
                          size=document["size"])
        headers = {}
        for _, call in self.hooks.each("before_pull"):
            answer = call(event=happening, method=method, registry=self)
            if isinstance(answer, str):
                answer = RegistryError("DENIED", answer)
            if isinstance(answer, RegistryError):
                raise answer
            headers.update(answer or {})
        return headers

    def pulled(self, context: Context, name: str, document: dict, reference: str) -> None:
        if not self.hooks.implemented("track_event"):
            return
        self.notify(event("pull", context, repository=name, digest=document["digest"],
                          tag=None if ":" in reference else reference, media_type=document["mediaType"],
                          size=document["size"]))

    def blob_pulled(self, context: Context, name: str, digest: str, size: int) -> None:
        if not self.hooks.implemented("track_event"):
            return
        self.notify(event("pull", context, repository=name, digest=digest, size=size))

    def blob_pushed(self, context: Context, name: str, digest: str, size: int) -> None:
        self.notify(event("push", context, repository=name, digest=digest, size=size))

    def delete_blob(self, context: Context, name: str, digest: str) -> None:
        self.check(event("delete", context, repository=name, digest=digest))
        self.blobs.unlink(name, digest)
        self.notify(event("delete", context, repository=name, digest=digest))

    def mount(self, context: Context, name: str, digest: str, source: str | None) -> bool:
        """Link a blob from `source` into `name` if the actor may read it there; False to upload instead."""
        if not source or not is_valid_name(source):
            return False
        if not self.may(context.identity, source, "pull") or not self.blobs.is_linked(source, digest):
            return False
        self.check(event("mount", context, repository=name, digest=digest, source_repository=source))
        self.blobs.link(name, digest)
        self.notify(event("mount", context, repository=name, digest=digest, source_repository=source))
        return True


def challenge_scope(name: str | None, action: str, mount_from: str | None = None) -> str | None:
    """The scope a challenge names: space-separated scopes, as the token spec writes several.
    `mount_from` is added (pull) only when it is a valid repository name: it comes from the query
    and goes into a header."""
    if name is None:
        return "registry:catalog:*" if action == "catalog" else None
    actions = {"pull": "pull", "push": "pull,push", "delete": "delete"}.get(action, "pull")
    scope = f"repository:{name}:{actions}"
    if mount_from and mount_from != name and is_valid_name(mount_from) and "\n" not in mount_from:
        scope += f" repository:{mount_from}:pull"  # ("\n": is_valid_name's `$` lets one end a name)
    return scope


_CODES_BY_STATUS = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 405: "UNSUPPORTED",
                    413: "PAYLOAD_TOO_LARGE", 416: "RANGE_INVALID", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


def _json_error(error: bottle.HTTPError) -> str:
    """Bottle's own errors answer in the spec's JSON too (bottle would send an HTML page): an
    unrouted path (404), a method the path does not take (405), an HTTPError a plugin's route
    raised (`bottle.abort(403, "…")`: its text is the message)."""
    status = error.status_code
    if status == 405:
        message = f"{bottle.request.method} is not supported on {bottle.request.path}"
    elif status == 404:
        message = f"nothing is served at {bottle.request.path}"
    else:
        message = error.body if isinstance(error.body, str) and error.body else error.status_line
    bottle.response.content_type = "application/json; charset=utf-8"
    bottle.response.set_header("Docker-Distribution-Api-Version", "registry/2.0")
    return json.dumps({"errors": [{"code": _CODES_BY_STATUS.get(status, "UNKNOWN"), "message": message}]})


def build_app(registry: Registry):
    """The WSGI application of one worker process, for the roles in `config.role`: the bottle app
    inside `ErrorsAsJson`, so that every failure, on any route, answers JSON, inside
    `ObservedRequests` (request ids, metrics, the access log; registry_core/observability/)."""
    from registry_core.observability.metrics import Metrics
    from registry_core.observability.middleware import JsonAccessLog, ObservedRequests
    from registry_core.observability.routes import build_observability_app
    from registry_core.registry.routes import build_registry_app

    role = registry.config.role
    root = bottle.Bottle()
    root.config["catchall"] = False  # what the routes do not answer goes to ErrorsAsJson
    # Plugins' routes first: bottle tries routes in the order they were added, and the core's
    # `/api/v1/repositories/<name:path>` would otherwise take `…/<name>/webhooks` as a name.
    registry.hooks.register_routes(app=root, registry=registry)
    if role in ("all", "registry"):
        root.merge(build_registry_app(registry))
    if role in ("all", "index") and registry.config.auth.enabled:
        from registry_core.index.routes import build_index_app
        from registry_core.ui.routes import build_ui_app
        root.merge(build_index_app(registry))
        root.merge(build_ui_app(registry))  # after the API's routes: it never takes a /v2/ or /api/ path
    metrics = Metrics(registry)
    root.merge(build_observability_app(registry, metrics))  # /healthz, /readyz, /metrics: in every role
    if registry.hooks.implemented("filter_request"):
        root.add_hook("before_request", lambda: registry.filter_request(bottle.request))
    root.default_error_handler = _json_error
    registry.hooks.startup(registry=registry)
    access_log = JsonAccessLog() if registry.config.access_log == "json" else None
    return ObservedRequests(ErrorsAsJson(root), metrics, access_log)


# --- before serving --------------------------------------------------------------------------------


def serves_catalog(config: Config) -> bool:
    return config.role in ("all", "registry")


def serves_search(config: Config) -> bool:
    return config.role in ("all", "index") and config.auth.enabled


def prepare_views(config: Config) -> dict[str, float]:
    """Make sure the views a new worker process starts from have a copy saved on disk for a tree
    of the store (meta/diffs.py): the catalog, and where the Index's community routes are served,
    search and stars. So no request ever builds one from scratch. `registry serve` calls this once
    before it starts the workers; a tool that writes git trees directly (a bulk import) calls it
    after its commit. Where a copy exists (any store a registry has served) this reads it and
    applies the diff to the current tree: milliseconds. Where none does (a store written by a
    tool that did not call this, or one older than copies) it builds the view by walking
    `repositories/` and saves it: seconds for 10,000 repositories, once per store rather than on
    the first request of each worker. Returns the seconds each view took."""
    import time

    from registry_core.meta.diffs import saved_views

    meta = MetaStore(os.path.join(config.store, META_DIR), create=False)
    snapshot = meta.snapshot()
    repositories = RepositoryService(meta, config.default_visibility)
    views = []
    if serves_catalog(config) or serves_search(config):  # the other views read the names from it
        views.append(("catalog", lambda: repositories.names(snapshot)))
    if serves_search(config):
        from registry_core.index.community import StarIndex
        from registry_core.index.search import SearchIndex

        for kind, view_class in (("search", SearchIndex), ("stars", StarIndex)):
            def sync(view=view_class(repositories, saved_views(meta, kind))):
                with view.lock:
                    view.sync(snapshot)
            views.append((kind, sync))
    took = {}
    for kind, prepare in views:
        started = time.perf_counter()
        prepare()
        took[kind] = time.perf_counter() - started
    return took


def warm_up(registry: Registry) -> None:
    """What a worker's first request would otherwise pay on top of its own work, done by each
    worker after the fork and before it accepts a connection: the metadata's snapshot opened,
    the catalog brought to it from its saved copy (prepare_views: a file read and the diff since,
    never a walk of the store where a copy exists), every document schema compiled (tens of ms,
    once per process), one YAML document parsed and validated, one decision of the access policy
    (for a repository that does not exist: no document of the store is read ahead of a request,
    and no plugin hook is called), and with the token service one token issued and verified (its
    certificate chain is then known). What it does not do: read the documents a request will read
    (a first catalog page still parses its repositories' documents, as any request that is the
    first to read a document does). A step that fails is logged and skipped: warming up never
    keeps a worker from serving."""
    from importlib import resources

    from registry_core.meta import documents

    def repository_document() -> dict:
        return {"kind": "repository", "schemaVersion": 1, "name": "warm-up/example", "visibility": "private",
                "owner": "registry", "createdBy": "registry", "createdAt": "2000-01-01T00:00:00Z"}

    steps = [("snapshot", registry.meta.snapshot)]
    if serves_catalog(registry.config):
        steps.append(("catalog", lambda: registry.repositories.names()))
    kinds = sorted(entry.name[:-len(".yaml")] for entry in resources.files("registry_core.schemas").iterdir()
                   if entry.name.endswith(".yaml") and entry.name[:-len(".yaml")] not in ("config", "seed"))
    steps += [(f"schema {kind}", lambda kind=kind: documents.validator(kind)) for kind in kinds]
    steps.append(("document", lambda: documents.parse(documents.dump(repository_document(), "warm-up"),
                                                       "warm-up")))
    if registry.policy is not None:  # the policy itself, not the plugins' hooks: nothing is asked of them
        steps.append(("access", lambda: registry.policy.permission(None, "pull", "warm-up/none")))
    if registry.token_issuer is not None and registry.token_verifier is not None:
        steps.append(("token", lambda: registry.token_verifier.verify(registry.token_issuer.issue("").token)))
    for what, step in steps:
        try:
            step()
        except Exception:
            log.warning("warming up: %s failed", what, exc_info=True)
