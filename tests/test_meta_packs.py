"""meta/packs.py: the objects and packs a commit writes, checked against libgit2 and git itself,
and the merging of small packs beside readers."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time

import pygit2
import pytest

from registry_core.context import Context
from registry_core.meta import packs
from registry_core.meta.packing import pack_metadata
from registry_core.meta.store import MetaStore
from tests.support.fsyncs import record_syncs

ACTOR = Context(actor="alice", client_addr="127.0.0.1", request_id="t")


def git(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("git")
    assert binary, "git is needed to check the packs as git itself reads them"
    return subprocess.run([binary, *args], capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "r.git"), bare=True)


def test_a_tree_has_the_id_libgit2_gives_it(repo):
    rng = random.Random(7)
    blob = repo.create_blob(b"x")
    subtree = repo.TreeBuilder().write()
    names = {"a", "a.b", "a-b", "a0", "b", "ab", "a_", "Z", "-", "tag.yaml", "_tags", "_manifests"}
    names |= {"x" + "".join(rng.choice("abc.-_0") for _ in range(rng.randint(0, 6))) for _ in range(200)}
    builder, entries = repo.TreeBuilder(), packs.TreeEntries()
    for name in sorted(names):
        folder = rng.random() < 0.4  # a folder sorts as if its name ended in "/"
        mode = packs.TREE_MODE if folder else packs.BLOB_MODE
        target = subtree if folder else blob
        builder.insert(name, target, pygit2.GIT_FILEMODE_TREE if folder else pygit2.GIT_FILEMODE_BLOB)
        entries.set(name.encode(), mode, target.raw)
    expected = builder.write()
    data = entries.encode()
    assert packs.object_id(packs.TREE, data) == expected.raw
    assert repo.odb.read(expected)[1] == data
    assert packs.TreeEntries.parse(data).encode() == data


def test_a_commit_has_the_id_libgit2_gives_it(repo):
    tree = repo.TreeBuilder().write()
    when = 1_790_000_000
    offset = __import__("time").localtime(when).tm_gmtoff // 60
    author = pygit2.Signature("alice", "alice@registry", when, offset)
    committer = pygit2.Signature("registry", "registry@localhost", when, offset)
    message = "Push a:b\n\nActor: alice\n"
    parent = repo.create_commit(None, author, committer, "first\n", tree, [])
    expected = repo.create_commit(None, author, committer, message, tree, [parent])
    data = packs.encode_commit(tree.raw, [parent.raw], ("alice", "alice@registry"),
                               ("registry", "registry@localhost"), message, when)
    assert packs.object_id(packs.COMMIT, data) == expected.raw


def test_a_written_pack_is_read_by_libgit2_and_verified_by_git(repo):
    rng = random.Random(3)
    blobs = [rng.randbytes(size) for size in (0, 1, 15, 16, 127, 128, 2047, 2048, 70_000)]
    entries = {packs.object_id(packs.BLOB, data): packs.encode_entry(packs.BLOB, data) for data in blobs}
    pack_dir = os.path.join(repo.path, "objects", "pack")
    name = packs.write_pack(pack_dir, entries)
    assert sorted(os.listdir(pack_dir)) == [name + ".idx", name + ".pack"]
    for data in blobs:
        assert repo.odb.read(pygit2.Oid(raw=packs.object_id(packs.BLOB, data))) == (packs.BLOB, data)
    verified = git("verify-pack", "-v", os.path.join(pack_dir, name + ".idx"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert packs.pack_sizes(pack_dir) == {name: len(blobs)}


def test_tiers_fill_up_before_they_are_merged():
    assert packs.packs_to_merge({f"p{i}": 8 for i in range(7)}, 8) == []
    assert packs.packs_to_merge({f"p{i}": 8 for i in range(8)}, 8) == [f"p{i}" for i in range(8)]
    # a merged pack (64 objects) sits a tier up, and is merged only with seven more of its size
    sizes = {"big": 64, **{f"p{i}": 8 for i in range(8)}}
    assert packs.packs_to_merge(sizes, 8) == [f"p{i}" for i in range(8)]
    sizes = {**{f"m{i}": 64 + i for i in range(8)}, "p0": 8}
    assert packs.packs_to_merge(sizes, 8) == [f"m{i}" for i in range(8)]


@pytest.fixture(autouse=True)
def eight_packs_a_tier(monkeypatch):
    """These tests count merges at 8 packs a tier (small enough to fill tiers quickly); the
    tiers work the same at the registry's MERGE_FACTOR."""
    monkeypatch.setattr(packs, "MERGE_FACTOR", 8)


def commit_tags(store: MetaStore, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        store.transact(lambda txn, i=i: txn.put(f"repositories/r/_tags/{i % 16:02x}/t{i}.yaml", {
            "kind": "tag", "schemaVersion": 1, "name": f"t{i}", "digest": "sha256:" + "a" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "pushedBy": "alice",
            "pushedAt": "2026-01-01T00:00:00Z"}), ACTOR, f"Push r:t{i}")
    assert store.settle()  # the merges of small packs run in a thread of their own


def tag_names(store: MetaStore) -> set[str]:
    snapshot = store.snapshot()
    return {name[:-5] for bucket in snapshot.names("repositories/r/_tags")
            for name in snapshot.names(f"repositories/r/_tags/{bucket}")}


def test_small_packs_are_merged_as_commits_pile_up(tmp_path):
    store = MetaStore(str(tmp_path / "meta.git"))
    commit_tags(store, 300)
    pack_dir = tmp_path / "meta.git" / "objects" / "pack"
    sizes = packs.pack_sizes(str(pack_dir))
    assert packs.packs_to_merge(sizes, 8) == [] and len(sizes) < 3 * 8, sizes  # under 8 in each tier
    assert sum(sizes.values()) >= 300 * 6
    assert tag_names(MetaStore(str(tmp_path / "meta.git"))) == {f"t{i}" for i in range(300)}
    assert not [name for name in os.listdir(pack_dir) if name.startswith("tmp_")]
    checked = git("--git-dir", str(tmp_path / "meta.git"), "fsck", "--full", "--strict")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_reader_that_knew_the_merged_packs_still_reads_everything(tmp_path):
    path = str(tmp_path / "meta.git")
    writer = MetaStore(path)
    commit_tags(writer, 7)
    stale = pygit2.Repository(path)  # lists the seven small packs, opens some of them
    stale_packs = list(packs.pack_sizes(os.path.join(path, "objects", "pack")))
    tip = stale.lookup_reference("refs/heads/main").target
    assert stale[tip].tree is not None
    commit_tags(writer, 1, start=7)  # the eighth pack: the tier is merged, the eight moved out
    assert len(packs.pack_sizes(os.path.join(path, "objects", "pack"))) == 1
    moved = os.listdir(os.path.join(path, packs.MERGES_DIR, packs.RETIRED_DIR))  # moved, no inode freed
    assert {name + ".idx" for name in stale_packs} <= set(moved)
    read = 0
    for commit in stale.walk(tip):  # every object of the old history, through moved packs
        if "repositories" in commit.tree:
            for bucket in commit.tree["repositories/r/_tags"]:
                read += sum(1 for entry in bucket if stale[entry.id].data)
    assert read == sum(range(1, 8))
    reader = MetaStore(path)
    assert tag_names(reader) == {f"t{i}" for i in range(8)}


def test_readers_in_other_threads_see_every_commit_while_packs_are_merged(tmp_path):
    path = str(tmp_path / "meta.git")
    writer, reader = MetaStore(path), MetaStore(path)
    errors, seen, done = [], [], threading.Event()

    def read():
        try:
            while not done.wait(0.001):  # (a busy loop would starve the writer of the GIL)
                seen.append(len(tag_names(reader)))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    commit_tags(writer, 200)
    done.set()
    for thread in threads:
        thread.join()
    assert errors == [] and seen and max(seen) <= 200
    assert len(tag_names(reader)) == 200


def test_packs_written_by_garbage_collection_are_left_out_of_merges(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    commit_tags(store, 20)
    pack_metadata(path)
    pack_dir = os.path.join(path, "objects", "pack")
    (collected,) = packs.pack_sizes(pack_dir)
    commit_tags(store, 1, start=20)
    (small,) = set(packs.pack_sizes(pack_dir)) - {collected}
    with pytest.raises(packs.Deltified):
        packs.merge_packs(pack_dir, [collected, small])
    assert sorted(os.listdir(pack_dir)) == sorted(f"{n}{s}" for n in (collected, small) for s in (".idx", ".pack"))
    commit_tags(store, 99, start=21)
    assert collected in packs.pack_sizes(pack_dir)  # never copied: its deltas point into itself
    assert tag_names(MetaStore(path)) == {f"t{i}" for i in range(120)}


def test_a_writer_killed_midway_leaves_nothing_a_reader_trips_on(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    commit_tags(store, 3)
    pack_dir = os.path.join(path, "objects", "pack")
    # what a killed commit or merge can leave: a temporary file, a pack without its index, a lock
    (open(os.path.join(pack_dir, "tmp_999_deadbeef"), "wb")).write(b"PACK\0\0")
    indexless = os.path.join(pack_dir, "pack-" + "0" * 40 + ".pack")
    (open(indexless, "wb")).write(b"PACK\0\0\0\2")
    os.utime(indexless, (time.time() - 120, time.time() - 120))  # its writer was killed two minutes ago
    os.makedirs(os.path.join(path, packs.MERGES_DIR), exist_ok=True)
    open(os.path.join(path, packs.MERGES_DIR, packs.MERGE_LOCK), "w").close()  # its flock went with the process
    # and what older versions kept in objects/pack/, where git counts it as garbage
    for name in ("merge.lock", "last-merge", "retired.list"):
        (open(os.path.join(pack_dir, name), "w")).write("1790000000.0 pack-" + "1" * 40 + "\n")
    os.makedirs(os.path.join(pack_dir, "retired"))
    commit_tags(store, 20, start=3)
    assert store.settle()
    assert tag_names(MetaStore(path)) == {f"t{i}" for i in range(23)}
    assert packs.packs_to_merge(packs.pack_sizes(pack_dir), 8) == []  # merging went on
    young = pack_metadata(path)
    assert os.path.exists(os.path.join(pack_dir, "tmp_999_deadbeef"))  # may be a commit in progress
    assert not os.path.exists(indexless)
    old = time.time() - 2 * 3600
    os.utime(os.path.join(pack_dir, "tmp_999_deadbeef"), (old, old))
    pack_metadata(path)
    assert sorted(os.listdir(pack_dir)) == sorted([f"{name}{suffix}" for name in packs.pack_sizes(pack_dir)
                                                   for suffix in (".idx", ".pack")])
    assert os.listdir(os.path.join(path, packs.MERGES_DIR, packs.RETIRED_DIR)) == []  # deleted by garbage-collect
    assert young.packs >= 2 and tag_names(MetaStore(path)) == {f"t{i}" for i in range(23)}


def test_a_durable_commit_is_on_disk_in_order_before_transact_returns(tmp_path, monkeypatch):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path, durable=True)
    synced = record_syncs(monkeypatch)
    commit_tags(store, 1)
    pack_dir = os.path.join(path, "objects", "pack")
    heads = os.path.join(path, "refs", "heads")
    assert [os.path.dirname(p) for p in synced[:2]] == [pack_dir, pack_dir]  # the pack, its index
    assert synced[2] == pack_dir and synced[4:] == [heads]  # their names; ...; the branch's name
    # the lock written (opened by its spare's name before it was linked as main.lock), now the branch
    assert os.stat(synced[3]).st_ino == os.stat(os.path.join(heads, "main")).st_ino
    del synced[:]
    commit_tags(MetaStore(str(tmp_path / "other.git")), 1)
    assert synced == []


def test_storage_durable_in_registry_yaml_reaches_the_metadata_and_the_blobs(tmp_path):
    from registry_core.app import Registry
    from registry_core.config import Config

    document = {"kind": "config", "schemaVersion": 1, "store": str(tmp_path / "store"),
                "storage": {"durable": True}}
    registry = Registry(Config.from_document(document))
    assert registry.meta.durable and registry.driver.durable
    plain = Registry(Config.from_document({**document, "store": str(tmp_path / "plain"), "storage": {}}))
    assert not plain.meta.durable and not plain.driver.durable


def test_one_merge_at_a_time_the_others_skip(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    pack_dir = os.path.join(path, "objects", "pack")
    with packs.merge_lock(pack_dir) as held:  # as another process merging would hold it
        assert held
        commit_tags(store, 16)
        assert len(packs.pack_sizes(pack_dir)) >= 16  # nothing merged meanwhile
        with packs.merge_lock(pack_dir) as second:
            assert not second
    commit_tags(store, 4, start=16)  # the next look at objects/pack/ merges
    assert store.settle()
    assert packs.packs_to_merge(packs.pack_sizes(pack_dir), 8) == []
    assert tag_names(MetaStore(path)) == {f"t{i}" for i in range(20)}


def test_a_failed_merge_does_not_fail_the_commit_it_follows(tmp_path, monkeypatch, caplog):
    store = MetaStore(str(tmp_path / "meta.git"))

    def no_flock(fd, operation):
        raise OSError(37, "No locks available")  # ENOLCK: an NFS mount without a lock manager
    monkeypatch.setattr(packs.fcntl, "flock", no_flock)
    commit_tags(store, 20)  # merges are tried at every 4th commit, and fail
    assert tag_names(MetaStore(str(tmp_path / "meta.git"))) == {f"t{i}" for i in range(20)}
    assert "the commit stands" in caplog.text


def test_an_object_that_seems_missing_is_looked_for_again_and_a_missing_path_is_not():
    looks = []

    def pack_moved_under_the_first_look():
        looks.append(1)
        if len(looks) == 1:
            raise pygit2.GitError("object not found - no match for id (42bb57d1)")
        return "found"

    assert packs.read_again_if_missing(pack_moved_under_the_first_look) == "found" and len(looks) == 2

    def no_such_path():
        looks.append(1)
        raise KeyError("users/nobody.yaml")

    del looks[:]
    with pytest.raises(KeyError, match="nobody"):
        packs.read_again_if_missing(no_such_path)
    assert len(looks) == 1

    def really_missing():
        looks.append(1)
        raise KeyError(pygit2.Oid(hex="1" * 40))

    del looks[:]
    with pytest.raises(KeyError):
        packs.read_again_if_missing(really_missing)
    assert len(looks) == packs.LOOKS_FOR_MISSING


def test_merged_packs_leave_objects_pack_at_once(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    commit_tags(store, 64)
    assert store.settle()  # the merges run in a thread of their own
    pack_dir = os.path.join(path, "objects", "pack")
    indexes = [name for name in os.listdir(pack_dir) if name.endswith(".idx")]
    assert len(indexes) < 8 + 4, indexes  # the live packs, under 8 a tier; nothing merged waits there
    assert len(os.listdir(os.path.join(path, packs.MERGES_DIR, packs.RETIRED_DIR))) >= 2 * 56


def _commit_packs(tmp_path, count: int) -> tuple[str, str, list[str]]:
    """A store with `count` commits, each its own small pack (merging off); (path, pack dir, packs)."""
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    store.writer.merges.every = 10**9  # no merge: the test merges by hand
    commit_tags(store, count)
    pack_dir = os.path.join(path, "objects", "pack")
    return path, pack_dir, sorted(packs.pack_sizes(pack_dir))


def _all_objects(pack_dir: str) -> set[bytes]:
    return {raw for name in packs.pack_sizes(pack_dir)
            for raw in packs.read_index(os.path.join(pack_dir, name + ".idx"))[0]}


def test_a_merge_whose_other_packs_were_merged_elsewhere_retires_nothing(tmp_path):
    path, pack_dir, names = _commit_packs(tmp_path, 3)
    before = _all_objects(pack_dir)
    chosen = names[:2]
    packs.retire_packs(pack_dir, [chosen[1]])  # as another process's merge would, after this one chose
    kept = _all_objects(pack_dir)
    with pytest.raises(packs.NothingToMerge):
        packs.merge_packs(pack_dir, chosen)
    assert _all_objects(pack_dir) == kept and chosen[0] in packs.pack_sizes(pack_dir)
    assert before - kept  # (the retired pack's objects are what the other merge copied)


def test_the_merge_thread_never_retires_the_only_copy_of_an_object(tmp_path, monkeypatch):
    path, pack_dir, names = _commit_packs(tmp_path, 9)
    store = MetaStore(path)
    policy = packs.MergePolicy(background=False)
    # Another process merges all but one of the packs this one chose, after its choice and before
    # it takes the merge lock.
    real = packs._within

    def chosen_then_merged_elsewhere(pack_dir_, names_, limit):
        chosen = real(pack_dir_, names_, limit)
        assert len(chosen) >= 8
        packs.merge_packs(pack_dir, chosen[1:])  # what the other process writes
        packs.retire_packs(pack_dir, chosen[1:])
        return chosen
    monkeypatch.setattr(packs, "_within", chosen_then_merged_elsewhere)
    policy._pending = (path, False)
    policy._merge_pending()
    repo = pygit2.Repository(path)
    tip = repo.lookup_reference("refs/heads/main").target
    for commit in repo.walk(tip):  # every object of the history still readable
        for entry in commit.tree:
            assert repo[entry.id] is not None
    assert tag_names(store) == {f"t{i}" for i in range(9)}
    fsck = subprocess.run(["git", "-C", path, "fsck", "--full"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
