"""The bundled sample store: its generator is deterministic, and seeding a new store imports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
import yaml

from registry_core.app import Registry
from registry_core.config import Config
from registry_core.index.passwords import password_matches
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import BRANCH
from registry_core.seed import REF_NAME, seed

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_store"
GENERATE = SAMPLE / "generate.py"
INDEXES = {"application/vnd.oci.image.index.v1+json",
           "application/vnd.docker.distribution.manifest.list.v2+json"}


def description() -> dict:
    return yaml.safe_load((SAMPLE / "store.yaml").read_text())


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def files_below(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the generator ----------------------------------------------------------------------------


def test_generate_check_passes():
    result = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("check: OK")
    assert "ERROR" not in result.stderr


def test_generate_is_byte_identical_to_the_committed_layouts(tmp_path):
    result = subprocess.run([sys.executable, str(GENERATE), "--out", str(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    generated = files_below(tmp_path / "layouts")
    committed = files_below(SAMPLE / "layouts")
    assert sorted(generated) == sorted(committed)
    different = [name for name in committed if generated[name] != committed[name]]
    assert different == [], f"regenerated layouts differ (zlib-ng instead of zlib?): {different}"


# --- seeding a new store ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    store = tmp_path_factory.mktemp("seeded") / "store"
    registry = Registry(Config(store=str(store)))
    returned = seed(registry)
    return registry, returned


def expected_images(repository: dict) -> tuple[dict[str, str], list[dict]]:
    """The tags (tag -> digest) and the top-level descriptors of a repository's layout."""
    index = json.loads((SAMPLE / repository["layout"] / "index.json").read_text())
    tags = {d["annotations"][REF_NAME]: d["digest"] for d in index["manifests"]
            if REF_NAME in d.get("annotations", {})}
    return tags, index["manifests"]


def test_seed_returns_the_description(seeded):
    _, returned = seeded
    assert returned == description()


def test_seeded_users_hold_hashes_of_the_demo_passwords(seeded):
    registry, _ = seeded
    snapshot = registry.meta.snapshot()
    for user in description()["users"]:
        document = snapshot.get(meta_paths.user(user["name"]))
        assert document["name"] == user["name"]
        assert document.get("admin", False) == user.get("admin", False)
        assert document["email"] == user["email"]
        assert user["password"] not in yaml.safe_dump(document)
        assert password_matches(document["passwordHash"], user["password"])


def test_seeded_repositories_match_the_description(seeded):
    registry, _ = seeded
    snapshot = registry.meta.snapshot()
    repositories = description()["repositories"]
    assert {r["name"] for r in repositories} == {"library/hello", "library/busybox-lite", "alice/notes"}
    assert registry.repositories.catalog()[0] == sorted(r["name"] for r in repositories)
    for repository in repositories:
        document = snapshot.get(meta_paths.repository(repository["name"]))
        assert document["name"] == repository["name"]
        assert document["owner"] == repository["owner"]
        assert document["visibility"] == repository["visibility"]
        assert document["description"] == repository["description"]
    assert snapshot.get(meta_paths.repository("alice/notes"))["visibility"] == "private"
    assert snapshot.get(meta_paths.repository("library/hello"))["visibility"] == "public"


def test_seeded_tags_point_at_the_layouts_manifests(seeded):
    registry, _ = seeded
    snapshot = registry.meta.snapshot()
    all_tags = {}
    for repository in description()["repositories"]:
        name, layout = repository["name"], SAMPLE / repository["layout"]
        tags, descriptors = expected_images(repository)
        all_tags[name] = sorted(tags)
        assert registry.repositories.tags(name)[0] == sorted(tags)
        for tag, digest in tags.items():
            document = snapshot.get(meta_paths.tag(name, tag))
            assert document["digest"] == digest
            assert document["pushedBy"] == repository["owner"]
            assert registry.manifests.resolve(name, tag)["digest"] == digest
        for descriptor in descriptors:
            digest = descriptor["digest"]
            node = snapshot.get(meta_paths.manifest(name, digest))
            assert node["mediaType"] == descriptor["mediaType"] and node["size"] == descriptor["size"]
            assert registry.blobs.read(digest) == layout_blob(layout, digest)  # served byte for byte
            manifest = json.loads(layout_blob(layout, digest))
            children = manifest.get("manifests", []) if descriptor["mediaType"] in INDEXES else []
            for child in children:
                assert snapshot.exists(meta_paths.manifest(name, child["digest"]))
            for image in [manifest] if not children else [json.loads(layout_blob(layout, c["digest"]))
                                                           for c in children]:
                for blob in [image["config"]] + image.get("layers", []):
                    assert registry.blobs.is_linked(name, blob["digest"])
                    assert registry.blobs.read(blob["digest"]) == layout_blob(layout, blob["digest"])
    assert all_tags == {"library/hello": ["1.0", "latest"], "library/busybox-lite": ["latest"],
                        "alice/notes": ["v1"]}


def test_the_sbom_is_a_referrer_of_the_amd64_manifest(seeded):
    registry, _ = seeded
    layout = SAMPLE / "layouts" / "hello"
    _, descriptors = expected_images({"layout": "layouts/hello"})
    untagged = [d for d in descriptors if REF_NAME not in d.get("annotations", {})]
    assert len(untagged) == 1
    sbom = json.loads(layout_blob(layout, untagged[0]["digest"]))
    subject = sbom["subject"]["digest"]
    index = next(json.loads(layout_blob(layout, d["digest"])) for d in descriptors
                 if d["mediaType"] in INDEXES)
    amd64 = [m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "amd64"]
    assert amd64 == [subject]

    referrers = registry.referrers.referrers("library/hello", subject)
    assert [d["digest"] for d in referrers["manifests"]] == [untagged[0]["digest"]]
    assert referrers["manifests"][0]["artifactType"] == "application/vnd.example.sbom.v1+json"
    assert registry.meta.snapshot().exists(meta_paths.referrer("library/hello", subject, untagged[0]["digest"]))
    # Nothing else refers to anything.
    for other in index["manifests"]:
        if other["digest"] != subject:
            assert registry.referrers.referrers("library/hello", other["digest"])["manifests"] == []


def test_bob_is_a_collaborator_on_alice_notes(seeded):
    registry, _ = seeded
    snapshot = registry.meta.snapshot()
    assert snapshot.get(meta_paths.collaborator("alice/notes", "bob")) == {
        "kind": "collaborator", "schemaVersion": 1, "user": "bob", "role": "read", "addedBy": "alice"}
    assert snapshot.names("repositories/alice/notes/_collaborators") == ["bob.yaml"]
    assert snapshot.tree("repositories/library/hello/_collaborators") is None


def test_seed_commits_are_authored_by_the_owners(seeded):
    registry, _ = seeded
    repo = pygit2.Repository(registry.meta.path)
    owners = {r["name"]: r["owner"] for r in description()["repositories"]}
    commits = list(repo.walk(repo.lookup_reference(BRANCH).target, pygit2.enums.SortMode.TOPOLOGICAL))
    assert commits[-1].parents == []  # the initial commit
    touched_by = {}
    for commit in commits[:-1]:
        assert len(commit.parents) == 1
        paths = {d.new_file.path for d in commit.parents[0].tree.diff_to_tree(commit.tree).deltas}
        assert paths, f"empty commit {commit.id}: {commit.message}"
        assert f"Actor: {commit.author.name}" in commit.message.splitlines()
        if all(p.startswith("users/") for p in paths):
            assert commit.author.name == "registry"
            continue
        names = {name for name in owners for p in paths if p.startswith(meta_paths.repository_dir(name) + "/")}
        assert len(names) == 1, paths  # one commit changes one repository
        name = names.pop()
        assert commit.author.name == owners[name], (commit.message, commit.author.name)
        touched_by.setdefault(name, set()).add(commit.author.name)
    assert touched_by == {name: {owner} for name, owner in owners.items()}
