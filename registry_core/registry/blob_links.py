"""A repository's blobs changed by a request: a blob deleted from it, or mounted into it from
another repository. Each change is put to the `before_event` plugins first (`check`, which raises
their refusal) and told to the `track_event` plugins after (`notify`); the bytes stay where they
are (BlobService keeps one copy per digest, and garbage collection frees what no repository links).
"""

from __future__ import annotations

from typing import Callable

from registry_core.context import Actor, Context
from registry_core.events import Event, event
from registry_core.names import is_valid_name
from registry_core.registry.blobs import BlobService


class BlobLinks:
    """`check(event)` and `notify(event)` are the registry's event hooks; `may(actor, name,
    action)` is the access decision (access.Access.may) a mount asks of its source."""

    def __init__(self, blobs: BlobService, check: Callable[[Event], None], notify: Callable[[Event], None],
                 may: Callable[[Actor | None, str | None, str], bool]):
        self.blobs = blobs
        self.check = check
        self.notify = notify
        self.may = may

    def delete(self, context: Context, name: str, digest: str) -> None:
        """Remove the blob `digest` from repository `name` (BLOB_UNKNOWN if it has no such blob)."""
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
