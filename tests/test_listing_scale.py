"""Catalog and search stay flat as the store grows (issue 6): what the first request of a new
process reads, what a diff between two tips reads, and how many repositories a search page asks
access for. In-process, on stores written directly with pygit2 (as bench/bigstore.py does), except
the last tests, which ask the running registry for the search API's counts."""

from __future__ import annotations

import logging
import os
import random
import string

import pygit2
import requests

from registry_core.context import Context
from registry_core.index.search import Search
from registry_core.meta import documents
from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import SavedViews, diff_trees, outside_underscore_folders
from registry_core.meta.store import BRANCH, COMMITTER, MetaStore, author
from registry_core.registry import repositories as repositories_module
from registry_core.registry.repositories import RepositoryService
from tests.test_community import ALICE, make_repository, search, word

TEST = Context(actor="test")


# --- stores written directly ----------------------------------------------------------------------

def repository_document(name: str, description: str = "", visibility: str = "public") -> dict:
    return {"kind": "repository", "schemaVersion": 1, "name": name, "visibility": visibility,
            "description": description}


def bulk_store(root, names, description=lambda name: f"the {name} image") -> MetaStore:
    """A store whose repositories/ holds `names` (each with its document and one tag), made in one
    commit, as a bulk import would: no view of it was ever saved."""
    meta = MetaStore(str(root / "meta.git"))
    repo = meta.repo
    tag = repo.create_blob(b"kind: tag\n")
    nested: dict = {}
    for name in names:
        document = repository_document(name, description(name))
        files = {meta_paths.repository(name): repo.create_blob(documents.dump(document, meta_paths.repository(name))),
                 meta_paths.tag(name, "v1"): tag}
        for path, blob in files.items():
            *folders, leaf = path.split("/")[1:]   # below repositories/
            level = nested
            for part in folders:
                level = level.setdefault(part, {})
            level[leaf] = blob

    def write(level: dict) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for key, value in level.items():
            if isinstance(value, dict):
                builder.insert(key, write(value), pygit2.GIT_FILEMODE_TREE)
            else:
                builder.insert(key, value, pygit2.GIT_FILEMODE_BLOB)
        return builder.write()
    tip = repo.get(repo.lookup_reference(BRANCH).target)
    root_tree = repo.TreeBuilder(tip.tree)
    root_tree.insert(meta_paths.REPOSITORIES, write(nested), pygit2.GIT_FILEMODE_TREE)
    repo.create_commit(BRANCH, pygit2.Signature(*author(TEST)), pygit2.Signature(*COMMITTER), "Bulk import\n", root_tree.write(),
                       [tip.id])
    return meta


def names_of(count: int) -> list[str]:
    return [f"ns{i // 50:02d}/app{i % 50:02d}" for i in range(count)]


def put_repository(meta: MetaStore, name: str, description: str = "") -> None:
    meta.transact(lambda txn: txn.put(meta_paths.repository(name), repository_document(name, description)),
                  TEST, f"Create {name}")


def drop_repository(meta: MetaStore, name: str) -> None:
    meta.transact(lambda txn: txn.delete_tree(meta_paths.repository_dir(name)), TEST, f"Drop {name}")


def describe(meta: MetaStore, changes: dict) -> None:
    """One commit: each named repository gets its description (created if new), or goes (None)."""
    def change(txn):
        for name, description in changes.items():
            if description is None:
                txn.delete_tree(meta_paths.repository_dir(name))
            else:
                txn.put(meta_paths.repository(name), repository_document(name, description))
    meta.transact(change, TEST, "Change")


def push_tag(meta: MetaStore, name: str, tag: str) -> None:
    meta.transact(lambda txn: txn.put(meta_paths.tag(name, tag), {
        "kind": "tag", "schemaVersion": 1, "name": tag, "digest": "sha256:" + "a" * 64,
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "pushedBy": "test",
        "pushedAt": "2026-01-01T00:00:00Z"}), TEST, f"Push {name}:{tag}")


def catalog_copies(root) -> list[str]:
    directory = root / "state" / "catalog"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def repositories_tree(meta: MetaStore) -> pygit2.Oid:
    return meta.snapshot().tree(meta_paths.REPOSITORIES).id


# --- the diff between two tips ----------------------------------------------------------------

def random_tree(repo: pygit2.Repository, rng: random.Random, depth: int = 0) -> dict:
    level = {}
    for _ in range(rng.randint(1, 6)):
        name = rng.choice("abcde") + rng.choice(["", "-1", ".x", "_y"])
        if depth < 3 and rng.random() < 0.4:
            level[name] = random_tree(repo, rng, depth + 1)
        else:
            level[name] = repo.create_blob(rng.randbytes(4))
    return level


def mutate(repo: pygit2.Repository, rng: random.Random, level: dict) -> dict:
    level = dict(level)
    for name in list(level):
        roll = rng.random()
        if roll < 0.15:
            del level[name]
        elif roll < 0.3:
            level[name] = repo.create_blob(rng.randbytes(4))  # a folder may become a file
        elif roll < 0.4:
            level[name] = random_tree(repo, rng, 2)  # and a file a folder
        elif isinstance(level[name], dict):
            level[name] = mutate(repo, rng, level[name])
    if rng.random() < 0.3:
        level[rng.choice("fgh")] = random_tree(repo, rng, 2)
    return level


def write_tree(repo: pygit2.Repository, level: dict) -> pygit2.Tree:
    builder = repo.TreeBuilder()
    for name, value in level.items():
        if isinstance(value, dict):
            builder.insert(name, write_tree(repo, value).id, pygit2.GIT_FILEMODE_TREE)
        else:
            builder.insert(name, value, pygit2.GIT_FILEMODE_BLOB)
    return repo.get(builder.write())


def test_diff_trees_reports_the_files_libgit2_reports(tmp_path):
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    rng = random.Random(6)
    for _ in range(200):
        before = random_tree(repo, rng)
        after = mutate(repo, rng, before)
        old, new = write_tree(repo, before), write_tree(repo, after)
        ours = sorted((c.status, c.old_file.path if c.old_file.id else None, c.new_file.path if c.new_file.id else None,
                       c.old_file.id, c.new_file.id) for c in diff_trees(repo, old, new))
        zero = pygit2.Oid(hex="0" * 40)
        theirs = sorted((d.status, d.old_file.path if d.old_file.id != zero else None,
                         d.new_file.path if d.new_file.id != zero else None,
                         d.old_file.id if d.old_file.id != zero else None,
                         d.new_file.id if d.new_file.id != zero else None) for d in old.diff_to_tree(new).deltas)
        assert ours == theirs


def test_a_tag_push_is_diffed_by_the_folders_on_its_path_and_not_into_tags(tmp_path):
    meta = bulk_store(tmp_path, names_of(400))
    old = meta.snapshot().tree(meta_paths.REPOSITORIES)
    push_tag(meta, "ns03/app07", "v2")
    put_repository(meta, "ns05/app01", "described again")
    snapshot = meta.snapshot()
    asked = []

    def descend(path):
        asked.append(path)
        return outside_underscore_folders(path)
    changes = list(diff_trees(snapshot.repo, old, snapshot.tree(meta_paths.REPOSITORIES), descend))
    assert [(c.status, c.new_file.path) for c in changes] == [
        (pygit2.GIT_DELTA_MODIFIED, "ns05/app01/_repository.yaml")]
    assert sorted(asked) == ["ns03", "ns03/app07", "ns03/app07/_tags", "ns05", "ns05/app01"]


# --- the catalog: saved, restored, caught up ------------------------------------------------------

def test_a_new_process_starts_from_the_saved_catalog_and_catches_up_by_diff(tmp_path, monkeypatch):
    names = names_of(300)
    meta = bulk_store(tmp_path, names)
    first = RepositoryService(meta)
    assert first.names() == sorted(names)  # no copy yet: walked once, and saved
    saved = [str(repositories_tree(meta))]
    assert catalog_copies(tmp_path) == saved
    other = MetaStore(meta.path)  # another process commits meanwhile
    put_repository(other, "ns00/app00-b")
    drop_repository(other, "ns02/app03")
    push_tag(other, "ns01/app01", "v2")
    bulk = [f"zz/r{i:03d}" for i in range(70)]  # many names in one diff: applied by one sort

    def import_many(txn):
        for name in bulk:
            txn.put(meta_paths.repository(name), repository_document(name))
    other.transact(import_many, TEST, "Import")

    def refuse(*args):
        raise AssertionError("the catalog walked the store")
    monkeypatch.setattr(repositories_module, "_walk", refuse)
    fresh = RepositoryService(MetaStore(meta.path))  # a new process
    expected = sorted(set(names) - {"ns02/app03"} | {"ns00/app00-b"} | set(bulk))
    assert fresh.names() == expected
    assert fresh.catalog(3, "ns00/app00") == (["ns00/app00-b", "ns00/app01", "ns00/app02"], True)
    assert fresh.catalog(5, expected[-2]) == ([expected[-1]], False)
    assert first.names() == expected  # the first process follows the other's commits too
    assert catalog_copies(tmp_path) == saved  # 73 changed files: not yet worth another copy


def test_every_process_sees_another_processs_commit_at_once(tmp_path):
    meta = MetaStore(str(tmp_path / "meta.git"))
    put_repository(meta, "a/one")
    ours, theirs = RepositoryService(meta), RepositoryService(MetaStore(meta.path))
    assert ours.catalog() == (["a/one"], False) and theirs.catalog() == (["a/one"], False)
    put_repository(theirs.meta, "a/two")
    assert ours.catalog() == (["a/one", "a/two"], False)
    drop_repository(ours.meta, "a/one")
    assert theirs.catalog() == (["a/two"], False)


def test_the_catalog_is_saved_after_a_walk_and_every_few_hundred_changes_keeping_two_copies(tmp_path):
    meta = bulk_store(tmp_path, names_of(20))
    service = RepositoryService(meta)
    service._catalog.save_after = 4  # changed files applied since the copy before another is written
    service.names()
    assert len(catalog_copies(tmp_path)) == 1
    written = []
    for i in range(10):
        put_repository(meta, f"new/r{i}")
        service.names()
        written.append(str(repositories_tree(meta)) in catalog_copies(tmp_path))
    assert written == [False, False, False, True] * 2 + [False, False]  # one changed file a commit
    assert len(catalog_copies(tmp_path)) == 2
    for i in range(3):  # reading never writes
        service.catalog(5)
    assert len(catalog_copies(tmp_path)) == 2


def test_a_damaged_copy_or_one_of_a_tree_not_in_the_store_is_skipped(tmp_path, caplog):
    names = names_of(30)
    meta = bulk_store(tmp_path, names)
    tree = str(repositories_tree(meta))
    directory = tmp_path / "state" / "catalog"
    directory.mkdir(parents=True)
    (directory / tree).write_bytes(b"registry-core-view catalog 1 5 00000000\nns00/")  # wrong checksum
    foreign = SavedViews(str(directory), "catalog")
    foreign.save(pygit2.Oid(hex="1" * 40), b"ns99/unknown")  # newer, but its tree is in another store
    with caplog.at_level(logging.WARNING, logger="registry_core"):
        assert RepositoryService(meta).names() == sorted(names)
    assert "damaged" in caplog.text
    assert catalog_copies(tmp_path) == sorted([tree, "1" * 40])  # the damaged copy was replaced by a walk
    assert (directory / tree).read_bytes().startswith(b"registry-core-view catalog 1 ")


def test_a_store_whose_state_folder_cannot_be_written_still_lists(tmp_path, caplog):
    meta = bulk_store(tmp_path, names_of(10))
    (tmp_path / "state").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="registry_core"):
        service = RepositoryService(meta)
        assert service.names() == sorted(names_of(10))
        put_repository(meta, "z/z")
        assert service.names()[-1] == "z/z"
    assert "cannot save the catalog view" in caplog.text


def test_catalog_pages_of_what_the_caller_may_pull_are_full_and_say_whether_more_follow(tmp_path):
    meta = MetaStore(str(tmp_path / "meta.git"))
    for name in ("a/1", "a/2", "b/1", "b/2", "c/1", "c/2", "d/1"):
        put_repository(meta, name)
    service = RepositoryService(meta)
    judged = []

    def only_b_and_d(names):
        judged.extend(names)
        return [name for name in names if name[0] in "bd"]
    assert service.catalog(2, None, only_b_and_d) == (["b/1", "b/2"], True)
    assert judged == ["a/1", "a/2", "b/1", "b/2", "c/1", "c/2", "d/1"]  # to the next one it may pull
    judged.clear()
    assert service.catalog(2, "b/2", only_b_and_d) == (["d/1"], False)
    assert judged == ["c/1", "c/2", "d/1"]
    assert service.catalog(3, None, lambda names: names) == (["a/1", "a/2", "b/1"], True)


# --- search -----------------------------------------------------------------------------------

def reference_match(entries: dict[str, str], terms: list[str]) -> list[str]:
    """The ranking search had when it scanned every repository."""
    in_name, in_description = [], []
    for name in sorted(entries):
        text = f"{name}\n{entries[name]}".lower()
        if all(term in text for term in terms):
            (in_name if all(term in name for term in terms) else in_description).append(name)
    return in_name + in_description


def test_search_matches_and_ranks_as_a_scan_of_every_repository_did(tmp_path):
    rng = random.Random(66)
    words = ["app", "web", "db", "Cache", "api", "pp", "tool", "ns0", "x", "é"]
    in_names = [w.lower() for w in words if w.isascii()]
    entries = {}
    for i in range(300):
        name = f"ns{rng.randint(0, 3)}/{rng.choice(in_names)}{rng.randint(0, 20)}-{rng.choice(in_names)}"
        entries[name] = " ".join(rng.choice(words) for _ in range(rng.randint(0, 4)))
    meta = bulk_store(tmp_path, entries, description=entries.get)
    repositories = RepositoryService(meta)
    found = Search(meta, repositories, lambda name, snapshot: 0)
    queries = ["", "app", "APP web", "pp", "x", "ns0/", "/", "-", "\n", "e\ndb", "café", "é", "db cache api",
               "nothing", "0-", "1-web app", "\x00", "tool tool"]
    queries += [" ".join(rng.choice(words + list(string.ascii_lowercase)) for _ in range(rng.randint(1, 3)))
                for _ in range(100)]
    snapshot = meta.snapshot()
    for query in queries:
        terms = query.lower().split()
        assert found.index.match(snapshot, terms) == reference_match(entries, terms), query
    # changes between queries: a few are patched into what a query scans, many make it anew
    for round in range(40):
        count = rng.choice([1, 2, 3, 5, 20, 40])
        changed = {}
        for _ in range(count):
            name = rng.choice(sorted(entries)) if rng.random() < 0.5 else \
                f"ns{rng.randint(0, 4)}/{rng.choice(in_names)}{rng.randint(0, 30)}"
            changed[name] = None if rng.random() < 0.3 else " ".join(rng.choice(words) for _ in range(2))

        describe(meta, changed)
        for name, description in changed.items():
            if description is None:
                entries.pop(name, None)
            else:
                entries[name] = description
        snapshot = meta.snapshot()
        for query in ["", "app", rng.choice(queries), rng.choice(queries)]:
            terms = query.lower().split()
            assert found.index.match(snapshot, terms) == reference_match(entries, terms), (round, query)


def test_search_follows_a_few_changes_made_between_two_queries(tmp_path):
    entries = {"a/1": "one", "a/3": "three", "a/5": "five"}
    meta = bulk_store(tmp_path, entries, description=entries.get)
    found = Search(meta, RepositoryService(meta), lambda name, snapshot: 0)
    assert found.index.match(meta.snapshot(), []) == ["a/1", "a/3", "a/5"]
    changes = {"a/0": "zero", "a/2": "two", "a/21": "twenty-one", "a/3": None, "a/5": "FIVE again", "a/6": "six",
               "a/7": "seven"}
    describe(meta, changes)
    entries = {"a/0": "zero", "a/1": "one", "a/2": "two", "a/21": "twenty-one", "a/5": "FIVE again", "a/6": "six",
               "a/7": "seven"}
    for query in ("", "e", "five", "again a/", "three", "2", "a/7 seven"):
        terms = query.lower().split()
        assert found.index.match(meta.snapshot(), terms) == reference_match(entries, terms), query


def test_a_search_page_asks_access_for_itself_and_one_more_repository(tmp_path):
    names = names_of(500)
    meta = bulk_store(tmp_path, names)
    found = Search(meta, RepositoryService(meta), lambda name, snapshot: 0)
    judged = []

    def everything(batch):
        judged.extend(batch)
        return batch
    page = found.query("app", everything, page=1, page_size=25)
    assert [r["name"] for r in page.results] == sorted(names)[:25]
    assert len(judged) == 26 and (page.num_results, page.num_pages, page.more) == (26, 2, True)
    judged.clear()
    page = found.query("app", everything, page=3, page_size=25)
    assert [r["name"] for r in page.results] == sorted(names)[50:75]
    assert len(judged) == 76 and (page.num_results, page.num_pages, page.more) == (76, 4, True)
    page = found.query("app", everything, page=5, page_size=100)  # the last page: every match seen
    assert len(page.results) == 100 and (page.num_results, page.num_pages, page.more) == (500, 5, False)
    judged.clear()
    page = found.query("ns03/app07", everything)
    assert [r["name"] for r in page.results] == ["ns03/app07"] and judged == ["ns03/app07"]
    assert (page.num_results, page.num_pages, page.more) == (1, 1, False)


def test_search_counts_only_what_the_caller_may_pull(tmp_path):
    names = names_of(200)
    meta = bulk_store(tmp_path, names)
    found = Search(meta, RepositoryService(meta), lambda name, snapshot: 0)
    pullable = sorted(names)[::7]

    def some(batch):
        return [name for name in batch if name in pullable]
    page = found.query("app", some, page=1, page_size=10)
    assert [r["name"] for r in page.results] == pullable[:10]
    assert (page.num_results, page.more) == (11, True)
    page = found.query("app", some, page=3, page_size=10)
    assert [r["name"] for r in page.results] == pullable[20:]
    assert (page.num_results, page.num_pages, page.more) == (len(pullable), 3, False)
    assert found.query("app", lambda batch: []).num_results == 0


def test_the_search_index_starts_from_its_saved_copy_and_follows_changes(tmp_path, monkeypatch):
    meta = MetaStore(str(tmp_path / "meta.git"))
    put_repository(meta, "a/one", "first thing")
    put_repository(meta, "b/two", "second thing")
    everything = lambda batch: batch  # noqa: E731
    first = Search(meta, RepositoryService(meta), lambda name, snapshot: 0)
    assert [r["name"] for r in first.query("thing", everything).results] == ["a/one", "b/two"]
    assert len(os.listdir(tmp_path / "state" / "search")) == 1
    put_repository(meta, "a/one", "renamed")
    put_repository(meta, "c/three", "third thing")

    fresh = Search(MetaStore(meta.path), RepositoryService(MetaStore(meta.path)), lambda name, snapshot: 0)

    def refuse(snapshot):
        raise AssertionError("the search index read every repository")
    monkeypatch.setattr(fresh.index, "rebuild", refuse)
    assert [r["name"] for r in fresh.query("thing", everything).results] == ["b/two", "c/three"]
    assert [r["name"] for r in fresh.query("RENAMED", everything).results] == ["a/one"]
    assert [r["name"] for r in fresh.query("", everything).results] == ["a/one", "b/two", "c/three"]


# --- the search API's counts (the running registry) -----------------------------------------------

def test_search_api_says_when_more_results_follow_than_it_counted(secured_registry):
    term = word()
    made = sorted(make_repository(secured_registry, description=term) for _ in range(4))
    pages = [search(secured_registry, term, n=2, page=p).json() for p in (1, 2, 3)]
    assert [[r["name"] for r in page["results"]] for page in pages] == [made[:2], made[2:], []]
    # found so far: the page, what came before it, and one more when there is one
    assert [(p["num_results"], p["num_pages"], p["more"]) for p in pages] == [(3, 2, True), (4, 2, False),
                                                                              (4, 2, False)]
    whole = search(secured_registry, term, n=25).json()
    assert (whole["num_results"], whole["num_pages"], whole["more"]) == (4, 1, False)
    docker = search(secured_registry, term, path="/v1/search", n=2).json()
    assert "more" not in docker and (docker["num_results"], docker["num_pages"]) == (3, 2)
    hidden = make_repository(secured_registry, "private", description=term)
    assert search(secured_registry, term, n=25).json()["num_results"] == 4
    assert search(secured_registry, term, ALICE, n=25).json()["num_results"] == 5
    assert hidden in [r["name"] for r in search(secured_registry, term, ALICE, n=25).json()["results"]]
    assert requests.get(f"{secured_registry.url}/api/v1/search", params={"q": term, "n": 4}).json()["more"] is False


# --- a repository's tags: three levels of 16 folders, listed in order, a push re-reads its path -------

def tag_document(tag: str) -> dict:
    return {"kind": "tag", "schemaVersion": 1, "name": tag, "digest": "sha256:" + "a" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "pushedBy": "test",
            "pushedAt": "2026-01-01T00:00:00Z"}


def test_tags_sit_in_buckets_three_hex_digits_deep_and_list_in_order_as_they_change(tmp_path):
    meta = bulk_store(tmp_path, ["ns/app"])
    tags = [f"v{i}" for i in range(1500)] + ["latest", "1.0", "sha-0af3", "V2", "a_b", "z.9"]

    def push_all(txn):
        for tag in tags:
            txn.put(meta_paths.tag("ns/app", tag), tag_document(tag))
    meta.transact(push_all, TEST, "Import tags")
    tree = meta.snapshot().tree(meta_paths.tags_dir("ns/app"))
    hex_digits = set("0123456789abcdef")
    assert {e.name for e in tree} == hex_digits and all(isinstance(e, pygit2.Tree) for e in tree)
    second = [entry for folder in tree for entry in folder]
    assert {e.name for e in second} == hex_digits and 240 < len(second) <= 256
    buckets = [bucket for folder in second for bucket in folder]
    assert len(buckets) > 1000 and all(isinstance(b, pygit2.Tree) and b.name in hex_digits for b in buckets)
    assert max(len(bucket) for bucket in buckets) < 10, "no bucket holds a large share of the tags"
    service = RepositoryService(meta)
    expected = sorted(tags)  # bulk_store's own tag v1 is one of them
    assert service.tags("ns/app") == (expected, False)
    assert service.tags("ns/app", 3, "v1499") == (expected[expected.index("v1499") + 1:][:3], True)
    assert service.tag_count("ns/app", meta.snapshot()) == len(expected)
    cached_buckets = len(service._tags._buckets)

    push_tag(meta, "ns/app", "v1500")
    assert service.tags("ns/app")[0] == sorted(expected + ["v1500"])
    assert len(service._tags._buckets) == cached_buckets + 1 + meta_paths.FANOUT_LEVELS, \
        "only the folders on the pushed tag's path were read: _tags and one at each level"

    meta.transact(lambda txn: txn.delete(meta_paths.tag("ns/app", "latest")), TEST, "Untag latest")
    assert "latest" not in service.tags("ns/app")[0]
    assert len(service.tags("ns/app")[0]) == len(expected)
