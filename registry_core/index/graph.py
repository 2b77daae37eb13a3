"""An image's graph, as the tag page draws it and `GET /api/v1/repositories/<name>/graph/<ref>` answers it.

    index ─→ platform manifests ─→ config and layers (with sizes)
       └──── referrers (signatures, SBOMs, attestations) beside the manifest they refer to

Each node is a manifest of the repository, read from its metadata document (`_manifests/…`):

    {"digest", "mediaType", "size", "artifactType", "platform", "present", "labels",
     "annotations", "config", "layers": [{"digest", "mediaType", "size", "sharedWith"}],
     "manifests": [node…], "referrers": [node…]}

`present` is false for an index entry the repository does not hold (a partial copy). A layer's
`sharedWith` names the other tags of the repository whose images have that layer too; the tags
compared are the repository's first SHARED_TAGS (the answer's `tagsCompared`, and
`tagsComparedAll` false when there were more), their layers read once per version of the
repository's `_tags` and `_manifests` trees and kept per process. `labels` are the image config's
`config.Labels` (the config blob is read when at most MAX_CONFIG bytes, and kept per digest).
Referrers are followed MAX_REFERRER_DEPTH deep (a signature of an SBOM), at most MAX_REFERRERS a
subject. Nothing here imports bottle; who may see a repository is the caller's to decide.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import Snapshot
from registry_core.registry.manifests import Reference, manifest_unknown
from registry_core.registry.repositories import name_unknown

SHARED_TAGS = 200
MAX_REFERRERS = 50
MAX_REFERRER_DEPTH = 2
MAX_CONFIG = 1024 * 1024
MAX_SHARED_NAMES = 10
_CACHED = 64


class ImageGraphs:
    def __init__(self, registry):
        self.meta = registry.meta
        self.repositories = registry.repositories
        self.blobs = registry.blobs
        self._shared: OrderedDict[tuple, dict[str, list[str]]] = OrderedDict()
        self._labels: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def graph(self, name: str, reference: str) -> dict:
        """The graph of `reference` (a tag or a digest) in repository `name`; NAME_UNKNOWN or
        MANIFEST_UNKNOWN when there is none."""
        snapshot = self.meta.snapshot()
        if self.repositories.get(name, snapshot) is None:
            raise name_unknown(name)
        try:
            ref = Reference.parse(reference)
        except RegistryError:
            raise manifest_unknown(name, reference) from None
        digest = ref.digest
        if ref.tag is not None:
            tag = snapshot.get(meta_paths.tag(name, ref.tag))
            if tag is None:
                raise manifest_unknown(name, reference)
            digest = tag["digest"]
        if snapshot.get(meta_paths.manifest(name, digest)) is None:
            raise manifest_unknown(name, reference)
        shared, compared, complete = self._layers_by_tag(name, snapshot)
        root = self._node(snapshot, name, {"digest": digest}, shared, ref.tag, MAX_REFERRER_DEPTH)
        return {"name": name, "reference": reference, "digest": digest, "root": root,
                "tagsCompared": compared, "tagsComparedAll": complete}

    # --- nodes ----------------------------------------------------------------------------------

    def _node(self, snapshot: Snapshot, name: str, entry: dict, shared: dict[str, list[str]], tag: str | None,
              depth: int) -> dict:
        document = snapshot.get(meta_paths.manifest(name, entry["digest"]))
        platform = entry.get("platform")
        node = {"digest": entry["digest"],
                "mediaType": (document or {}).get("mediaType") or entry.get("mediaType"),
                "size": (document or {}).get("size", entry.get("size")),
                "artifactType": (document or {}).get("artifactType") or entry.get("artifactType"),
                "platform": platform_text(platform), "present": document is not None,
                "labels": {}, "annotations": (document or {}).get("annotations") or entry.get("annotations") or {},
                "config": None, "layers": [], "manifests": [], "referrers": []}
        if document is None:
            return node
        config = document.get("config")
        if config is not None:
            node["config"] = {key: config.get(key) for key in ("digest", "mediaType", "size")}
            node["labels"] = self._config_labels(config)
        node["layers"] = [{"digest": layer.get("digest"), "mediaType": layer.get("mediaType"),
                           "size": layer.get("size"),
                           "sharedWith": [other for other in shared.get(layer.get("digest"), ()) if other != tag]}
                          for layer in document.get("layers", [])]
        node["manifests"] = [self._node(snapshot, name, child, shared, tag, depth)
                             for child in document.get("manifests", [])]
        if depth > 0:
            node["referrers"] = [self._node(snapshot, name, descriptor, shared, tag, depth - 1)
                                 for descriptor in referrers(snapshot, name, entry["digest"])]
        return node

    def _config_labels(self, config: dict) -> dict:
        """The image config's `config.Labels` ({} when it is not an image config, too big, or unreadable)."""
        digest, size = config.get("digest"), config.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or size > MAX_CONFIG or \
                "json" not in str(config.get("mediaType")):
            return {}
        with self._lock:
            if digest in self._labels:
                self._labels.move_to_end(digest)
                return self._labels[digest]
        try:
            document = json.loads(self.blobs.read(digest))
        except (OSError, ValueError, KeyError, RegistryError):
            return {}
        labels = ((document.get("config") or {}).get("Labels") or {}) if isinstance(document, dict) else {}
        labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        with self._lock:
            self._labels[digest] = labels
            while len(self._labels) > 1024:
                self._labels.popitem(last=False)
        return labels

    # --- layers shared between tags -------------------------------------------------------------

    def _layers_by_tag(self, name: str, snapshot: Snapshot) -> tuple[dict[str, list[str]], int, bool]:
        """layer digest → the tags (of the first SHARED_TAGS) whose image has it; how many tags
        were compared, and whether that was all of them."""
        tags_tree, manifests_tree = snapshot.tree(meta_paths.tags_dir(name)), snapshot.tree(meta_paths.manifests_dir(name))
        key = (name, tags_tree.id if tags_tree is not None else None,
               manifests_tree.id if manifests_tree is not None else None)
        tags, more = self.repositories.tags(name, n=SHARED_TAGS)
        with self._lock:
            if key in self._shared:
                self._shared.move_to_end(key)
                return self._shared[key], len(tags), not more
        shared: dict[str, list[str]] = {}
        for tag in tags:
            document = snapshot.get(meta_paths.tag(name, tag))
            if document is None:
                continue
            for layer in image_layers(snapshot, name, document["digest"]):
                names = shared.setdefault(layer, [])
                if tag not in names and len(names) <= MAX_SHARED_NAMES:
                    names.append(tag)
        with self._lock:
            self._shared[key] = shared
            while len(self._shared) > _CACHED:
                self._shared.popitem(last=False)
        return shared, len(tags), not more


def image_layers(snapshot: Snapshot, name: str, digest: str) -> set[str]:
    """The layer digests of a manifest, and of the manifests an index lists that the repository holds."""
    document = snapshot.get(meta_paths.manifest(name, digest)) or {}
    layers = {layer.get("digest") for layer in document.get("layers", [])}
    for child in document.get("manifests", []):
        node = snapshot.get(meta_paths.manifest(name, child["digest"])) or {}
        layers.update(layer.get("digest") for layer in node.get("layers", []))
    return layers


def referrers(snapshot: Snapshot, name: str, subject: str) -> list[dict]:
    """The descriptors of the manifests whose subject is `subject` (the referrers index), at most MAX_REFERRERS."""
    folder = meta_paths.referrers_dir(name, subject)
    found = []
    for entry in sorted(snapshot.names(folder))[:MAX_REFERRERS]:
        document = snapshot.get(f"{folder}/{entry}")
        if document is not None:
            found.append(document["descriptor"])
    return found


def platform_text(platform: dict | None) -> str | None:
    """`linux/arm64/v8` from an index entry's platform; None when it has none."""
    if not isinstance(platform, dict) or not platform.get("os"):
        return None
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(part) for part in parts if part)
