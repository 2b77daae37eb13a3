"""The distribution-spec grammars for repository names, tags and digests.

Every name, tag and digest is checked here before it is used to build a storage path, so nothing a
client sends can escape the store (`..`, absolute paths, NUL bytes are all outside the grammars).
Every grammar is matched against the whole string (`fullmatch`): `$` would also accept a trailing
newline, and a name ending in one is a look-alike in listings and a broken line in a commit.
Account names live here too: they become the authors of metadata commits.
"""

from __future__ import annotations

import hashlib
import re

from registry_core.errors import RegistryError

# spec.md "Pulling manifests": <name> is one or more path components separated by "/".
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
MAX_NAME_LENGTH = 255
# Users, organisations and robots: lowercase, no '/' (a namespace is one component of a repository name).
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
MAX_ACCOUNT_NAME_LENGTH = 64

# Registered algorithms (image-spec descriptor.md) and the exact shape of their encoded part.
ALGORITHMS = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(
            "NAME_INVALID",
            f"invalid repository name {name!r}: use lowercase path components of letters and digits "
            "separated by '/', with '.', '_', '__' or '-' between them (at most 255 characters)",
            detail={"name": name})
    return name


def is_account_name(name) -> bool:
    return isinstance(name, str) and len(name) <= MAX_ACCOUNT_NAME_LENGTH and ACCOUNT_NAME_RE.fullmatch(name) is not None


def canonical_name(name: str) -> str:
    """Short names mean the official namespace, as on Docker Hub: `alpine` is `library/alpine`."""
    return name if "/" in name or not is_valid_name(name) else f"library/{name}"


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError(
            "TAG_INVALID", f"invalid tag {tag!r}: a tag is 1 to 128 characters of letters, digits, "
            "'_', '.' and '-', and does not start with '.' or '-'", detail={"tag": tag}, status=400)
    return tag


def is_digest(reference: str) -> bool:
    return ":" in reference


def check_digest(digest: str, code: str = "DIGEST_INVALID") -> str:
    """Return the digest if it is well-formed with a supported algorithm, else raise `code`."""
    match = DIGEST_RE.fullmatch(digest)
    if not match:
        raise RegistryError(code, f"invalid digest {digest!r}: expected <algorithm>:<hex>, "
                            "for example sha256:<64 lowercase hex characters>", detail={"digest": digest})
    algorithm, encoded = match.groups()
    shape = ALGORITHMS.get(algorithm)
    if shape is None:
        raise RegistryError(code, f"unsupported digest algorithm {algorithm!r}: use sha256 or sha512",
                            detail={"digest": digest})
    if not shape.fullmatch(encoded):
        raise RegistryError(code, f"invalid {algorithm} digest {digest!r}: wrong length or not lowercase hex",
                            detail={"digest": digest})
    return digest


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, encoded = digest.partition(":")
    return algorithm, encoded


def new_hasher(digest_or_algorithm: str = "sha256"):
    return hashlib.new(digest_or_algorithm.partition(":")[0])


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
