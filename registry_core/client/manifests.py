"""Manifests and descriptors as the client sees them: media types, parsing a manifest into its
children, digests, and choosing a platform from an index.

The client never re-serialises a manifest it copies: the bytes it read are the bytes it writes,
so digests stay the same across registries, layouts and archives.
"""

from __future__ import annotations

import hashlib
import json
import platform as host
import re
from dataclasses import dataclass, field

from registry_core.client.errors import ClientError, NotFound, UsageError, VerificationError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_MANIFESTS + INDEXES
ACCEPT = ", ".join(MANIFEST_TYPES)
IMAGE_CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
MAX_MANIFEST_SIZE = 4 << 20
REF_NAME = "org.opencontainers.image.ref.name"
# Layers a registry must not be asked to store (docker's foreign layers, OCI non-distributable ones).
_NON_DISTRIBUTABLE = re.compile(r"foreign|nondistributable")
_ALGORITHMS = {"sha256": 64, "sha512": 128}


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None
    artifact_type: str | None = None
    urls: list | None = None

    @classmethod
    def from_json(cls, document: dict) -> "Descriptor":
        try:
            return cls(document.get("mediaType", ""), check_digest(document["digest"]), int(document["size"]),
                       document.get("platform"), document.get("annotations"), document.get("artifactType"),
                       document.get("urls"))
        except (KeyError, TypeError, ValueError):
            raise ClientError(f"malformed descriptor {json.dumps(document)[:200]}", code="MANIFEST_INVALID") from None

    def to_json(self) -> dict:
        document = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        for key, value in (("platform", self.platform), ("annotations", self.annotations),
                           ("artifactType", self.artifact_type), ("urls", self.urls)):
            if value:
                document[key] = value
        return document

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    @property
    def is_manifest(self) -> bool:
        return self.media_type in MANIFEST_TYPES

    @property
    def distributable(self) -> bool:
        return not (self.urls and _NON_DISTRIBUTABLE.search(self.media_type))


@dataclass
class Manifest:
    """A parsed manifest or index: what it points to, not how it is spelt."""

    media_type: str
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def blobs(self) -> list[Descriptor]:
        return ([self.config] if self.config else []) + self.layers


def parse(body: bytes, media_type: str | None = None) -> Manifest:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError("the manifest is not JSON", code="MANIFEST_INVALID") from None
    if not isinstance(document, dict):
        raise ClientError("the manifest is not a JSON object", code="MANIFEST_INVALID")
    kind = document.get("mediaType") or media_type or ""
    if kind not in MANIFEST_TYPES:
        kind = OCI_INDEX if "manifests" in document else OCI_MANIFEST if "layers" in document else kind
    if kind not in MANIFEST_TYPES:
        raise ClientError(f"unsupported manifest type {kind or '(none)'}: this client handles "
                          "OCI and Docker schema 2 manifests and indexes", code="MANIFEST_UNSUPPORTED")
    manifest = Manifest(kind, artifact_type=document.get("artifactType"), annotations=document.get("annotations"))
    if manifest.is_index:
        manifest.manifests = [Descriptor.from_json(d) for d in document.get("manifests") or []]
    else:
        if document.get("config"):
            manifest.config = Descriptor.from_json(document["config"])
        manifest.layers = [Descriptor.from_json(d) for d in document.get("layers") or []]
    if document.get("subject"):
        manifest.subject = Descriptor.from_json(document["subject"])
    return manifest


def check_digest(digest: str) -> str:
    algorithm, _, encoded = str(digest).partition(":")
    if algorithm not in _ALGORITHMS or len(encoded) != _ALGORITHMS[algorithm] or \
            not re.fullmatch(r"[0-9a-f]+", encoded):
        raise ClientError(f"unsupported or malformed digest {digest!r}", code="DIGEST_INVALID")
    return digest


def hasher(digest: str):
    return hashlib.new(check_digest(digest).split(":", 1)[0])


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify(data: bytes, descriptor: Descriptor, what: str) -> bytes:
    """Raise VerificationError unless `data` has the descriptor's size and digest."""
    if len(data) != descriptor.size:
        raise VerificationError(f"{what} is {len(data)} bytes but its descriptor says {descriptor.size}",
                                code="SIZE_MISMATCH", detail={"digest": descriptor.digest})
    actual = digest_of(data, descriptor.digest.split(":", 1)[0])
    if actual != descriptor.digest:
        raise VerificationError(f"{what} has digest {actual}, expected {descriptor.digest}",
                                detail={"expected": descriptor.digest, "actual": actual})
    return data


# --- platforms ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"{text!r} is not a platform: use os/arch or os/arch/variant (linux/arm64/v8)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def of(cls, document: dict | None) -> "Platform | None":
        if not document or not document.get("os") or not document.get("architecture"):
            return None
        return cls(document["os"], document["architecture"], document.get("variant") or None)

    def matches(self, other: "Platform | None") -> bool:
        """Whether an image for `other` serves this request. A request without a variant takes
        any variant; arm64 images commonly omit their implied `v8`."""
        if other is None or other.os != self.os or other.architecture != self.architecture:
            return False
        if self.variant is None or self.variant == other.variant:
            return True
        return self.architecture == "arm64" and {self.variant, other.variant} <= {"v8", None}

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = host.machine().lower()
    arch, variant = {"x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", None),
                     "arm64": ("arm64", None), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
                     "i686": ("386", None), "i386": ("386", None), "ppc64le": ("ppc64le", None),
                     "s390x": ("s390x", None), "riscv64": ("riscv64", None)}.get(machine, (machine, None))
    return Platform(host.system().lower() or "linux", arch, variant)


def choose(index: Manifest, wanted: Platform) -> Descriptor:
    """The index entry for `wanted`; the most specific match wins (an exact variant over none)."""
    candidates = [d for d in index.manifests if wanted.matches(Platform.of(d.platform))]
    if not candidates:
        available = ", ".join(str(Platform.of(d.platform)) for d in index.manifests
                              if Platform.of(d.platform)) or "none"
        raise NotFound(f"no image for {wanted} in this index (it has: {available})",
                       code="PLATFORM_UNKNOWN", detail={"available": available.split(", ")})
    candidates.sort(key=lambda d: Platform.of(d.platform).variant != wanted.variant)
    return candidates[0]
