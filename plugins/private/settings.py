"""The plugin's settings: `pluginConfig.private` in registry.yaml, its schema, and reading networks.

```yaml
pluginConfig:
  private:
    allow: [10.0.0.0/8]                 # every class of request; empty or absent: every address
    deny: [10.66.0.0/16]                # any deny wins
    actions:                            # finer lists per class, checked as well as the two above
      push: {allow: [10.1.0.0/16]}
      delete: {allow: [10.1.2.0/24], deny: []}
    trustedProxies: [10.0.0.5/32]       # peers whose X-Forwarded-For names the client
    clientCertificate: {required: true, header: X-SSL-Client-Verify, value: SUCCESS}
```

The classes of request are those of firewall.CLASSES. Every network is read whole by the
`ipaddress` module (the schema's format `cidr`, checked at start-up through the
`plugin_config_formats` hook), so a typo stops `registry serve` with one line naming its key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .firewall import CLASSES

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CERTIFICATE_HEADER = "X-SSL-Client-Verify"
DEFAULT_CERTIFICATE_VALUE = "SUCCESS"
# What ipaddress is asked to read: digits, hex, dots and colons, and a prefix length. It would also
# take a netmask (10.0.0.0/255.0.0.0) and an IPv6 zone (fe80::1%eth0), which no list here needs.
_NETWORK_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")
_HEADER_NAME = r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*\Z"  # letters, digits and '-' (WSGI drops names with '_')


def parse_network(text: str) -> Network:
    """`text` as a network (`10.0.0.0/8`, `2001:db8::/32`, or one address: `10.1.2.3` is /32);
    ValueError saying what is wrong otherwise, host bits set included (`10.0.0.1/8`)."""
    if not isinstance(text, str) or not _NETWORK_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 network: write it as 10.0.0.0/8, "
                         "2001:db8::/32 or one address")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 network: an address is four numbers 0-255 "
                         "or IPv6 hex groups, a prefix length at most 32 (IPv4) or 128 (IPv6)") from None
    raise ValueError(f"{text} has host bits set: the network is {loose}")


_networks = {"type": "array", "items": {"type": "string", "format": "cidr"}}
_lists = {"type": "object", "additionalProperties": False,
          "properties": {"allow": _networks, "deny": _networks}}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "allow": _networks,
        "deny": _networks,
        "actions": {"type": "object", "additionalProperties": False,
                    "properties": {name: _lists for name in CLASSES}},
        "trustedProxies": _networks,
        "clientCertificate": {
            "type": "object", "additionalProperties": False, "required": ["required"],
            "properties": {"required": {"type": "boolean"},
                           "header": {"type": "string", "maxLength": 64, "pattern": _HEADER_NAME},
                           "value": {"type": "string", "minLength": 1, "maxLength": 256}}},
    },
    # The certificate header is believed only from a trusted proxy: requiring it needs one.
    "if": {"required": ["clientCertificate"],
           "properties": {"clientCertificate": {"properties": {"required": {"const": True}}}}},
    "then": {"required": ["trustedProxies"], "properties": {"trustedProxies": {"minItems": 1}}},
}


@dataclass(frozen=True)
class Lists:
    """An allow and a deny list; `where` is their key in registry.yaml, for messages."""
    where: str
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, where: str, section: dict | None) -> Lists:
        section = section or {}
        return cls(where, tuple(map(parse_network, section.get("allow") or ())),
                   tuple(map(parse_network, section.get("deny") or ())))


@dataclass(frozen=True)
class Settings:
    everywhere: Lists = field(default_factory=lambda: Lists("pluginConfig.private"))
    actions: dict = field(default_factory=dict)          # class -> Lists
    trusted_proxies: tuple[Network, ...] = ()
    certificate_header: str | None = None                # None: no client certificate is required
    certificate_value: str = DEFAULT_CERTIFICATE_VALUE

    @classmethod
    def from_config(cls, section: dict | None) -> Settings:
        """The settings of a section already checked against SCHEMA (absent: the defaults)."""
        section = section or {}
        actions = {name: Lists.from_config(f"pluginConfig.private.actions.{name}", lists)
                   for name, lists in (section.get("actions") or {}).items()}
        certificate = section.get("clientCertificate") or {}
        required = certificate.get("required", False)
        return cls(everywhere=Lists.from_config("pluginConfig.private", section), actions=actions,
                   trusted_proxies=tuple(map(parse_network, section.get("trustedProxies") or ())),
                   certificate_header=certificate.get("header", DEFAULT_CERTIFICATE_HEADER) if required else None,
                   certificate_value=certificate.get("value", DEFAULT_CERTIFICATE_VALUE))
