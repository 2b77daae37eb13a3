"""A namespace's storage: the bytes of the distinct blobs and manifests its repositories'
manifests refer to, so a layer shared by several images of the namespace counts once.

Computed when asked (a manifest push, the start of a blob upload, the usage API) from the
namespace's own repositories only: their names are a slice of the catalog's sorted list, and
each repository's manifest documents are read from the snapshot (documents are parsed once per
process and kept). Nothing outside the namespace is read, and no record needs keeping in step
with pushes, deletes, garbage collection or `registry tag restore`: the metadata is the record.
Blobs linked into a repository but referred to by no manifest (an upload whose manifest never
came) do not count; `registry garbage-collect` removes them. Foreign layers (with `urls`) are not
stored here and do not count either.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from registry_core.meta import paths as meta_paths


@dataclass
class Usage:
    namespace: str
    sizes: dict = field(default_factory=dict)          # digest -> bytes, every distinct one
    by_repository: dict = field(default_factory=dict)  # repository -> digests its manifests refer to
    manifests: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def adding(self, referred: dict) -> int:
        """The namespace's bytes once `referred` (digest -> bytes) is stored too."""
        return self.bytes + sum(size for digest, size in referred.items() if digest not in self.sizes)


def namespace_of(repository: str) -> str:
    return repository.split("/", 1)[0]


def repositories_of(registry, namespace: str) -> list[str]:
    """The repositories under `namespace/`, from the catalog's sorted names."""
    names = registry.repositories.names()
    prefix = namespace + "/"
    start = bisect.bisect_left(names, prefix)
    end = bisect.bisect_left(names, namespace + "0")  # "0" follows "/" in ASCII
    return names[start:end]


def referred_by(document: dict) -> dict:
    """digest -> bytes of what a manifest (document or ParsedManifest fields) refers to, itself included."""
    referred = {document["digest"]: document["size"]}
    for blob in ([document["config"]] if document.get("config") else []) + list(document.get("layers") or []):
        if not blob.get("urls"):
            referred[blob["digest"]] = blob["size"]
    return referred


def usage(registry, namespace: str) -> Usage:
    snapshot = registry.meta.snapshot()
    found = Usage(namespace)
    for repository in repositories_of(registry, namespace):
        digests = found.by_repository[repository] = set()
        for path in documents_under(snapshot, meta_paths.manifests_dir(repository)):
            document = snapshot.get(path)
            if document is None:
                continue
            found.manifests += 1
            referred = referred_by(document)
            found.sizes.update(referred)
            digests.update(referred)
    return found


def documents_under(snapshot, folder: str):
    """The paths of the `.yaml` documents in `folder` and its subfolders (the fanned-out buckets)."""
    for name in snapshot.names(folder):
        path = f"{folder}/{name}"
        if name.endswith(".yaml"):
            yield path
        else:
            yield from documents_under(snapshot, path)


def human(size: int) -> str:
    """`size` bytes as a person reads it: 10.0 GiB, 512 B."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
