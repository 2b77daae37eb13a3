"""meta.git packed whole (meta/packing.py): objects named by their whole path so that the versions
of a tree are deltas of each other; unreachable objects kept while young, in a cruft pack; kept
packs left alone; git reads the result."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pygit2
import pytest

from registry_core.meta import packing
from registry_core.meta.packing import named_by_path, pack_metadata
from registry_core.meta.store import MetaStore
from tests.test_meta_packs import ACTOR


def git(repo: str, *args: str) -> str:
    command = shutil.which("git")
    assert command, "git is needed to check meta.git as git itself sees it"
    done = subprocess.run([command, "--git-dir", repo, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def push_round_robin(store: MetaStore, repositories: int, pushes: int) -> None:
    """`pushes` tag documents, each in the next of `repositories` repositories (in the same
    bucket of each, so that every repository has a tree of the same shape and path ending)."""
    for i in range(pushes):
        name = f"ns/app{i % repositories:02d}"
        store.transact(lambda txn, i=i, name=name: txn.put(f"repositories/{name}/_tags/a/b/c/t{i}.yaml",
                                                           tag_document(f"t{i}", i)), ACTOR, f"Push {name}:t{i}")
    assert store.settle()


def tag_document(tag: str, number: int) -> dict:
    return {"kind": "tag", "schemaVersion": 1, "name": tag, "digest": "sha256:" + f"{number:064x}",
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "pushedBy": "alice",
            "pushedAt": "2026-01-01T00:00:00Z"}


def test_each_path_is_named_by_a_hash_of_the_whole_path():
    a = named_by_path(b"1111111111111111111111111111111111111111 repositories/ns/app01/_tags/a/b/c\n")
    b = named_by_path(b"2222222222222222222222222222222222222222 repositories/ns/app02/_tags/a/b/c\n")
    again = named_by_path(b"3333333333333333333333333333333333333333 repositories/ns/app01/_tags/a/b/c\n")
    assert re.fullmatch(rb"1{40} [0-9a-f]{16}\n", a)
    assert a[41:] != b[41:], "the same ending in two repositories is two names"
    assert a[41:] == again[41:], "one path is one name, whatever the object"
    assert named_by_path(b"4444444444444444444444444444444444444444\n") == b"4" * 40 + b"\n"  # a commit
    assert named_by_path(b"5555555555555555555555555555555555555555 \n") == b"5" * 40 + b"\n"  # the root tree
    spaced = named_by_path(b"6666666666666666666666666666666666666666 a path/with spaces\n")
    assert re.fullmatch(rb"6{40} [0-9a-f]{16}\n", spaced)


def test_the_versions_of_a_tree_are_stored_as_deltas_of_each_other(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    for r in range(40):  # 40 repositories of 30 tags each, then pushed to in turn
        store.transact(lambda txn, r=r: [txn.put(f"repositories/ns/app{r:02d}/_tags/a/b/c/x{k}.yaml",
                                                 tag_document(f"x{k}", r * 1000 + k)) for k in range(30)],
                       ACTOR, f"Fill ns/app{r:02d}")
    push_round_robin(store, repositories=40, pushes=200)

    pack_metadata(path, grace=0)

    (index,) = (tmp_path / "meta.git" / "objects" / "pack").glob("pack-*.idx")
    trees = [line.split() for line in git(path, "verify-pack", "-v", str(index)).splitlines()
             if " tree " in line]
    # id, type, size, size in pack, offset (and for a delta: its depth and base); a delta's size is its own
    whole_buckets = [t for t in trees if len(t) == 5 and int(t[2]) >= 1000]
    deltas = [t for t in trees if len(t) == 7]
    assert len(whole_buckets) <= 41, "each repository's bucket whole once (and the folder of repositories)"
    assert len(deltas) >= 240, "every later version of a bucket a delta"
    assert "error" not in git(path, "fsck", "--full", "--strict", "--no-progress")


def test_an_unreachable_object_is_kept_while_young_and_pruned_once_old(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    push_round_robin(store, repositories=2, pushes=10)
    lost = pygit2.Repository(path).create_blob(b"a commit that lost its race wrote this")

    pack_metadata(path, grace=3600)

    assert git(path, "cat-file", "-t", str(lost)).strip() == "blob"
    pack_dir = tmp_path / "meta.git" / "objects" / "pack"
    assert len(list(pack_dir.glob("pack-*.mtimes"))) == 1, "kept in a cruft pack, with its time"
    assert re.search(r"^garbage: 0$", git(path, "count-objects", "-v"), re.M)

    pack_metadata(path, grace=60, now=time.time() + 120)

    assert subprocess.run(["git", "--git-dir", path, "cat-file", "-e", str(lost)]).returncode != 0
    assert not list(pack_dir.glob("pack-*.mtimes")) and len(list(pack_dir.glob("pack-*.idx"))) == 1
    assert not list((tmp_path / "meta.git" / "objects").glob("[0-9a-f][0-9a-f]/*")), "no loose files left"


def test_a_kept_pack_stays_and_a_multi_pack_index_goes(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    push_round_robin(store, repositories=2, pushes=10)
    pack_metadata(path, grace=0)
    pack_dir = tmp_path / "meta.git" / "objects" / "pack"
    (kept,) = pack_dir.glob("pack-*.pack")
    kept.with_suffix(".keep").write_text("an operator's\n")
    push_round_robin(store, repositories=2, pushes=15)  # the first 10 again change nothing: 5 commits
    git(path, "multi-pack-index", "write")

    pack_metadata(path, grace=0)

    assert kept.exists() and kept.with_suffix(".idx").exists()
    assert not (pack_dir / "multi-pack-index").exists()
    assert len(list(pack_dir.glob("pack-*.idx"))) == 2, "the kept pack, and one of everything else"
    git(path, "fsck", "--full", "--strict", "--no-progress")
    assert len(git(path, "rev-list", "--all").split()) == 16


def test_a_failed_pack_objects_leaves_the_packs_as_they_were(tmp_path, monkeypatch):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    push_round_robin(store, repositories=2, pushes=10)
    pack_dir = tmp_path / "meta.git" / "objects" / "pack"
    before = sorted(os.listdir(pack_dir))
    monkeypatch.setattr(packing, "DELTA_WINDOW", "ten")  # git refuses it

    with pytest.raises(packing.PackingFailed, match="pack-objects"):
        pack_metadata(path, grace=0)

    assert sorted(os.listdir(pack_dir)) == before
    git(path, "fsck", "--full", "--strict", "--no-progress")
