"""The ORAS Python client (PyPI `oras`) pushes artifacts to the registry and pulls them back."""

from __future__ import annotations

import hashlib
import os

import oras.client
import pytest

from tests.support.oci import OCI_MANIFEST, unique_name

TITLE = "org.opencontainers.image.title"


@pytest.fixture
def oras_client(registry, tmp_path, monkeypatch):
    # oras reads credentials from the Docker config: give it an empty private one.
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text('{"auths": {}}')
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("HOME", str(tmp_path))
    return oras.client.OrasClient(hostname=registry.host, insecure=True)


@pytest.fixture
def artifact_files(tmp_path, monkeypatch) -> dict[str, bytes]:
    """A couple of files in a fresh directory that is also the working directory (oras only
    pushes paths under the working directory)."""
    source = tmp_path / "source"
    source.mkdir()
    files = {"notes.txt": b"release notes\n" * 100,
             "data.bin": os.urandom(300_000),  # bigger than one 64 KiB read, not a multiple of it
             "empty.txt": b""}
    for filename, content in files.items():
        (source / filename).write_bytes(content)
    monkeypatch.chdir(source)
    return files


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_push_then_pull_gives_back_identical_files(oras_client, artifact_files, registry, client, tmp_path,
                                                   chunked):
    name = unique_name("oras")
    target = f"{registry.host}/{name}:v1"

    response = oras_client.push(target=target, files=list(artifact_files), do_chunked=chunked,
                                chunk_size=100_000, manifest_annotations={"org.example.purpose": "test"},
                                quiet=True)
    assert response.status_code == 201, response.text

    # The manifest as the registry stores and serves it.
    r = client.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.headers["Docker-Content-Digest"] == sha256(r.content)
    manifest = r.json()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["annotations"] == {"org.example.purpose": "test"}
    layers = {layer["annotations"][TITLE]: layer for layer in manifest["layers"]}
    assert set(layers) == set(artifact_files)
    for filename, content in artifact_files.items():
        assert layers[filename]["digest"] == sha256(content)
        assert layers[filename]["size"] == len(content)
        blob = client.get(f"/v2/{name}/blobs/{sha256(content)}")
        assert blob.status_code == 200 and blob.content == content
    config = client.get(f"/v2/{name}/blobs/{manifest['config']['digest']}")
    assert config.status_code == 200 and sha256(config.content) == manifest["config"]["digest"]
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]

    # Pulled into another directory, with the digest reference too.
    for reference, outdir in ((target, tmp_path / "by-tag"),
                              (f"{registry.host}/{name}@{sha256(r.content)}", tmp_path / "by-digest")):
        pulled = oras_client.pull(target=reference, outdir=str(outdir))
        assert sorted(os.path.basename(p) for p in pulled) == sorted(artifact_files)
        for filename, content in artifact_files.items():
            assert (outdir / filename).read_bytes() == content


def test_tags_and_manifest_through_the_client(oras_client, artifact_files, registry):
    name = unique_name("oras")
    for tag in ("v1", "v2"):
        oras_client.push(target=f"{registry.host}/{name}:{tag}", files=["notes.txt"], quiet=True)
    assert sorted(oras_client.get_tags(f"{registry.host}/{name}")) == ["v1", "v2"]
    manifest = oras_client.get_manifest(f"{registry.host}/{name}:v2")
    assert [layer["annotations"][TITLE] for layer in manifest["layers"]] == ["notes.txt"]
