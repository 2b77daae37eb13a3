"""The firewall's decisions, without HTTP: the class of a request, the client's address behind
trusted proxies, and whether the address lists and the client-certificate header let it in.

Classes of request (every request has exactly one, so no route escapes the lists):
- `token`: `/token`;
- `pull`, `push`, `delete`: `/v2` and everything under it. An upload (`…/blobs/uploads/…`, any
  method) is `push`; otherwise GET and HEAD are `pull`, DELETE is `delete`, any other method `push`;
- `api`: `/api/…` and `/v1/…` (the accounts, community and search APIs, and plugins' APIs there);
- `ui`: every other path (web pages, and paths nothing serves).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

CLASSES = ("pull", "push", "delete", "token", "api", "ui")
_UPLOAD = re.compile(r"/v2/.+/blobs/uploads(?:/[^/]*)?", re.DOTALL)  # the upload routes' paths

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def action_class(method: str, path: str) -> str:
    """The class of a request for `path` (PATH_INFO, the text bottle routes on) with `method`."""
    if path == "/token":
        return "token"
    if path == "/v2" or path.startswith("/v2/"):
        if _UPLOAD.fullmatch(path):
            return "push"
        if method in ("GET", "HEAD"):
            return "pull"
        return "delete" if method == "DELETE" else "push"
    if path in ("/api", "/v1") or path.startswith(("/api/", "/v1/")):
        return "api"
    return "ui"


class Refused(Exception):
    """A request the firewall refuses; the message says which rule refused which address."""


def parse_address(text: str | None) -> Address:
    """One address, read whole; an IPv4 address mapped into IPv6 (`::ffff:10.1.2.3`, what a
    dual-stack socket reports) is the IPv4 address, so IPv4 lists apply to it."""
    address = ipaddress.ip_address(text.strip() if isinstance(text, str) else "")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address, networks) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The first of `networks` holding `address` (a network of the other IP version holds none)."""
    return next((network for network in networks if address in network), None)


@dataclass(frozen=True)
class Verdict:
    action: str                 # the class of the request
    client: Address | None      # None: the address could not be told (then `refused` says why)
    peer: str                   # who connected (a trusted proxy, or the client itself)
    refused: str | None = None  # why the request is refused; None lets it on to the login check


class Firewall:
    def __init__(self, settings):
        self.settings = settings

    def judge(self, peer: str | None, forwarded: str | None, method: str, path: str,
              certificate: str | None = None) -> Verdict:
        """The verdict on a request from `peer` (REMOTE_ADDR) carrying `forwarded`
        (X-Forwarded-For) and `certificate` (the client-certificate header, when one is required)."""
        action = action_class(method, path)
        peer_text = peer or ""
        client = None
        try:
            try:
                peer_address = parse_address(peer)
            except ValueError:
                raise Refused(f"the peer address {peer_text!r} is not an IP address") from None
            from_proxy = within(peer_address, self.settings.trusted_proxies) is not None
            client = self.client_address(peer_address, forwarded if from_proxy else None)
            self.check_lists(client, action)
            self.check_certificate(from_proxy, certificate)
        except Refused as refusal:
            return Verdict(action, client, peer_text, str(refusal))
        return Verdict(action, client, peer_text)

    def client_address(self, peer: Address, forwarded: str | None) -> Address:
        """The client: the right-most address of `forwarded` that is not a trusted proxy (each
        proxy appends the address it got the request from, so everything right of it was written
        by trusted proxies and everything left of it may be the client's invention), or the
        left-most when all are trusted; `peer` without `forwarded`. Only pass `forwarded` when
        `peer` is a trusted proxy."""
        if forwarded is None or not forwarded.strip():
            return peer
        address = peer
        for entry in reversed(forwarded.split(",")):
            try:
                address = parse_address(entry)
            except ValueError:
                raise Refused(f"X-Forwarded-For from the trusted proxy {peer} has {entry.strip()!r} where "
                              "an IP address should be, so the client's address is unknown") from None
            if within(address, self.settings.trusted_proxies) is None:
                return address
        return address

    def check_lists(self, client: Address, action: str) -> None:
        """Refuse `client` for `action` when a deny list that applies holds it (the registry-wide
        one or its class's), or a non-empty allow list that applies does not."""
        applying = [self.settings.everywhere]
        if action in self.settings.actions:
            applying.append(self.settings.actions[action])
        for lists in applying:
            network = within(client, lists.deny)
            if network is not None:
                raise Refused(f"{client} may not make {action} requests: it is in {network} of {lists.where}.deny")
        for lists in applying:
            if lists.allow and within(client, lists.allow) is None:
                raise Refused(f"{client} may not make {action} requests: it is in no network of {lists.where}.allow")

    def check_certificate(self, from_proxy: bool, value: str | None) -> None:
        """When a client certificate is required, the TLS proxy's header must say it was verified;
        the header counts only from a trusted proxy (anyone else could write it)."""
        header = self.settings.certificate_header
        if header is None:
            return
        if not from_proxy:
            raise Refused(f"a verified client certificate is required, and only a trusted proxy may say so "
                          f"({header}): connect through the TLS proxy")
        if value != self.settings.certificate_value:
            said = f"is {value[:100]!r}" if value is not None else "is missing"
            raise Refused(f"a verified client certificate is required: the TLS proxy's {header} {said}, "
                          f"not {self.settings.certificate_value!r}")
