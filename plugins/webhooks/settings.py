"""The plugin's settings: `pluginConfig.webhooks` in registry.yaml, its schema and its defaults.

```yaml
pluginConfig:
  webhooks:
    allowPrivateTargets: false      # hooks to loopback, link-local and private addresses are refused
    timeout: 5s                     # one delivery attempt, connect to last byte of the response
    pollInterval: 1s                # how often a standing-by process looks for work
    retry: {initialInterval: 1s, maxInterval: 10m, maxAge: 24h}
    endpoints:                      # registry-wide hooks, for every repository
      - {name: audit, url: "https://audit.example/hook", secret: {$env: AUDIT_SECRET},
         events: [push, delete], format: cloudevents, repositories: "*", tags: "*"}
```

Durations are a number of seconds or text such as `250ms`, `5s`, `10m`, `24h`, `7d`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FORMATS = ("distribution", "cloudevents", "dockerhub")
EVENTS = ("push", "delete", "tag", "untag", "pull", "star", "comment", "mirror-fill")
DEFAULT_EVENTS = ("push",)
_DURATION = re.compile(r"(?P<number>[0-9]{1,9}(?:\.[0-9]{1,6})?)(?P<unit>ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

_duration_schema = {"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,6})?(ms|s|m|h|d)\Z"}]}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "allowPrivateTargets": {"type": "boolean"},
        "timeout": _duration_schema,
        "pollInterval": _duration_schema,
        "retry": {"type": "object", "additionalProperties": False, "properties": {
            "initialInterval": _duration_schema, "maxInterval": _duration_schema, "maxAge": _duration_schema}},
        "endpoints": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "url", "secret"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?\Z"},
                "url": {"type": "string", "maxLength": 2048, "pattern": r"^https?://[!-~]+\Z"},
                "secret": {"type": "string", "minLength": 16},
                "events": {"type": "array", "items": {"enum": list(EVENTS)}, "uniqueItems": True},
                "format": {"enum": list(FORMATS)},
                "repositories": {"type": "string", "maxLength": 256},
                "tags": {"type": "string", "maxLength": 256},
                "active": {"type": "boolean"}}}},
    },
}


def seconds(value, default: float) -> float:
    """A duration of the config (already checked by SCHEMA) in seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.fullmatch(value)
    return float(match["number"]) * _UNITS[match["unit"]]


@dataclass(frozen=True)
class Endpoint:
    """A registry-wide hook from registry.yaml."""
    name: str
    url: str
    secret: str
    events: tuple[str, ...] = DEFAULT_EVENTS
    format: str = "distribution"
    repositories: str = "*"
    tags: str | None = None
    active: bool = True

    @property
    def key(self) -> str:
        """Its folder under state/webhooks/hooks/: never the id of a repository's hook (12 hex digits)."""
        return f"registry-{self.name}"


@dataclass(frozen=True)
class Settings:
    allow_private_targets: bool = False
    timeout: float = 5.0
    poll_interval: float = 1.0
    initial_interval: float = 1.0
    max_interval: float = 600.0
    max_age: float = 86400.0
    endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, section: dict | None) -> Settings:
        section = section or {}
        retry = section.get("retry") or {}
        endpoints = tuple(Endpoint(name=e["name"], url=e["url"], secret=str(e["secret"]),
                                   events=tuple(e.get("events") or DEFAULT_EVENTS),
                                   format=e.get("format", "distribution"), repositories=e.get("repositories", "*"),
                                   tags=e.get("tags"), active=e.get("active", True))
                          for e in section.get("endpoints") or [])
        return cls(allow_private_targets=bool(section.get("allowPrivateTargets", False)),
                   timeout=seconds(section.get("timeout"), 5.0),
                   poll_interval=seconds(section.get("pollInterval"), 1.0),
                   initial_interval=seconds(retry.get("initialInterval"), 1.0),
                   max_interval=seconds(retry.get("maxInterval"), 600.0),
                   max_age=seconds(retry.get("maxAge"), 86400.0),
                   endpoints=endpoints)
