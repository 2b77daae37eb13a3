"""The plugin's settings: `pluginConfig.reporting` in registry.yaml, its schema and its defaults.

On a registry-role node with its own store, `index` and `node` turn reporting on:

```yaml
role: registry
plugins: [reporting]
pluginConfig:
  reporting:
    index: "https://index.example"   # the Index's base URL; reports go to <index>/api/v1/nodes/reports
    node: eu-1                       # this node's name, as the Index lists it in its `nodes`
    timeout: 10s                     # one delivery attempt
    pollInterval: 1s                 # how often a standing-by process looks for work
    retry: {initialInterval: 1s, maxInterval: 5m}
```

On the Index, `nodes` lists the nodes it trusts, each by the public key that signs its reports
(`registry node-key` on the node prints it):

```yaml
plugins: [reporting]
pluginConfig:
  reporting:
    nodes:
      - {name: eu-1, publicKey: "ssh-ed25519 AAAAC3Nz…"}
      - {name: us-1, keyFile: /etc/registry/nodes/us-1.pub}   # the same line, or a PEM public key
```

Durations are a number of seconds or text such as `250ms`, `5s`, `10m`, `24h`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..webhooks.settings import _duration_schema, seconds

NODE_NAME = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?\Z"

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "index": {"type": "string", "maxLength": 2048, "pattern": r"^https?://[!-~]+\Z"},
        "node": {"type": "string", "pattern": NODE_NAME},
        "timeout": _duration_schema,
        "pollInterval": _duration_schema,
        "retry": {"type": "object", "additionalProperties": False, "properties": {
            "initialInterval": _duration_schema, "maxInterval": _duration_schema}},
        "nodes": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "oneOf": [{"required": ["publicKey"]}, {"required": ["keyFile"]}],
            "properties": {
                "name": {"type": "string", "pattern": NODE_NAME},
                "publicKey": {"type": "string", "maxLength": 4096, "format": "node-public-key"},
                "keyFile": {"type": "string", "minLength": 1, "maxLength": 4096, "format": "node-key-file"}}}},
    },
    "dependentRequired": {"index": ["node"], "node": ["index"]},
}


@dataclass(frozen=True)
class TrustedNode:
    name: str
    public_key: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Settings:
    index: str | None = None          # set on a node: where its reports go
    node: str | None = None
    timeout: float = 10.0
    poll_interval: float = 1.0
    initial_interval: float = 1.0
    max_interval: float = 300.0
    nodes: tuple[TrustedNode, ...] = field(default_factory=tuple)

    # What the webhooks worker reads (plugins/webhooks/worker.py): reports go to the operator's own
    # Index, which may well be on a private network, and are never given up.
    allow_private_targets: bool = True

    @classmethod
    def from_config(cls, section: dict | None) -> "Settings":
        section = section or {}
        retry = section.get("retry") or {}
        return cls(index=section["index"].rstrip("/") if section.get("index") else None,
                   node=section.get("node"),
                   timeout=seconds(section.get("timeout"), 10.0),
                   poll_interval=seconds(section.get("pollInterval"), 1.0),
                   initial_interval=seconds(retry.get("initialInterval"), 1.0),
                   max_interval=seconds(retry.get("maxInterval"), 300.0),
                   nodes=tuple(TrustedNode(n["name"], n.get("publicKey"), n.get("keyFile"))
                               for n in section.get("nodes") or []))
