"""Image references: `[host[:port]/]name[:tag][@digest]` as docker writes them, and the local
transports `oci:DIR[:tag]` and `docker-archive:FILE[:name:tag]` as skopeo writes them.

Short names follow docker's normalisation: a first component is a registry host only if it has a
`.` or a `:` or is `localhost`; otherwise the host is docker.io, and a one-component name on
docker.io lives in `library/` (`alpine` means `docker.io/library/alpine:latest`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from registry_core.client.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_HOST_RE = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    """A reference to an image in a registry. `tag` and `digest` may both be set (the digest wins)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes in `/v2/<name>/manifests/<reference>`."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def with_reference(self, tag: str | None = None, digest: str | None = None) -> "Reference":
        return Reference(self.host, self.repository, tag, digest)

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form docker prints (`alpine:latest`), used for docker-archive RepoTags."""
        name = self.repository
        if self.host == DOCKER_HUB:
            name = name.removeprefix("library/")
        else:
            name = f"{self.host}/{name}"
        return f"{name}:{self.tag or DEFAULT_TAG}"


def parse(text: str) -> Reference:
    """Parse a docker-style reference; raises UsageError with the reason when it is not one."""
    original = text
    text = text.removeprefix("docker://")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise UsageError(f"{original!r}: {digest!r} is not a digest (algorithm:hex)")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise UsageError(f"{original!r}: {tag!r} is not a valid tag")
    host, name = split_host(text)
    if not name or not _NAME_RE.fullmatch(name):
        raise UsageError(f"{original!r}: {name!r} is not a repository name (lowercase components "
                         "separated by '/')")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(host, name, tag, digest)


def split_host(text: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST_RE.fullmatch(first):
            raise UsageError(f"{text!r}: {first!r} is not a registry host")
        host = "docker.io" if first in ("index.docker.io", "registry-1.docker.io") else first
        name = rest
    else:
        host, name = DOCKER_HUB, text
    if host == DOCKER_HUB and "/" not in name:
        name = f"library/{name}"
    return host, name


def parse_repository(text: str) -> Reference:
    """A repository without tag or digest (`registry tags HOST/NAME`)."""
    text = text.removeprefix("docker://")
    if "@" in text or text.rfind(":") > text.rfind("/"):
        raise UsageError(f"{text!r}: give a repository, without a tag or digest")
    host, name = split_host(text)
    if not _NAME_RE.fullmatch(name):
        raise UsageError(f"{text!r}: {name!r} is not a repository name")
    return Reference(host, name)


def normalize_host(text: str) -> str:
    """`registry login` accepts a host, a URL or docker's Hub aliases; returns the host."""
    host = re.sub(r"^[a-z]+://", "", text.strip()).split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io", ""):
        return DOCKER_HUB
    if not _HOST_RE.fullmatch(host):
        raise UsageError(f"{text!r} is not a registry host")
    return host


def hostname(host: str) -> str:
    """The host without its port (and without IPv6 brackets)."""
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: registries there speak plain HTTP by default, as docker allows."""
    name = hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# --- where images live: a registry, an OCI image layout, a docker archive ----------------------

@dataclass(frozen=True)
class LayoutLocation:
    """`oci:DIR[:tag]`: an OCI image layout directory (image-spec image-layout.md)."""

    path: str
    tag: str | None = None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class ArchiveLocation:
    """`docker-archive:FILE[:name:tag]`: a `docker save` tarball; the name picks or sets RepoTags."""

    path: str
    name: str | None = None

    def __str__(self) -> str:
        return f"docker-archive:{self.path}" + (f":{self.name}" if self.name else "")


Location = Reference | LayoutLocation | ArchiveLocation


def parse_location(text: str) -> Location:
    """Parse `oci:…`, `docker-archive:…`, `docker://…` or a bare registry reference.

    As in skopeo, the path ends at the first ':' after the transport."""
    if text.startswith("oci:"):
        path, _, tag = text[4:].partition(":")
        if not path:
            raise UsageError(f"{text!r}: oci: needs a directory (oci:DIR[:tag])")
        if tag and not _TAG_RE.fullmatch(tag):
            raise UsageError(f"{text!r}: {tag!r} is not a valid tag")
        return LayoutLocation(path, tag or None)
    if text.startswith("docker-archive:"):
        path, _, name = text[len("docker-archive:"):].partition(":")
        if not path:
            raise UsageError(f"{text!r}: docker-archive: needs a file (docker-archive:FILE[:name:tag])")
        return ArchiveLocation(path, name or None)
    return parse(text)
