"""The Index's community API on the default config: stars, repository summaries, comments and
search (ours and Docker's v1 search, with `docker search` itself); who may do each; one commit per
change, authored by the acting user; and the per-process indexes that keep search and the starred
lists off a walk of the store."""

from __future__ import annotations

import contextlib
import re
import uuid

import pygit2
import pytest
import requests

from registry_core.context import Context
from registry_core.index.community import Stars
from registry_core.index.search import Search
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore
from registry_core.registry.repositories import RepositoryService
from tests.support.engines import docker_engine
from tests.support.oci import Client, error_codes, meta_commits, meta_tip

ADMIN = ("admin", "admin-demo")
ALICE = ("alice", "alice-demo")
BOB = ("bob", "bob-demo")
COMMENT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{11}$")


def api(server, path: str) -> str:
    return f"{server.url}/api/v1{path}"


def word() -> str:
    """A search term no other repository holds."""
    return f"zq{uuid.uuid4().hex[:10]}"


def make_user(server) -> tuple[str, str]:
    name, password = f"u{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    r = requests.post(api(server, "/users"), auth=ADMIN, json={"name": name, "password": password})
    assert r.status_code == 201, r.text
    return name, password


def make_repository(server, visibility: str = "public", description: str | None = None,
                    name: str | None = None, readers: tuple[str, ...] = ()) -> str:
    """A repository of alice's (created by her first push, one tag), with the given visibility,
    description and read collaborators."""
    name = name or f"alice/r{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    Client(server.url, session).push_image(name, "v1")
    change = {"visibility": visibility}
    if description is not None:
        change["description"] = description
    assert requests.patch(api(server, f"/repositories/{name}"), auth=ALICE, json=change).status_code == 200
    for reader in readers:
        r = requests.put(api(server, f"/repositories/{name}/collaborators/{reader}"), auth=ALICE,
                         json={"role": "read"})
        assert r.status_code == 200, r.text
    return name


@contextlib.contextmanager
def one_commit_by(server, actor: str):
    """The block makes exactly one commit in meta.git, authored by `actor`; yields its details."""
    tip = meta_tip(server.store)
    found = {}
    yield found
    commits = meta_commits(server.store, since=tip)
    assert len(commits) == 1, [c.message for c in commits]
    assert commits[0].author.name == actor and f"Actor: {actor}" in commits[0].message
    found["message"] = commits[0].message
    found["paths"] = changed_paths(server, commits[0])


@contextlib.contextmanager
def no_commit(server):
    tip = meta_tip(server.store)
    yield
    assert meta_tip(server.store) == tip


def changed_paths(server, commit) -> list[str]:
    diff = commit.parents[0].tree.diff_to_tree(commit.tree)
    return sorted(d.new_file.path if d.status != pygit2.GIT_DELTA_DELETED else d.old_file.path
                  for d in diff.deltas)


def document(server, path: str) -> dict | None:
    """The document at `path` in meta.git's current tip, validated against its schema on load."""
    return MetaStore(str(server.store / "meta.git"), create=False).snapshot().get(path)


def summary(server, name: str, auth=None) -> dict:
    r = requests.get(api(server, f"/repositories/{name}"), auth=auth)
    assert r.status_code == 200, r.text
    return r.json()


# --- stars --------------------------------------------------------------------------------------

def test_users_star_and_unstar_a_repository_one_commit_each_authored_by_them(secured_registry):
    name = make_repository(secured_registry, description="a starred thing")
    assert summary(secured_registry, name) == {
        "name": name, "visibility": "public", "description": "a starred thing", "owner": "alice",
        "star_count": 0, "tag_count": 1, "starred": False}
    with one_commit_by(secured_registry, "bob") as commit:
        r = requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=BOB)
    assert r.status_code == 200, r.text
    assert r.json()["starred"] is True and r.json()["star_count"] == 1
    assert commit["paths"] == [f"repositories/{name}/_stars/bob.yaml"]
    assert f"Star {name}" in commit["message"]
    star = document(secured_registry, meta_paths.star(name, "bob"))
    assert star == {"kind": "star", "schemaVersion": 1, "user": "bob", "starredAt": r.json()["starredAt"]}
    with one_commit_by(secured_registry, "alice"):
        assert requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=ALICE).json()["star_count"] == 2
    with no_commit(secured_registry):  # starring twice changes nothing
        again = requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=BOB)
    assert again.status_code == 200 and again.json()["star_count"] == 2
    assert again.json()["starredAt"] == r.json()["starredAt"]
    assert summary(secured_registry, name, BOB)["starred"] is True
    assert summary(secured_registry, name)["starred"] is False  # anonymous
    assert summary(secured_registry, name, BOB)["star_count"] == 2
    with one_commit_by(secured_registry, "bob") as commit:
        r = requests.delete(api(secured_registry, f"/repositories/{name}/star"), auth=BOB)
    assert r.status_code == 200 and r.json() == {"name": name, "starred": False, "star_count": 1}
    assert f"Unstar {name}" in commit["message"]
    with no_commit(secured_registry):
        assert requests.delete(api(secured_registry, f"/repositories/{name}/star"), auth=BOB).status_code == 200
    after = summary(secured_registry, name, BOB)
    assert (after["star_count"], after["starred"]) == (1, False)


def test_short_names_mean_library(secured_registry):
    user = make_user(secured_registry)
    r = requests.put(api(secured_registry, "/repositories/hello/star"), auth=user)
    assert r.status_code == 200 and r.json()["name"] == "library/hello"
    assert summary(secured_registry, "hello", user)["starred"] is True
    assert summary(secured_registry, "library/hello")["tag_count"] == 2
    requests.delete(api(secured_registry, "/repositories/hello/star"), auth=user)


@pytest.mark.parametrize("method,path", [
    ("GET", ""), ("PUT", "/star"), ("DELETE", "/star"), ("GET", "/comments"), ("POST", "/comments"),
    ("GET", "/comments/20261127T053012Z-00000000000"), ("DELETE", "/comments/20261127T053012Z-00000000000"),
])
def test_a_private_repository_and_a_missing_one_look_the_same_to_outsiders(secured_registry, method, path):
    private = make_repository(secured_registry, "private")
    missing = f"alice/r{uuid.uuid4().hex[:10]}"
    outsider = make_user(secured_registry)
    answers = []
    with no_commit(secured_registry):
        for name in (private, missing):
            for auth in (None, outsider):
                r = requests.request(method, api(secured_registry, f"/repositories/{name}{path}"), auth=auth,
                                     json={"body": "hello"})
                answers.append((r.status_code, error_codes(r), r.headers.get("WWW-Authenticate", "")[:7]))
    assert answers[0] == answers[2] == (401, ["UNAUTHORIZED"], "Bearer ")
    assert answers[1] == answers[3] == (403, ["DENIED"], "")


def test_read_collaborators_see_star_and_comment_on_a_private_repository(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    assert summary(secured_registry, name, BOB)["visibility"] == "private"
    with one_commit_by(secured_registry, "bob"):
        assert requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=BOB).status_code == 200
    with one_commit_by(secured_registry, "bob"):
        r = requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB, json={"body": "hi"})
    assert r.status_code == 201, r.text


def test_only_a_users_own_login_stars_or_comments_tokens_still_read(secured_registry):
    name = make_repository(secured_registry)
    r = requests.post(api(secured_registry, "/users/alice/tokens"), auth=ALICE, json={"actions": ["pull"]})
    token = ("alice", r.json()["secret"])
    with no_commit(secured_registry):
        starring = requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=token)
        commenting = requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=token,
                                   json={"body": "from a token"})
    assert starring.status_code == 403 and "own login" in starring.json()["errors"][0]["message"]
    assert commenting.status_code == 403 and error_codes(commenting) == ["DENIED"]
    assert summary(secured_registry, name, token)["name"] == name
    assert requests.get(api(secured_registry, f"/repositories/{name}/comments"), auth=token).status_code == 200


def test_the_owner_of_a_missing_repository_is_told_it_is_missing(secured_registry):
    missing = f"alice/r{uuid.uuid4().hex[:10]}"
    with no_commit(secured_registry):
        for method, path in (("GET", ""), ("PUT", "/star"), ("POST", "/comments"), ("GET", "/comments")):
            r = requests.request(method, api(secured_registry, f"/repositories/{missing}{path}"), auth=ALICE,
                                 json={"body": "x"})
            assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"], (method, path, r.text)


def test_a_user_lists_their_own_stars_among_what_they_may_still_pull(secured_registry):
    user = make_user(secured_registry)
    first, second = sorted(make_repository(secured_registry) for _ in range(2))
    for name in (second, first):
        assert requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=user).status_code == 200
    r = requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=user)
    assert r.status_code == 200
    assert [s["name"] for s in r.json()["repositories"]] == [first, second]
    assert all(s["starredAt"].endswith("Z") for s in r.json()["repositories"])
    page = requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=user, params={"n": 1})
    assert [s["name"] for s in page.json()["repositories"]] == [first]
    assert 'rel="next"' in page.headers["Link"]
    rest = requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=user, params={"last": first})
    assert [s["name"] for s in rest.json()["repositories"]] == [second]
    # nobody else's list; an admin's view of it
    assert requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=BOB).status_code == 403
    assert requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=ADMIN).status_code == 200
    assert requests.get(api(secured_registry, "/users/nobody-at-all/starred"), auth=ADMIN).status_code == 404
    assert requests.get(api(secured_registry, f"/users/{user[0]}/starred")).status_code == 401
    # made private: gone from the list, but the user may still take their star back
    requests.patch(api(secured_registry, f"/repositories/{first}"), auth=ALICE, json={"visibility": "private"})
    r = requests.get(api(secured_registry, f"/users/{user[0]}/starred"), auth=user)
    assert [s["name"] for s in r.json()["repositories"]] == [second]
    assert requests.put(api(secured_registry, f"/repositories/{first}/star"), auth=user).status_code == 403
    with one_commit_by(secured_registry, user[0]):
        r = requests.delete(api(secured_registry, f"/repositories/{first}/star"), auth=user)
    assert r.status_code == 200 and r.json() == {"name": first, "starred": False}  # no count of a hidden repository
    assert requests.delete(api(secured_registry, f"/repositories/{first}/star"), auth=user).status_code == 403


# --- comments -----------------------------------------------------------------------------------

def test_comments_are_added_listed_oldest_first_and_paged(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    ids = []
    for i, (auth, text) in enumerate([(BOB, "first"), (ALICE, "second\nwith two lines"), (BOB, "third ✓")]):
        with one_commit_by(secured_registry, auth[0]) as commit:
            r = requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=auth, json={"body": text})
        assert r.status_code == 201, r.text
        created = r.json()
        assert COMMENT_ID.match(created["id"]) and created["author"] == auth[0] and created["body"] == text
        assert r.headers["Location"] == f"/api/v1/repositories/{name}/comments/{created['id']}"
        assert commit["paths"] == [f"repositories/{name}/_comments/{created['id']}.yaml"]
        assert f"Comment on {name}" in commit["message"]
        stored = document(secured_registry, meta_paths.comment(name, created["id"]))
        assert created["editedAt"] is None and created["html"] == f"<p>{text}</p>\n"
        assert stored == {"kind": "comment", "schemaVersion": 1,
                          **{key: value for key, value in created.items() if key not in ("editedAt", "html")}}
        ids.append(created["id"])
    assert ids == sorted(ids)  # ids sort by time, so the listing is oldest first
    listing = requests.get(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB)
    assert listing.status_code == 200
    assert [c["id"] for c in listing.json()["comments"]] == ids
    assert [c["body"] for c in listing.json()["comments"]] == ["first", "second\nwith two lines", "third ✓"]
    page = requests.get(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB, params={"n": 2})
    assert [c["id"] for c in page.json()["comments"]] == ids[:2]
    assert page.headers["Link"].startswith(f"</api/v1/repositories/{name}/comments?last={ids[1]}")
    rest = requests.get(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB,
                        params={"n": 2, "last": ids[1]})
    assert [c["id"] for c in rest.json()["comments"]] == ids[2:] and "Link" not in rest.headers
    one = requests.get(api(secured_registry, f"/repositories/{name}/comments/{ids[1]}"), auth=BOB)
    assert one.status_code == 200 and one.json()["author"] == "alice"
    for missing in ("20200101T000000Z-00000000000", "not-an-id"):
        r = requests.get(api(secured_registry, f"/repositories/{name}/comments/{missing}"), auth=BOB)
        assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"], missing
    empty = make_repository(secured_registry)
    assert requests.get(api(secured_registry, f"/repositories/{empty}/comments")).json() == {
        "name": empty, "comments": []}


def test_authors_and_repository_admins_delete_comments_and_nobody_else(secured_registry):
    carol = make_user(secured_registry)
    name = make_repository(secured_registry, "private", readers=("bob", carol[0]))
    posted = [requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB,
                            json={"body": f"comment {i}"}).json()["id"] for i in range(2)]
    with no_commit(secured_registry):
        r = requests.delete(api(secured_registry, f"/repositories/{name}/comments/{posted[0]}"), auth=carol)
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert "only its author and the admins" in r.json()["errors"][0]["message"]
        missing = requests.delete(api(secured_registry, f"/repositories/{name}/comments/20200101T000000Z-00000000000"),
                                  auth=BOB)
        assert missing.status_code == 404
    with one_commit_by(secured_registry, "bob") as commit:  # the author
        assert requests.delete(api(secured_registry, f"/repositories/{name}/comments/{posted[0]}"),
                               auth=BOB).status_code == 204
    assert commit["paths"] == [f"repositories/{name}/_comments/{posted[0]}.yaml"]
    with one_commit_by(secured_registry, "alice"):  # the repository's admin
        assert requests.delete(api(secured_registry, f"/repositories/{name}/comments/{posted[1]}"),
                               auth=ALICE).status_code == 204
    assert requests.get(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB).json()["comments"] == []
    assert requests.delete(api(secured_registry, f"/repositories/{name}/comments/{posted[1]}"),
                           auth=ALICE).status_code == 404


@pytest.mark.parametrize("body,message", [
    ({"body": ""}, "non-empty"), ({"body": "   \n"}, "non-empty"), ({"body": 42}, "string"),
    ({"body": "x" * 4097}, "4096"), ({"text": "hi"}, "unknown field"), ({}, "missing field"),
    (["hi"], "JSON object"),
])
def test_a_comment_is_a_non_empty_string_of_at_most_4096_characters(secured_registry, body, message):
    with no_commit(secured_registry):
        r = requests.post(api(secured_registry, "/repositories/library/hello/comments"), auth=BOB, json=body)
    assert r.status_code == 400 and message in r.json()["errors"][0]["message"], r.text


def test_a_comment_of_exactly_4096_characters_is_kept_whole(secured_registry):
    name = make_repository(secured_registry)
    text = "é" * 4096
    r = requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB, json={"body": text})
    assert r.status_code == 201 and r.json()["body"] == text


# --- search -------------------------------------------------------------------------------------

def search(server, q: str, auth=None, path: str = "/api/v1/search", **params) -> requests.Response:
    return requests.get(server.url + path, params={"q": q, **params}, auth=auth)


def test_search_finds_names_and_descriptions_of_repositories_the_caller_may_pull(secured_registry):
    term = word()
    by_name = make_repository(secured_registry, name=f"alice/{term}-tool", description="does things")
    by_description = make_repository(secured_registry, description=f"The {term.upper()} companion")
    hidden = make_repository(secured_registry, "private", description=f"secret {term}")
    shared = make_repository(secured_registry, "private", description=f"shared {term}", readers=("bob",))
    requests.put(api(secured_registry, f"/repositories/{by_description}/star"), auth=BOB)

    def names(auth):
        r = search(secured_registry, term, auth)
        assert r.status_code == 200, r.text
        assert r.json()["num_results"] == len(r.json()["results"])
        return [result["name"] for result in r.json()["results"]]
    # names holding the term first, then by name; any case
    assert names(None) == [by_name, by_description]
    assert names(BOB) == [by_name] + sorted([by_description, shared])
    assert names(ALICE) == [by_name] + sorted([by_description, hidden, shared])
    assert names(make_user(secured_registry)) == [by_name, by_description]
    r = search(secured_registry, term).json()
    assert r["results"][1] == {"name": by_description, "description": f"The {term.upper()} companion",
                               "visibility": "public", "star_count": 1, "is_official": False}
    assert r["query"] == term and r["page"] == 1 and r["page_size"] == 25 and r["num_pages"] == 1
    # every word must match, in the name or the description
    assert [x["name"] for x in search(secured_registry, f"{term} companion").json()["results"]] == [by_description]
    assert search(secured_registry, f"{term} nowhere").json()["num_results"] == 0


def test_search_sees_each_change_at_once(secured_registry):
    term, later = word(), word()
    name = make_repository(secured_registry, description=term)
    assert [r["name"] for r in search(secured_registry, term).json()["results"]] == [name]
    requests.patch(api(secured_registry, f"/repositories/{name}"), auth=ALICE, json={"description": f"{later} Café"})
    assert search(secured_registry, term).json()["num_results"] == 0
    assert [r["name"] for r in search(secured_registry, later).json()["results"]] == [name]
    assert search(secured_registry, f"CAFÉ {later}").json()["query"] == f"CAFÉ {later}"
    assert [r["name"] for r in search(secured_registry, f"CAFÉ {later}").json()["results"]] == [name]
    requests.patch(api(secured_registry, f"/repositories/{name}"), auth=ALICE, json={"visibility": "private"})
    assert search(secured_registry, later).json()["num_results"] == 0
    assert search(secured_registry, later, ALICE).json()["num_results"] == 1


def test_search_pages_and_checks_its_parameters(secured_registry):
    term = word()
    made = sorted(make_repository(secured_registry, description=term) for _ in range(3))
    pages = [search(secured_registry, term, n=2, page=p).json() for p in (1, 2, 3)]
    assert [[r["name"] for r in page["results"]] for page in pages] == [made[:2], made[2:], []]
    assert {(p["num_results"], p["num_pages"], p["page_size"]) for p in pages} == {(3, 2, 2)}
    for params in ({"n": 0}, {"n": 101}, {"n": "ten"}, {"page": 0}, {"page": "-1"}):
        r = search(secured_registry, term, **params)
        assert r.status_code == 400 and error_codes(r) == ["PAGINATION_NUMBER_INVALID"], params


def test_docker_v1_search_answers_as_docker_hub_did(secured_registry):
    term = word()
    name = make_repository(secured_registry, description=f"for docker {term}")
    make_repository(secured_registry, "private", description=f"hidden {term}")
    requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=BOB)
    r = search(secured_registry, term, path="/v1/search", n=25)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"num_results": 1, "num_pages": 1, "page": 1, "page_size": 25, "query": term,
                        "results": [{"name": name, "description": f"for docker {term}", "star_count": 1,
                                     "is_official": False, "is_automated": False}]}
    official = search(secured_registry, "busybox-lite", path="/v1/search").json()["results"]
    assert official[0]["name"] == "library/busybox-lite" and official[0]["is_official"] is True


def test_docker_search_lists_public_repositories(secured_registry, tmp_path):
    term = word()
    public = make_repository(secured_registry, description=f"found by docker search {term}")
    make_repository(secured_registry, "private", description=f"not for docker {term}")
    requests.put(api(secured_registry, f"/repositories/{public}/star"), auth=BOB)
    with docker_engine(tmp_path / "docker") as docker:
        found = docker.run("search", "--format", "{{.Name}}|{{.Description}}|{{.StarCount}}",
                           f"{secured_registry.host}/{term}")
        table = docker.run("search", f"{secured_registry.host}/hello").stdout
    assert found.stdout.splitlines() == [f"{public}|found by docker search {term}|1"]
    assert "library/hello" in table and "[OK]" in table


# --- the indexes behind search and starred lists (in-process, on a store of their own) ----------

def write_repository(meta: MetaStore, name: str, description: str) -> None:
    def change(txn):
        txn.put(meta_paths.repository(name), {"kind": "repository", "schemaVersion": 1, "name": name,
                                              "visibility": "public", "description": description})
    meta.transact(change, Context(actor="test"), f"Describe {name}")


def test_the_indexes_are_built_once_then_follow_commits_by_diff(tmp_path, monkeypatch):
    meta = MetaStore(str(tmp_path / "meta.git"))
    repositories = RepositoryService(meta)
    stars = Stars(meta, repositories)
    found = Search(meta, repositories, stars.count)
    everything = lambda names: names  # noqa: E731
    write_repository(meta, "a/one", "first thing")
    write_repository(meta, "b/two", "second thing")
    rebuilds = []

    def counted(original):
        return lambda snapshot: (rebuilds.append(1), original(snapshot))
    for view in (found.index, stars._index):
        monkeypatch.setattr(view, "rebuild", counted(view.rebuild))

    def names(text):
        return [r["name"] for r in found.query(text, everything).results]
    assert names("thing") == ["a/one", "b/two"]
    old = meta.snapshot()
    write_repository(meta, "a/one", "renamed")
    write_repository(meta, "c/three", "third thing")
    stars.star(Context(actor="carol"), "c/three")
    stars.star(Context(actor="carol"), "a/one")
    assert names("thing") == ["b/two", "c/three"] and names("renamed") == ["a/one"]
    assert found.query("three", everything).results[0]["star_count"] == 1
    assert stars.starred_by("carol") == ["a/one", "c/three"]
    meta.transact(lambda txn: txn.delete_tree(meta_paths.repository_dir("c/three")), Context(actor="test"), "Drop")
    assert names("thing") == ["b/two"] and stars.starred_by("carol") == ["a/one"]
    # an older snapshot (another thread still on it) is followed backwards
    assert found.index.match(old, ["thing"]) == ["a/one", "b/two"]
    assert stars._index.starred_by("carol", old) == []
    assert rebuilds == [1, 1]


def test_a_new_process_starts_its_star_index_from_the_saved_copy(tmp_path, monkeypatch):
    meta = MetaStore(str(tmp_path / "meta.git"))
    for name in ("a/one", "b/two", "c/three"):
        write_repository(meta, name, "a thing")
    first = Stars(meta, RepositoryService(meta))
    first.star(Context(actor="carol"), "c/three")
    first.star(Context(actor="carol"), "a/one")
    first.star(Context(actor="dave"), "b/two")
    assert first.starred_by("carol") == ["a/one", "c/three"]  # built from scratch once, and saved
    assert (tmp_path / "state" / "stars").is_dir()
    first.unstar(Context(actor="carol"), "c/three")  # after the copy: caught up by diff
    first.star(Context(actor="erin"), "a/one")

    def refuse(snapshot):
        raise AssertionError("the star index looked at every repository")
    fresh_meta = MetaStore(meta.path)  # a new process
    fresh = Stars(fresh_meta, RepositoryService(fresh_meta))
    monkeypatch.setattr(fresh._index, "rebuild", refuse)
    assert fresh.starred_by("carol") == ["a/one"]
    assert fresh.starred_by("dave") == ["b/two"] and fresh.starred_by("erin") == ["a/one"]
