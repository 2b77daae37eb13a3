"""`registry search / star / unstar / comment` end to end against the default config, after
`registry login` (the stored login goes to /api/v1/ as Basic credentials), with the client's exit
statuses: 2 usage, 3 denied or not logged in, 4 not found, 6 unreachable."""

from __future__ import annotations

import uuid

import pytest
import requests

from registry_core.client.errors import EXIT_AUTH, EXIT_NETWORK, EXIT_NOT_FOUND, EXIT_USAGE
from tests.support.client import cli, home  # noqa: F401
from tests.support.engines import free_port
from tests.support.oci import Client, meta_commits, meta_tip

ALICE = ("alice", "alice-demo")


def make_repository(server, visibility: str = "public", description: str = "") -> str:
    name = f"alice/r{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    Client(server.url, session).push_image(name, "v1")
    r = requests.patch(f"{server.url}/api/v1/repositories/{name}", auth=ALICE,
                       json={"visibility": visibility, "description": description})
    assert r.status_code == 200, r.text
    return name


def login(server, user: str, password: str) -> None:
    cli("login", server.host, "-u", user, "--password-stdin", input=password + "\n")


@pytest.fixture
def bob(secured_registry, home):  # noqa: F811
    login(secured_registry, "bob", "bob-demo")
    return secured_registry


def test_star_and_unstar_after_login(bob):
    name = make_repository(bob)
    tip = meta_tip(bob.store)
    assert cli("star", f"{bob.host}/{name}").stdout == f"Starred {bob.host}/{name} (1 star)\n"
    assert [c.author.name for c in meta_commits(bob.store, since=tip)] == ["bob"]
    again = cli("star", "--json", f"{bob.host}/{name}:v1").json()  # a tag is allowed and ignored
    assert again["repository"] == f"{bob.host}/{name}" and again["starred"] is True and again["star_count"] == 1
    assert cli("unstar", f"{bob.host}/{name}").stdout == f"Unstarred {bob.host}/{name} (0 stars)\n"
    assert cli("unstar", "--json", f"{bob.host}/{name}").json() == {
        "repository": f"{bob.host}/{name}", "name": name, "starred": False, "star_count": 0}
    assert [c.author.name for c in meta_commits(bob.store, since=tip)] == ["bob", "bob"]


def test_short_names_are_starred_in_library(bob):
    assert cli("star", "--json", f"{bob.host}/busybox-lite").json()["repository"] == f"{bob.host}/library/busybox-lite"
    cli("unstar", f"{bob.host}/busybox-lite")


def test_search_shows_what_the_login_may_pull(bob):
    term = f"zq{uuid.uuid4().hex[:10]}"
    public = make_repository(bob, description=f"public {term} thing")
    private = make_repository(bob, "private", description=f"private {term} thing")
    cli("star", f"{bob.host}/{public}")
    found = cli("search", "--json", bob.host, term).json()
    assert found["host"] == bob.host and found["query"] == term and found["num_results"] == 1
    assert found["results"] == [{"name": public, "description": f"public {term} thing", "visibility": "public",
                                 "star_count": 1, "is_official": False}]
    lines = cli("search", bob.host, term).stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert lines[1].split() == [public, "public", term, "thing", "1"]
    login(bob, *ALICE)
    assert cli("search", "--json", bob.host, term).json()["num_results"] == 2
    limited = cli("search", bob.host, term, "--limit", "1").stdout.splitlines()
    assert len(limited) == 3 and limited[2] == "(1 shown; more match: raise --limit)"
    assert {r["name"] for r in cli("search", "--json", bob.host, term, "--limit", "2").json()["results"]} == \
        {public, private}
    nothing = f"{term}-nothing"
    assert cli("search", bob.host, nothing).stdout == f"No repository on {bob.host} matches {nothing!r}\n"
    official = cli("search", bob.host, "hello").stdout
    assert "library/hello" in official and "[OK]" in official


def test_comment_add_list_and_delete(bob, tmp_path):
    name = make_repository(bob)
    ref = f"{bob.host}/{name}"
    assert cli("comment", ref, "--list").stdout == f"No comments on {ref}\n"
    first = cli("comment", "--json", ref, "first words").json()
    assert first["repository"] == ref and first["author"] == "bob" and first["body"] == "first words"
    second = cli("comment", ref, "-", input="from standard input\nover two lines\n").stdout
    assert second.startswith(f"Commented on {ref} (")
    listed = cli("comment", "--json", ref, "--list").json()
    assert [c["body"] for c in listed["comments"]] == ["first words", "from standard input\nover two lines"]
    text = cli("comment", ref, "--list").stdout.splitlines()
    assert text[0].split() == [first["createdAt"], "bob", first["id"]]
    assert text[1:2] == ["    first words"] and text[-2:] == ["    from standard input", "    over two lines"]
    tip = meta_tip(bob.store)
    assert cli("comment", ref, "--delete", first["id"]).stdout == f"Deleted comment {first['id']} on {ref}\n"
    assert [c.author.name for c in meta_commits(bob.store, since=tip)] == ["bob"]
    assert len(cli("comment", "--json", ref, "--list").json()["comments"]) == 1
    missing = cli("comment", "--json", ref, "--delete", first["id"], expect=EXIT_NOT_FOUND).json()
    assert missing["error"]["code"] == "NAME_UNKNOWN"


def test_comments_follow_the_pages_of_the_listing(bob):
    name = make_repository(bob)
    for i in range(3):
        requests.post(f"{bob.url}/api/v1/repositories/{name}/comments", auth=("bob", "bob-demo"),
                      json={"body": f"comment {i}"})
    # the client asks for the registry's default page; check it follows Link headers by asking n=1 pages
    page = requests.get(f"{bob.url}/api/v1/repositories/{name}/comments", params={"n": 1})
    assert 'rel="next"' in page.headers["Link"]
    assert [c["body"] for c in cli("comment", "--json", f"{bob.host}/{name}", "--list").json()["comments"]] == \
        ["comment 0", "comment 1", "comment 2"]


def test_exit_statuses(secured_registry, home):  # noqa: F811
    host = secured_registry.host
    public = make_repository(secured_registry)
    private = make_repository(secured_registry, "private")
    # not logged in: 3, with the hint to log in; reading and searching work anonymously
    error = cli("star", "--json", f"{host}/{public}", expect=EXIT_AUTH).json()["error"]
    assert error["exit"] == EXIT_AUTH and f"registry login {host}" in error["message"]
    cli("comment", f"{host}/{public}", "hello", expect=EXIT_AUTH)
    cli("comment", f"{host}/{public}", "--list")
    cli("search", host, "hello")
    login(secured_registry, "bob", "bob-demo")
    # a private repository of someone else, or a missing one: denied alike
    assert cli("star", "--json", f"{host}/{private}", expect=EXIT_AUTH).json()["error"]["code"] == "DENIED"
    assert cli("star", "--json", f"{host}/alice/nothing-here", expect=EXIT_AUTH).json()["error"]["code"] == "DENIED"
    cli("comment", f"{host}/{private}", "--list", expect=EXIT_AUTH)
    # in one's own namespace a missing repository is just missing
    login(secured_registry, *ALICE)
    cli("star", f"{host}/alice/nothing-{uuid.uuid4().hex[:8]}", expect=EXIT_NOT_FOUND)
    # usage
    cli("comment", f"{host}/{public}", expect=EXIT_USAGE)
    cli("comment", f"{host}/{public}", "text", "--list", expect=EXIT_USAGE)
    cli("star", "Not A Name", expect=EXIT_USAGE)
    cli("search", host, "x", "--limit", "0", expect=EXIT_USAGE)
    # a comment the registry refuses (too long): 1
    too_long = cli("comment", "--json", f"{host}/{public}", "x" * 4097, expect=1).json()
    assert "4096" in too_long["error"]["message"]
    # nothing listening: 6
    cli("search", f"127.0.0.1:{free_port()}", "x", expect=EXIT_NETWORK)
