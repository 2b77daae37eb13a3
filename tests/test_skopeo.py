"""skopeo (containers/image, as packaged by Debian) against the real registry process.

Every skopeo run is isolated from the host's configuration: an accept-anything `--policy`, an
empty `--registries.d`, a private registries.conf and auth file, all in tmp_path. (As root,
skopeo still keeps its blob-info cache in /var/lib/containers/cache; no flag moves it.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.oci import OCI_INDEX, OCI_MANIFEST, unique_name
from tests.support.server import RunningRegistry, open_config
from tests.support.skopeo import Skopeo

SAMPLE_LAYOUTS = Path(__file__).resolve().parent.parent / "sample_store" / "layouts"


@pytest.fixture
def skopeo(tmp_path) -> Skopeo:
    assert shutil.which("skopeo"), "skopeo is not installed (make system-deps installs it)"
    return Skopeo(tmp_path / "skopeo-home")


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def tagged(layout: Path, tag: str) -> dict:
    """The descriptor that index.json gives `tag`."""
    for descriptor in json.loads((layout / "index.json").read_text())["manifests"]:
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return descriptor
    raise AssertionError(f"{layout} has no tag {tag}")


def image_digests(layout: Path, manifest_digest: str) -> list[str]:
    manifest = json.loads(layout_blob(layout, manifest_digest))
    return [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]


def test_copy_single_image_to_the_registry_and_back_keeps_every_digest(skopeo, registry, client, tmp_path):
    source = SAMPLE_LAYOUTS / "busybox-lite"
    descriptor = tagged(source, "latest")
    name = unique_name("skopeo")

    skopeo.run("copy", f"oci:{source}:latest", f"docker://{registry.host}/{name}:v1")

    # The registry serves the manifest byte for byte, under the layout's digest.
    assert skopeo.raw(f"docker://{registry.host}/{name}:v1") == layout_blob(source, descriptor["digest"])
    r = client.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == descriptor["digest"]
    for digest in image_digests(source, descriptor["digest"]):
        assert client.get(f"/v2/{name}/blobs/{digest}").content == layout_blob(source, digest)

    back = tmp_path / "back"
    skopeo.run("copy", f"docker://{registry.host}/{name}:v1", f"oci:{back}:v1")
    back_descriptor = tagged(back, "v1")
    assert back_descriptor["digest"] == descriptor["digest"]
    assert layout_blob(back, descriptor["digest"]) == layout_blob(source, descriptor["digest"])
    for digest in image_digests(back, descriptor["digest"]):
        assert layout_blob(back, digest) == layout_blob(source, digest)


def test_copy_all_of_a_two_platform_index_returns_every_child(skopeo, registry, client, tmp_path):
    source = SAMPLE_LAYOUTS / "hello"
    index_descriptor = tagged(source, "latest")
    assert index_descriptor["mediaType"] == OCI_INDEX
    index = json.loads(layout_blob(source, index_descriptor["digest"]))
    children = [child["digest"] for child in index["manifests"]]
    assert len(children) == 2
    name = unique_name("skopeo")

    result = skopeo.run("copy", "--all", f"oci:{source}:latest", f"docker://{registry.host}/{name}:multi")
    assert "Copying 2 of 2 images in list" in result.stdout

    assert skopeo.raw(f"docker://{registry.host}/{name}:multi") == layout_blob(source, index_descriptor["digest"])
    for child in children:
        assert skopeo.raw(f"docker://{registry.host}/{name}@{child}") == layout_blob(source, child)
    platforms = set()
    for child in index["manifests"]:
        platform = child["platform"]
        inspected = json.loads(skopeo.run("inspect", "--override-arch", platform["architecture"],
                                          "--override-os", platform["os"],
                                          f"docker://{registry.host}/{name}:multi").stdout)
        assert inspected["Architecture"] == platform["architecture"]  # (Digest names the index)
        by_digest = json.loads(skopeo.run("inspect", f"docker://{registry.host}/{name}@{child['digest']}").stdout)
        assert (by_digest["Os"], by_digest["Architecture"]) == (platform["os"], platform["architecture"])
        platforms.add(f"{platform['os']}/{platform['architecture']}")
    assert platforms == {"linux/amd64", "linux/arm64"}

    back = tmp_path / "back"
    skopeo.run("copy", "--all", f"docker://{registry.host}/{name}:multi", f"oci:{back}:multi")
    assert tagged(back, "multi")["digest"] == index_descriptor["digest"]
    assert layout_blob(back, index_descriptor["digest"]) == layout_blob(source, index_descriptor["digest"])
    for child in children:
        assert layout_blob(back, child) == layout_blob(source, child)
        for digest in image_digests(source, child):
            assert layout_blob(back, digest) == layout_blob(source, digest)


def test_list_tags(skopeo, registry):
    source = SAMPLE_LAYOUTS / "busybox-lite"
    name = unique_name("skopeo")
    for tag in ("1.0", "latest", "edge"):
        skopeo.run("copy", f"oci:{source}:latest", f"docker://{registry.host}/{name}:{tag}")
    listed = json.loads(skopeo.run("list-tags", f"docker://{registry.host}/{name}").stdout)
    assert listed["Repository"] == f"{registry.host}/{name}"
    assert sorted(listed["Tags"]) == ["1.0", "edge", "latest"]

    sample = json.loads(skopeo.run("list-tags", f"docker://{registry.host}/library/hello").stdout)
    assert sorted(sample["Tags"]) == ["1.0", "latest"]


def test_delete_removes_the_manifest(skopeo, registry, client):
    source = SAMPLE_LAYOUTS / "busybox-lite"
    digest = tagged(source, "latest")["digest"]
    name = unique_name("skopeo")
    skopeo.run("copy", f"oci:{source}:latest", f"docker://{registry.host}/{name}:doomed")
    assert client.head(f"/v2/{name}/manifests/{digest}").status_code == 200

    skopeo.run("delete", f"docker://{registry.host}/{name}:doomed")

    for reference in (digest, "doomed"):
        r = client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 404, reference
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert "doomed" not in (client.get(f"/v2/{name}/tags/list").json().get("tags") or [])
    inspect = skopeo.run("inspect", "--raw", f"docker://{registry.host}/{name}:doomed", check=False)
    assert inspect.returncode != 0
    assert "manifest unknown" in inspect.stderr.lower()
    # The sample store's images are untouched by a delete elsewhere.
    assert client.head("/v2/library/busybox-lite/manifests/latest").status_code == 200


@pytest.fixture(scope="module")
def logged_registry(tmp_path_factory):
    """A second registry process with an access log, to see which requests a client made."""
    root = tmp_path_factory.mktemp("logged")
    server = RunningRegistry(root / "store", "--empty", "--access-log", "--config", open_config(root))
    yield server
    server.stop()


def test_copy_between_repositories_mounts_the_layers_instead_of_uploading(skopeo, logged_registry, tmp_path):
    registry = logged_registry
    source = SAMPLE_LAYOUTS / "hello"
    index_descriptor = tagged(source, "latest")
    index = json.loads(layout_blob(source, index_descriptor["digest"]))
    layers = {layer["digest"] for child in index["manifests"]
              for layer in json.loads(layout_blob(source, child["digest"]))["layers"]}
    first, second = unique_name("skopeo"), unique_name("skopeo")

    skopeo.run("copy", "--all", f"oci:{source}:latest", f"docker://{registry.host}/{first}:1")
    mark = len(registry.log())
    skopeo.run("copy", "--all", f"docker://{registry.host}/{first}:1", f"docker://{registry.host}/{second}:1")
    requests_made = registry.log()[mark:]

    # Same index and children in the second repository.
    assert skopeo.raw(f"docker://{registry.host}/{second}:1") == layout_blob(source, index_descriptor["digest"])
    for child in index["manifests"]:
        assert skopeo.raw(f"docker://{registry.host}/{second}@{child['digest']}") == \
            layout_blob(source, child["digest"])

    # Each layer reached the second repository by a cross-repository mount (201), never as bytes.
    uploads_in_second = re.findall(rf'"(PATCH|PUT) /v2/{re.escape(second)}/blobs/uploads/\S*', requests_made)
    for layer in layers:
        encoded = layer.replace(":", "%3A")
        mounts = re.findall(rf'"POST /v2/{re.escape(second)}/blobs/uploads/\?\S*mount={encoded}\S* '
                            rf'HTTP/1\.1" (\d+)', requests_made)
        assert mounts and mounts[-1] == "201", (layer, requests_made)
        assert not re.search(rf'GET /v2/{re.escape(first)}/blobs/{layer}', requests_made), \
            f"{layer} was downloaded to be uploaded again"
    # Only the (small) configs, which containers/image never mounts, were uploaded.
    configs = {json.loads(layout_blob(source, child["digest"]))["config"]["digest"] for child in index["manifests"]}
    finished = set(re.findall(rf'"PUT /v2/{re.escape(second)}/blobs/uploads/\S*\?digest=(sha256%3A[0-9a-f]+)',
                              requests_made))
    assert {d.replace("%3A", ":") for d in finished} <= configs
    assert len(uploads_in_second) <= 2 * len(configs)
    # The store keeps one copy of each layer.
    for layer in layers:
        blob = registry.store / "blobs" / "sha256" / layer[7:9] / layer[7:]
        assert blob.read_bytes() == layout_blob(source, layer)
