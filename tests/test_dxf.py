"""python-dxf (PyPI `python-dxf`): the registry used as a plain blob store with named aliases."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests
from dxf import DXF, DXFBase

from tests.support.oci import DOCKER_MANIFEST, unique_name


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def repo(registry, name) -> DXF:
    return DXF(registry.host, name, insecure=True)


def test_push_pull_list_and_alias_blobs(repo, registry, client, name, tmp_path):
    assert repo.api_version_check()[1].status_code == 200

    from_file = os.urandom(200_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(from_file)
    assert repo.push_blob(str(path)) == sha256(from_file)

    # A body from an iterable is sent with chunked transfer-encoding.
    from_chunks = [os.urandom(70_000) for _ in range(3)]
    joined = b"".join(from_chunks)
    assert repo.push_blob(data=iter(from_chunks), digest=sha256(joined)) == sha256(joined)

    for content in (from_file, joined):
        pulled, size = repo.pull_blob(sha256(content), size=True)
        assert size == len(content)
        assert b"".join(pulled) == content  # dxf also checks the digest as it reads
        assert repo.blob_size(sha256(content)) == len(content)

    # Pushing the same content again is a no-op (HEAD finds it).
    assert repo.push_blob(str(path)) == sha256(from_file)

    manifest = repo.set_alias("first", sha256(from_file), sha256(joined))
    assert repo.get_alias("first") == [sha256(from_file), sha256(joined)]
    assert repo.get_alias("first", sizes=True) == [(sha256(from_file), len(from_file)),
                                                    (sha256(joined), len(joined))]
    assert repo.get_digest("first") == sha256(from_file)
    r = client.get(f"/v2/{name}/manifests/first", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200
    assert r.content == manifest.encode()
    assert r.headers["Docker-Content-Digest"] == sha256(manifest.encode())

    repo.set_alias("second", sha256(joined))
    assert repo.get_alias("second") == [sha256(joined)]
    assert sorted(repo.list_aliases()) == ["first", "second"]
    assert sorted(repo.list_aliases(batch_size=1)) == ["first", "second"]  # follows the Link header

    base = DXFBase(registry.host, insecure=True)
    repositories = base.list_repos(batch_size=2)  # paginated catalog
    assert name in repositories
    assert {"library/hello", "library/busybox-lite"} <= set(repositories)
    assert len(repositories) == len(set(repositories))

    assert repo.del_alias("second") == [sha256(joined)]
    assert sorted(repo.list_aliases()) == ["first"]
    with pytest.raises(requests.HTTPError) as error:
        repo.get_alias("second")
    assert error.value.response.status_code == 404


def test_mount_and_delete_a_blob(repo, registry, name):
    content = os.urandom(4096)
    repo.push_blob(data=iter([content]), digest=sha256(content))

    other = DXF(registry.host, unique_name(), insecure=True)
    with pytest.raises(requests.HTTPError) as error:
        other.blob_size(sha256(content))  # not linked into the other repository
    assert error.value.response.status_code == 404
    assert other.mount_blob(name, sha256(content)) == sha256(content)
    assert b"".join(other.pull_blob(sha256(content))) == content

    repo.del_blob(sha256(content))
    with pytest.raises(requests.HTTPError) as error:
        repo.blob_size(sha256(content))
    assert error.value.response.status_code == 404
    assert other.blob_size(sha256(content)) == len(content)  # still visible where it is linked
