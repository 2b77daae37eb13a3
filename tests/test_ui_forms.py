"""The web UI's forms over HTTP (the second slice): comments written, edited and deleted, bookmarks,
a repository's settings, the user and organisation page, access tokens and the password. Every
POST needs the session's CSRF token; every change is the API's service, so one commit by the
visitor. Helpers are test_ui_pages.py's."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from tests.support.oci import meta_commits, meta_tip
from tests.test_ui_pages import ALICE, api, csrf_of, logged_in, make_repository, make_user

BOB = ("bob", "bob-demo")


def comments_of(server, name: str, auth=ALICE) -> list[dict]:
    return requests.get(api(server, f"/repositories/{name}/comments"), auth=auth).json()["comments"]


def commits_by(server, since) -> list[str]:
    return [commit.author.name for commit in meta_commits(server.store, since=since)]


@pytest.mark.parametrize("path", ["/r/library/hello/comments", "/r/library/hello/bookmark",
                                  "/r/library/hello/unbookmark", "/r/library/hello/settings",
                                  "/r/library/hello/settings/delete-tag", "/settings/tokens",
                                  "/settings/tokens/0123456789ab/revoke", "/settings/password",
                                  "/r/library/hello/comments/20200101T000000Z-00000000000/edit",
                                  "/r/library/hello/comments/20200101T000000Z-00000000000/delete"])
def test_every_new_form_is_refused_without_the_csrf_token(secured_registry, path):
    admin, token = logged_in(secured_registry, ("admin", "admin-demo"))
    tip = meta_tip(secured_registry.store)
    for form in ({}, {"csrf": token + "x"}):
        r = admin.post(secured_registry.url + path, data={**form, "body": "x", "tag": "latest", "visibility": "private"},
                       allow_redirects=False)
        assert r.status_code == 403 and "text/html" in r.headers["Content-Type"], (path, form)
    assert meta_tip(secured_registry.store) == tip


def test_a_visitor_comments_edits_and_deletes_their_comment_in_markdown(secured_registry):
    name = make_repository(secured_registry)
    bob, token = logged_in(secured_registry, BOB)
    tip = meta_tip(secured_registry.store)
    r = bob.post(f"{secured_registry.url}/r/{name}/comments", data={"csrf": token, "body": "*first*\r\nline"},
                 allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith(f"/r/{name}#comment-")
    [posted] = comments_of(secured_registry, name)
    assert posted["author"] == "bob" and posted["body"] == "*first*\nline"
    assert commits_by(secured_registry, tip) == ["bob"]
    page = bob.get(f"{secured_registry.url}/r/{name}").text
    assert "<em>first</em>" in page and f'/comments/{posted["id"]}/edit' in page
    assert "edited" not in page.split('id="comments"')[1].split("</ol>")[0].replace("/edit", "")
    r = bob.post(f"{secured_registry.url}/r/{name}/comments/{posted['id']}/edit",
                 data={"csrf": token, "body": "**second**"}, allow_redirects=False)
    assert r.status_code == 303
    [edited] = comments_of(secured_registry, name)
    assert edited["body"] == "**second**" and edited["editedAt"]
    page = bob.get(f"{secured_registry.url}/r/{name}").text
    assert "<strong>second</strong>" in page and f'(edited <time datetime="{edited["editedAt"]}"' in page
    r = bob.post(f"{secured_registry.url}/r/{name}/comments/{posted['id']}/delete", data={"csrf": token},
                 allow_redirects=False)
    assert r.status_code == 303 and comments_of(secured_registry, name) == []
    assert commits_by(secured_registry, tip) == ["bob", "bob", "bob"]


def test_only_authors_get_the_edit_form_and_admins_delete_any_comment(secured_registry):
    name = make_repository(secured_registry)
    assert requests.post(api(secured_registry, f"/repositories/{name}/comments"), auth=BOB,
                         json={"body": "by bob"}).status_code == 201
    [posted] = comments_of(secured_registry, name)
    carol = make_user(secured_registry)
    outsider, outsider_token = logged_in(secured_registry, carol)
    page = outsider.get(f"{secured_registry.url}/r/{name}").text
    assert f"/comments/{posted['id']}/edit" not in page and f"/comments/{posted['id']}/delete" not in page
    r = outsider.post(f"{secured_registry.url}/r/{name}/comments/{posted['id']}/edit",
                      data={"csrf": outsider_token, "body": "hijacked"})
    assert r.status_code == 403 and comments_of(secured_registry, name)[0]["body"] == "by bob"
    r = outsider.post(f"{secured_registry.url}/r/{name}/comments/{posted['id']}/delete", data={"csrf": outsider_token})
    assert r.status_code == 403 and len(comments_of(secured_registry, name)) == 1
    alice, alice_token = logged_in(secured_registry, ALICE)
    page = alice.get(f"{secured_registry.url}/r/{name}").text
    assert f"/comments/{posted['id']}/edit" not in page and f"/comments/{posted['id']}/delete" in page
    r = alice.post(f"{secured_registry.url}/r/{name}/comments/{posted['id']}/delete", data={"csrf": alice_token},
                   allow_redirects=False)
    assert r.status_code == 303 and comments_of(secured_registry, name) == []


def test_nobody_comments_on_a_repository_they_may_not_see(secured_registry):
    name = make_repository(secured_registry, "private")
    outsider, token = logged_in(secured_registry, make_user(secured_registry))
    tip = meta_tip(secured_registry.store)
    for path in ("comments", "bookmark"):
        r = outsider.post(f"{secured_registry.url}/r/{name}/{path}", data={"csrf": token, "body": "hello"})
        assert r.status_code == 404, path
    assert meta_tip(secured_registry.store) == tip


def test_a_bookmark_is_private_to_its_owner(secured_registry):
    name = make_repository(secured_registry)
    user = make_user(secured_registry)
    browser, token = logged_in(secured_registry, user)
    r = browser.post(f"{secured_registry.url}/r/{name}/bookmark", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303
    assert "Remove bookmark" in browser.get(f"{secured_registry.url}/r/{name}").text
    assert f'href="/r/{name}"' in browser.get(f"{secured_registry.url}/u/{user[0]}").text
    others, _ = logged_in(secured_registry, ALICE)
    assert name not in others.get(f"{secured_registry.url}/u/{user[0]}").text
    assert name not in requests.get(f"{secured_registry.url}/u/{user[0]}").text
    r = browser.post(f"{secured_registry.url}/r/{name}/unbookmark", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303
    assert requests.get(api(secured_registry, f"/users/{user[0]}/bookmarks"), auth=user).json()["repositories"] == []


def test_the_user_page_lists_only_repositories_the_visitor_may_see(secured_registry):
    public, private = make_repository(secured_registry), make_repository(secured_registry, "private")
    anonymous = requests.get(f"{secured_registry.url}/u/alice").text
    assert f'href="/r/{public}"' in anonymous and private not in anonymous
    alice, _ = logged_in(secured_registry, ALICE)
    assert f'href="/r/{private}"' in alice.get(f"{secured_registry.url}/u/alice").text
    for missing in ("nobody-" + uuid.uuid4().hex[:6], "Not_A-Name", "a%0Ab"):
        assert requests.get(f"{secured_registry.url}/u/{missing}").status_code == 404


def test_an_admin_changes_visibility_description_and_readme_in_settings(secured_registry):
    name = make_repository(secured_registry)
    alice, token = logged_in(secured_registry, ALICE)
    form = alice.get(f"{secured_registry.url}/r/{name}/settings")
    assert form.status_code == 200 and 'value="private"' in form.text
    tip = meta_tip(secured_registry.store)
    r = alice.post(f"{secured_registry.url}/r/{name}/settings", allow_redirects=False, data={
        "csrf": token, "visibility": "private", "description": "short <b>words</b>",
        "readme": "# Hello\r\n\r\n<script>alert(1)</script>"})
    assert r.status_code == 303, r.text
    assert commits_by(secured_registry, tip) == ["alice", "alice"]  # the repository, the README
    summary = requests.get(api(secured_registry, f"/repositories/{name}"), auth=ALICE).json()
    assert summary["visibility"] == "private" and summary["description"] == "short <b>words</b>"
    page = alice.get(f"{secured_registry.url}/r/{name}").text
    assert "<h1>Hello</h1>" in page and "<script>" not in page and "short &lt;b&gt;words&lt;/b&gt;" in page
    assert requests.get(f"{secured_registry.url}/r/{name}").status_code == 404
    tip = meta_tip(secured_registry.store)
    r = alice.post(f"{secured_registry.url}/r/{name}/settings", allow_redirects=False, data={
        "csrf": token, "visibility": "private", "description": "short <b>words</b>",
        "readme": "# Hello\n\n<script>alert(1)</script>"})
    assert r.status_code == 303 and meta_tip(secured_registry.store) == tip  # nothing changed, no commit
    r = alice.post(f"{secured_registry.url}/r/{name}/settings", allow_redirects=False,
                   data={"csrf": token, "visibility": "public"})  # only the visibility: the rest is kept
    assert r.status_code == 303
    summary = requests.get(api(secured_registry, f"/repositories/{name}"), auth=ALICE).json()
    assert summary["visibility"] == "public" and summary["description"] == "short <b>words</b>"
    assert requests.get(api(secured_registry, f"/repositories/{name}/readme")).json()["body"].startswith("# Hello")
    r = alice.post(f"{secured_registry.url}/r/{name}/settings", data={"csrf": token, "visibility": "secret"})
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]


def test_settings_are_for_admins_a_404_to_those_who_may_not_see_the_repository(secured_registry):
    name = make_repository(secured_registry, "private", description="x")
    requests.put(api(secured_registry, f"/repositories/{name}/collaborators/bob"), auth=ALICE, json={"role": "read"})
    bob, token = logged_in(secured_registry, BOB)
    assert bob.get(f"{secured_registry.url}/r/{name}/settings").status_code == 403
    assert 'href="/r/' + name + '/settings"' not in bob.get(f"{secured_registry.url}/r/{name}").text
    r = bob.post(f"{secured_registry.url}/r/{name}/settings", data={"csrf": token, "visibility": "public"})
    assert r.status_code == 403
    outsider, outsider_token = logged_in(secured_registry, make_user(secured_registry))
    assert outsider.get(f"{secured_registry.url}/r/{name}/settings").status_code == 404
    assert requests.get(f"{secured_registry.url}/r/{name}/settings").status_code == 404
    r = outsider.post(f"{secured_registry.url}/r/{name}/settings/delete-tag", data={"csrf": outsider_token, "tag": "v1"})
    assert r.status_code == 404
    assert requests.get(api(secured_registry, f"/repositories/{name}"), auth=ALICE).json()["visibility"] == "private"


def test_an_admin_deletes_a_tag_in_settings(secured_registry):
    name = make_repository(secured_registry)
    alice, token = logged_in(secured_registry, ALICE)
    tip = meta_tip(secured_registry.store)
    r = alice.post(f"{secured_registry.url}/r/{name}/settings/delete-tag", data={"csrf": token, "tag": "v1"},
                   allow_redirects=False)
    assert r.status_code == 303 and commits_by(secured_registry, tip) == ["alice"]
    assert requests.get(f"{secured_registry.url}/v2/{name}/tags/list", auth=ALICE).json()["tags"] in (None, [])
    r = alice.post(f"{secured_registry.url}/r/{name}/settings/delete-tag", data={"csrf": token, "tag": "v1\n"})
    assert r.status_code == 400


def test_a_user_creates_a_token_sees_its_secret_once_and_revokes_it(secured_registry):
    user = make_user(secured_registry)
    browser, token = logged_in(secured_registry, user)
    assert browser.get(f"{secured_registry.url}/settings/tokens").status_code == 200
    r = browser.post(f"{secured_registry.url}/settings/tokens",
                     data={"csrf": token, "description": "ci <b>", "actions": "pull", "days": "30"})
    assert r.status_code == 200, r.text
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', r.text).group(1)
    assert requests.get(f"{secured_registry.url}/v2/library/hello/tags/list", auth=(user[0], secret)).status_code == 200
    listed = requests.get(api(secured_registry, f"/users/{user[0]}/tokens"), auth=user).json()["tokens"]
    assert [(t["description"], t["actions"]) for t in listed] == [("ci <b>", ["pull"])]
    again = browser.get(f"{secured_registry.url}/settings/tokens").text
    assert secret not in again and "ci &lt;b&gt;" in again
    r = browser.post(f"{secured_registry.url}/settings/tokens/{listed[0]['id']}/revoke", data={"csrf": token},
                     allow_redirects=False)
    assert r.status_code == 303
    assert requests.get(api(secured_registry, f"/users/{user[0]}/tokens"), auth=user).json()["tokens"] == []
    r = browser.post(f"{secured_registry.url}/settings/tokens", data={"csrf": token, "actions": "push"})
    assert r.status_code == 200 and "never" in r.text  # no description, no expiry
    for bad in ({"actions": "admin"}, {"actions": "pull", "days": "x"}, {"actions": "pull", "days": "0"}):
        assert browser.post(f"{secured_registry.url}/settings/tokens", data={"csrf": token, **bad}).status_code == 400


def test_settings_pages_send_the_anonymous_to_the_login_page(secured_registry):
    r = requests.get(f"{secured_registry.url}/settings/tokens", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/login?next=/settings/tokens"


def test_a_user_changes_their_password_and_stays_logged_in(secured_registry):
    user = make_user(secured_registry)
    browser, token = logged_in(secured_registry, user)
    r = browser.post(f"{secured_registry.url}/settings/password",
                     data={"csrf": token, "current": "wrong-one", "new": "another-pw-2", "again": "another-pw-2"})
    assert r.status_code == 400 and "current password" in r.text
    r = browser.post(f"{secured_registry.url}/settings/password",
                     data={"csrf": token, "current": user[1], "new": "another-pw-2", "again": "another-pw-3"})
    assert r.status_code == 400
    r = browser.post(f"{secured_registry.url}/settings/password",
                     data={"csrf": token, "current": user[1], "new": "short", "again": "short"})
    assert r.status_code == 400 and "8 characters" in r.text
    r = browser.post(f"{secured_registry.url}/settings/password", allow_redirects=False,
                     data={"csrf": token, "current": user[1], "new": "another-pw-2", "again": "another-pw-2"})
    assert r.status_code == 303
    assert "Log out" in browser.get(f"{secured_registry.url}/settings/tokens").text
    assert requests.get(api(secured_registry, f"/users/{user[0]}"), auth=(user[0], "another-pw-2")).status_code == 200
    assert requests.get(api(secured_registry, f"/users/{user[0]}"), auth=user).status_code == 401
