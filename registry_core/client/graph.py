"""The image graph as the client shows it: an index → its manifests → each one's config and
layers, plus the artifacts that refer to any manifest (signatures, SBOMs: the referrers API, or
the `sha256-<hex>` tag schema on registries without it). Also the summary `inspect` prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry_core.client import manifests as mf
from registry_core.client.errors import ClientError

MAX_REFERRER_DEPTH = 3


@dataclass
class Node:
    kind: str  # index | manifest | config | layer | blob
    descriptor: mf.Descriptor
    platform: str | None = None
    artifact_type: str | None = None
    children: list["Node"] = field(default_factory=list)
    referrers: list["Node"] = field(default_factory=list)

    def to_json(self) -> dict:
        document = {"kind": self.kind, "digest": self.descriptor.digest, "mediaType": self.descriptor.media_type,
                    "size": self.descriptor.size}
        if self.platform:
            document["platform"] = self.platform
        if self.artifact_type:
            document["artifactType"] = self.artifact_type
        if self.kind in ("index", "manifest"):
            document["children"] = [c.to_json() for c in self.children]
            document["referrers"] = [r.to_json() for r in self.referrers]
        return document


def build(source, referrers=None, depth: int = 0) -> Node:
    """The graph under the source's root. `referrers(digest)` lists referrer descriptors (None: skip)."""
    descriptor, body = source.root()
    return _node(source, descriptor, body, referrers, depth)


def _node(source, descriptor: mf.Descriptor, body: bytes, referrers, depth: int) -> Node:
    manifest = mf.parse(body, descriptor.media_type)
    if descriptor.media_type not in mf.MANIFEST_TYPES:
        descriptor.media_type = manifest.media_type
    platform = mf.Platform.of(descriptor.platform)
    node = Node("index" if manifest.is_index else "manifest", descriptor, str(platform) if platform else None,
                manifest.artifact_type or (manifest.config.media_type if manifest.config and
                                           manifest.config.media_type not in mf.IMAGE_CONFIGS else None))
    if manifest.is_index:
        for child in manifest.manifests:
            if child.is_manifest:
                node.children.append(_node(source, child, source.manifest(child), referrers, depth))
            else:
                node.children.append(Node("blob", child))
    else:
        if manifest.config:
            node.children.append(Node("config", manifest.config))
        node.children += [Node("layer", layer) for layer in manifest.layers]
    if referrers is not None and depth < MAX_REFERRER_DEPTH:
        for referrer in referrers(descriptor.digest):
            try:
                child = _node(source, referrer, source.manifest(referrer), referrers, depth + 1)
            except ClientError:
                child = Node("manifest", referrer)
            child.artifact_type = referrer.artifact_type or child.artifact_type
            node.referrers.append(child)
    return node


def render(node: Node, title: str) -> list[str]:
    lines = [title]
    _render(node, "", True, lines)
    return lines


def _label(node: Node) -> str:
    parts = [f"{node.kind:<8}", node.descriptor.digest]
    if node.platform:
        parts.append(node.platform)
    if node.artifact_type:
        parts.append(node.artifact_type)
    elif node.kind in ("layer", "blob"):
        parts.append(node.descriptor.media_type.rsplit(".", 1)[-1] if "." in node.descriptor.media_type
                     else node.descriptor.media_type)
    parts.append(human_size(node.descriptor.size))
    return "  ".join(parts)


def _render(node: Node, prefix: str, last: bool, lines: list[str]) -> None:
    lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(node)}")
    inner = prefix + ("    " if last else "│   ")
    items = [(child, False) for child in node.children] + [(r, True) for r in node.referrers]
    for position, (child, is_referrer) in enumerate(items):
        is_last = position == len(items) - 1
        if is_referrer:
            lines.append(f"{inner}{'└── ' if is_last else '├── '}referrer")
            _render(child, inner + ("    " if is_last else "│   "), True, lines)
        else:
            _render(child, inner, is_last, lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# --- inspect -------------------------------------------------------------------------------

def describe(source, platform: mf.Platform | None = None) -> dict:
    """Manifest, config summary, platforms and sizes of the source's root (or its `platform` entry)."""
    descriptor, body = source.root()
    manifest = mf.parse(body, descriptor.media_type)
    if manifest.is_index and platform is not None:
        descriptor = mf.choose(manifest, platform)
        body = source.manifest(descriptor)
        manifest = mf.parse(body, descriptor.media_type)
    summary = {"reference": str(source), "digest": descriptor.digest, "mediaType": manifest.media_type,
               "size": descriptor.size}
    if manifest.annotations:
        summary["annotations"] = manifest.annotations
    if manifest.is_index:
        entries = []
        for child in manifest.manifests:
            entry = {"digest": child.digest, "mediaType": child.media_type, "size": child.size,
                     "platform": str(mf.Platform.of(child.platform)) if mf.Platform.of(child.platform) else None}
            if child.is_manifest and not child.is_index:
                child_manifest = mf.parse(source.manifest(child), child.media_type)
                entry["imageSize"] = child.size + sum(b.size for b in child_manifest.blobs())
                if child_manifest.artifact_type:
                    entry["artifactType"] = child_manifest.artifact_type
            entries.append(entry)
        summary["manifests"] = entries
        summary["platforms"] = [e["platform"] for e in entries if e["platform"] and
                                not e["platform"].startswith("unknown")]
        return summary
    summary["layers"] = [layer.to_json() for layer in manifest.layers]
    summary["totalSize"] = descriptor.size + sum(b.size for b in manifest.blobs())
    if manifest.artifact_type:
        summary["artifactType"] = manifest.artifact_type
    if manifest.config:
        summary["config"] = manifest.config.to_json()
        if manifest.config.media_type in mf.IMAGE_CONFIGS:
            config = json.loads(source.blob_bytes(manifest.config))
            image_platform = mf.Platform.of(config)
            summary["platform"] = str(image_platform) if image_platform else None
            summary["platforms"] = [summary["platform"]] if image_platform else []
            settings = config.get("config") or {}
            summary["created"] = config.get("created")
            summary["author"] = config.get("author")
            for key, name in (("Entrypoint", "entrypoint"), ("Cmd", "cmd"), ("Env", "env"),
                              ("WorkingDir", "workingDir"), ("User", "user"), ("Labels", "labels"),
                              ("ExposedPorts", "exposedPorts")):
                if settings.get(key):
                    summary[name] = settings[key]
    return summary


def config_bytes(source, platform: mf.Platform | None = None) -> bytes:
    descriptor, body = source.root()
    manifest = mf.parse(body, descriptor.media_type)
    if manifest.is_index:
        if platform is None:
            raise ClientError("this is an index: choose the image whose config to show with --platform",
                              code="USAGE")
        descriptor = mf.choose(manifest, platform)
        manifest = mf.parse(source.manifest(descriptor), descriptor.media_type)
    if not manifest.config:
        raise ClientError("this manifest has no config", code="NO_CONFIG")
    return source.blob_bytes(manifest.config)
