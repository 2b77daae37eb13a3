"""Large stores for the listing and start-up figures, written directly on disk for each server.

The shape: `repositories` repositories named ns<NNN>/app<NNN> (100 per namespace); every one but
the first holds 9 tags, the first (`ns000/app000`, the "big" repository) holds the rest, so the
store has exactly `tags` tags: 10,000 repositories / 100,000 tags (big repository: 10,009 tags),
or 100 / 1,000 (big repository: 109 tags). Each repository has its own manifest (the benchmark
image with the repository's name as an annotation), so 10,000 distinct manifests; the config
and layer blobs are shared and linked into every repository.

Ours: pushing through `Registry.manifests.put` costs 3.7 ms a tag measured here (one commit
each, and each rewrites the repository's `_tags` tree), so 100,000 tags would take over six
minutes. Instead the git trees are built bottom-up with pygit2 TreeBuilder and committed once,
holding the same documents the server writes: `graph_node()` from registry_core.registry
.manifests for each manifest, the tag document of `ManifestService.put`, the repository document
of `RepositoryService.ensure`, each dumped (and validated) by registry_core.meta.documents.
Blobs and links go through the store's own BlobService. Then, as a bulk import must (the server's
own commits keep them current), the saved views of the new tree are written (`write_views`: the
catalog and search, registry_core.app.prepare_views; 0.2 s and 1.4 s at 10,000 repositories,
recorded in the store's `.done` marker as `views_seconds`): every worker starts from them.

Distribution: its filesystem layout (registry/storage/paths.go at v2.8.2), `link` files holding
the digest: `_manifests/tags/<tag>/current/link`, `_manifests/tags/<tag>/index/sha256/<hex>/link`,
`_manifests/revisions/sha256/<hex>/link`, `_layers/sha256/<hex>/link` (the catalog finds a
repository by its `_layers` folder), and `blobs/sha256/<hh>/<hex>/data`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from loads import OCI_MANIFEST, Image, digest_of

TAGS_PER_REPOSITORY = 9


@dataclass(frozen=True)
class Shape:
    repositories: int
    tags: int

    def name(self, index: int) -> str:
        return f"ns{index // 100:03d}/app{index % 100:03d}"

    def tag_count(self, index: int) -> int:
        if index == 0:
            return self.tags - TAGS_PER_REPOSITORY * (self.repositories - 1)
        return TAGS_PER_REPOSITORY

    @property
    def big(self) -> str:
        return self.name(0)

    @property
    def small(self) -> str:
        return self.name(99)  # present in both shapes, 9 tags

    def __post_init__(self):
        assert self.repositories >= 100 and self.tag_count(0) >= TAGS_PER_REPOSITORY


LARGE = Shape(repositories=10_000, tags=100_000)
SMALL = Shape(repositories=100, tags=1_000)


def tag_name(k: int) -> str:
    return f"v{k:05d}"


def repository_manifest(image: Image, name: str) -> bytes:
    document = json.loads(image.manifest)
    document["annotations"] = {**document.get("annotations", {}), "org.example.repository": name}
    return json.dumps(document, indent=3).encode()


# --- ours ------------------------------------------------------------------------------------------


def build_ours(store: Path, shape: Shape, image: Image, auth: bool, visibility: str = "private") -> dict:
    """Write the store; with `auth`, seed it first (demo accounts: admin/admin-demo). Every
    repository gets `visibility` (bench/ui_bench.py makes them public)."""
    import pygit2

    from registry_core.app import Registry
    from registry_core.config import AuthConfig, Config
    from registry_core.context import Context, now_iso
    from registry_core.meta import documents
    from registry_core.meta import paths as meta_paths
    from registry_core.meta.store import BRANCH, COMMITTER, author
    from registry_core.registry.manifests import graph_node
    from registry_core.registry.mediatypes import parse_manifest

    started = time.perf_counter()
    config = Config(store=str(store))
    if not auth:
        config.auth = AuthConfig(enabled=False)
    registry = Registry(config)
    if auth:
        from registry_core.seed import seed
        seed(registry)
    context = Context(actor="admin" if auth else "bench")
    for blob in image.blobs:
        registry.blobs.put(blob, digest_of(blob))

    repo = registry.meta.repo
    tip = repo.get(repo.lookup_reference(BRANCH).target)
    blob_mode, tree_mode = pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_TREE

    def document_blob(document: dict, path: str) -> pygit2.Oid:
        return repo.create_blob(documents.dump(document, path))

    namespaces: dict[str, pygit2.TreeBuilder] = {}
    pushed_at = now_iso()
    for index in range(shape.repositories):
        name = shape.name(index)
        body = repository_manifest(image, name)
        digest = digest_of(body)
        registry.blobs.put(body, digest)
        for blob in image.blobs:
            registry.blobs.link(name, digest_of(blob))
        parsed = parse_manifest(body, OCI_MANIFEST)

        files: dict[str, pygit2.Oid] = {}   # path below the repository's folder -> blob
        folder = meta_paths.repository_dir(name) + "/"
        for k in range(shape.tag_count(index)):
            tag = tag_name(k)
            document = {"kind": "tag", "schemaVersion": 1, "name": tag, "digest": digest,
                        "mediaType": parsed.media_type, "size": len(body),
                        "pushedBy": context.actor, "pushedAt": pushed_at}
            path = meta_paths.tag(name, tag)
            files[path.removeprefix(folder)] = document_blob(document, path)
        node_path = meta_paths.manifest(name, digest)
        files[node_path.removeprefix(folder)] = document_blob(graph_node(digest, len(body), parsed, context),
                                                              node_path)
        repository = {"kind": "repository", "schemaVersion": 1, "name": name, "visibility": visibility,
                      "owner": context.actor, "createdBy": context.actor, "createdAt": pushed_at}
        files[meta_paths.REPOSITORY_DOC] = document_blob(repository, meta_paths.repository(name))
        tree = nested_tree(repo, files)
        namespace, leaf = name.split("/")
        namespaces.setdefault(namespace, repo.TreeBuilder()).insert(leaf, tree, tree_mode)

    existing = tip.tree[meta_paths.REPOSITORIES] if meta_paths.REPOSITORIES in tip.tree else None
    repositories = repo.TreeBuilder(existing) if existing is not None else repo.TreeBuilder()
    for namespace, builder in namespaces.items():
        repositories.insert(namespace, builder.write(), tree_mode)
    root = repo.TreeBuilder(tip.tree)
    root.insert(meta_paths.REPOSITORIES, repositories.write(), tree_mode)
    message = (f"Bulk import for the benchmark: {shape.repositories} repositories, {shape.tags} tags\n\n"
               f"Actor: {context.actor}\n")
    repo.create_commit(BRANCH, pygit2.Signature(*author(context)), pygit2.Signature(*COMMITTER), message, root.write(),
                       [tip.id])
    imported = time.perf_counter() - started
    views = write_views(store, auth)
    return {"seconds": time.perf_counter() - started, "import_seconds": imported, "views_seconds": views,
            "repositories": shape.repositories, "tags": shape.tags}


def nested_tree(repo: pygit2.Repository, files: dict[str, pygit2.Oid]) -> pygit2.Oid:
    """The tree holding `files` (path -> blob id), its folders made as the paths say (meta/paths.py
    fans tags and manifests out into nested buckets)."""
    import pygit2
    folders: dict[str, dict] = {}
    for path, blob in files.items():
        *parents, leaf = path.split("/")
        level = folders
        for parent in parents:
            level = level.setdefault(parent, {})
        level[leaf] = blob

    def write(level: dict) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for entry, value in level.items():
            if isinstance(value, dict):
                builder.insert(entry, write(value), pygit2.GIT_FILEMODE_TREE)
            else:
                builder.insert(entry, value, pygit2.GIT_FILEMODE_BLOB)
        return builder.write()
    return write(folders)


def write_views(store: Path, auth: bool) -> dict[str, float]:
    """What a bulk import that writes the git trees itself owes the registry: the saved views of
    the tree it committed (the catalog, and search with auth on: registry_core/meta/diffs.py),
    which the server's own commits keep up to date and from which every new worker starts. The
    same function `registry serve` runs before it starts its workers (it would build them there,
    once, otherwise). Returns the seconds each view took."""
    from registry_core.app import prepare_views
    from registry_core.config import AuthConfig, Config

    config = Config(store=str(store))
    if not auth:
        config.auth = AuthConfig(enabled=False)
    return {kind: round(seconds, 3) for kind, seconds in prepare_views(config).items()}


# --- Distribution ----------------------------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def build_distribution(root: Path, shape: Shape, image: Image) -> dict:
    started = time.perf_counter()
    v2 = os.path.join(root, "docker", "registry", "v2")

    def blob(data: bytes) -> str:
        digest = digest_of(data)
        hexdigest = digest.split(":")[1]
        _write(os.path.join(v2, "blobs", "sha256", hexdigest[:2], hexdigest, "data"), data)
        return digest

    shared = [blob(data) for data in image.blobs]
    for index in range(shape.repositories):
        name = shape.name(index)
        digest = blob(repository_manifest(image, name))
        hexdigest = digest.split(":")[1]
        link = digest.encode()
        base = os.path.join(v2, "repositories", name)
        for layer in shared:
            _write(os.path.join(base, "_layers", "sha256", layer.split(":")[1], "link"), layer.encode())
        _write(os.path.join(base, "_manifests", "revisions", "sha256", hexdigest, "link"), link)
        tags = os.path.join(base, "_manifests", "tags")
        for k in range(shape.tag_count(index)):
            tag = os.path.join(tags, tag_name(k))
            _write(os.path.join(tag, "current", "link"), link)
            _write(os.path.join(tag, "index", "sha256", hexdigest, "link"), link)
    return {"seconds": time.perf_counter() - started, "repositories": shape.repositories, "tags": shape.tags}
