"""The plugin's settings: `pluginConfig.mirror` in registry.yaml, its schema, and reading upstream URLs.

```yaml
pluginConfig:
  mirror:
    upstreams:                           # the longest matching prefix wins
      - prefix: library/                 # names starting with this ("" or absent: every name)
        url: https://registry-1.docker.io
        username: me                     # optional: Basic, or the login sent to its token service
        password: {$env: HUB_TOKEN}
      - prefix: ghcr/
        url: https://ghcr.io
        upstreamPrefix: ""               # ghcr/owner/app is owner/app there (default: the same name)
        tagTtl: 60                       # this upstream's own TTL
    tagTtl: 300                          # seconds before a tag is checked again upstream (HEAD)
    pull: anyone                         # anyone (anonymous too) | users (logged-in only)
    visibility: public                   # of the repositories it fills
    allowPush: false                     # true: names no upstream serves take pushes as usual
    timeout: 30                          # seconds to wait for the upstream (connect, and each read)
```

A URL is https, or plain http for a loopback host only (127.0.0.0/8, ::1, localhost); it is read
whole (the schema's format `upstream-url`, checked at start-up through `plugin_config_formats`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TAG_TTL = 300
DEFAULT_TIMEOUT = 30
_PREFIX = r"^(?:[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*/)*\Z"   # whole path components, each ending in '/'
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(text: str) -> str:
    """`text` as an upstream's base URL (`https://host[:port]`), without a trailing slash;
    ValueError saying what is wrong otherwise."""
    if not isinstance(text, str) or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not a URL: write https://host[:port]")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text} is not an http:// or https:// URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text} has an invalid port") from None
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    if not host or not _HOST.fullmatch(host) or parts.username or parts.password:
        raise ValueError(f"{text} has no valid host (credentials go in username and password, not the URL)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text}: give the registry's base URL only (https://host[:port]), without a path")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"{text}: plain http is only allowed to a loopback address; use https://")
    return f"{parts.scheme}://{parts.netloc}"


def check_prefix(text: str) -> str:
    if not isinstance(text, str) or not re.fullmatch(_PREFIX, text):
        raise ValueError(f"{text!r} is not a namespace prefix: lowercase path components each ending "
                         "in '/' (library/, docker.io/library/), or '' for every name")
    return text


_secret = {"type": "string", "minLength": 1, "maxLength": 4096}
_upstream = {
    "type": "object", "additionalProperties": False, "required": ["url"],
    "properties": {
        "prefix": {"type": "string", "maxLength": 255, "pattern": _PREFIX},
        "url": {"type": "string", "maxLength": 2048, "format": "upstream-url"},
        "upstreamPrefix": {"type": "string", "maxLength": 255, "pattern": _PREFIX},
        "username": {"type": "string", "minLength": 1, "maxLength": 256},
        "password": _secret,
        "tagTtl": {"type": "integer", "minimum": 0},
    },
    "dependentRequired": {"password": ["username"], "username": ["password"]},
}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["upstreams"],
    "properties": {
        "upstreams": {"type": "array", "minItems": 1, "items": _upstream},
        "tagTtl": {"type": "integer", "minimum": 0},
        "pull": {"enum": ["anyone", "users"]},
        "visibility": {"enum": ["public", "private"]},
        "allowPush": {"type": "boolean"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    },
}


@dataclass(frozen=True)
class UpstreamSettings:
    prefix: str
    url: str
    upstream_prefix: str
    username: str | None
    password: str | None
    tag_ttl: int

    def remote_name(self, name: str) -> str:
        """The repository on the upstream that `name` here caches."""
        return self.upstream_prefix + name[len(self.prefix):]


@dataclass(frozen=True)
class Settings:
    upstreams: tuple[UpstreamSettings, ...]
    pull: str = "anyone"
    visibility: str = "public"
    allow_push: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_config(cls, section: dict | None) -> Settings:
        """The settings of a section already checked against SCHEMA (absent: no upstream)."""
        section = section or {}
        ttl = section.get("tagTtl", DEFAULT_TAG_TTL)
        upstreams = []
        for entry in section.get("upstreams") or ():
            prefix = entry.get("prefix", "")
            upstreams.append(UpstreamSettings(
                prefix=prefix, url=check_url(entry["url"]), upstream_prefix=entry.get("upstreamPrefix", prefix),
                username=entry.get("username"), password=entry.get("password"),
                tag_ttl=entry.get("tagTtl", ttl)))
        upstreams.sort(key=lambda u: len(u.prefix), reverse=True)   # the longest prefix first
        return cls(upstreams=tuple(upstreams), pull=section.get("pull", "anyone"),
                   visibility=section.get("visibility", "public"), allow_push=section.get("allowPush", False),
                   timeout=section.get("timeout", DEFAULT_TIMEOUT))

    def upstream_for(self, name: str) -> UpstreamSettings | None:
        return next((u for u in self.upstreams if name.startswith(u.prefix)), None)
