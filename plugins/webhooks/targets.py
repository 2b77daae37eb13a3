"""Where a hook may send: http(s) URLs, never to loopback, link-local or private addresses unless
`allowPrivateTargets` (so a repository admin cannot make the registry probe its own network or a
cloud's metadata service).

A URL is checked when a hook is created or changed, and again at each delivery against every
address its host resolves to then; the delivery connects to the address that was checked (a DNS
answer that changes between the check and the connection cannot redirect it).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from registry_core.errors import RegistryError

MAX_URL = 2048
_PRINTABLE = re.compile(r"[!-~]+")  # no spaces, no control characters, ASCII only


class TargetRefused(Exception):
    """The URL may not be delivered to; the message says why."""


class Unresolvable(TargetRefused):
    """The URL's host does not resolve (now)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str          # as written (the Host header, the TLS server name)
    port: int
    path: str          # path and query
    address: str | None = None  # the checked address to connect to


def parse(url) -> Target:
    """The parts of a hook URL; TargetRefused when it is not an absolute http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not _PRINTABLE.fullmatch(url):
        raise TargetRefused(f"a webhook URL must be an http:// or https:// URL of at most {MAX_URL} "
                            "printable ASCII characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("a webhook URL may not carry credentials (they would be stored in clear); "
                            "the receiver checks X-Registry-Signature instead")
    if parts.fragment:
        raise TargetRefused("a webhook URL may not have a #fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"{url!r} has an invalid port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


def is_private(address: str) -> bool:
    """Loopback, link-local, private, shared, reserved, multicast or unspecified: anything but a
    globally routable unicast address (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(target: Target, allow_private: bool) -> Target:
    """`target` with the address to connect to: the first its host resolves to, once every address
    it resolves to has been checked. TargetRefused for a private one (unless allowed) or a host
    that does not resolve."""
    try:
        answers = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise Unresolvable(f"cannot resolve {target.host}: {e}") from None
    addresses = [answer[4][0] for answer in answers]
    if not allow_private:
        refused = sorted({address for address in addresses if is_private(address)})
        if refused:
            raise TargetRefused(f"{target.host} is a loopback, link-local or private address "
                                f"({', '.join(refused)}); webhooks may only reach public addresses "
                                "(pluginConfig.webhooks.allowPrivateTargets: true allows them)")
    return Target(target.scheme, target.host, target.port, target.path, addresses[0])


def check_new(url, allow_private: bool) -> str:
    """The URL of a hook being created or changed, or 400. A host that does not resolve now is
    accepted (its DNS may not exist yet); every delivery checks again."""
    try:
        target = parse(url)
        try:
            resolve(target, allow_private)
        except Unresolvable:
            pass
    except TargetRefused as e:
        raise RegistryError("UNSUPPORTED", f"url: {e}", status=400) from None
    return url
