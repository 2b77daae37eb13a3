"""`registry fsck`: a seeded store is clean; corrupt and missing blobs, invalid documents, dangling
tags, missing links and broken referrer entries are found with their paths; --repair fixes what
can be fixed without a person, as commits by the acting user."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.errors import RegistryError
from registry_core.maintenance import inventory
from registry_core.maintenance.inventory import RepositoryGraph
from registry_core.meta import paths as meta_paths
from registry_core.seed import seed
from tests.support.oci import meta_commits, meta_tip
from tests.support.store import blob_path, commit_by_hand, link_path, open_registry

GHOST = meta_paths.tag("library/hello", "ghost")   # repositories/library/hello/_tags/<bucket>/ghost.yaml
VALID_TAG = b"""kind: tag
schemaVersion: 1
name: ghost
digest: sha256:%s
mediaType: application/vnd.oci.image.manifest.v1+json
"""


pytestmark = pytest.mark.usefixtures("cli_isolation")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A store seeded from sample_store/ once; each test works on a copy."""
    path = tmp_path_factory.mktemp("fsck-seeded") / "store"
    seed(open_registry(path))
    return path


@pytest.fixture
def store(seeded, tmp_path):
    return shutil.copytree(seeded, tmp_path / "store", symlinks=True)


@pytest.fixture
def local(store):
    return open_registry(store)


def fsck(store, *args, expect: int) -> dict:
    result = CliRunner().invoke(main, ["fsck", "--store", str(store), *args, "--json"])
    assert result.exit_code == expect, result.output
    return json.loads(result.output)


def problems(report: dict) -> set[tuple[str, str]]:
    return {(p["code"], p["path"]) for p in report["problems"]}


def image(local, name: str, tag: str = "latest") -> dict:
    """The manifest document of an image (the first child, for an index)."""
    document = local.manifests.resolve(name, tag)
    if "manifests" in document:
        document = local.manifests.resolve(name, document["manifests"][0]["digest"])
    return document


def referrer_of(local, name: str) -> dict:
    graph = RepositoryGraph.read(local.meta.snapshot(), name)
    return next(document for document in graph.manifests.values() if "subject" in document)


def test_a_freshly_seeded_store_is_clean(store):
    report = fsck(store, expect=0)
    assert report["clean"] and report["problems"] == []
    assert report["checked"]["blobs"] >= 10 and report["checked"]["repositories"] == 3
    assert report["checked"]["referrers"] == 1
    result = CliRunner().invoke(main, ["fsck", "--store", str(store)])
    assert result.exit_code == 0 and "no problems" in result.output


def test_a_corrupted_blob_is_found_with_its_path_and_the_images_that_use_it(local, store):
    layer = image(local, "library/busybox-lite")["layers"][0]["digest"]
    path = store / blob_path(layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = fsck(store, expect=1)

    assert problems(report) == {("blob-corrupt", blob_path(layer))}
    [problem] = report["problems"]
    assert "library/busybox-lite@sha256:" in problem["message"] and not problem["repairable"]
    assert "move the file out of the store" in problem["action"]
    result = CliRunner().invoke(main, ["fsck", "--store", str(store)])
    assert result.exit_code == 1
    assert f"PROBLEM blob-corrupt: {blob_path(layer)}" in result.output and "1 problem" in result.output


def test_a_missing_blob_is_found(local, store):
    document = image(local, "library/hello")
    config = document["config"]["digest"]
    (store / blob_path(config)).unlink()

    report = fsck(store, expect=1)

    assert problems(report) == {("blob-missing", blob_path(config))}
    assert f"library/hello@{document['digest']}" in report["problems"][0]["message"]
    assert "push the image again" in report["problems"][0]["action"]


def test_invalid_documents_written_directly_with_git_are_found(store):
    commit_by_hand(store, {
        "repositories/library/hello/_tags/broken.yaml": b"kind: tag\nschemaVersion: 1\nname: broken\n",
        "users/mallory.yaml": b"kind: user\nname: [unclosed\n",
        "repositories/library/hello/_tags/wrong-kind.yaml": b"kind: star\nschemaVersion: 1\n",
    })

    report = fsck(store, expect=1)

    assert {"meta.git:repositories/library/hello/_tags/broken.yaml", "meta.git:users/mallory.yaml",
            "meta.git:repositories/library/hello/_tags/wrong-kind.yaml"} == \
        {p["path"] for p in report["problems"] if p["code"] == "document-invalid"}
    broken = next(p for p in report["problems"] if p["path"].endswith("broken.yaml"))
    assert "digest" in broken["message"] and "git --git-dir" in broken["action"]


def test_a_dangling_tag_is_found_and_repair_removes_it_as_a_commit_by_the_acting_user(local, store):
    commit_by_hand(store, {GHOST: VALID_TAG % (b"0" * 64)})
    report = fsck(store, expect=1)
    assert problems(report) == {("tag-dangling", f"meta.git:{GHOST}")}
    tip = meta_tip(store)

    repaired = fsck(store, "--repair", "--as", "fixer", expect=1)

    assert [p["repaired"] for p in repaired["problems"]] == [True]
    [commit] = meta_commits(store, since=tip)
    assert commit.author.name == "fixer" and "Actor: fixer" in commit.message
    assert "Repair library/hello" in commit.message and GHOST in commit.message
    assert "ghost" not in local.repositories.tags("library/hello")[0]
    fsck(store, expect=0)


def test_a_tag_left_directly_in_tags_by_an_older_store_is_moved_into_its_bucket_by_repair(local, store):
    """Stores from before the buckets of `_tags/` kept `_tags/<tag>.yaml`: the registry does not see
    such a tag, garbage collection still keeps what it tags, and --repair moves it where it belongs."""
    digest = image(local, "library/hello")["digest"]
    flat, flat_ghost = "repositories/library/hello/_tags/old.yaml", "repositories/library/hello/_tags/ghost.yaml"
    commit_by_hand(store, {flat: VALID_TAG.replace(b"ghost", b"old") % digest[7:].encode(),
                           flat_ghost: VALID_TAG % (b"0" * 64)})
    assert "old" not in local.repositories.tags("library/hello")[0]
    assert RepositoryGraph.read(local.meta.snapshot(), "library/hello").tags["old"] == digest

    report = fsck(store, expect=1)
    assert problems(report) == {("tag-misplaced", f"meta.git:{flat}"), ("tag-misplaced", f"meta.git:{flat_ghost}"),
                                ("tag-dangling", f"meta.git:{flat_ghost}")}
    assert meta_paths.tag("library/hello", "old") in report["problems"][0]["message"] + \
        report["problems"][1]["message"]

    repaired = fsck(store, "--repair", expect=1)

    assert all(p["repaired"] for p in repaired["problems"])
    assert "old" in local.repositories.tags("library/hello")[0]
    assert local.meta.snapshot().get(meta_paths.tag("library/hello", "old"))["digest"] == digest
    assert not local.meta.snapshot().exists(flat)
    assert not local.meta.snapshot().exists(meta_paths.tag("library/hello", "ghost")), "moved, then removed"
    fsck(store, expect=0)


def older_place(path: str) -> str:
    """Where a store from before the fanned-out folders kept the document at `path`: manifests
    directly in `_manifests/<alg>/`, referrer subjects directly in `_referrers/<alg>/`, tags in 256
    buckets of two hex digits (and, before those, directly in `_tags/`: tag `1.0` here)."""
    parts = path.split("/")
    for folder in ("_manifests", "_referrers"):
        if folder in parts:
            at = parts.index(folder) + 2           # below <alg>/
            return "/".join(parts[:at] + parts[at + meta_paths.FANOUT_LEVELS:])
    at = parts.index("_tags") + 1
    tag = parts[-1][:-len(".yaml")]
    bucket = [] if tag == "1.0" else [hashlib.sha256(tag.encode()).hexdigest()[:2]]
    return "/".join(parts[:at] + bucket + [parts[-1]])


def test_a_store_from_before_the_fanned_out_folders_is_moved_into_them_by_repair(local, store):
    """Before the buckets a push rewrote a tree of every manifest of the repository. The registry
    looks only in the buckets, so until `fsck --repair` moves them an older store's documents are
    not found by pulls; garbage collection still keeps what they need."""
    name = "library/hello"
    snapshot = local.meta.snapshot()
    folder = meta_paths.repository_dir(name) + "/"
    files = {path: blob.id for path, blob in inventory.files_below(snapshot.tree(meta_paths.repository_dir(name)),
                                                                    folder)}
    documents = {path: blob_id for path, blob_id in files.items() if "/_" in path[len(folder) - 1:]
                 and not path.endswith(meta_paths.REPOSITORY_DOC)}
    assert any("/_manifests/" in p for p in documents) and any("/_referrers/" in p for p in documents)
    graph = RepositoryGraph.read(snapshot, name)
    old = {path: older_place(path) for path in documents}
    changes = {path: None for path in old}
    changes.update({older: local.meta.repo[documents[path]].data for path, older in old.items()})
    commit_by_hand(store, changes)
    local = open_registry(store)
    with pytest.raises(RegistryError):
        local.manifests.resolve(name, "latest")
    assert local.repositories.tags(name)[0] == []
    before_repair = RepositoryGraph.read(local.meta.snapshot(), name)
    assert before_repair.manifests == graph.manifests and before_repair.tags == graph.tags, \
        "garbage collection still sees every manifest and tag"

    report = fsck(store, expect=1)
    kind = {"_manifests": "manifest", "_referrers": "referrer", "_tags": "tag"}
    assert problems(report) == {(f"{kind[path[len(folder):].split('/')[0]]}-misplaced", f"meta.git:{older}")
                                for path, older in old.items()}
    tip = meta_tip(store)

    repaired = fsck(store, "--repair", "--as", "fixer", expect=1)

    assert all(p["repaired"] for p in repaired["problems"])
    [commit] = meta_commits(store, since=tip)
    assert commit.author.name == "fixer" and f"Move to {meta_paths.manifest(name, image(local, name)['digest'])}" \
        in commit.message
    after = local.meta.snapshot()
    assert {path: blob.id for path, blob in inventory.files_below(after.tree(meta_paths.repository_dir(name)),
                                                                  folder)} == files
    assert local.manifests.resolve(name, "latest")["digest"] == graph.tags["latest"]
    fsck(store, expect=0)


def test_repair_removes_an_older_copy_where_a_later_push_wrote_the_document_into_its_bucket(local, store):
    name = "alice/notes"
    digest = image(local, name, "v1")["digest"]
    path = meta_paths.manifest(name, digest)
    flat = f"{meta_paths.manifests_dir(name)}/sha256/{digest[7:]}.yaml"
    commit_by_hand(store, {flat: local.meta.repo[local.meta.snapshot().entry(path).id].data})

    report = fsck(store, expect=1)
    assert problems(report) == {("manifest-misplaced", f"meta.git:{flat}")}
    assert "holds a copy a later push wrote, so --repair removes this one" in report["problems"][0]["message"]
    fsck(store, "--repair", expect=1)

    assert not local.meta.snapshot().exists(flat) and local.meta.snapshot().exists(path)
    fsck(store, expect=0)


def test_repair_links_blobs_again_and_mends_the_referrers_index_but_leaves_what_needs_a_person(local, store):
    layer = image(local, "library/busybox-lite")["layers"][0]["digest"]
    (store / link_path("library/busybox-lite", layer)).unlink()
    sbom = referrer_of(local, "library/hello")
    subject = sbom["subject"]["digest"]
    entry = meta_paths.referrer("library/hello", subject, sbom["digest"])
    bogus = meta_paths.referrer("library/hello", subject, "sha256:" + "1" * 64)
    commit_by_hand(store, {entry: None, bogus: b"kind: referrer\nschemaVersion: 1\ndescriptor:\n"
                           b"  mediaType: application/vnd.oci.image.manifest.v1+json\n"
                           b"  digest: sha256:" + b"1" * 64 + b"\n  size: 10\n",
                           GHOST: VALID_TAG % (b"0" * 64)})
    alice = image(local, "alice/notes", "v1")["layers"][0]["digest"]
    (store / blob_path(alice)).write_bytes(b"not what it was")
    assert local.referrers.referrers("library/hello", subject)["manifests"][0]["digest"] == "sha256:" + "1" * 64
    tip = meta_tip(store)

    report = fsck(store, "--repair", "--as", "fixer", expect=1)

    assert {(p["code"], p["repaired"]) for p in report["problems"]} == {
        ("link-missing", True), ("referrer-missing", True), ("referrer-dangling", True),
        ("tag-dangling", True), ("blob-corrupt", False)}
    assert local.blobs.is_linked("library/busybox-lite", layer)
    assert [d["digest"] for d in local.referrers.referrers("library/hello", subject)["manifests"]] == [sbom["digest"]]
    commits = meta_commits(store, since=tip)
    assert len(commits) == 1 and commits[0].author.name == "fixer", "one commit per repository"
    after = fsck(store, expect=1)
    assert problems(after) == {("blob-corrupt", blob_path(alice))}
