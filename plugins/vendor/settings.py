"""The vendor plugin's settings: `pluginConfig.vendor` in registry.yaml, its schema, and the checks
of its values.

```yaml
pluginConfig:
  vendor:
    vendors: [acme]                       # organisations whose namespaces are vendor namespaces
    immutableTags: ["v*"]                 # tags matching a glob are never moved or deleted
    requireAnnotations: [org.opencontainers.image.source]
    signedPullsOnly: false                # true: anonymous pulls by tag wait for a signature
    signatureArtifactTypes: [...]         # what counts as a signature (default: SIGNATURE_TYPES)
```

Globs are those of `fnmatch` (`*`, `?`, `[…]`), matched case-sensitively against the whole tag.
Every value is checked whole at start-up (the formats below, through `plugin_config_formats`), so
a typo stops `registry serve` with one line naming its key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry_core.names import is_account_name

DEFAULT_IMMUTABLE_TAGS = ("v*",)
# The artifactType of a signature pushed as a referrer: cosign's (its OCI 1.1 referrers mode), a
# Sigstore bundle (cosign 3's default), and Notary Project's (notation).
SIGNATURE_TYPES = ("application/vnd.dev.cosign.artifact.sig.v1+json",
                   "application/vnd.dev.sigstore.bundle.v0.3+json",
                   "application/vnd.cncf.notary.signature")

_GLOB = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,128}")
_ANNOTATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/#+-]{0,255}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def check_org(text: str) -> str:
    if not is_account_name(text):
        raise ValueError(f"{text!r} is not an organisation name: lowercase letters and digits, with "
                         "'.', '_' or '-' between them (at most 64 characters)")
    return text


def check_glob(text: str) -> str:
    if not _GLOB.fullmatch(text):
        raise ValueError(f"{text!r} is not a tag pattern: use the characters of tags (letters, digits, "
                         "'_', '.', '-') and the wildcards '*', '?' and '[…]', at most 128 in all")
    return text


def check_annotation(text: str) -> str:
    if not _ANNOTATION.fullmatch(text):
        raise ValueError(f"{text!r} is not an annotation key: letters, digits and '.', '_', '/', '-' "
                         "(org.opencontainers.image.source), at most 256 characters")
    return text


def check_media_type(text: str) -> str:
    if not _MEDIA_TYPE.fullmatch(text):
        raise ValueError(f"{text!r} is not a media type (type/subtype, like {SIGNATURE_TYPES[0]})")
    return text


FORMATS = {"vendor-org": check_org, "tag-glob": check_glob, "annotation-key": check_annotation,
           "media-type": check_media_type}


def _strings(format_name: str) -> dict:
    return {"type": "array", "uniqueItems": True, "items": {"type": "string", "format": format_name}}


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "vendors": _strings("vendor-org"),
        "immutableTags": _strings("tag-glob"),
        "requireAnnotations": _strings("annotation-key"),
        "signedPullsOnly": {"type": "boolean"},
        "signatureArtifactTypes": {**_strings("media-type"), "minItems": 1},
    },
}


@dataclass(frozen=True)
class Settings:
    vendors: frozenset = frozenset()
    immutable_tags: tuple = DEFAULT_IMMUTABLE_TAGS
    required_annotations: tuple = ()
    signed_pulls_only: bool = False
    signature_types: frozenset = frozenset(SIGNATURE_TYPES)

    @classmethod
    def from_config(cls, section: dict | None) -> Settings:
        """The settings of a section already checked against SCHEMA (absent: the defaults)."""
        section = section or {}
        return cls(vendors=frozenset(section.get("vendors") or ()),
                   immutable_tags=tuple(section.get("immutableTags", DEFAULT_IMMUTABLE_TAGS)),
                   required_annotations=tuple(section.get("requireAnnotations") or ()),
                   signed_pulls_only=bool(section.get("signedPullsOnly", False)),
                   signature_types=frozenset(section.get("signatureArtifactTypes") or SIGNATURE_TYPES))
