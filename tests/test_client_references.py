"""Parsing what users type: image references, local transports, hosts, platforms, challenges."""

from __future__ import annotations

import pytest

from registry_core.client.auth import merge_scopes, parse_challenges
from registry_core.client.errors import UsageError
from registry_core.client.manifests import Platform
from registry_core.client.references import (ArchiveLocation, LayoutLocation, Reference, is_loopback,
                                             normalize_host, parse, parse_location)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("alpine", Reference("docker.io", "library/alpine", "latest")),
    ("alpine:3.19", Reference("docker.io", "library/alpine", "3.19")),
    ("bitnami/redis", Reference("docker.io", "bitnami/redis", "latest")),
    ("docker.io/alpine", Reference("docker.io", "library/alpine", "latest")),
    ("index.docker.io/library/alpine:edge", Reference("docker.io", "library/alpine", "edge")),
    ("localhost/app", Reference("localhost", "app", "latest")),
    ("127.0.0.1:5000/a/b/c:v1", Reference("127.0.0.1:5000", "a/b/c", "v1")),
    (f"ghcr.io/o/app@{DIGEST}", Reference("ghcr.io", "o/app", None, DIGEST)),
    (f"ghcr.io/o/app:1.0@{DIGEST}", Reference("ghcr.io", "o/app", "1.0", DIGEST)),
    ("docker://quay.io/x/y:2", Reference("quay.io", "x/y", "2")),
    ("[::1]:5000/x:1", Reference("[::1]:5000", "x", "1")),
])
def test_references_are_normalised_as_docker_does(text, expected):
    assert parse(text) == expected


def test_a_digest_wins_over_a_tag_in_requests_and_hub_names_print_short():
    reference = parse(f"alpine:3@{DIGEST}")
    assert reference.reference == DIGEST
    assert parse("alpine").familiar() == "alpine:latest"
    assert parse("127.0.0.1:5000/a/b").familiar() == "127.0.0.1:5000/a/b:latest"
    assert parse("alpine").api_host == "registry-1.docker.io"


@pytest.mark.parametrize("text", ["Upper", "a//b", "host:5000/x:bad tag", "x@sha256:short", "", "x:"])
def test_malformed_references_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse(text)


def test_local_transports_split_at_the_first_colon_like_skopeo():
    assert parse_location("oci:/tmp/layout:v1") == LayoutLocation("/tmp/layout", "v1")
    assert parse_location("oci:dir") == LayoutLocation("dir", None)
    assert parse_location("docker-archive:/tmp/a.tar:me/app:1") == ArchiveLocation("/tmp/a.tar", "me/app:1")
    assert parse_location("127.0.0.1:5000/x") == Reference("127.0.0.1:5000", "x", "latest")


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:80", True), ("[::1]:5000", True),
    ("::1", True), ("10.0.0.1:5000", False), ("registry.example.com", False), ("docker.io", False),
])
def test_loopback_hosts_are_recognised(host, loopback):
    assert is_loopback(host) is loopback


def test_login_hosts_accept_urls_and_hub_aliases():
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert normalize_host("ghcr.io") == "ghcr.io"


def test_platforms_match_with_and_without_variants():
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert Platform.parse("linux/arm64/v8").matches(Platform("linux", "arm64", None))
    assert not Platform.parse("linux/arm/v7").matches(Platform("linux", "arm", "v6"))
    assert not Platform.parse("linux/amd64").matches(Platform("windows", "amd64"))
    with pytest.raises(UsageError):
        Platform.parse("linux")


def test_bearer_challenges_keep_commas_inside_quoted_scopes():
    [challenge] = parse_challenges('Bearer realm="https://auth.example/token",service="registry.example",'
                                   'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"')
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://auth.example/token"
    assert challenge.scopes == ["repository:a/b:pull,push", "repository:c:pull"]
    assert challenge.params["error"] == "insufficient_scope"
    basic, bearer = parse_challenges('Basic realm="x", Bearer realm="https://t/token",service=s')
    assert (basic.scheme, basic.params) == ("basic", {"realm": "x"})
    assert bearer.params == {"realm": "https://t/token", "service": "s"}


def test_scopes_merge_their_actions():
    assert merge_scopes(["repository:a:pull"], ["repository:a:push", "repository:b:pull"]) == \
        ["repository:a:pull,push", "repository:b:pull"]
