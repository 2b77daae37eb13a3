"""meta.git grows by what a push changes, not by the size of the repository: a push writes the
trees on its paths, so tags, manifests and referrer subjects sit in buckets (meta/paths.py
`fan_out`) and every object is stored compressed (meta/packs.py `deflate`). Counted in bytes, not
timed: what one push adds to meta.git is the objects it wrote, as git stores them."""

from __future__ import annotations

import subprocess

import pytest

from registry_core.meta import paths as meta_paths
from tests.support.store import push_image, subject_of, open_registry

REPOSITORY = "ci/app"


@pytest.fixture
def local(tmp_path):
    return open_registry(tmp_path / "store")


def git(local, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "--git-dir", local.meta.path, *args], input=stdin, capture_output=True,
                          text=True, check=True).stdout


def bytes_added(local, push) -> int:
    """What `push()` added to meta.git: the size on disk of every object its commit reaches that
    the commit before did not (git's own count; the packs the commit merged meanwhile are not
    additions)."""
    before = local.meta.snapshot().tip
    push()
    after = local.meta.snapshot().tip
    objects = [line.split()[0] for line in git(local, "rev-list", "--objects", str(after), f"^{before}").splitlines()]
    sizes = git(local, "cat-file", "--batch-check=%(objectsize:disk)", stdin="\n".join(objects) + "\n")
    return sum(int(size) for size in sizes.split())


def test_a_pushed_manifest_and_its_tag_land_in_their_buckets(local):
    digest, _ = push_image(local, REPOSITORY, "v1")
    hex_digest = digest.split(":")[1]
    snapshot = local.meta.snapshot()
    path = meta_paths.manifest(REPOSITORY, digest)
    assert path == f"repositories/{REPOSITORY}/_manifests/sha256/{hex_digest[0]}/{hex_digest[1]}/{hex_digest[2]}/" \
                   f"{hex_digest}.yaml"
    assert snapshot.get(path)["digest"] == digest
    assert snapshot.get(meta_paths.tag(REPOSITORY, "v1"))["digest"] == digest
    assert snapshot.names(f"repositories/{REPOSITORY}/_manifests/sha256") == [hex_digest[0]]
    assert local.manifests.resolve(REPOSITORY, "v1")["digest"] == digest


def test_a_referrer_is_listed_from_the_bucket_of_its_subject(local):
    subject, _ = push_image(local, REPOSITORY, "v1")
    referrer, _ = push_image(local, REPOSITORY, subject=subject_of(local, REPOSITORY, subject),
                             artifactType="application/example")
    subject_hex = subject.split(":")[1]
    assert local.meta.snapshot().exists(f"repositories/{REPOSITORY}/_referrers/sha256/{subject_hex[0]}/"
                                        f"{subject_hex[1]}/{subject_hex[2]}/{subject_hex}/sha256-{referrer[7:]}.yaml")
    assert [d["digest"] for d in local.referrers.referrers(REPOSITORY, subject)["manifests"]] == [referrer]


def test_a_push_into_a_repository_of_300_manifests_adds_a_few_kilobytes(local):
    """In one flat `_manifests/sha256/` folder a push rewrote a tree of every manifest (300
    manifests: 29 KB, 10,000: 1 MB); in buckets it writes a few small trees, so what a push adds
    stays about the same as the repository grows."""
    for i in range(300):
        push_image(local, REPOSITORY, f"build-{i}")
    added = bytes_added(local, lambda: push_image(local, REPOSITORY, "build-300"))
    assert added < 6 * 1024
    first = open_registry(local.config.store + "-small")
    for i in range(10):
        push_image(first, REPOSITORY, f"build-{i}")
    small = bytes_added(first, lambda: push_image(first, REPOSITORY, "build-10"))
    assert added < 2 * small, "a push into 300 manifests adds about what one into 10 adds"


def test_the_documents_a_push_writes_are_stored_compressed(local):
    digest, _ = push_image(local, REPOSITORY, "v1")
    blob = local.meta.snapshot().entry(meta_paths.manifest(REPOSITORY, digest))
    size, on_disk = git(local, "cat-file", "--batch-check=%(objectsize) %(objectsize:disk)",
                        stdin=f"{blob.id}\n").split()
    assert int(on_disk) < 0.8 * int(size)
