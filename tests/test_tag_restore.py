"""`registry tag restore NAME:TAG --at COMMIT|DATE`: the tag points back to the digest it had then, as
a new commit by the acting user, only while the image is whole in blob storage; clear refusals
for a tag that did not exist then, a commit id that is unknown or ambiguous, a date that is none."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
import requests
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.context import Context
from registry_core.maintenance.history import iso
from registry_core.meta.store import MetaStore
from tests.support.oci import OCI_MANIFEST, Client, meta_commits, meta_tip
from tests.support.server import RunningRegistry

ALICE = ("alice", "alice-demo")

pytestmark = pytest.mark.usefixtures("cli_isolation")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RunningRegistry(tmp_path_factory.mktemp("restore") / "store") as running:
        yield running


@pytest.fixture
def alice(server) -> Client:
    session = requests.Session()
    session.auth = ALICE
    return Client(server.url, session)


@pytest.fixture
def name() -> str:
    return f"alice/restore-{uuid.uuid4().hex[:8]}"


def restore(store, target: str, at: str, *args, expect: int = 0) -> str:
    result = CliRunner().invoke(main, ["tag", "restore", target, "--at", at, "--store", str(store), *args])
    assert result.exit_code == expect, result.output
    return result.output


def pulled_digest(client: Client, name: str, tag: str) -> str:
    r = client.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


def git_fsck(store) -> None:
    check = subprocess.run([shutil.which("git"), "--git-dir", str(store / "meta.git"), "fsck", "--full", "--strict"],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "error" not in check.stderr, check.stdout + check.stderr


def test_restore_points_the_tag_back_in_a_new_commit_by_the_acting_user(server, alice, name):
    old, old_manifest, old_body = alice.push_image(name, "v1")
    pushed_at = str(meta_tip(server.store))
    new, _, _ = alice.push_image(name, "v1")
    before = meta_tip(server.store)
    assert pulled_digest(alice, name, "v1") == new

    output = restore(server.store, f"{name}:v1", pushed_at[:8], "--as", "alice")

    assert f"Restored {name}:v1 to {old}" in output and f"it pointed to {new}" in output
    assert pulled_digest(alice, name, "v1") == old
    assert alice.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST}).content == old_body
    layer = old_manifest["layers"][0]["digest"]
    assert alice.get(f"/v2/{name}/blobs/{layer}").status_code == 200
    commit = meta_commits(server.store, since=before)
    assert len(commit) == 1
    assert (commit[0].author.name, commit[0].parents[0].id) == ("alice", before)
    assert commit[0].message.startswith(f"Restore {name}:v1 to {old}\n")
    assert "Actor: alice" in commit[0].message and f"commit {commit[0].id}" in output
    git_fsck(server.store)
    audit = CliRunner().invoke(main, ["audit", name, "--store", str(server.store)]).output.splitlines()
    assert audit[0].split()[2:5] == ["alice", "tag-restore", f"{name}:v1"]


def test_restoring_to_the_digest_the_tag_has_makes_no_commit(server, alice, name):
    digest, _, _ = alice.push_image(name, "v1")
    tip = meta_tip(server.store)

    output = restore(server.store, f"{name}:v1", str(tip), "--as", "alice")

    assert f"already points to {digest}" in output and meta_tip(server.store) == tip


def test_restore_by_date_takes_the_newest_commit_made_by_then(server, alice, name):
    old, _, _ = alice.push_image(name, "v1")
    when = iso(meta_commits(server.store)[0].author.time)  # the second of the first push
    time.sleep(max(0.0, int(time.time()) + 1.05 - time.time()))  # the next push is in a later second
    new, _, _ = alice.push_image(name, "v1")
    assert pulled_digest(alice, name, "v1") == new

    restore(server.store, f"{name}:v1", when, "--as", "alice")

    assert pulled_digest(alice, name, "v1") == old


def test_a_tag_that_was_deleted_and_its_manifest_with_it_comes_back_with_the_manifest(server, alice, name):
    old, _, _ = alice.push_image(name, "v1")
    pushed_at = str(meta_tip(server.store))
    assert alice.delete(f"/v2/{name}/manifests/{old}").status_code == 202
    assert alice.get(f"/v2/{name}/manifests/v1").status_code == 404

    restore(server.store, f"{name}:v1", pushed_at, "--as", "alice")

    assert pulled_digest(alice, name, "v1") == old
    fsck = CliRunner().invoke(main, ["fsck", "--store", str(server.store), "--json"])
    assert fsck.exit_code == 0, fsck.output


def test_restore_is_refused_and_names_the_blobs_garbage_collection_removed(server, alice, name):
    old, old_manifest, _ = alice.push_image(name, "v1")
    pushed_at = str(meta_tip(server.store))
    new, _, _ = alice.push_image(name, "v1")
    assert alice.delete(f"/v2/{name}/manifests/{old}").status_code == 202
    collected = CliRunner().invoke(main, ["garbage-collect", "--store", str(server.store), "--grace", "0", "--json"])
    assert collected.exit_code == 0, collected.output
    tip = meta_tip(server.store)

    output = restore(server.store, f"{name}:v1", pushed_at, "--as", "alice", expect=1)

    gone = [old, old_manifest["config"]["digest"], old_manifest["layers"][0]["digest"]]
    assert "no longer in blob storage" in output and all(digest in output for digest in gone)
    assert "nothing was changed" in output
    assert meta_tip(server.store) == tip and pulled_digest(alice, name, "v1") == new


def test_a_tag_that_did_not_exist_at_that_commit_is_refused(server, alice, name):
    alice.push_image(name, "v1")
    tip = str(meta_tip(server.store))

    output = restore(server.store, f"{name}:v2", tip, expect=1)

    assert f"{name}:v2 did not exist at commit {tip[:12]}" in output and f"registry audit {name}" in output


def test_an_unknown_commit_id_is_refused(server, name):
    unknown = next(prefix for prefix in ("0123456789ab", "fedcba987654", "0a1b2c3d4e5f")
                   if not any(str(c.id).startswith(prefix) for c in meta_commits(server.store)))

    output = restore(server.store, f"{name}:v1", unknown, expect=1)

    assert f"no commit {unknown} in the history" in output


def test_an_ambiguous_commit_id_is_refused_and_the_commits_it_fits_are_named(tmp_path):
    meta = MetaStore(str(tmp_path / "store" / "meta.git"))
    seen: dict[str, str] = {}
    for number in range(5000):
        meta.transact(lambda txn: txn.put(f"users/u{number}.yaml", {
            "kind": "user", "schemaVersion": 1, "name": f"u{number}", "admin": False,
            "createdAt": "2025-01-01T00:00:00Z"}), Context(actor="operator"), f"Add user u{number}")
        tip = str(meta.snapshot().tip)
        if tip[:4] in seen:
            break
        seen[tip[:4]] = tip
    shared = tip[:4]

    output = restore(tmp_path / "store", "library/app:v1", shared, expect=1)

    assert f"the commit id {shared} is ambiguous" in output
    assert tip[:12] in output and seen[shared][:12] in output


@pytest.mark.parametrize("at", ["last tuesday", "2025-01-01\n", "2025-02-30", "2025-01-01T10:00:00 UTC", "12",
                                "ABCDEF12", "-1"])
def test_an_at_that_is_neither_a_whole_commit_id_nor_a_date_is_refused(server, name, at):
    tip = meta_tip(server.store)

    output = restore(server.store, f"{name}:v1", at, expect=1)

    assert "is not a date" in output or "neither a commit id" in output
    assert meta_tip(server.store) == tip


def test_a_date_before_the_history_began_is_refused(server, name):
    output = restore(server.store, f"{name}:v1", "2001-01-01", expect=1)

    assert "no commit at or before 2001-01-01" in output and "history starts at" in output


@pytest.mark.parametrize("target", ["alice/app", "alice/app:", "Alice/app:v1", "alice/app:.v1", ":v1"])
def test_a_target_that_is_not_name_colon_tag_is_refused(server, target):
    result = CliRunner().invoke(main, ["tag", "restore", target, "--at", "2025-01-01", "--store", str(server.store)])

    assert result.exit_code != 0 and result.output.startswith(("Error", "Usage")), result.output
