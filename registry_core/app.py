"""Builds the registry for a role: storage driver, metadata store, services, and the bottle app."""

from __future__ import annotations

import os

import bottle

from registry_core.config import Config
from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.events import Event, event
from registry_core.meta.store import MetaStore
from registry_core.names import is_valid_name
from registry_core.registry.blobs import BlobService
from registry_core.registry.manifests import ManifestService
from registry_core.registry.referrers import ReferrerService
from registry_core.registry.repositories import RepositoryService
from registry_core.registry.uploads import UploadService
from registry_core.storage.filesystem import FilesystemDriver
from registry_core.web import request_context

META_DIR = "meta.git"


def open_driver(config: Config):
    if config.storage_driver == "filesystem":
        return FilesystemDriver(config.storage_options.get("root", config.store))
    raise RegistryError("UNSUPPORTED", f"unknown storage driver {config.storage_driver!r}")


class Registry:
    """The services of one store, and the decisions the web layer asks of them."""

    def __init__(self, config: Config):
        self.config = config
        os.makedirs(config.store, exist_ok=True)
        self.driver = open_driver(config)
        self.meta = MetaStore(os.path.join(config.store, META_DIR))
        self.blobs = BlobService(self.driver)
        self.uploads = UploadService(self.driver, self.blobs)
        self.repositories = RepositoryService(self.meta, config.default_visibility)
        self.manifests = ManifestService(self.meta, self.blobs, self.repositories, notify=self.notify,
                                         max_bytes=config.manifest_limit)
        self.referrers = ReferrerService(self.meta, self.repositories)

    # --- access -------------------------------------------------------------------------------

    def authorize(self, request: bottle.BaseRequest, name: str | None, action: str) -> Context:
        """The request's context if `action` on repository `name` is allowed; raises otherwise."""
        return request_context(request)

    def may(self, context: Context, name: str, action: str) -> bool:
        return True

    def visible_repositories(self, request: bottle.BaseRequest, names: list[str]) -> list[str]:
        return names

    # --- events -------------------------------------------------------------------------------

    def notify(self, happened: Event) -> None:
        """Tell listeners what happened; never fails the request."""

    def pulled(self, context: Context, name: str, document: dict, reference: str) -> None:
        self.notify(event("pull", context, repository=name, digest=document["digest"],
                          tag=None if ":" in reference else reference, media_type=document["mediaType"],
                          size=document["size"]))

    def blob_pulled(self, context: Context, name: str, digest: str, size: int) -> None:
        self.notify(event("pull", context, repository=name, digest=digest, size=size))

    def blob_pushed(self, context: Context, name: str, digest: str, size: int) -> None:
        self.notify(event("push", context, repository=name, digest=digest, size=size))

    def blob_deleted(self, context: Context, name: str, digest: str) -> None:
        self.notify(event("delete", context, repository=name, digest=digest))

    def mount(self, context: Context, name: str, digest: str, source: str | None) -> bool:
        """Link a blob from `source` into `name` if the actor may read it there; False to upload instead."""
        if not source:
            return False
        if not is_valid_name(source) or not self.may(context, source, "pull") or not self.blobs.is_linked(source, digest):
            return False
        self.blobs.link(name, digest)
        self.notify(event("mount", context, repository=name, digest=digest, source_repository=source))
        return True


def build_app(registry: Registry) -> bottle.Bottle:
    from registry_core.registry.routes import build_registry_app

    root = bottle.Bottle()
    root.merge(build_registry_app(registry))
    return root
