"""`registry garbage-collect`: stale uploads and temporary files, blobs and links no manifest needs,
untagged manifests on request; a dry run changes nothing; a registry serving meanwhile loses nothing."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.context import SYSTEM, Context
from registry_core.errors import RegistryError
from registry_core.maintenance.gc import GarbageCollector, Options
from registry_core.meta import paths as meta_paths
from tests.support.oci import (OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Client, descriptor, meta_commits,
                               meta_tip)
from tests.support.server import RunningRegistry, open_config
from tests.support.store import (HOUR, PUSHER, age, age_tree, blob_path, commit_by_hand, files_below, link_path,
                                 open_registry, push_blob, push_image, push_index, subject_of)


pytestmark = pytest.mark.usefixtures("cli_isolation")


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def local(store):
    """The services of an open registry on a new, empty store."""
    return open_registry(store)


def collect(store, *args, expect=0) -> dict:
    """Run `registry garbage-collect --store STORE ARGS --json`; return its report."""
    result = CliRunner().invoke(main, ["garbage-collect", "--store", str(store), *args, "--json"])
    assert result.exit_code == expect, result.output
    return json.loads(result.output) if expect == 0 else result.output


def removed(report: dict, kind: str) -> set[str]:
    return {r.get("digest") or r["path"] for r in report["removed"] if r["kind"] == kind}


# --- upload sessions and temporary files ----------------------------------------------------------

def start_upload(local, store, started_hours_ago: float, written_hours_ago: float) -> str:
    upload_id = local.uploads.start("gc/uploads")
    local.uploads.append("gc/uploads", upload_id, iter([b"x" * 1000]))
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=started_hours_ago)
    (store / "uploads" / upload_id / "started_at").write_text(started.isoformat())
    age_tree(store / "uploads" / upload_id, written_hours_ago * HOUR)
    return upload_id


def test_an_upload_session_older_than_upload_age_is_removed_and_younger_or_busy_ones_are_kept(local, store):
    stale = start_upload(local, store, started_hours_ago=25, written_hours_ago=25)
    fresh = start_upload(local, store, started_hours_ago=1, written_hours_ago=1)
    still_receiving = start_upload(local, store, started_hours_ago=30, written_hours_ago=0)

    report = collect(store)

    assert removed(report, "upload") == {f"uploads/{stale}"}
    assert report["bytesFreed"] >= 1000
    assert not (store / "uploads" / stale).exists()
    assert (store / "uploads" / fresh / "data").exists()
    assert (store / "uploads" / still_receiving / "data").exists()
    assert local.uploads.offset("gc/uploads", fresh) == 1000
    report = collect(store, "--upload-age", "0.5")
    assert removed(report, "upload") == {f"uploads/{fresh}"}


def test_stray_temporary_files_older_than_grace_are_removed(local, store):
    digest, _ = push_image(local, "gc/temporary", "v1")
    strays = [store / "blobs" / "sha256" / digest[7:9] / ".tmp-crashed",
              store / link_path("gc/temporary", digest).replace(digest[7:], ".tmp-linking")]
    for stray in strays:
        stray.write_bytes(b"half written")
        age(stray, 2 * HOUR)
    young = store / "blobs" / "sha256" / digest[7:9] / ".tmp-being-written"
    young.write_bytes(b"in progress")

    report = collect(store)

    assert removed(report, "temporary") == {str(s.relative_to(store)) for s in strays}
    assert not any(s.exists() for s in strays)
    assert young.exists()
    assert report["counts"]["blob"] == 0


# --- blobs and links ------------------------------------------------------------------------------

def test_an_old_blob_no_manifest_needs_is_removed_and_recent_or_referenced_blobs_are_kept(local, store):
    image, image_blobs = push_image(local, "gc/blobs", "v1")
    orphan = push_blob(local, "gc/blobs", b"uploaded long ago, its manifest never came")
    recent = push_blob(local, "gc/blobs", b"uploaded a minute ago, its manifest is on its way")
    relinked = push_blob(local, "gc/blobs", b"old content, just uploaded again (or mounted)")
    age_tree(store / "blobs", 2 * HOUR)
    age_tree(store / "links", 2 * HOUR)
    age(store / blob_path(recent), 60)
    age(store / link_path("gc/blobs", recent), 60)
    os.utime(store / link_path("gc/blobs", relinked))

    report = collect(store)

    assert removed(report, "blob") == {orphan}
    assert removed(report, "link") == {orphan}
    assert report["bytesFreed"] - report["metadataPacked"]["bytesFreed"] == \
        len(b"uploaded long ago, its manifest never came")
    assert not (store / blob_path(orphan)).exists() and not (store / link_path("gc/blobs", orphan)).exists()
    for kept in [image, *image_blobs, recent, relinked]:
        assert (store / blob_path(kept)).exists(), kept
    for kept in [*image_blobs, recent, relinked]:
        assert local.blobs.is_linked("gc/blobs", kept)
    assert report["kept"]["blobsYoung"] == 1 and report["kept"]["blobsRecentlyLinked"] == 1


def test_a_link_no_manifest_of_its_repository_needs_goes_but_the_blob_stays_for_the_others(local, store):
    _, (config, layer) = push_image(local, "gc/owner", "v1")
    local.blobs.link("gc/borrower", layer)          # a mount whose manifest never came
    local.blobs.link("gc/ghost", "sha256:" + "0" * 64)  # a link to a blob that is gone
    age_tree(store, 2 * HOUR)

    report = collect(store, "--grace", "30")

    assert {(r["repository"], r["digest"]) for r in report["removed"] if r["kind"] == "link"} == {
        ("gc/borrower", layer), ("gc/ghost", "sha256:" + "0" * 64)}
    assert report["counts"]["blob"] == 0
    assert local.blobs.is_linked("gc/owner", layer) and local.blobs.is_linked("gc/owner", config)
    assert not local.blobs.is_linked("gc/borrower", layer)


# --- untagged manifests ---------------------------------------------------------------------------

def graph(local):
    """One repository with what tags reach and what they do not:

    tagged index ──▶ child a ◀── referrer of a child        (all reached)
                 └─▶ child b
    tagged image ◀── signature (referrer, untagged)          (all reached)
    untagged image ◀── its referrer                          (neither reached)
    untagged index ──▶ its child                             (neither reached)
    """
    name = "gc/untagged"
    child_a, _ = push_image(local, name)
    child_b, _ = push_image(local, name)
    index = push_index(local, name, [child_a, child_b], "multi")
    child_referrer, _ = push_image(local, name, subject=subject_of(local, name, child_a),
                                   artifactType="application/vnd.example.sbom")
    image, _ = push_image(local, name, "single")
    signature, _ = push_image(local, name, subject=subject_of(local, name, image),
                              artifactType="application/vnd.example.signature")
    untagged, untagged_blobs = push_image(local, name)
    untagged_referrer, _ = push_image(local, name, subject=subject_of(local, name, untagged),
                                      artifactType="application/vnd.example.signature")
    orphan_child, _ = push_image(local, name)
    untagged_index = push_index(local, name, [orphan_child])
    kept = [child_a, child_b, index, child_referrer, image, signature]
    gone = [untagged, untagged_referrer, orphan_child, untagged_index]
    return name, kept, gone, untagged_blobs


def test_delete_untagged_removes_what_no_tag_reaches_and_keeps_children_and_referrers(local, store):
    name, kept, gone, untagged_blobs = graph(local)
    assert collect(store, "--delete-untagged")["counts"]["manifest"] == 0, "pushed within --grace: kept"
    tip = meta_tip(store)

    report = collect(store, "--delete-untagged", "--grace", "0", "--as", "gc-bot")

    assert removed(report, "manifest") == set(gone)
    for digest in kept:
        assert local.manifests.resolve(name, digest)["digest"] == digest
        assert (store / blob_path(digest)).exists()
    for digest in gone:
        with pytest.raises(RegistryError) as unknown:
            local.manifests.resolve(name, digest)
        assert unknown.value.code == "MANIFEST_UNKNOWN"
        assert not (store / blob_path(digest)).exists(), "the manifest's own bytes go with it"
    for digest in untagged_blobs:
        assert not (store / blob_path(digest)).exists() and not local.blobs.is_linked(name, digest)
    assert local.referrers.referrers(name, gone[0])["manifests"] == []
    assert [d["digest"] for d in local.referrers.referrers(name, kept[4])["manifests"]] == [kept[5]]
    commits = meta_commits(store, since=tip)
    assert len(commits) == 1, "one commit per repository"
    assert commits[0].author.name == "gc-bot"
    assert f"untagged manifests of {name}" in commits[0].message
    assert all(digest in commits[0].message for digest in gone)


def test_a_dry_run_changes_nothing_and_reports_what_a_real_run_removes(local, store):
    name, _, gone, _ = graph(local)
    push_blob(local, "gc/dry", b"orphan")
    stale = start_upload(local, store, started_hours_ago=48, written_hours_ago=48)
    (store / blob_path(gone[0])).with_name(".tmp-crashed").write_bytes(b"half written")
    age_tree(store, 2 * HOUR)
    before, tip = files_below(store), meta_tip(store)

    dry = collect(store, "--dry-run", "--delete-untagged", "--grace", "0")

    assert files_below(store) == before and meta_tip(store) == tip
    assert dry["dryRun"] is True and removed(dry, "manifest") == set(gone)
    assert f"uploads/{stale}" in removed(dry, "upload")
    real = collect(store, "--delete-untagged", "--grace", "0")
    assert real["counts"] == dry["counts"]
    assert real["bytesFreed"] - real["metadataPacked"]["bytesFreed"] == \
        dry["bytesFreed"] - dry["metadataPacked"]["bytesFreed"]  # packing's gain is known once it is done
    assert sorted(map(json.dumps, real["removed"])) == sorted(map(json.dumps, dry["removed"]))


def test_the_summary_says_what_was_removed_and_how_much_was_freed(local, store):
    push_blob(local, "gc/summary", b"x" * 3000)
    age_tree(store, 2 * HOUR)
    result = CliRunner().invoke(main, ["garbage-collect", "--store", str(store), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would remove: blob sha256:" in result.output
    assert "would remove 1 blob, 1 link; would free 2.9 KiB." in result.output


@pytest.mark.parametrize("place", ["in its bucket", "where a store from before the buckets kept it"])
def test_an_invalid_manifest_document_stops_garbage_collection_before_it_removes_anything(local, store, place):
    push_blob(local, "gc/broken", b"would be garbage")
    digest, _ = push_image(local, "gc/broken", "v1")
    path = meta_paths.manifest("gc/broken", digest) if place == "in its bucket" else \
        f"repositories/gc/broken/_manifests/sha256/{digest[7:]}.yaml"
    commit_by_hand(store, {path: b"kind: manifest\n"})
    age_tree(store, 2 * HOUR)
    before = files_below(store)
    output = collect(store, expect=1)
    assert "registry fsck" in output and digest[7:] in output
    assert files_below(store) == before


# --- meta.git packed whole ---------------------------------------------------------------------------

def loose_files(store) -> list:
    return [p for p in (store / "meta.git" / "objects").glob("[0-9a-f][0-9a-f]/*")]


def pack_names(store) -> list:
    return sorted(p.stem for p in (store / "meta.git" / "objects" / "pack").glob("pack-*.idx"))


def git_fsck(store) -> None:
    git = shutil.which("git")
    assert git, "git is needed to check meta.git as git itself sees it"
    check = subprocess.run([git, "--git-dir", str(store / "meta.git"), "fsck", "--full", "--strict"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_meta_git_is_packed_and_its_whole_history_stays_readable(local, store):
    for i in range(30):
        push_image(local, "gc/packed", f"v{i}")
    assert local.meta.settle()  # small packs are merged in a thread of their own
    commits_before = len(meta_commits(store))
    loose, packs_before = loose_files(store), pack_names(store)
    assert len(packs_before) >= 2  # the commits' small packs, some merged already
    git_fsck(store)  # the packs commits write are packs git reads

    dry = collect(store, "--dry-run")
    assert dry["metadataPacked"]["packs"] == len(packs_before)
    assert dry["metadataPacked"]["looseObjects"] == len(loose)
    assert loose_files(store) == loose and pack_names(store) == packs_before
    report = collect(store)

    packed = report["metadataPacked"]
    assert packed["objects"] == dry["metadataPacked"]["objects"] >= commits_before
    assert loose_files(store) == [] and len(pack_names(store)) == 1
    assert 0 < packed["packBytes"] < packed["bytesBefore"] / 2, packed
    git_fsck(store)
    assert len(meta_commits(store)) == commits_before
    fresh = open_registry(store)
    assert fresh.repositories.tags("gc/packed")[0] == sorted(f"v{i}" for i in range(30))
    push_image(fresh, "gc/packed", "after")  # a new small pack, beside the big one
    assert fresh.repositories.tags("gc/packed")[0][0] == "after"
    assert len(pack_names(store)) == 2
    assert collect(store)["metadataPacked"]["packs"] == 2
    assert len(pack_names(store)) == 1 and loose_files(store) == []
    git_fsck(store)


def test_what_the_mark_read_is_given_back_before_git_repacks(local, store, monkeypatch):
    """The mark reads every document once; holding those documents and trees while git's repack
    takes its own memory would add the two up (bench/gc_history.py)."""
    from registry_core.maintenance import gc as gc_module
    from registry_core.meta import store as meta_store

    for i in range(5):
        push_image(local, "gc/released", f"v{i}")
    held_when_packing = {}
    pack = gc_module.pack_metadata

    def pack_and_look(*args, **kwargs):
        held_when_packing.update(documents=len(meta_store._parsed), trees=len(meta_store._trees._trees),
                                 repository=getattr(local.meta._local, "repo", None))
        return pack(*args, **kwargs)

    monkeypatch.setattr(gc_module, "pack_metadata", pack_and_look)
    GarbageCollector(local.driver, local.meta, SYSTEM, Options(grace=0)).run()
    assert held_when_packing == {"documents": 0, "trees": 0, "repository": None}
    assert local.repositories.tags("gc/released")[0] == [f"v{i}" for i in range(5)]  # read again as needed


def test_the_summary_says_how_meta_git_was_packed(local, store):
    push_image(local, "gc/packed", "v1")
    result = CliRunner().invoke(main, ["garbage-collect", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert re.search(r"meta\.git: packed \d+ objects \(\d+ loose files? and \d+ packs?, [\d.]+ KiB on disk\) "
                     r"into one pack of [\d.]+ KiB\.", result.output), result.output


def disk_usage(folder) -> int:
    """Allocated bytes of the files below `folder`, as `du` counts them."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_space_meta_git_gives_back_is_what_the_report_says_was_freed(local, store):
    for i in range(40):  # small packs, merged as they pile up (the merged ones wait in merges/retired/)
        push_image(local, "gc/space", f"v{i}")
    assert local.meta.settle()
    for i in range(20):  # and loose objects, as a person committing with git leaves them
        commit_by_hand(store, {f"notes/n{i}.yaml": f"note: {i}\n".encode()})
    objects, retired = store / "meta.git" / "objects", store / "meta.git" / "merges" / "retired"
    assert loose_files(store) and list(retired.iterdir())
    before = disk_usage(objects) + disk_usage(retired)

    report = collect(store)

    freed = before - disk_usage(objects) - disk_usage(retired)
    assert freed > 0 and report["bytesFreed"] == freed and not report["removed"]  # nothing else was old enough
    assert report["metadataPacked"]["bytesFreed"] == freed
    assert not list(retired.iterdir())


def test_the_summary_counts_what_packing_meta_git_freed(local, store):
    for i in range(20):
        push_image(local, "gc/space", f"v{i}")
    result = CliRunner().invoke(main, ["garbage-collect", "--store", str(store)])
    assert result.exit_code == 0, result.output
    freed = re.search(r"removed nothing; freed ([\d.]+ \w+) \(([\d.]+ \w+) of it in meta\.git\)\.", result.output)
    assert freed and freed[1] == freed[2] and freed[1] != "0 B", result.output


# --- beside a serving registry --------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("gc-served")
    server = RunningRegistry(root / "store", "--config", open_config(root))
    yield server
    server.stop()


def pull_everything_tagged(client: Client) -> int:
    """Pull every tagged image of every repository (children, referrers, configs, layers), checking
    every digest; return how many blobs and manifests were fetched."""
    fetched = 0
    repositories = client.get("/v2/_catalog").json()["repositories"]
    for name in repositories:
        pending = [(tag, None) for tag in client.get(f"/v2/{name}/tags/list").json()["tags"] or []]
        seen = set()
        while pending:
            reference, expected = pending.pop()
            r = client.get(f"/v2/{name}/manifests/{reference}",
                           headers={"Accept": ", ".join([OCI_MANIFEST, OCI_INDEX,
                                                         "application/vnd.docker.distribution.manifest.v2+json",
                                                         "application/vnd.docker.distribution.manifest.list.v2+json"])})
            assert r.status_code == 200, (name, reference, r.text)
            digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
            assert expected in (None, digest)
            if digest in seen:
                continue
            seen.add(digest)
            fetched += 1
            manifest = r.json()
            pending += [(child["digest"], child["digest"]) for child in manifest.get("manifests", [])]
            referrers = client.get(f"/v2/{name}/referrers/{digest}").json()["manifests"]
            pending += [(referrer["digest"], referrer["digest"]) for referrer in referrers]
            for blob in ([manifest["config"]] if "config" in manifest else []) + manifest.get("layers", []):
                r = client.get(f"/v2/{name}/blobs/{blob['digest']}")
                assert r.status_code == 200, (name, blob, r.text)
                assert "sha256:" + hashlib.sha256(r.content).hexdigest() == blob["digest"]
                fetched += 1
    return fetched


def test_garbage_collection_while_the_registry_serves_leaves_every_tagged_image_pullable(served):
    client = Client(served.url)
    name = "gc/served"
    tagged, _, _ = client.push_image(name, "v1")
    client.push_image(name, subject=descriptor(client.get(f"/v2/{name}/manifests/v1").content, OCI_MANIFEST),
                      artifactType="application/vnd.example.signature")
    untagged, _, _ = client.push_image(name)
    client.push_blob(name, b"an orphan the garbage collector removes")
    age_tree(served.store / "blobs", 2 * HOUR)
    age_tree(served.store / "links", 2 * HOUR)
    failures, passes, stop = [], [], threading.Event()

    def pull_while_collecting():
        reader = Client(served.url)
        while not stop.is_set():
            try:
                passes.append(pull_everything_tagged(reader))
            except AssertionError as e:
                failures.append(e)

    puller = threading.Thread(target=pull_while_collecting)
    puller.start()
    try:
        report = collect(served.store, "--delete-untagged", "--grace", "0")
        while len(passes) < 2 and not failures:  # collect again (removing nothing) while pulls overlap
            collect(served.store, "--delete-untagged", "--grace", "0")
    finally:
        stop.set()
        puller.join()

    assert not failures, failures[0]
    assert report["metadataPacked"]["objects"] > 0, "meta.git was packed under the serving registry"
    assert untagged in removed(report, "manifest") and report["counts"]["blob"] >= 3
    assert tagged not in removed(report, "manifest")
    assert pull_everything_tagged(client) >= 20  # the sample store's images and these
    assert client.get(f"/v2/{name}/manifests/{untagged}").status_code == 404


def test_pushes_during_garbage_collection_all_succeed_and_stay_pullable(served):
    client = Client(served.url)
    for _ in range(5):
        client.push_blob("gc/busy", os.urandom(100))  # garbage the collector removes meanwhile
    age_tree(served.store / "blobs", 2 * HOUR)
    age_tree(served.store / "links", 2 * HOUR)
    pushed, errors, stop = [], [], threading.Event()

    def push():
        pusher = Client(served.url)
        while not stop.is_set() or len(pushed) < 5:
            try:
                pushed.append(pusher.push_image("gc/busy", f"t{len(pushed)}", layers=2)[0])
            except AssertionError as e:
                errors.append(e)
                return

    thread = threading.Thread(target=push)
    thread.start()
    reports = []
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            reports.append(collect(served.store))
    finally:
        stop.set()
        thread.join()

    assert not errors, errors[0]
    assert sum(r["counts"]["blob"] for r in reports) >= 5
    for tag, digest in enumerate(pushed):
        r = client.get(f"/v2/gc/busy/manifests/t{tag}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and "sha256:" + hashlib.sha256(r.content).hexdigest() == digest
    pull_everything_tagged(client)
    assert requests.get(served.url + "/v2/").status_code == 200


# --- what lands while the collector works ---------------------------------------------------------

def collector(local, store, **options) -> GarbageCollector:
    return GarbageCollector(local.driver, local.meta, Context(actor="gc-bot"), Options(grace=0, **options),
                            store=str(store))


def test_a_manifest_pushed_after_the_mark_keeps_the_old_blobs_it_names(local, store):
    config, layer = b'{"os": "linux"}', b"an old layer nobody used yet"
    blobs = [push_blob(local, "gc/late", config), push_blob(local, "gc/late", layer)]
    age_tree(store, 2 * HOUR)
    gc = collector(local, store)
    gc.survey(local.meta.snapshot())           # marked: nothing needs those blobs yet
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": descriptor(config, OCI_CONFIG),
                              "layers": [descriptor(layer, OCI_LAYER)]}).encode()
    local.manifests.put("gc/late", "v1", body, OCI_MANIFEST, PUSHER)

    assert gc.sweep_blobs() == set()
    gc.sweep_links(set())
    assert all(local.blobs.is_linked("gc/late", blob) for blob in blobs)


def test_a_manifest_tagged_after_it_was_found_untagged_is_not_deleted(local, store):
    digest, blobs = push_image(local, "gc/retagged")
    gc = collector(local, store, delete_untagged=True)
    plan = gc.survey(local.meta.snapshot())
    assert set(plan["gc/retagged"]) == {digest}
    local.manifests.put("gc/retagged", "now-tagged", local.blobs.read(digest), OCI_MANIFEST, PUSHER)
    tip = meta_tip(store)

    gc.delete_manifests(plan)

    assert meta_tip(store) == tip, "nothing to commit"
    assert local.manifests.resolve("gc/retagged", "now-tagged")["digest"] == digest
    assert {digest, *blobs} <= gc.marked


def test_a_tag_pushed_just_before_the_deleting_commit_saves_its_manifest(local, store, monkeypatch):
    digest, _ = push_image(local, "gc/raced")
    gc = collector(local, store, delete_untagged=True)
    plan = gc.survey(local.meta.snapshot())
    transact = local.meta.transact

    def tag_first(change, context, message, **kwargs):  # another writer wins the race to the tip
        monkeypatch.setattr(local.meta, "transact", transact)
        local.manifests.put("gc/raced", "just-in-time", local.blobs.read(digest), OCI_MANIFEST, PUSHER)
        return transact(change, context, message, **kwargs)
    monkeypatch.setattr(local.meta, "transact", tag_first)

    gc.delete_manifests(plan)

    assert local.manifests.resolve("gc/raced", "just-in-time")["digest"] == digest
    assert gc.report.counts()["manifest"] == 0


def test_a_directory_without_a_store_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["garbage-collect", "--store", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no store in" in result.output
    assert not (tmp_path / "nothing" / "meta.git").exists()


def test_a_dry_run_still_reports_untagged_manifests_blobs_when_others_push_meanwhile(local, store):
    untagged, blobs = push_image(local, "gc/dry-busy")
    age_tree(store, 2 * HOUR)
    gc = collector(local, store, delete_untagged=True, dry_run=True)
    gc.delete_manifests(gc.survey(local.meta.snapshot()))
    push_image(local, "gc/elsewhere", "v1")     # the tip moves while the dry run sweeps

    assert gc.sweep_blobs() == {untagged, *blobs}
    assert all((store / blob_path(d)).exists() for d in [untagged, *blobs])
