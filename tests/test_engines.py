"""The real container engines against the registry: a private dockerd and podman (tests/support/engines.py).

Images come from `make_docker_archive` + `load` (no network, no base image); nothing is ever run.
"""

from __future__ import annotations

import json

import pytest

from tests.support.engines import docker_engine, make_docker_archive, podman_engine
from tests.support.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, unique_name

ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX])


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    with docker_engine(tmp_path_factory.mktemp("docker")) as engine:
        yield engine


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    with podman_engine(tmp_path_factory.mktemp("podman")) as engine:
        yield engine


def image_id(engine, reference: str) -> str:
    return engine.run("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def inspect(engine, reference: str) -> dict:
    return json.loads(engine.run("image", "inspect", reference).stdout)[0]


def local_images(engine) -> str:
    return engine.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout


def load_archive(engine, tmp_path, files: dict[str, bytes], architecture: str = "amd64") -> tuple[str, str]:
    """Load a one-layer image; returns (local tag, image id = config digest)."""
    local = f"{unique_name('local')}:1"
    archive = make_docker_archive(tmp_path / "img.tar", local, files=files, architecture=architecture)
    engine.run("load", "-i", str(archive))
    return local, image_id(engine, local)


def registry_manifest(client, name: str, reference: str) -> dict:
    r = client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    return r.json()


def sample_arm64_child(client) -> dict:
    index = registry_manifest(client, "library/hello", "latest")
    assert index["mediaType"] == OCI_INDEX
    [child] = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
    return child


# --- docker -------------------------------------------------------------------------------------

def test_docker_push_then_pull_back_the_same_image(docker, registry, client, tmp_path):
    local, loaded_id = load_archive(docker, tmp_path, {"hello.txt": b"pushed by docker\n",
                                                       "tmp/nonce": tmp_path.name.encode()})
    name = unique_name("docker")
    remote = f"{registry.host}/{name}:1"
    docker.run("tag", local, remote)
    pushed = docker.run("push", remote)

    manifest = registry_manifest(client, name, "1")
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == loaded_id
    r = client.get(f"/v2/{name}/manifests/1", headers={"Accept": ACCEPT})
    assert f"digest: {r.headers['Docker-Content-Digest']}" in pushed.stdout
    for blob in [manifest["config"]] + manifest["layers"]:
        head = client.head(f"/v2/{name}/blobs/{blob['digest']}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == blob["size"]

    docker.run("rmi", "-f", local, remote)
    assert loaded_id.split(":")[1][:12] not in local_images(docker)

    docker.run("pull", remote)
    assert image_id(docker, remote) == loaded_id
    assert inspect(docker, remote)["RepoDigests"] == [f"{registry.host}/{name}@{r.headers['Docker-Content-Digest']}"]


def test_docker_pulls_one_platform_of_the_sample_index(docker, registry, client):
    child = sample_arm64_child(client)
    arm64_config = registry_manifest(client, "library/hello", child["digest"])["config"]["digest"]
    reference = f"{registry.host}/library/hello:latest"

    docker.run("pull", "--platform", "linux/arm64", reference)

    pulled = inspect(docker, reference)
    assert pulled["Architecture"] == "arm64"
    assert pulled["Os"] == "linux"
    assert pulled["Id"] == arm64_config
    docker.run("rmi", "-f", reference)


def test_docker_pull_of_a_missing_tag_fails_with_the_registry_message(docker, registry):
    result = docker.run("pull", f"{registry.host}/library/hello:no-such-tag", check=False)
    assert result.returncode != 0
    assert "manifest unknown" in result.stderr.lower()


# --- podman -------------------------------------------------------------------------------------

def test_podman_push_then_pull_back_the_same_image(podman, registry, client, tmp_path):
    local, loaded_id = load_archive(podman, tmp_path, {"hello.txt": b"pushed by podman\n",
                                                       "tmp/nonce": tmp_path.name.encode()})
    name = unique_name("podman")
    remote = f"{registry.host}/{name}:1"
    podman.run("tag", local, remote)
    podman.run("push", "--tls-verify=false", remote)

    manifest = registry_manifest(client, name, "1")
    assert manifest["config"]["digest"] == f"sha256:{loaded_id.removeprefix('sha256:')}"
    for blob in [manifest["config"]] + manifest["layers"]:
        head = client.head(f"/v2/{name}/blobs/{blob['digest']}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == blob["size"]

    podman.run("rmi", "-f", local, remote)
    assert podman.run("image", "exists", remote, check=False).returncode == 1

    podman.run("pull", "--tls-verify=false", remote)
    assert image_id(podman, remote).removeprefix("sha256:") == loaded_id.removeprefix("sha256:")


def test_podman_pulls_one_platform_of_the_sample_index(podman, registry, client):
    child = sample_arm64_child(client)
    arm64_config = registry_manifest(client, "library/hello", child["digest"])["config"]["digest"]
    reference = f"{registry.host}/library/hello:latest"

    podman.run("pull", "--tls-verify=false", "--platform", "linux/arm64", reference)

    pulled = inspect(podman, reference)
    assert pulled["Architecture"] == "arm64"
    assert pulled["Os"] == "linux"
    assert pulled["Id"].removeprefix("sha256:") == arm64_config.removeprefix("sha256:")


def test_podman_pulls_arm64_with_arch_flag(podman, registry, client):
    child = sample_arm64_child(client)
    arm64_config = registry_manifest(client, "library/hello", child["digest"])["config"]["digest"]
    reference = f"{registry.host}/library/hello:1.0"
    podman.run("pull", "--tls-verify=false", "--arch", "arm64", reference)
    pulled = inspect(podman, reference)
    assert pulled["Architecture"] == "arm64"
    assert pulled["Id"].removeprefix("sha256:") == arm64_config.removeprefix("sha256:")
