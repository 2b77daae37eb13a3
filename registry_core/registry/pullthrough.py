"""Pull-through: fill a miss from the upstream a `resolve_upstream` plugin names (mirrors).

What the upstream sends is verified like a push (digest, manifest parsing), stored, and then
served from the store; the commit of a manifest fill is authored by the actor who pulled.
"""

from __future__ import annotations

from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.events import event
from registry_core.names import digest_of, is_digest, split_digest


class PullThrough:
    def __init__(self, registry):
        self.registry = registry

    def manifest(self, name: str, reference: str, context: Context) -> bool:
        """Fetch `reference` of `name` from the upstream and store it; False when there is none."""
        upstream = self.registry.upstream(name)
        if upstream is None:
            return False
        fetched = upstream.manifest(name, reference)
        if fetched is None:
            return False
        body, media_type = fetched
        if is_digest(reference) and digest_of(body, split_digest(reference)[0]) != reference:
            raise RegistryError("MANIFEST_UNKNOWN", f"the upstream of {name} answered {reference} with "
                                "content of another digest; nothing was stored")
        self.registry.manifests.put(name, reference, body, media_type, context, require_references=False)
        self.registry.notify(event("mirror-fill", context, repository=name, tag=None if is_digest(reference)
                                   else reference, digest=digest_of(body), media_type=media_type,
                                   size=len(body)))
        return True

    def blob(self, name: str, digest: str, context: Context) -> bool:
        upstream = self.registry.upstream(name)
        if upstream is None:
            return False
        chunks = upstream.blob(name, digest)
        if chunks is None:
            return False
        uploads = self.registry.uploads
        upload_id = uploads.start(name)
        try:
            size = uploads.finish(name, upload_id, digest, chunks)
        except BaseException:
            uploads.cancel_quietly(upload_id)
            raise
        self.registry.notify(event("mirror-fill", context, repository=name, digest=digest, size=size))
        return True
