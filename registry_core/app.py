"""Builds the registry of one store: plugins, storage driver, metadata store, services, and the
access decisions, each service handed the hooks it needs as plain callables.

`Registry` is the wiring that the web layer (web_app.build_app builds the WSGI app over it) and
plugins talk to: the services of one store, `access` (access.Access: what an actor may do), and
the hooks the core calls on what happens (`check`, `notify`, `before_pull`). Nothing here reads
a request: who is asking is the web side's to find out (web_access.RequestAccess, `requests`).
"""

from __future__ import annotations

import functools
import logging
import os

from registry_core.access import Access
from registry_core.config import Config
from registry_core.context import Actor, Context
from registry_core.errors import RegistryError
from registry_core.events import Event, event
from registry_core.meta.store import MetaStore
from registry_core.plugins import Hooks, make_plugin_manager, validate_plugin_config
from registry_core.registry.blob_links import BlobLinks
from registry_core.registry.blobs import BlobService, links_removed_path
from registry_core.registry.manifests import ManifestService
from registry_core.registry.pullthrough import PullThrough
from registry_core.registry.referrers import ReferrerService
from registry_core.registry.repositories import RepositoryService
from registry_core.registry.uploads import UploadService
from registry_core.meta.paths import META_DIR

log = logging.getLogger("registry_core")


class Registry:
    """The services of one store, the access decisions, and the hooks they call."""

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
        self.token_users = None  # who a token's subject is, for listings (Access.visible)
        if config.auth.enabled:
            self._build_index(config)
        self.access = Access(
            functools.partial(self.hooks.permission_allowed, registry=self),
            open_registry=[name for name, _ in self.hooks.each("permission_allowed")] == ["open_access"],
            auth_enabled=config.auth.enabled, realm=config.auth.realm, service=config.auth.service,
            token_user=self.token_users.actor_for if self.token_users is not None else None,
            keeps_accounts=self.accounts is not None)
        self.blob_links = BlobLinks(self.blobs, check=self.check, notify=self.notify, may=self.access.may)
        self.requests = None  # the web side of access (web_access.RequestAccess), set by web_app.build_app

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

    # --- the plugin-facing entry points of access (docs/plugins.md) ---------------------------

    def may(self, actor: Actor | None, name: str | None, action: str) -> bool:
        """Whether `actor` may do `action` on repository `name`: `self.access.may`."""
        return self.access.may(actor, name, action)

    def authorize(self, request, name: str | None, action: str, mount_from: str | None = None) -> Context:
        """The request's context if `action` on `name` is allowed, else raises the refusal:
        `self.requests.authorize`, the web side that `web_app.build_app` sets."""
        return self.requests.authorize(request, name, action, mount_from)

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
