"""A repository's history (`/r/<name>/history` and `GET /api/v1/repositories/<name>/history`):
the audit's events of that repository from meta.git, newest first, paged by commit without
walking past what a page needs; collaborator changes for its admins only."""

from __future__ import annotations

import uuid

import pytest
import requests

from registry_core.index import repository_history
from registry_core.maintenance import audit
from registry_core.meta.store import MetaStore
from tests.support.oci import Client, error_codes
from tests.test_ui_pages import ALICE, api, logged_in, make_user

BOB = ("bob", "bob-demo")


def busy_repository(server) -> str:
    """alice's repository: pushed, tag moved, made public, described, bob added as a reader, a
    README, the tag deleted; each step a commit."""
    name = f"alice/h{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    client = Client(server.url, session)
    client.push_image(name, "v1")
    client.push_image(name, "v1")
    assert requests.patch(api(server, f"/repositories/{name}"), auth=ALICE, json={"visibility": "public"}).ok
    assert requests.patch(api(server, f"/repositories/{name}"), auth=ALICE, json={"description": "<b>d</b>"}).ok
    assert requests.put(api(server, f"/repositories/{name}/collaborators/bob"), auth=ALICE, json={"role": "read"}).ok
    assert requests.put(api(server, f"/repositories/{name}/readme"), auth=ALICE, json={"body": "# R"}).ok
    assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202
    return name


def actions(entries: list[dict]) -> list[str]:
    return [entry["action"] for entry in entries]


def test_the_history_lists_who_did_what_newest_first(secured_registry):
    name = busy_repository(secured_registry)
    r = requests.get(api(secured_registry, f"/repositories/{name}/history"), auth=ALICE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert actions(body["entries"]) == ["tag-delete", "readme", "collaborator-add", "description", "visibility",
                                        "tag-move", "push", "repository-create"]
    assert body["next"] is None and {entry["actor"] for entry in body["entries"]} == {"alice"}
    move = body["entries"][5]
    assert move["target"] == f"{name}:v1" and move["previous"].startswith("sha256:") and move["current"] != move["previous"]
    assert body["entries"][4]["previous"] == "private" and body["entries"][4]["current"] == "public"
    assert all("clientAddr" not in entry and "requestId" not in entry for entry in body["entries"])


def test_collaborator_changes_are_shown_to_admins_only(secured_registry):
    name = busy_repository(secured_registry)
    shown = requests.get(api(secured_registry, f"/repositories/{name}/history"), auth=BOB).json()["entries"]
    assert "collaborator-add" not in actions(shown) and "push" in actions(shown)
    page = requests.get(f"{secured_registry.url}/r/{name}/history").text
    assert "collaborator-add" not in page and "tag-move" in page and "&lt;b&gt;d&lt;/b&gt;" in page
    alice, _ = logged_in(secured_registry, ALICE)
    assert "collaborator-add" in alice.get(f"{secured_registry.url}/r/{name}/history").text


def test_the_history_of_a_private_repository_is_a_404_to_outsiders(secured_registry):
    name = f"alice/h{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    Client(secured_registry.url, session).push_image(name, "v1")
    assert requests.get(f"{secured_registry.url}/r/{name}/history").status_code == 404
    outsider, _ = logged_in(secured_registry, make_user(secured_registry))
    assert outsider.get(f"{secured_registry.url}/r/{name}/history").status_code == 404
    assert requests.get(api(secured_registry, f"/repositories/{name}/history"), auth=BOB).status_code == 403


def test_pages_follow_each_other_and_a_page_walks_only_the_commits_it_shows(secured_registry, monkeypatch):
    name = busy_repository(secured_registry)
    meta = MetaStore(str(secured_registry.store / "meta.git"), create=False)
    whole = repository_history.history(meta, name, admin=True, size=100)
    walked = []
    real = audit.commit_events
    monkeypatch.setattr(repository_history, "commit_events",
                        lambda repo, commit, repository: walked.append(commit.id) or real(repo, commit, repository))
    first = repository_history.history(meta, name, admin=True, size=3)
    assert actions(first.entries) == actions(whole.entries)[:3] and first.next is not None
    assert len(walked) == 3  # the three newest commits made those three events: nothing more was read
    walked.clear()
    second = repository_history.history(meta, name, before=first.next, admin=True, size=3)
    assert actions(second.entries) == actions(whole.entries)[3:6] and len(walked) == 3
    last = repository_history.history(meta, name, before=second.next, admin=True, size=3)
    assert actions(last.entries) == actions(whole.entries)[6:] and last.next is None  # ends at its creation
    r = requests.get(api(secured_registry, f"/repositories/{name}/history"), auth=ALICE)
    assert r.json()["entries"] == whole.entries


@pytest.mark.parametrize("before", ["x", "0" * 39, "0" * 40 + "\n", "A" * 40, "0" * 40])
def test_a_before_that_is_not_a_commit_of_the_metadata_gets_a_400(secured_registry, before):
    r = requests.get(f"{secured_registry.url}/r/library/hello/history", params={"before": before})
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]
    r = requests.get(api(secured_registry, "/repositories/library/hello/history"), params={"before": before})
    assert r.status_code == 400 and error_codes(r) == ["UNSUPPORTED"]


def test_a_repository_named_like_a_page_keeps_its_own_page(secured_registry):
    name = f"alice/p{uuid.uuid4().hex[:8]}/history"
    session = requests.Session()
    session.auth = ALICE
    Client(secured_registry.url, session).push_image(name, "v1")
    alice, _ = logged_in(secured_registry, ALICE)
    page = alice.get(f"{secured_registry.url}/r/{name}")
    assert page.status_code == 200 and f"docker pull" in page.text and name in page.text
