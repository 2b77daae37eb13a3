"""The conformance suite of the metadata writers (registry_core/meta/writers.py): every test runs
with each writer, `packs` (the default) and `libgit2` (the reference), in real processes on a real
meta.git, beside readers in other processes and beside git itself.

Every test ends with the same checks (assert_sound): `git fsck --full --strict` clean; every
commit's author and committer well-formed, the author an expected account whose name the commit's
Actor trailer repeats; after `registry garbage-collect --grace 0`, no unreachable object left and
`git count-objects -v` reporting no garbage; and a `git clone` of meta.git whose `git log` reads
the whole history.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.context import Context
from registry_core.meta.store import BRANCH, MetaStore
from tests.support.meta_writer import COUNTER, user

ROOT = Path(__file__).resolve().parent.parent
WRITERS = ["packs", "libgit2"]


@pytest.fixture(params=WRITERS)
def writer(request) -> str:
    return request.param


@pytest.fixture
def store(tmp_path, cli_isolation) -> Path:
    path = tmp_path / "store"
    result = CliRunner().invoke(main, ["init", str(path)])
    assert result.exit_code == 0, result.output
    return path


def git(meta_git: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", "-C", str(meta_git), *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.meta_writer", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def commits(meta_git: Path) -> list[pygit2.Commit]:
    repo = pygit2.Repository(str(meta_git))
    return list(repo.walk(repo.references[BRANCH].target, pygit2.enums.SortMode.TOPOLOGICAL))


def assert_sound(store: Path, authors: set[str]) -> None:
    meta_git = store / "meta.git"
    fsck = git(meta_git, "fsck", "--full", "--strict", "--no-dangling")
    assert "error" not in fsck and "warning" not in fsck, fsck
    history = commits(meta_git)
    for commit in history:
        assert commit.author.name in authors | {"registry"}, commit.message
        assert commit.author.email == f"{commit.author.name}@registry" or commit.parents == []
        assert commit.committer.name == "registry"
        assert len(commit.parents) <= 1
        if commit.parents:
            assert f"\nActor: {commit.author.name}\n" in commit.message + "\n", commit.message
    result = CliRunner().invoke(main, ["garbage-collect", "--grace", "0", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert git(meta_git, "fsck", "--unreachable", "--no-reflogs", "--no-progress").strip() == ""
    counted = dict(line.split(": ", 1) for line in git(meta_git, "count-objects", "-v").splitlines())
    assert counted["garbage"] == "0" and counted["size-garbage"] == "0", counted
    clone = store.parent / "clone.git"
    git(store.parent, "clone", "-q", "--bare", str(meta_git), str(clone))
    assert len(git(clone, "log", "--format=%H").split()) == len(history)


def test_commits_from_several_processes_all_land_beside_readers(store, writer):
    meta_git = str(store / "meta.git")
    before = len(commits(store / "meta.git"))
    readers = [spawn("read", meta_git, "6") for _ in range(2)]
    writers = [spawn("write", meta_git, writer, f"w{i}", "25", f"p{i}") for i in range(3)]
    for process in writers + readers:
        finish(process)
    history = commits(store / "meta.git")
    assert len(history) == before + 75
    snapshot = MetaStore(meta_git, create=False).snapshot()
    assert all(snapshot.exists(f"users/p{w}-{i}.yaml") for w in range(3) for i in range(25))
    by_author = {}
    for commit in history[:75]:
        by_author.setdefault(commit.author.name, []).append(commit.message.splitlines()[0])
    assert {author: len(messages) for author, messages in by_author.items()} == {"w0": 25, "w1": 25, "w2": 25}
    assert_sound(store, {"w0", "w1", "w2", "admin"})


@pytest.mark.parametrize("step", ["after-objects", "lock-held", "after-move"])
def test_a_writer_killed_at_any_step_loses_nothing_acknowledged_and_stops_no_one(store, writer, step):
    meta_git = store / "meta.git"
    tip = commits(meta_git)[0].id
    killed = spawn("write", str(meta_git), writer, "victim", "3", "k", step)
    killed.communicate(timeout=60)
    assert killed.returncode == -9
    history = commits(meta_git)
    if step == "after-move":  # the branch moved: that commit is made, the rest never started
        assert [c.message.splitlines()[0] for c in history[:1]] == ["Add k-0"] and history[1].id == tip
    else:
        assert history[0].id == tip
    finish(spawn("write", str(meta_git), writer, "survivor", "3", "s"))
    snapshot = MetaStore(str(meta_git), create=False).snapshot()
    assert all(snapshot.exists(f"users/s-{i}.yaml") for i in range(3))
    assert not (meta_git / "refs" / "heads" / "main.lock").exists()
    assert_sound(store, {"victim", "survivor", "admin"})


def test_an_operators_git_gc_and_update_ref_in_the_middle(store, writer):
    meta_git = store / "meta.git"
    first = spawn("write", str(meta_git), writer, "w1", "20", "a")
    reader = spawn("read", str(meta_git), "5")
    git(meta_git, "gc", "--quiet")
    finish(first)
    git(meta_git, "gc", "--quiet")  # refs packed, a bitmap written, the loose objects packed
    # The operator commits around the registry and moves the branch with git itself.
    old = git(meta_git, "rev-parse", "refs/heads/main").strip()
    blob = subprocess.run(["git", "-C", str(meta_git), "hash-object", "-w", "--stdin"], input=(
        "kind: user\nschemaVersion: 1\nname: by-git\nadmin: false\ncreatedAt: '2026-01-01T00:00:00Z'\n"),
        capture_output=True, text=True, check=True).stdout.strip()
    index = {"GIT_INDEX_FILE": str(store.parent / "operator.index"), **os.environ}
    subprocess.run(["git", "-C", str(meta_git), "read-tree", old], env=index, check=True)
    subprocess.run(["git", "-C", str(meta_git), "update-index", "--add", "--cacheinfo",
                    f"100644,{blob},users/by-git.yaml"], env=index, check=True)
    tree = subprocess.run(["git", "-C", str(meta_git), "write-tree"], env=index, capture_output=True, text=True,
                          check=True).stdout.strip()
    operator = {"GIT_AUTHOR_NAME": "operator", "GIT_AUTHOR_EMAIL": "operator@registry",
                "GIT_COMMITTER_NAME": "registry", "GIT_COMMITTER_EMAIL": "registry@localhost", **os.environ}
    new = subprocess.run(["git", "-C", str(meta_git), "commit-tree", tree, "-p", old, "-m",
                          "Add by-git\n\nActor: operator"], env=operator, capture_output=True, text=True,
                         check=True).stdout.strip()
    git(meta_git, "update-ref", "refs/heads/main", new, old)
    finish(spawn("write", str(meta_git), writer, "w2", "10", "b"))
    finish(reader)
    history = commits(meta_git)
    assert str(history[10].id) == new
    snapshot = MetaStore(str(meta_git), create=False).snapshot()
    assert snapshot.exists("users/by-git.yaml") and snapshot.exists("users/b-9.yaml")
    assert snapshot.exists("users/a-19.yaml")
    assert_sound(store, {"w1", "w2", "admin", "operator"})


def test_each_writer_continues_the_history_of_the_other(store, writer):
    meta_git = store / "meta.git"
    other = WRITERS[1 - WRITERS.index(writer)]
    for round_, kind in enumerate([writer, other, writer]):
        finish(spawn("write", str(meta_git), kind, f"r{round_}", "5", f"r{round_}"))
    store_ = MetaStore(str(meta_git), create=False, writer=writer)
    store_.transact(lambda txn: txn.put("users/last.yaml", user("last")), Context(actor="last"), "Add last")
    snapshot = MetaStore(str(meta_git), create=False).snapshot()
    assert snapshot.get(COUNTER)["email"] == "r2-4@example.test" and snapshot.exists("users/last.yaml")
    assert_sound(store, {"r0", "r1", "r2", "last", "admin"})
