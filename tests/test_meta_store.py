"""The metadata store (registry_core.meta.store): YAML documents in a bare git repository.

Every test uses a real bare repository in tmp_path; the contention tests use real processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import time
import tracemalloc

import pygit2
import pytest

from registry_core.context import Context
from registry_core.meta import branch, packs
from registry_core.meta.documents import DocumentInvalid
from registry_core.meta.store import BRANCH, ConflictRetriesExhausted, MetaStore

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
ALICE = Context(actor="alice", client_addr="192.0.2.7", request_id="req-42")


def user(name: str, **extra) -> dict:
    return {"kind": "user", "schemaVersion": 1, "name": name, **extra}


def tag(name: str, digest: str = DIGEST_A) -> dict:
    return {"kind": "tag", "schemaVersion": 1, "name": name, "digest": digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json"}


def put_all(documents: dict):
    def change(txn):
        for path, document in documents.items():
            txn.put(path, document)
    return change


def tip(store: MetaStore) -> pygit2.Commit:
    repo = store.repo
    return repo.get(repo.lookup_reference(BRANCH).target)


def history(store: MetaStore) -> list[pygit2.Commit]:
    return list(store.repo.walk(tip(store).id, pygit2.enums.SortMode.TOPOLOGICAL))


def read_yaml(store: MetaStore, path: str) -> bytes:
    return tip(store).tree[path].data


@pytest.fixture
def store(tmp_path) -> MetaStore:
    return MetaStore(str(tmp_path / "meta.git"))


# --- creation ---------------------------------------------------------------------------------


def test_new_store_is_a_bare_repository_with_one_initial_commit(store, tmp_path):
    repo = pygit2.Repository(str(tmp_path / "meta.git"))
    assert repo.is_bare
    commits = history(store)
    assert len(commits) == 1 and commits[0].parents == []
    assert len(commits[0].tree) == 0
    # Opening an existing store adds nothing.
    MetaStore(str(tmp_path / "meta.git"))
    assert len(history(store)) == 1


def test_store_never_opens_an_enclosing_repository(tmp_path):
    """An existing but empty meta.git folder inside a git checkout must not open the checkout's repository."""
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", "-b", "main", str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "outer"], check=True)
    outer_head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    (checkout / "store" / "meta.git").mkdir(parents=True)

    inner = MetaStore(str(checkout / "store" / "meta.git"))
    inner.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")

    assert inner.repo.path.rstrip("/").endswith("store/meta.git")
    assert inner.snapshot().get("users/alice.yaml")["name"] == "alice"
    after = subprocess.run(["git", "-C", str(checkout), "rev-parse", "refs/heads/main"], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert after == outer_head


# --- commits ----------------------------------------------------------------------------------


def test_a_transaction_is_one_commit_by_the_actor_with_trailers(store, tmp_path):
    initial = tip(store)
    result = store.transact(put_all({"users/alice.yaml": user("alice"),
                                     "repositories/alice/app/_tags/v1.yaml": tag("v1")}),
                            ALICE, "Add alice and her first tag")
    assert result is None
    commit = tip(store)
    assert commit.parents == [initial]
    assert commit.author.name == "alice"
    assert commit.committer.name == "registry"
    assert commit.message.startswith("Add alice and her first tag\n\n")
    assert "Actor: alice" in commit.message.splitlines()
    assert "Client-Addr: 192.0.2.7" in commit.message.splitlines()
    assert "Request-Id: req-42" in commit.message.splitlines()
    # git itself reads them as trailers, so `git log` is the audit trail.
    out = subprocess.run(["git", "--git-dir", str(tmp_path / "meta.git"), "log", "-1",
                          "--format=%an%n%(trailers:only,unfold)", "main"],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == "alice"
    assert {"Actor: alice", "Client-Addr: 192.0.2.7", "Request-Id: req-42"} <= set(out)
    snapshot = store.snapshot()
    assert snapshot.get("users/alice.yaml") == user("alice")
    assert snapshot.get("repositories/alice/app/_tags/v1.yaml") == tag("v1")


def test_trailers_for_a_context_without_address_or_request_id(store):
    store.transact(put_all({"users/bob.yaml": user("bob")}), Context(actor="bob"), "Add bob")
    lines = tip(store).message.splitlines()
    assert "Actor: bob" in lines
    assert not any(line.startswith(("Client-Addr:", "Request-Id:")) for line in lines)


def test_the_transaction_returns_the_change_functions_result(store):
    assert store.transact(lambda txn: (txn.put("users/a.yaml", user("a")), 7)[1], ALICE, "Add a") == 7


def test_a_transaction_without_writes_makes_no_commit(store):
    before = tip(store).id
    assert store.transact(lambda txn: txn.get("users/nobody.yaml"), ALICE, "Nothing") is None
    assert tip(store).id == before


def test_writing_the_same_content_again_makes_no_commit(store):
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    before = tip(store).id
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice again")
    store.transact(lambda txn: txn.delete("users/nobody.yaml"), ALICE, "Delete a missing document")
    assert tip(store).id == before


def test_a_change_that_raises_writes_nothing(store):
    before = tip(store).id

    def change(txn):
        txn.put("users/alice.yaml", user("alice"))
        raise LookupError("precondition failed")

    with pytest.raises(LookupError, match="precondition failed"):
        store.transact(change, ALICE, "Add alice")
    assert tip(store).id == before
    assert store.snapshot().get("users/alice.yaml") is None


# --- validation -------------------------------------------------------------------------------


def test_documents_are_validated_on_write(store):
    before = tip(store).id

    def bad_tag(txn):
        document = tag("v1")
        del document["digest"]
        txn.put("repositories/a/_tags/v1.yaml", document)

    with pytest.raises(DocumentInvalid) as caught:
        store.transact(bad_tag, ALICE, "Tag")
    assert caught.value.path == "repositories/a/_tags/v1.yaml"
    assert str(caught.value).startswith("repositories/a/_tags/v1.yaml: ")
    assert "'digest' is a required property" in str(caught.value)

    with pytest.raises(DocumentInvalid) as caught:
        store.transact(put_all({"users/x.yaml": user("x", admin="yes")}), ALICE, "Add x")
    assert "users/x.yaml: admin: 'yes' is not of type 'boolean'" == str(caught.value)

    with pytest.raises(DocumentInvalid, match=r"^users/y\.yaml: .*'colour' was unexpected"):
        store.transact(put_all({"users/y.yaml": user("y", colour="blue")}), ALICE, "Add y")
    assert tip(store).id == before


@pytest.mark.parametrize("document, problem", [
    ({"schemaVersion": 1}, "no 'kind'"),
    (["kind", "user"], "must be a mapping"),
    ({"kind": "spaceship", "schemaVersion": 1}, "no schema for document kind 'spaceship'"),
    ({"kind": "../sample_store/store", "schemaVersion": 1}, "is not a document kind"),
])
def test_a_document_without_a_known_kind_is_refused_with_its_path(store, document, problem):
    with pytest.raises(DocumentInvalid) as caught:
        store.transact(lambda txn: txn.put("users/z.yaml", document), ALICE, "Add z")
    assert caught.value.path == "users/z.yaml"
    assert str(caught.value).startswith("users/z.yaml: ") and problem in str(caught.value)


def commit_raw(store: MetaStore, files: dict[str, bytes]) -> None:
    """Commit bytes as they are, bypassing validation (as a careless `git push` to meta.git could)."""
    repo = store.repo

    def insert(tree: pygit2.Tree | None, parts: list[str], data: bytes) -> pygit2.Oid:
        builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
        name, rest = parts[0], parts[1:]
        if rest:
            subtree = tree[name] if tree is not None and name in tree else None
            builder.insert(name, insert(subtree, rest, data), pygit2.GIT_FILEMODE_TREE)
        else:
            builder.insert(name, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
        return builder.write()

    parent = tip(store)
    tree = parent.tree
    for path, data in files.items():
        tree = repo.get(insert(tree, path.split("/"), data))
    signature = pygit2.Signature("mallory", "mallory@example.test")
    repo.create_commit(BRANCH, signature, signature, "raw write\n", tree.id, [parent.id])


def test_documents_are_validated_on_load(store):
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    commit_raw(store, {
        "users/Bad Name.yaml": b"kind: user\nschemaVersion: 1\nname: Bad Name\n",
        "users/broken.yaml": b"kind: user\nschemaVersion: [1\n",
        "repositories/a/_tags/v1.yaml": b"kind: tag\nschemaVersion: 2\nname: v1\n",
    })
    snapshot = store.snapshot()
    assert snapshot.get("users/alice.yaml")["name"] == "alice"  # valid neighbours still load

    with pytest.raises(DocumentInvalid) as caught:
        snapshot.get("users/Bad Name.yaml")
    assert caught.value.path == "users/Bad Name.yaml"
    assert str(caught.value).startswith("users/Bad Name.yaml: name: 'Bad Name' does not match")

    with pytest.raises(DocumentInvalid, match=r"^users/broken\.yaml: not valid YAML"):
        snapshot.get("users/broken.yaml")

    with pytest.raises(DocumentInvalid, match=r"^repositories/a/_tags/v1\.yaml: "):
        snapshot.get("repositories/a/_tags/v1.yaml")

    # A transaction reading it fails the same way (and so writes nothing).
    before = tip(store).id
    with pytest.raises(DocumentInvalid, match=r"^users/Bad Name\.yaml: "):
        store.transact(lambda txn: txn.put("users/carol.yaml", user("carol"))
                       or txn.get("users/Bad Name.yaml"), ALICE, "Add carol")
    assert tip(store).id == before


# --- reads inside a transaction ---------------------------------------------------------------


def test_reads_see_the_transactions_own_writes(store):
    store.transact(put_all({"users/alice.yaml": user("alice"), "users/bob.yaml": user("bob")}),
                   ALICE, "Add users")
    seen = {}

    def change(txn):
        txn.put("users/carol.yaml", user("carol"))
        txn.put("users/alice.yaml", user("alice", admin=True))
        txn.delete("users/bob.yaml")
        seen["carol"] = txn.get("users/carol.yaml")
        seen["alice"] = txn.get("users/alice.yaml")
        seen["bob"] = txn.get("users/bob.yaml")
        seen["exists"] = (txn.exists("users/carol.yaml"), txn.exists("users/bob.yaml"))
        seen["names"] = sorted(txn.names("users"))
        seen["root"] = sorted(txn.names(""))
        # What get() returns is a copy: changing it does not change the pending write.
        seen["carol"]["admin"] = True
        seen["again"] = txn.get("users/carol.yaml")
        # The snapshot the transaction started from is unchanged.
        seen["outside"] = store.snapshot().get("users/carol.yaml")

    store.transact(change, ALICE, "Change users")
    assert seen["alice"] == user("alice", admin=True)
    assert seen["bob"] is None
    assert seen["exists"] == (True, False)
    assert seen["names"] == ["alice.yaml", "carol.yaml"]
    assert seen["root"] == ["users"]
    assert seen["again"] == user("carol")
    assert seen["outside"] is None
    snapshot = store.snapshot()
    assert snapshot.get("users/carol.yaml") == user("carol")
    assert snapshot.get("users/alice.yaml") == user("alice", admin=True)
    assert snapshot.names("users") == ["alice.yaml", "carol.yaml"]


def test_a_conflicting_transaction_is_rerun_on_the_new_tip(store, tmp_path):
    other = MetaStore(str(tmp_path / "meta.git"))  # another writer (another process or node)
    runs = []

    def change(txn):
        runs.append(txn.tip)
        if len(runs) == 1:  # someone commits between our read and our commit
            other.transact(put_all({"users/bob.yaml": user("bob")}), Context(actor="bob"), "Add bob")
        txn.put("users/alice.yaml", user("alice", admin=txn.exists("users/bob.yaml")))

    store.transact(change, ALICE, "Add alice")
    assert len(runs) == 2 and runs[0] != runs[1]
    commits = history(store)
    assert [c.author.name for c in commits] == ["alice", "bob", "registry"]
    assert store.snapshot().get("users/alice.yaml")["admin"] is True  # decided on the new tip


def test_conflicts_that_never_end_give_up_without_writing(store, tmp_path):
    other = MetaStore(str(tmp_path / "meta.git"))
    runs = []

    def change(txn):
        runs.append(1)
        other.transact(put_all({f"users/u{len(runs)}.yaml": user(f"u{len(runs)}")}), Context(actor="u"), "u")
        txn.put("users/alice.yaml", user("alice"))

    with pytest.raises(ConflictRetriesExhausted):
        store.transact(change, ALICE, "Add alice", attempts=3)
    assert len(runs) == 3
    assert store.snapshot().get("users/alice.yaml") is None
    assert len(history(store)) == 1 + 3


# --- deleting ---------------------------------------------------------------------------------


def test_delete_and_delete_tree(store):
    store.transact(put_all({
        "users/alice.yaml": user("alice"),
        "users/bob.yaml": user("bob"),
        "repositories/a/_tags/v1.yaml": tag("v1"),
        "repositories/a/_tags/v2.yaml": tag("v2"),
        "repositories/b/_tags/v1.yaml": tag("v1"),
    }), ALICE, "Seed")

    store.transact(lambda txn: txn.delete("users/bob.yaml"), ALICE, "Delete bob")
    snapshot = store.snapshot()
    assert snapshot.get("users/bob.yaml") is None and not snapshot.exists("users/bob.yaml")
    assert snapshot.names("users") == ["alice.yaml"]

    # Deleting the last document of a folder removes the folder (git has no empty trees).
    store.transact(lambda txn: txn.delete("users/alice.yaml"), ALICE, "Delete alice")
    assert store.snapshot().tree("users") is None
    assert store.snapshot().names("") == ["repositories"]

    seen = {}

    def delete_repository(txn):
        txn.delete_tree("repositories/a")
        seen["tag"] = txn.get("repositories/a/_tags/v1.yaml")
        seen["exists"] = txn.exists("repositories/a/_tags/v2.yaml")
        seen["names"] = txn.names("repositories")

    store.transact(delete_repository, ALICE, "Delete repository a")
    assert seen == {"tag": None, "exists": False, "names": ["b"]}
    snapshot = store.snapshot()
    assert snapshot.tree("repositories/a") is None
    assert snapshot.names("repositories") == ["b"]
    assert snapshot.get("repositories/b/_tags/v1.yaml") == tag("v1")
    assert tip(store).author.name == "alice"

    # Deleting a folder that does not exist changes nothing.
    before = tip(store).id
    store.transact(lambda txn: txn.delete_tree("repositories/nothing"), ALICE, "Delete nothing")
    assert tip(store).id == before


def test_delete_tree_then_write_below_replaces_the_folder(store):
    store.transact(put_all({"repositories/a/_tags/v1.yaml": tag("v1"),
                            "repositories/a/_tags/v2.yaml": tag("v2")}), ALICE, "Seed")

    def replace_tags(txn):
        txn.delete_tree("repositories/a/_tags")
        txn.put("repositories/a/_tags/v3.yaml", tag("v3"))
        return txn.names("repositories/a/_tags"), txn.get("repositories/a/_tags/v1.yaml")

    assert store.transact(replace_tags, ALICE, "Replace tags") == (["v3.yaml"], None)
    assert store.snapshot().names("repositories/a/_tags") == ["v3.yaml"]


def test_writes_below_a_folder_deleted_later_in_the_transaction_are_dropped(store):
    store.transact(put_all({"repositories/a/_tags/v1.yaml": tag("v1"),
                            "repositories/b/_tags/v1.yaml": tag("v1")}), ALICE, "Seed")

    def change(txn):
        txn.put("repositories/a/_tags/v2.yaml", tag("v2"))
        txn.delete_tree("repositories/a")
        return txn.get("repositories/a/_tags/v2.yaml")

    assert store.transact(change, ALICE, "Tag then delete") is None
    snapshot = store.snapshot()
    assert snapshot.tree("repositories/a") is None
    assert snapshot.names("repositories") == ["b"]


# --- tree rewriting ---------------------------------------------------------------------------


def test_only_the_trees_on_the_changed_path_are_rewritten(store):
    store.transact(put_all({
        "users/alice.yaml": user("alice"),
        "repositories/a/_tags/v1.yaml": tag("v1"),
        "repositories/a/_collaborators/bob.yaml": {"kind": "collaborator", "schemaVersion": 1,
                                                    "user": "bob", "role": "read"},
        "repositories/b/_tags/v1.yaml": tag("v1"),
        "repositories/ns/c/_tags/v1.yaml": tag("v1"),
    }), ALICE, "Seed")
    before = tip(store).tree
    store.transact(put_all({"repositories/a/_tags/v1.yaml": tag("v1", DIGEST_B)}), ALICE, "Move v1")
    after = tip(store).tree

    def tree_id(tree, path):
        return tree[path].id

    for changed in ["repositories", "repositories/a", "repositories/a/_tags",
                    "repositories/a/_tags/v1.yaml"]:
        assert tree_id(before, changed) != tree_id(after, changed), changed
    assert before.id != after.id
    for sibling in ["users", "repositories/b", "repositories/ns", "repositories/a/_collaborators"]:
        assert tree_id(before, sibling) == tree_id(after, sibling), sibling
    diff = before.diff_to_tree(after)
    assert [d.new_file.path for d in diff.deltas] == ["repositories/a/_tags/v1.yaml"]


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_is_cached_by_tip_and_sees_other_writers(store, tmp_path):
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    first = store.snapshot()
    assert store.snapshot() is first  # nothing changed: the same snapshot

    other = MetaStore(str(tmp_path / "meta.git"))  # as another process would
    other.snapshot()
    other.transact(put_all({"users/bob.yaml": user("bob")}), Context(actor="bob"), "Add bob")

    second = store.snapshot()
    assert second is not first
    assert second.tip == tip(other).id
    assert second.get("users/bob.yaml") == user("bob")
    assert first.get("users/bob.yaml") is None  # an old snapshot stays as it was
    # And a transaction in the first instance builds on the other writer's commit.
    store.transact(put_all({"users/carol.yaml": user("carol")}), ALICE, "Add carol")
    assert [c.author.name for c in history(store)] == ["alice", "bob", "alice", "registry"]
    assert other.snapshot().names("users") == ["alice.yaml", "bob.yaml", "carol.yaml"]


# --- compare-and-swap under contention (real processes) ---------------------------------------

WRITERS = 4
COMMITS_EACH = 100
INCREMENTS_EACH = 50


def _write_many(path: str, worker: int, count: int, start) -> int:
    store = MetaStore(path, create=False)
    start.wait()
    for i in range(count):
        store.transact(put_all({f"repositories/w{worker}/_tags/t{i}.yaml": tag(f"t{i}")}),
                       Context(actor=f"writer{worker}"), f"Tag w{worker}:t{i}")
    return worker


def _increment(path: str, worker: int, count: int, start) -> int:
    store = MetaStore(path, create=False)
    start.wait()

    def bump(txn):
        document = txn.get("repositories/counter/_repository.yaml")
        number = int(document["description"])
        document["description"] = str(number + 1)
        txn.put("repositories/counter/_repository.yaml", document)

    for _ in range(count):
        store.transact(bump, Context(actor=f"writer{worker}"), "Increment")
    return worker


def run_workers(target, path: str, count: int) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=target, args=(path, worker, count, start))
                 for worker in range(WRITERS)]
    for process in processes:
        process.start()
    start.set()
    deadline = time.monotonic() + 60
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0] * WRITERS


def test_concurrent_writers_lose_no_commit(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    run_workers(_write_many, path, COMMITS_EACH)

    commits = history(store)
    assert len(commits) == WRITERS * COMMITS_EACH + 1
    assert all(len(c.parents) == 1 for c in commits[:-1])  # one straight line, no merges
    authors = [c.author.name for c in commits[:-1]]
    assert {a: authors.count(a) for a in set(authors)} == {f"writer{w}": COMMITS_EACH for w in range(WRITERS)}
    snapshot = store.snapshot()
    for worker in range(WRITERS):
        names = snapshot.names(f"repositories/w{worker}/_tags")
        assert sorted(names) == sorted(f"t{i}.yaml" for i in range(COMMITS_EACH))
    assert snapshot.get("repositories/w3/_tags/t99.yaml") == tag("t99")


def test_read_modify_write_under_contention_is_never_lost(tmp_path):
    path = str(tmp_path / "meta.git")
    store = MetaStore(path)
    store.transact(put_all({"repositories/counter/_repository.yaml": {
        "kind": "repository", "schemaVersion": 1, "name": "counter", "visibility": "public",
        "description": "0"}}), ALICE, "Create the counter")
    run_workers(_increment, path, INCREMENTS_EACH)

    assert store.snapshot().get("repositories/counter/_repository.yaml")["description"] == \
        str(WRITERS * INCREMENTS_EACH)
    assert len(history(store)) == 2 + WRITERS * INCREMENTS_EACH


# --- moving the branch: git's lock protocol ------------------------------------------------------


def count_pack_writes(monkeypatch) -> list[str]:
    """The packs transactions write from now on (each commit attempt writes one)."""
    written = []
    real = packs.write_pack

    def write_pack(*args, **kwargs):
        written.append(real(*args, **kwargs))
        return written[-1]
    monkeypatch.setattr(packs, "write_pack", write_pack)
    return written


def refusals_of_the_lock(monkeypatch, then=None) -> list[int]:
    """Counts each time a writer finds the branch lock held; `then(count)` runs after each."""
    refused = []
    real = branch.Branch._take_lock

    def take_lock(self):
        taken = real(self)
        if not taken:
            refused.append(1)
            if then is not None:
                then(len(refused))
        return taken
    monkeypatch.setattr(branch.Branch, "_take_lock", take_lock)
    return refused


def test_a_branch_lock_held_by_another_writer_is_waited_for_and_the_commit_written_once(
        store, tmp_path, monkeypatch):
    lock = tmp_path / "meta.git" / "refs" / "heads" / "main.lock"
    lock.write_text("")  # another writer (git, or a registry process) is moving the branch now

    def release(refusals):
        if refusals == 5:  # the other writer's move was refused: it lets the lock go
            lock.unlink()
    refused = refusals_of_the_lock(monkeypatch, then=release)
    written = count_pack_writes(monkeypatch)

    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")

    assert len(refused) == 5 and len(written) == 1  # waited on the lock, no commit written per look
    assert store.snapshot().get("users/alice.yaml") == user("alice") and not lock.exists()
    assert [c.author.name for c in history(store)] == ["alice", "registry"]


@pytest.mark.parametrize("left_by", ["touch", "a copy of the branch file"])
def test_a_branch_lock_left_by_a_writer_that_died_is_removed_once_seen_unchanged(
        store, tmp_path, monkeypatch, caplog, left_by):
    heads = tmp_path / "meta.git" / "refs" / "heads"
    if left_by == "touch":
        (heads / "main.lock").touch()
    else:
        (heads / "main.lock").write_bytes((heads / "main").read_bytes())
    store.branch.stale_after = 0.2  # seconds: STALE_AFTER, shortened for the test
    written = count_pack_writes(monkeypatch)

    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")

    assert store.snapshot().get("users/alice.yaml") == user("alice") and not (heads / "main.lock").exists()
    assert len(written) == 1
    assert "left by a writer that stopped midway" in caplog.text


def test_a_branch_lock_changed_longer_ago_than_stale_lock_is_removed_at_first_sight(
        store, tmp_path, monkeypatch, caplog):
    lock = tmp_path / "meta.git" / "refs" / "heads" / "main.lock"
    lock.touch()
    monkeypatch.setattr(branch, "STALE_LOCK", 0.0)  # as if it had been left there long ago
    store.branch.stale_after = 3600.0  # so watching it could not be what removes it
    refused = refusals_of_the_lock(monkeypatch)
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    assert len(refused) == 1 and not lock.exists()
    assert store.snapshot().get("users/alice.yaml") == user("alice")
    assert "left by a writer that stopped midway" in caplog.text


def test_a_branch_lock_that_stays_held_by_live_writers_gives_up_with_503_and_one_pack(
        store, tmp_path, monkeypatch):
    lock = tmp_path / "meta.git" / "refs" / "heads" / "main.lock"
    lock.write_text("")

    def other_writers_at_work(refusals):
        lock.unlink()
        lock.write_text(f"{refusals}\n")  # a new lock each look: never the same file for long
    refusals_of_the_lock(monkeypatch, then=other_writers_at_work)
    written = count_pack_writes(monkeypatch)
    store.branch.stale_after, store.branch.wait_for_lock = 0.05, 0.3

    with pytest.raises(branch.BranchLocked) as busy:
        store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")

    assert busy.value.status == 503 and busy.value.code == "UNAVAILABLE"
    assert busy.value.headers == {"Retry-After": "1"} and "try again" in busy.value.message
    assert len(written) == 1 and lock.exists()
    assert store.snapshot().get("users/alice.yaml") is None


def test_a_lock_taken_from_a_spare_is_waited_for_and_its_age_counts_from_the_taking(store, tmp_path):
    git_dir = tmp_path / "meta.git"
    old = time.time() - 120
    for spare in (git_dir / branch.SPARE_FOLDER).iterdir():
        os.utime(spare, (old, old))  # written long ago, as spares are
    other = branch.Branch(str(git_dir), BRANCH)  # another process's
    holder, _ = other._take_lock()  # and it holds the lock now, a link of a spare
    lock = git_dir / "refs" / "heads" / "main.lock"
    assert os.stat(lock).st_nlink == 2
    store.branch.wait_for_lock = 0.3  # shorter than STALE_AFTER: the lock is not judged stale
    with pytest.raises(branch.BranchLocked):
        store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    assert lock.exists()  # not taken for a dead writer's: its age counts from the taking
    os.close(holder)
    os.unlink(lock)
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    assert store.snapshot().get("users/alice.yaml") == user("alice")


def test_a_writer_whose_lock_was_removed_as_stale_renames_nothing_and_commits_on_the_new_tip(
        store, tmp_path, monkeypatch):
    """A writer stalled (on a saturated disk) for longer than STALE_AFTER between taking the lock
    and renaming it: another process removes its lock and commits meanwhile. The stalled writer
    must not rename the other's lock (or its own file) over the branch."""
    git_dir = str(tmp_path / "meta.git")
    other = MetaStore(git_dir)  # another process
    real_write = branch._write_at_start
    stalled = []

    def write_after_a_stall(fd, data):
        if not stalled:
            stalled.append(1)
            other.branch.stale_after = 0.0  # it has watched this lock long enough
            assert other.branch._remove_if_stale()
            other.transact(put_all({"users/bob.yaml": user("bob")}), Context(actor="bob"), "Add bob")
        real_write(fd, data)
    monkeypatch.setattr(branch, "_write_at_start", write_after_a_stall)

    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")

    assert [c.author.name for c in history(store)] == ["alice", "bob", "registry"]
    snapshot = MetaStore(git_dir).snapshot()
    assert snapshot.get("users/alice.yaml") == user("alice") and snapshot.get("users/bob.yaml") == user("bob")
    assert not (tmp_path / "meta.git" / "refs" / "heads" / "main.lock").exists()
    spares = {os.stat(path).st_ino for path in (tmp_path / "meta.git" / branch.SPARE_FOLDER).iterdir()}
    assert len(spares) == branch.SPARES  # the stale lock's spare was replaced, none lost
    for i in range(branch.SPARES + 1):  # and the ring goes on, the branch always a spare
        store.transact(put_all({f"users/u{i}.yaml": user(f"u{i}")}), ALICE, f"Add u{i}")
        assert os.stat(tmp_path / "meta.git" / "refs" / "heads" / "main").st_ino in spares


def test_a_packed_branch_moves_and_git_sees_one_line_of_history(store, tmp_path):
    git_dir = str(tmp_path / "meta.git")
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    subprocess.run(["git", "--git-dir", git_dir, "pack-refs", "--all"], check=True)
    assert not (tmp_path / "meta.git" / "refs" / "heads" / "main").exists()
    store.transact(put_all({"users/bob.yaml": user("bob")}), Context(actor="bob"), "Add bob")
    log = subprocess.run(["git", "--git-dir", git_dir, "log", "--format=%an", "main"], check=True,
                         capture_output=True, text=True).stdout.split()
    assert log == ["bob", "alice", "registry"]
    fsck = subprocess.run(["git", "--git-dir", git_dir, "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    assert MetaStore(git_dir).snapshot().get("users/bob.yaml") == user("bob")


def test_the_branch_file_is_one_of_the_spares_in_turn_and_no_inode_is_freed(store, tmp_path):
    git_dir = tmp_path / "meta.git"
    spares = {os.stat(path).st_ino: path.name for path in (git_dir / branch.SPARE_FOLDER).iterdir()}
    assert len(spares) == branch.SPARES
    seen = []
    for i in range(branch.SPARES + 2):
        store.transact(put_all({f"users/u{i}.yaml": user(f"u{i}")}), ALICE, f"Add u{i}")
        seen.append(spares[os.stat(git_dir / "refs" / "heads" / "main").st_ino])  # a spare's inode
    assert len(set(seen[:branch.SPARES])) == branch.SPARES  # each once, in turn
    assert seen[branch.SPARES:] == seen[:2]
    assert {os.stat(path).st_ino for path in (git_dir / branch.SPARE_FOLDER).iterdir()} == set(spares)
    assert os.stat(git_dir / "refs" / "heads" / "main").st_nlink == 2  # its spare's name and the branch
    assert not (git_dir / "refs" / "heads" / "main.lock").exists()
    assert MetaStore(str(git_dir)).snapshot().get(f"users/u{branch.SPARES + 1}.yaml") == user(f"u{branch.SPARES + 1}")
    # git fsck lists the packs, then opens them: a merge that retires packs in between fails it
    assert store.settle()
    fsck = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    log = subprocess.run(["git", "--git-dir", str(git_dir), "log", "--format=%an", "main"], check=True,
                         capture_output=True, text=True).stdout.split()
    assert len(log) == branch.SPARES + 3


def test_without_spare_files_the_branch_lock_is_created_each_commit(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="registry_core")
    git_dir = tmp_path / "meta.git"
    git_dir.mkdir()
    (git_dir / branch.SPARE_FOLDER).write_text("not a folder")  # they cannot be made here
    pygit2.init_repository(str(git_dir), bare=True, initial_head="main")
    store = MetaStore(str(git_dir))
    assert "branch locks are created each commit" in caplog.text
    for i in range(3):
        store.transact(put_all({f"users/u{i}.yaml": user(f"u{i}")}), ALICE, f"Add u{i}")
    assert os.stat(git_dir / "refs" / "heads" / "main").st_nlink == 1
    assert [c.author.name for c in history(store)][:3] == ["alice"] * 3
    assert MetaStore(str(git_dir)).snapshot().get("users/u2.yaml") == user("u2")


def test_a_missing_object_is_an_error_not_a_missing_document(store, tmp_path):
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    repo = pygit2.Repository(str(tmp_path / "meta.git"))
    lost = pygit2.Oid(hex="1" * 40)  # a blob no pack holds
    pygit2.settings.enable_strict_object_creation(False)  # libgit2 would refuse to name a missing object
    try:
        users = repo.TreeBuilder()
        users.insert("bob.yaml", lost, pygit2.GIT_FILEMODE_BLOB)
        root = repo.TreeBuilder(repo[tip(store).id].tree)
        root.insert("users", users.write(), pygit2.GIT_FILEMODE_TREE)
        signature = pygit2.Signature("admin", "admin@localhost")
        repo.create_commit(BRANCH, signature, signature, "Damage\n", root.write(), [tip(store).id])
    finally:
        pygit2.settings.enable_strict_object_creation(True)
    snapshot = MetaStore(str(tmp_path / "meta.git")).snapshot()
    assert snapshot.exists("users/bob.yaml") and snapshot.get("users/carol.yaml") is None
    with pytest.raises(KeyError, match="1111111111"):
        snapshot.get("users/bob.yaml")


def test_spare_files_made_anew_under_a_running_store_are_never_the_branch_and_its_lock(store, tmp_path):
    git_dir = tmp_path / "meta.git"
    store.transact(put_all({"users/u0.yaml": user("u0")}), ALICE, "Add u0")
    # by hand, while this store remembers the old ones (kept aside: their inodes are not reused)
    os.rename(git_dir / branch.SPARE_FOLDER, tmp_path / "old-spares")
    branch.Branch(str(git_dir), BRANCH).prepare_spares()
    for i in range(1, 4):  # the second of these would link the branch itself as its lock
        store.transact(put_all({f"users/u{i}.yaml": user(f"u{i}")}), ALICE, f"Add u{i}")
        assert not (git_dir / "refs" / "heads" / "main.lock").exists()
    assert [c.message.splitlines()[0] for c in history(store)][:4] == ["Add u3", "Add u2", "Add u1", "Add u0"]
    fresh = {os.stat(path).st_ino for path in (git_dir / branch.SPARE_FOLDER).iterdir()}
    assert os.stat(git_dir / "refs" / "heads" / "main").st_ino in fresh


def test_readers_look_for_missing_objects_again_only_through_snapshot_read():
    """The retry of a read that met a pack moved by a merge lives in one place (Snapshot.read),
    not at each call site that every new reader would have to remember."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "registry_core"
    callers = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                     if "read_again_if_missing(" in path.read_text())
    assert callers == ["meta/packs.py", "meta/store.py"]
    store_source = (root / "meta" / "store.py").read_text()
    assert store_source.count("read_again_if_missing(") == 1  # in Snapshot.read


def test_reading_a_path_keeps_no_reference_to_the_path_string(store):
    """pygit2 keeps a reference to every path it is given; a worker that kept each request's
    paths grew by ~300 bytes a manifest GET (meta/lookups.py)."""
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    snapshot = store.snapshot()
    found, missing = "users/" + "alice.yaml", "users/" + "nobody.yaml"  # strings made here, not constants
    held = sys.getrefcount(found), sys.getrefcount(missing)
    for _ in range(100):
        assert snapshot.get(found) == user("alice")
        assert snapshot.get(missing) is None and not snapshot.exists(missing)
        assert snapshot.tree("us" + "ers") is not None and snapshot.tree("users/" + "alice.yaml") is None
    assert (sys.getrefcount(found), sys.getrefcount(missing)) == held


def test_twenty_thousand_lookups_of_new_paths_leave_memory_where_it_was(store):
    store.transact(put_all({"users/alice.yaml": user("alice")}), ALICE, "Add alice")
    snapshot = store.snapshot()
    snapshot.get("users/alice.yaml")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            snapshot.get(f"users/{'alice' if i % 2 else f'someone-{i}'}.yaml")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"{grown:,} bytes kept by 20,000 lookups"  # (kept paths: ~1.4 MB)
