"""The Index's community API, second part: bookmarks private to their owner, who starred a
repository, comments in Markdown (rendered and sanitised, edited by their authors only), and a
repository's README. Each change is one commit authored by the acting user. The helpers are
test_community.py's."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import requests

from registry_core.index.community import bookmarks_path, readme_path
from registry_core.index.markdown import render
from registry_core.meta import paths as meta_paths
from tests.support.oci import error_codes
from tests.test_community import (ALICE, BOB, api, document, make_repository, make_user, no_commit,
                                  one_commit_by)

ATTACKS = [
    "<script>alert('xss')</script>",
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)" onclick="alert(2)">x</a>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](http://evil.example/track.png)",
    '<svg onload="alert(1)"></svg>',
    "<iframe src=//evil.example></iframe>",
]


def comment(server, name: str, body: str, auth=BOB) -> dict:
    r = requests.post(api(server, f"/repositories/{name}/comments"), auth=auth, json={"body": body})
    assert r.status_code == 201, r.text
    return r.json()


# --- Markdown ------------------------------------------------------------------------------------

def test_markdown_renders_headings_emphasis_lists_code_links_and_tables():
    html = render("# Title\n\n*it* **bold** `x<y`\n\n- one\n- two\n\n[site](https://example.com)\n\n"
                  "| a | b |\n|---|---|\n| 1 | 2 |\n")
    for piece in ("<h1>Title</h1>", "<em>it</em>", "<strong>bold</strong>", "<code>x&lt;y</code>",
                  "<li>one</li>", '<a href="https://example.com" rel="nofollow noopener noreferrer">site</a>',
                  "<td>1</td>"):
        assert piece in html, piece


class Elements(HTMLParser):
    """The elements of an HTML fragment, as (tag, {attribute: value})."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def dangerous(html: str) -> list:
    """What in `html` could run a script or load something: a script-capable element, an event
    handler, a style, a link or source that is not http(s) or mailto."""
    problems = []
    for tag, attributes in Elements(html).found:
        if tag in ("script", "img", "svg", "iframe", "object", "embed", "style", "form", "input"):
            problems.append(tag)
        for attribute, value in attributes.items():
            if attribute.startswith("on") or attribute in ("style", "src", "srcdoc"):
                problems.append((tag, attribute))
            if attribute == "href" and not re.match(r"(https?:|mailto:)", value or "", re.IGNORECASE):
                problems.append((tag, attribute, value))
    return problems


@pytest.mark.parametrize("source", ATTACKS)
def test_markdown_lets_no_script_handler_or_dangerous_link_through(source):
    assert dangerous(render(source)) == []


def test_the_danger_check_sees_what_it_looks_for():
    assert sorted(map(str, dangerous('<a href="javascript:x" onclick="y">z</a><img src=x>'))) == sorted(map(str, [
        ("a", "onclick"), ("a", "href", "javascript:x"), "img", ("img", "src")]))


def test_comments_are_returned_as_markdown_source_and_sanitised_html(secured_registry):
    name = make_repository(secured_registry)
    body = "**hello** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    created = comment(secured_registry, name, body)
    assert created["body"] == body
    assert "<strong>hello</strong>" in created["html"] and dangerous(created["html"]) == []
    listed = requests.get(api(secured_registry, f"/repositories/{name}/comments")).json()["comments"]
    assert listed == [created]


# --- editing comments ----------------------------------------------------------------------------

def test_only_its_author_edits_a_comment_and_the_edit_time_is_kept(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    created = comment(secured_registry, name, "first *draft*")
    url = api(secured_registry, f"/repositories/{name}/comments/{created['id']}")
    with no_commit(secured_registry):  # not even the repository's admin edits another's comment
        r = requests.patch(url, auth=ALICE, json={"body": "rewritten by alice"})
        assert r.status_code == 403 and "only its author" in r.json()["errors"][0]["message"]
        assert requests.patch(url, auth=BOB, json={"body": ""}).status_code == 400
        assert requests.patch(url, auth=BOB, json={"text": "x"}).status_code == 400
    with one_commit_by(secured_registry, "bob") as commit:
        r = requests.patch(url, auth=BOB, json={"body": "final **text**"})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["body"] == "final **text**" and "<strong>text</strong>" in edited["html"]
    assert edited["editedAt"] and edited["createdAt"] == created["createdAt"] and edited["id"] == created["id"]
    assert commit["paths"] == [meta_paths.comment(name, created["id"])]
    assert document(secured_registry, meta_paths.comment(name, created["id"]))["editedAt"] == edited["editedAt"]
    assert requests.get(url, auth=BOB).json() == edited
    with no_commit(secured_registry):  # the same body again changes nothing
        assert requests.patch(url, auth=BOB, json={"body": "final **text**"}).status_code == 200
    missing = api(secured_registry, f"/repositories/{name}/comments/20200101T000000Z-00000000000")
    assert requests.patch(missing, auth=BOB, json={"body": "x"}).status_code == 404


def test_an_outsider_cannot_edit_a_comment_on_a_private_repository(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    created = comment(secured_registry, name, "mine")
    outsider = make_user(secured_registry)
    with no_commit(secured_registry):
        r = requests.patch(api(secured_registry, f"/repositories/{name}/comments/{created['id']}"), auth=outsider,
                           json={"body": "changed"})
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_an_admin_deletes_any_comment_and_an_author_their_own_only(secured_registry):
    carol = make_user(secured_registry)
    name = make_repository(secured_registry, readers=("bob",))
    bobs, carols = comment(secured_registry, name, "bob's"), comment(secured_registry, name, "carol's", carol)
    with no_commit(secured_registry):
        r = requests.delete(api(secured_registry, f"/repositories/{name}/comments/{carols['id']}"), auth=BOB)
        assert r.status_code == 403
    with one_commit_by(secured_registry, carol[0]):
        assert requests.delete(api(secured_registry, f"/repositories/{name}/comments/{carols['id']}"),
                               auth=carol).status_code == 204
    with one_commit_by(secured_registry, "alice"):
        assert requests.delete(api(secured_registry, f"/repositories/{name}/comments/{bobs['id']}"),
                               auth=ALICE).status_code == 204


# --- stargazers ----------------------------------------------------------------------------------

def test_who_starred_a_repository_is_shown_to_those_who_may_pull_it(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    for auth in (BOB, ALICE):
        assert requests.put(api(secured_registry, f"/repositories/{name}/star"), auth=auth).status_code == 200
    r = requests.get(api(secured_registry, f"/repositories/{name}/stars"), auth=BOB)
    assert r.status_code == 200 and r.json() == {"name": name, "star_count": 2, "stargazers": ["alice", "bob"]}
    page = requests.get(api(secured_registry, f"/repositories/{name}/stars"), auth=BOB, params={"n": 1})
    assert page.json()["stargazers"] == ["alice"] and 'rel="next"' in page.headers["Link"]
    outsider = make_user(secured_registry)
    for auth, status in ((None, 401), (outsider, 403)):
        hidden = requests.get(api(secured_registry, f"/repositories/{name}/stars"), auth=auth)
        assert hidden.status_code == status and "stargazers" not in hidden.text and "bob" not in hidden.text
    public = make_repository(secured_registry)
    requests.put(api(secured_registry, f"/repositories/{public}/star"), auth=BOB)
    assert requests.get(api(secured_registry, f"/repositories/{public}/stars")).json()["stargazers"] == ["bob"]


# --- bookmarks -----------------------------------------------------------------------------------

def test_bookmarks_are_one_commit_each_by_their_owner_and_listed_to_them_alone(secured_registry):
    user = make_user(secured_registry)
    first, second = sorted(make_repository(secured_registry) for _ in range(2))
    for name in (second, first):
        with one_commit_by(secured_registry, user[0]) as commit:
            r = requests.put(api(secured_registry, f"/repositories/{name}/bookmark"), auth=user)
        assert r.status_code == 200 and r.json()["bookmarked"] is True, r.text
        assert commit["paths"] == [bookmarks_path(user[0])]
    with no_commit(secured_registry):
        assert requests.put(api(secured_registry, f"/repositories/{first}/bookmark"), auth=user).status_code == 200
    mine = requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=user)
    assert mine.status_code == 200 and [b["name"] for b in mine.json()["repositories"]] == [first, second]
    # private: not the repository's owner, not a registry admin, not the anonymous
    assert requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=ALICE).status_code == 403
    assert requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=("admin", "admin-demo")
                        ).status_code == 403
    assert requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks")).status_code == 401
    summary = requests.get(api(secured_registry, f"/repositories/{first}"), auth=ALICE).text
    assert user[0] not in summary
    with one_commit_by(secured_registry, user[0]):
        r = requests.delete(api(secured_registry, f"/repositories/{first}/bookmark"), auth=user)
    assert r.status_code == 200 and r.json() == {"name": first, "bookmarked": False}
    mine = requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=user).json()
    assert [b["name"] for b in mine["repositories"]] == [second]


def test_a_bookmark_of_a_repository_made_private_is_hidden_but_can_be_removed(secured_registry):
    user = make_user(secured_registry)
    name = make_repository(secured_registry)
    assert requests.put(api(secured_registry, f"/repositories/{name}/bookmark"), auth=user).status_code == 200
    requests.patch(api(secured_registry, f"/repositories/{name}"), auth=ALICE, json={"visibility": "private"})
    assert requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=user).json()["repositories"] == []
    with no_commit(secured_registry):
        assert requests.put(api(secured_registry, f"/repositories/{name}/bookmark"), auth=user).status_code == 403
    assert requests.delete(api(secured_registry, f"/repositories/{name}/bookmark"), auth=user).status_code == 200
    assert requests.delete(api(secured_registry, f"/repositories/{name}/bookmark"), auth=user).status_code == 403


def test_bookmarking_needs_a_users_own_login(secured_registry):
    name = make_repository(secured_registry)
    r = requests.post(api(secured_registry, "/users/alice/tokens"), auth=ALICE, json={"actions": ["pull"]})
    token = ("alice", r.json()["secret"])
    with no_commit(secured_registry):
        r = requests.put(api(secured_registry, f"/repositories/{name}/bookmark"), auth=token)
    assert r.status_code == 403 and "own login" in r.json()["errors"][0]["message"]


# --- READMEs -------------------------------------------------------------------------------------

def test_an_admin_writes_the_readme_rendered_and_sanitised_for_readers(secured_registry):
    name = make_repository(secured_registry, "private", readers=("bob",))
    url = api(secured_registry, f"/repositories/{name}/readme")
    assert requests.get(url, auth=BOB).json() == {"name": name, "body": "", "html": "", "updatedBy": None,
                                                  "updatedAt": None}
    text = "# Usage\n\nRun it. <script>alert(1)</script> [x](javascript:alert(1))"
    with no_commit(secured_registry):
        r = requests.put(url, auth=BOB, json={"body": text})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        assert requests.put(url, auth=ALICE, json={"body": 7}).status_code == 400
        assert requests.put(url, auth=ALICE, json={"body": "x" * 32769}).status_code == 400
    with one_commit_by(secured_registry, "alice") as commit:
        r = requests.put(url, auth=ALICE, json={"body": text})
    assert r.status_code == 200, r.text
    assert commit["paths"] == [readme_path(name)]
    shown = requests.get(url, auth=BOB).json()
    assert shown["body"] == text and shown["updatedBy"] == "alice" and "<h1>Usage</h1>" in shown["html"]
    assert dangerous(shown["html"]) == []
    assert document(secured_registry, readme_path(name))["body"] == text
    assert requests.get(url, auth=make_user(secured_registry)).status_code == 403
    with one_commit_by(secured_registry, "alice"):
        assert requests.put(url, auth=ALICE, json={"body": ""}).json()["body"] == ""
    assert document(secured_registry, readme_path(name)) is None
