"""The referrers API: which manifests in a repository name a given manifest as their subject."""

from __future__ import annotations

import pygit2

from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, load_blob
from registry_core.names import check_digest, check_name
from registry_core.registry.mediatypes import OCI_INDEX
from registry_core.registry.repositories import RepositoryService


class ReferrerService:
    def __init__(self, meta: MetaStore, repositories: RepositoryService):
        self.meta = meta
        self.repositories = repositories

    def referrers(self, name: str, subject: str, artifact_type: str | None = None) -> dict:
        """The image index the referrers API returns (an empty one when nothing refers to `subject`)."""
        check_name(name)
        check_digest(subject)
        snapshot = self.meta.snapshot()
        # No NAME_UNKNOWN here: "the registry MUST NOT return a 404 Not Found to a referrers API
        # request" (a 404 tells clients to fall back to the referrers tag schema), so a repository
        # nothing was pushed to has, like any unknown subject, an empty list.
        tree = snapshot.tree(meta_paths.referrers_dir(name, subject))
        descriptors = []
        for entry in tree or ():
            if isinstance(entry, pygit2.Blob):
                descriptor = load_blob(entry, f"{meta_paths.referrers_dir(name, subject)}/{entry.name}")["descriptor"]
                if artifact_type is None or descriptor.get("artifactType") == artifact_type:
                    descriptors.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
