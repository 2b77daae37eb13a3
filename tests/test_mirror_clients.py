"""The mirror plugin with the reference registry as its upstream and real clients pulling through it:
Debian's `docker-registry` (CNCF Distribution 2.8) open, and with Basic auth (an htpasswd file);
skopeo and podman pulling anonymously from the mirror.

What the upstream was asked is counted from Distribution's own access log (one Apache-style line
per request). Without skopeo, podman or docker-registry these tests skip on a workstation and fail
under CI (`CI=true`), where every client must be installed.

The mirror's upstreams, by prefix (names after the prefix are the upstream's):
- `dist/`: the open Distribution (the default TTL, 300 s);
- `ttl/`: the open Distribution with a 1-second TTL;
- `private/`: the Distribution with Basic auth, with the right login (password from the environment);
- `wrongpass/`: the same Distribution, with a wrong password.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.client import Skopeo, distribution, htpasswd_line, layout_blobs, write_layout
from tests.support.engines import make_docker_archive, podman_engine, podman_missing
from tests.support.oci import DOCKER_MANIFEST, error_codes, unique_name
from tests.support.server import RunningRegistry

USER, PASSWORD = "mirror-bot", "upstream-secret-2024"
MIRROR_WORKERS = 2
TTL = 1   # seconds, of the mirror's `ttl/` names
ACCEPT = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
# 127.0.0.1 - - [02/Jan/2024:10:00:00 +0000] "GET /v2/NAME/manifests/1 HTTP/1.1" 200 …
ACCESS_LINE = re.compile(r'\S+ - \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" '
                         r'(?P<status>\d{3}) .*')


def require(program: str, reason: str | None = None) -> None:
    """Skip when `program` is missing (or `reason` says it cannot run); fail under CI instead."""
    if reason is None and shutil.which(program) is None and not os.access(f"/usr/bin/{program}", os.X_OK):
        reason = f"{program} is not installed (apt-get install {program})"
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the mirror's client tests")
    pytest.skip(reason)


class Distribution:
    """A running docker-registry: `host`, and what it was asked (its access log)."""

    def __init__(self, host: str, base: Path):
        self.host, self.base = host, base

    def requests_for(self, repository: str) -> list[tuple[str, str]]:
        """(method, path) of every request its access log shows for `repository`."""
        asked = []
        for line in (self.base / "registry.log").read_text(errors="replace").splitlines():
            match = ACCESS_LINE.fullmatch(line.strip())
            if match and match["path"].startswith(f"/v2/{repository}/"):
                asked.append((match["method"], match["path"]))
        return asked


@pytest.fixture(scope="module")
def skopeo_installed():
    require("skopeo")


@pytest.fixture(scope="module")
def open_distribution(tmp_path_factory):
    require("docker-registry")
    base = tmp_path_factory.mktemp("open-distribution")
    with distribution(base) as host:
        yield Distribution(host, base)


@pytest.fixture(scope="module")
def basic_distribution(tmp_path_factory):
    require("docker-registry")
    base = tmp_path_factory.mktemp("basic-distribution")
    (base / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
    with distribution(base, f"  htpasswd:\n    realm: mirror-tests\n    path: {base / 'htpasswd'}\n") as host:
        yield Distribution(host, base)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, open_distribution, basic_distribution):
    root = tmp_path_factory.mktemp("mirror")
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["mirror"], "pluginConfig": {"mirror": {"upstreams": [
        {"prefix": "dist/", "upstreamPrefix": "", "url": f"http://{open_distribution.host}"},
        {"prefix": "ttl/", "upstreamPrefix": "", "url": f"http://{open_distribution.host}", "tagTtl": TTL},
        {"prefix": "private/", "upstreamPrefix": "", "url": f"http://{basic_distribution.host}",
         "username": USER, "password": {"$env": "MIRROR_CLIENTS_UPSTREAM_PASSWORD"}},
        {"prefix": "wrongpass/", "upstreamPrefix": "", "url": f"http://{basic_distribution.host}",
         "username": USER, "password": {"$env": "MIRROR_CLIENTS_WRONG_PASSWORD"}}],
        "timeout": 10}}}))
    server = RunningRegistry(root / "store", "--empty", "--config", str(config), "--workers", str(MIRROR_WORKERS),
                             env={"MIRROR_CLIENTS_UPSTREAM_PASSWORD": PASSWORD,
                                  "MIRROR_CLIENTS_WRONG_PASSWORD": "not-" + PASSWORD})
    yield server
    server.stop()


def seed(tmp_path: Path, upstream: Distribution, name: str, *creds: str, into: str = "seed") -> Path:
    """Push a fresh one-platform image of two layers to `upstream` as `name:1`; its OCI layout."""
    layout = tmp_path / into
    write_layout(layout, "1", layer_sizes=(40_000, 20_000))
    Skopeo(tmp_path / "seed-home").run("copy", *creds, f"oci:{layout}:1", f"docker://{upstream.host}/{name}:1")
    return layout


def skopeo_pull(tmp_path: Path, reference: str, into: str) -> Path:
    """`skopeo copy` from `reference` (anonymously) into an OCI layout; the layout."""
    layout = tmp_path / into
    Skopeo(tmp_path / f"{into}-home").run("copy", f"docker://{reference}", f"oci:{layout}:1")
    return layout


def tagged(layout: Path) -> str:
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


# --- Distribution as the upstream, skopeo pulling -------------------------------------------------

def test_skopeo_pulls_from_distribution_through_the_mirror_cold_then_warm_without_asking_it(
        tmp_path, skopeo_installed, mirror, open_distribution):
    name = unique_name("team")
    seeded = seed(tmp_path, open_distribution, name)
    pushed = len(open_distribution.requests_for(name))

    cold = skopeo_pull(tmp_path, f"{mirror.host}/dist/{name}:1", "cold")
    assert layout_blobs(cold) == layout_blobs(seeded)
    asked = open_distribution.requests_for(name)[pushed:]
    image = json.loads(layout_blobs(seeded)[tagged(seeded)])
    assert sorted(asked) == sorted([("GET", f"/v2/{name}/manifests/1")] + [   # each blob once
        ("GET", f"/v2/{name}/blobs/{d['digest']}") for d in [image["config"], *image["layers"]]])

    warm = skopeo_pull(tmp_path, f"{mirror.host}/dist/{name}:1", "warm")
    assert layout_blobs(warm) == layout_blobs(seeded)
    assert open_distribution.requests_for(name)[pushed + len(asked):] == []   # within the TTL: nothing


def test_a_tag_moved_on_distribution_is_seen_after_the_ttl_with_one_head(tmp_path, skopeo_installed, mirror,
                                                                        open_distribution):
    name = unique_name("team")
    first = tagged(seed(tmp_path, open_distribution, name, into="first"))
    through = f"{mirror.url}/v2/ttl/{name}/manifests/1"
    assert requests.get(through, headers=ACCEPT, timeout=30).headers["Docker-Content-Digest"] == first
    second = tagged(seed(tmp_path, open_distribution, name, into="second"))
    before = len(open_distribution.requests_for(name))
    time.sleep(TTL + 0.1)
    assert requests.get(through, headers=ACCEPT, timeout=30).headers["Docker-Content-Digest"] == second
    assert open_distribution.requests_for(name)[before:] == [("HEAD", f"/v2/{name}/manifests/1"),
                                                             ("GET", f"/v2/{name}/manifests/1")]


# --- podman pulling anonymously -------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman(tmp_path_factory, mirror):
    require("podman", podman_missing())
    with podman_engine(tmp_path_factory.mktemp("podman"), insecure_registries=[mirror.host]) as engine:
        yield engine


def test_podman_pulls_a_docker_format_image_through_the_mirror_anonymously(tmp_path, skopeo_installed, mirror,
                                                                           open_distribution, podman):
    """The image goes to Distribution as `docker save` makes it (Docker media types); podman has no
    login anywhere, so the mirror serves it to an anonymous client."""
    name = unique_name("team")
    archive = make_docker_archive(tmp_path / "image.tar", "seed/image:1",
                                  files={"hello.txt": b"pulled by podman through the mirror\n",
                                         "nonce": tmp_path.name.encode()})
    Skopeo(tmp_path / "seed-home").run("copy", f"docker-archive:{archive}",
                                       f"docker://{open_distribution.host}/{name}:1")
    upstream_manifest = requests.get(f"http://{open_distribution.host}/v2/{name}/manifests/1",
                                     headers={"Accept": DOCKER_MANIFEST}, timeout=30).json()
    assert upstream_manifest["mediaType"] == DOCKER_MANIFEST
    assert json.loads((podman.state_dir / "auth.json").read_text()) == {"auths": {}}

    reference = f"{mirror.host}/dist/{name}:1"
    podman.run("pull", "--tls-verify=false", reference)
    pulled = podman.run("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()
    assert pulled.removeprefix("sha256:") == upstream_manifest["config"]["digest"].removeprefix("sha256:")
    blob_gets = {path for method, path in open_distribution.requests_for(name)
                 if method == "GET" and "/blobs/" in path}
    assert blob_gets == {f"/v2/{name}/blobs/{d['digest']}" for d in [upstream_manifest["config"],
                                                                      *upstream_manifest["layers"]]}


# --- an upstream with Basic auth ------------------------------------------------------------------

def test_the_mirror_pulls_a_private_image_with_its_basic_login_from_the_environment(
        tmp_path, skopeo_installed, mirror, basic_distribution):
    name = unique_name("team")
    seeded = seed(tmp_path, basic_distribution, name, "--dest-creds", f"{USER}:{PASSWORD}")
    anonymous = requests.get(f"http://{basic_distribution.host}/v2/{name}/manifests/1", headers=ACCEPT, timeout=30)
    assert anonymous.status_code == 401

    pulled = skopeo_pull(tmp_path, f"{mirror.host}/private/{name}:1", "through")
    assert layout_blobs(pulled) == layout_blobs(seeded)


def test_a_wrong_upstream_password_answers_a_5xx_naming_the_refusal_not_a_404(
        tmp_path, skopeo_installed, mirror, basic_distribution):
    """Asked more often than the mirror has worker processes, so that some process asks again after
    its login was refused once: every answer is the same refusal, with what the operator can fix."""
    name = unique_name("team")
    seed(tmp_path, basic_distribution, name, "--dest-creds", f"{USER}:{PASSWORD}")

    answers = [requests.get(f"{mirror.url}/v2/wrongpass/{name}/manifests/1", headers=ACCEPT, timeout=30)
               for _ in range(MIRROR_WORKERS + 1)]
    for r in answers:
        assert r.status_code == 502 and error_codes(r) == ["UNAVAILABLE"]
        error = r.json()["errors"][0]
        assert error["detail"] == {"upstreamStatus": 401}
        assert f"{basic_distribution.host}: it refused the mirror (HTTP 401)" in error["message"]
        assert f"login {USER!r}" in error["message"] and "pluginConfig.mirror" in error["message"]
        assert "registry login" not in error["message"]   # the CLI's advice, not the mirror operator's
    failed = Skopeo(tmp_path / "pull-home").run("copy", f"docker://{mirror.host}/wrongpass/{name}:1",
                                                f"oci:{tmp_path / 'none'}:1", check=False)
    assert failed.returncode != 0 and "502 Bad Gateway" in failed.stderr
    assert "manifest unknown" not in failed.stderr.lower()
