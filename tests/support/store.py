"""A real store in-process for the maintenance tests: an open Registry, content pushed through its
services (as a client's push would make it), file ages moved into the past, and metadata edited
by hand with pygit2 (as a person with a clone of meta.git could)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pygit2

from registry_core.app import Registry
from registry_core.config import AuthConfig, Config
from registry_core.context import Context
from tests.support.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, digest

PUSHER = Context(actor="pusher")
HOUR = 3600


def open_registry(store: Path) -> Registry:
    """The services of an open registry (auth.enabled: false) on `store` (created when missing)."""
    config = Config(store=str(store))
    config.auth = AuthConfig(enabled=False)
    return Registry(config)


def push_blob(registry: Registry, name: str, data: bytes) -> str:
    """Upload `data` into repository `name` the way a monolithic push does; return its digest."""
    d = digest(data)
    upload_id = registry.uploads.start(name)
    registry.uploads.finish(name, upload_id, d, iter([data]))
    return d


def push_image(registry: Registry, name: str, reference: str | None = None, **fields) -> tuple[str, list[str]]:
    """Push a small random image (config + one layer, plus `fields` such as subject or artifactType)
    by tag, or by digest when `reference` is None; return (manifest digest, [config, layer] digests)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()
    layer = os.urandom(200)
    blobs = [push_blob(registry, name, config), push_blob(registry, name, layer)]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                "layers": [descriptor(layer, OCI_LAYER)], **fields}
    body = json.dumps(manifest).encode()
    registry.manifests.put(name, reference or digest(body), body, OCI_MANIFEST, PUSHER)
    return digest(body), blobs


def push_index(registry: Registry, name: str, children: list[str], reference: str | None = None) -> str:
    """Push an image index of the manifests `children` (already in `name`); return its digest."""
    manifests = [{"mediaType": OCI_MANIFEST, "digest": child,
                  "size": registry.driver.size(blob_path(child))} for child in children]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    registry.manifests.put(name, reference or digest(body), body, OCI_INDEX, PUSHER)
    return digest(body)


def subject_of(registry: Registry, name: str, manifest: str) -> dict:
    return {"mediaType": OCI_MANIFEST, "digest": manifest,
            "size": registry.driver.size(blob_path(manifest))}


def blob_path(d: str) -> str:
    algorithm, encoded = d.split(":")
    return f"blobs/{algorithm}/{encoded[:2]}/{encoded}"


def link_path(name: str, d: str) -> str:
    algorithm, encoded = d.split(":")
    return f"links/{name}/_blobs/{algorithm}/{encoded}"


def age(path: Path, seconds: float) -> None:
    """Make the file at `path` look last written `seconds` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def age_tree(root: Path, seconds: float) -> None:
    """Make every file below `root` look last written `seconds` ago."""
    for folder, _, files in os.walk(root):
        for name in files:
            age(Path(folder) / name, seconds)


def files_below(root: Path) -> dict[str, tuple[int, float]]:
    """Every file below `root` with its size and modification time (meta.git excluded)."""
    found = {}
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if f != "meta.git"]
        for name in files:
            path = Path(folder) / name
            status = path.stat()
            found[str(path.relative_to(root))] = (status.st_size, status.st_mtime)
    return found


def commit_by_hand(store: Path, files: dict[str, bytes | None], message: str = "Edit by hand\n") -> None:
    """Commit `files` (path -> content; None deletes) to meta.git's main with pygit2 alone: no schema
    check, as a person with a clone of meta.git could."""
    repo = pygit2.Repository(str(Path(store) / "meta.git"))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)

    def rewrite(tree, parts, data):
        builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
        head, rest = parts[0], parts[1:]
        existing = tree[head] if tree is not None and head in tree else None
        if rest:
            new = rewrite(existing if isinstance(existing, pygit2.Tree) else None, rest, data)
            if new is not None:
                builder.insert(head, new, pygit2.GIT_FILEMODE_TREE)
            elif existing is not None:
                builder.remove(head)
        elif data is None:
            if existing is not None:
                builder.remove(head)
        else:
            builder.insert(head, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
        return builder.write() if len(builder) else None

    tree = tip.tree
    for path, data in files.items():
        tree = repo.get(rewrite(tree, path.split("/"), data))
    author = pygit2.Signature("by-hand", "by-hand@test")
    repo.create_commit("refs/heads/main", author, author, message, tree.id, [tip.id])
