"""Manifest media types, and parsing a pushed manifest into the image-graph node it describes.

Covers the OCI image manifest and index (image-spec v1.1, including `artifactType` and
`subject`) and Docker's schema 2 manifest and manifest list. The pushed bytes are never
re-serialised: the graph node is extracted, the bytes are stored and served as they came.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry_core import json_text
from registry_core.errors import RegistryError
from registry_core.names import DIGEST_RE, ALGORITHMS

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_MANIFESTS + INDEXES
# Content-Types that say nothing about which manifest this is; the body's mediaType decides.
GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")


@dataclass
class ParsedManifest:
    media_type: str
    config: dict | None = None
    layers: list[dict] = field(default_factory=list)
    manifests: list[dict] = field(default_factory=list)
    subject: dict | None = None
    artifact_type: str | None = None
    annotations: dict | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def referrer_artifact_type(self) -> str | None:
        """What the referrers API reports: artifactType, else (for an image manifest) the config type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and not self.is_index:
            return self.config.get("mediaType")
        return None


# image-spec descriptor.md: size is an int64. Larger numbers are no blob's size, and other tools
# (Go's encoding/json, YAML readers of the documents) could not read them back.
MAX_DESCRIPTOR_SIZE = 2**63 - 1


def invalid(message: str, **detail) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    try:
        document = json_text.parse(body)
    except json_text.JsonRefused as e:
        raise invalid(f"the manifest {e}") from None
    if not isinstance(document, dict):
        raise invalid("the manifest must be a JSON object")

    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower()
    if declared is not None and not isinstance(declared, str):
        raise invalid("mediaType must be a string")
    if header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1:
        raise invalid("Docker schema 1 manifests are not supported: push with a current client, "
                      "which sends schema 2 or OCI manifests")
    if header in GENERIC_TYPES:
        media_type = declared or (OCI_INDEX if "manifests" in document else OCI_MANIFEST)
    else:
        media_type = header
        if declared is not None and declared != header:
            raise invalid(f"the Content-Type {header} does not match the manifest's mediaType {declared}",
                          contentType=header, mediaType=declared)
    if media_type not in MANIFEST_TYPES:
        raise invalid(f"unsupported manifest media type {media_type!r}: push one of "
                      + ", ".join(MANIFEST_TYPES), mediaType=media_type)
    if document.get("schemaVersion") != 2:
        raise invalid("schemaVersion must be 2")

    parsed = ParsedManifest(media_type=media_type)
    parsed.artifact_type = _optional_string(document, "artifactType")
    parsed.annotations = _annotations(document.get("annotations"), "annotations")
    if "subject" in document:
        parsed.subject = descriptor(document["subject"], "subject")
    if media_type in INDEXES:
        manifests = document.get("manifests")
        if not isinstance(manifests, list):
            raise invalid("an index needs a 'manifests' list")
        parsed.manifests = [descriptor(d, f"manifests[{i}]") for i, d in enumerate(manifests)]
    else:
        if "config" not in document:
            raise invalid("an image manifest needs a 'config' descriptor")
        parsed.config = descriptor(document["config"], "config")
        layers = document.get("layers", [])
        if not isinstance(layers, list):
            raise invalid("'layers' must be a list of descriptors")
        parsed.layers = [descriptor(d, f"layers[{i}]") for i, d in enumerate(layers)]
    return parsed


def descriptor(value, where: str) -> dict:
    """Check one descriptor and keep the fields the image graph records."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a descriptor object")
    digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType")
    match = DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if not match or match.group(1) not in ALGORITHMS or not ALGORITHMS[match.group(1)].fullmatch(match.group(2)):
        raise invalid(f"{where}.digest {digest!r} is not a valid sha256 or sha512 digest", field=where)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_DESCRIPTOR_SIZE:
        raise invalid(f"{where}.size must be an integer from 0 to {MAX_DESCRIPTOR_SIZE}", field=where)
    if not isinstance(media_type, str) or not media_type:
        raise invalid(f"{where}.mediaType must be a non-empty string", field=where)
    result = {"mediaType": media_type, "digest": digest, "size": size}
    artifact_type = _optional_string(value, "artifactType", where)
    if artifact_type:
        result["artifactType"] = artifact_type
    if "platform" in value:
        if not isinstance(value["platform"], dict):
            raise invalid(f"{where}.platform must be an object", field=where)
        result["platform"] = value["platform"]
    annotations = _annotations(value.get("annotations"), f"{where}.annotations")
    if annotations:
        result["annotations"] = annotations
    if "urls" in value:
        if not isinstance(value["urls"], list) or not all(isinstance(u, str) for u in value["urls"]):
            raise invalid(f"{where}.urls must be a list of strings", field=where)
        result["urls"] = value["urls"]
    return result


def _optional_string(document: dict, key: str, where: str = "") -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{where + '.' if where else ''}{key} must be a string")
    return value


def _annotations(value, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise invalid(f"{where} must map strings to strings")
    return value
