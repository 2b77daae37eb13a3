"""The webhooks plugin's section of a repository's settings page (plugins/webhooks/ui.py, on the
`ui_settings_sections` contract of registry_core/ui/sections.py), against a real registry with
accounts and the webhooks plugin, and a real receiver process on 127.0.0.1: in Chromium, an admin
adds a hook, pings it, reads its delivery log, redelivers, turns it off and deletes it; over HTTP,
the section's forms are refused without the CSRF token and to everyone who is not an admin."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.support.oci import Client, meta_commits, meta_tip
from tests.support.server import RunningRegistry
from tests.test_ui_browser import browser, inert, log_in, page  # noqa: F401 (browser and page are fixtures)
from tests.test_ui_pages import ALICE, api, csrf_of, logged_in, make_user
from tests.test_webhooks import Receiver, verifies, wait_until, write_config

MARKUP_URL = 'http://127.0.0.1:9/"><script>alert(1)</script><svg/onload=alert(2)>'


@pytest.fixture(scope="module")
def hooked(tmp_path_factory):
    """Accounts (alice, bob…) and the webhooks plugin, which may deliver to 127.0.0.1 here."""
    root = tmp_path_factory.mktemp("ui-webhooks")
    with RunningRegistry(root / "store", "--config", write_config(root)) as running:
        yield running


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    up = Receiver(tmp_path_factory.mktemp("ui-receiver")).start()
    yield up
    up.stop()


def new_repository(server, visibility: str = "private") -> str:
    """A repository of alice's (she pushed it first: she is its admin)."""
    name = f"alice/hooks-{uuid.uuid4().hex[:8]}"
    session = requests.Session()
    session.auth = ALICE
    Client(server.url, session).push_image(name, "v1")
    assert requests.patch(api(server, f"/repositories/{name}"), auth=ALICE,
                          json={"visibility": visibility}).status_code == 200
    return name


def hooks_of(server, name: str) -> list[dict]:
    r = requests.get(api(server, f"/repositories/{name}/webhooks"), auth=ALICE)
    assert r.status_code == 200, r.text
    return r.json()["webhooks"]


def add_hook(server, name: str, url: str) -> dict:
    r = requests.post(api(server, f"/repositories/{name}/webhooks"), auth=ALICE, json={"url": url})
    assert r.status_code == 201, r.text
    return r.json()


def settings(server, name: str) -> str:
    return f"{server.url}/r/{name}/settings"


# --- in the browser ---------------------------------------------------------------------------------

def test_an_admin_adds_a_webhook_pings_it_reads_its_log_redelivers_deactivates_and_deletes_it(page, hooked, receiver):
    name = new_repository(hooked)
    path = f"/ui-{uuid.uuid4().hex[:8]}"
    tip = meta_tip(hooked.store)
    log_in(page, hooked, next_path=f"/r/{name}/settings")
    section = page.locator("#webhooks")
    assert section.get_by_text("No webhooks.").is_visible()
    section.get_by_label("Payload URL").fill(receiver.url + path)
    section.get_by_label("tag", exact=True).check()
    section.get_by_label("Format").select_option("cloudevents")
    section.get_by_role("button", name="Add the webhook").click()

    secret = page.locator("#webhook-new-secret").inner_text()
    [hook] = hooks_of(hooked, name)
    assert (hook["url"], hook["events"], hook["format"], hook["active"]) == (receiver.url + path, ["push", "tag"],
                                                                            "cloudevents", True)
    item = page.locator(f"#webhook-{hook['id']}")
    assert item.locator(".webhook-last").inner_text() == "none yet"

    item.get_by_role("button", name="Send a ping").click()
    assert page.url.endswith(f"/r/{name}/settings#webhook-{hook['id']}-log")
    [ping] = wait_until(lambda: [r for r in receiver.received() if r["path"] == path], "the ping arrives")
    assert verifies(ping, secret) and ping["headers"]["X-Registry-Event"] == "ping"
    log = page.locator(f"#webhook-{hook['id']}-log")

    def delivered_row():
        page.wait_for_load_state()  # a reload while the last navigation still commits: "not attached"
        page.reload()
        rows = log.locator("tbody tr")
        return rows if rows.count() and rows.first.locator(".delivery-state").inner_text() == "delivered" else None
    rows = wait_until(delivered_row, "the log shows the ping delivered")
    assert log.evaluate("details => details.open")  # the address's #fragment opened it
    assert rows.first.locator("td").first.inner_text() == "ping" and "HTTP 200" in rows.first.inner_text()
    assert item.locator(".webhook-last").inner_text() == "ping: delivered (HTTP 200)"

    rows.first.get_by_role("button", name="Redeliver").click()
    again = wait_until(lambda: [r for r in receiver.received() if r["path"] == path][1:], "the redelivery arrives")
    assert again[0]["headers"]["X-Registry-Delivery"] == ping["headers"]["X-Registry-Delivery"]

    item.get_by_role("button", name="Deactivate").click()
    assert [h["active"] for h in hooks_of(hooked, name)] == [False]
    assert item.locator(".webhook-active").inner_text() == "no"
    assert secret not in page.content()  # shown once, on the page that answered the creation

    item.get_by_role("button", name="Delete").click()
    assert hooks_of(hooked, name) == []
    assert page.locator("#webhooks").get_by_text("No webhooks.").is_visible()
    assert {commit.author.name for commit in meta_commits(hooked.store, since=tip)} == {"alice"}


def test_markup_in_a_webhooks_url_and_tag_glob_renders_as_inert_text(page, hooked):
    name = new_repository(hooked)
    log_in(page, hooked, next_path=f"/r/{name}/settings")
    section = page.locator("#webhooks")
    section.get_by_label("Payload URL").fill(MARKUP_URL)
    section.get_by_label("Only tags matching").fill("<b>v*</b>")
    section.get_by_label("Secret").fill("a-secret-the-admin-chose")
    section.get_by_role("button", name="Add the webhook").click()
    [hook] = hooks_of(hooked, name)
    assert hook["url"] == MARKUP_URL and hook["tags"] == "<b>v*</b>"
    item = page.locator(f"#webhook-{hook['id']}")
    assert item.locator(".webhook-url").inner_text() == MARKUP_URL
    assert "(tags matching <b>v*</b>)" in item.inner_text()
    assert page.locator("#webhook-new-secret").count() == 0  # a secret the admin chose is not shown back
    assert "a-secret-the-admin-chose" not in page.content()
    inert(page)
    assert page.locator("main svg, main b").count() == 0


# --- over HTTP: who may, and the CSRF token ------------------------------------------------------------

def test_a_section_form_without_the_csrf_token_is_refused_and_changes_nothing(hooked):
    name = new_repository(hooked)
    hook = add_hook(hooked, name, "http://127.0.0.1:9/hook")
    alice, csrf = logged_in(hooked, ALICE)
    tip = meta_tip(hooked.store)
    for form in ({}, {"csrf": csrf + "x"}):
        for action, fields in (("add", {"url": "http://127.0.0.1:9/other", "events": "push"}),
                               ("delete", {"hook": hook["id"]}), ("active", {"hook": hook["id"], "active": "no"})):
            r = alice.post(f"{settings(hooked, name)}/webhooks/{action}", data={**form, **fields})
            assert r.status_code == 403 and "text/html" in r.headers["Content-Type"], (action, r.text)
    assert meta_tip(hooked.store) == tip
    assert [h["id"] for h in hooks_of(hooked, name)] == [hook["id"]]


def test_a_collaborator_who_is_not_an_admin_sees_no_webhooks_and_their_forms_are_refused(hooked):
    name = new_repository(hooked)
    hook = add_hook(hooked, name, "http://127.0.0.1:9/hook")
    user = make_user(hooked)
    r = requests.put(api(hooked, f"/repositories/{name}/collaborators/{user[0]}"), auth=ALICE, json={"role": "write"})
    assert r.status_code in (200, 201), r.text
    writer, csrf = logged_in(hooked, user)
    page = writer.get(settings(hooked, name))
    assert page.status_code == 403 and "webhook" not in page.text.lower()
    assert "webhook" not in writer.get(f"{hooked.url}/r/{name}").text.lower()
    tip = meta_tip(hooked.store)
    for action, fields in (("add", {"url": "http://127.0.0.1:9/theirs", "events": "push"}),
                           ("delete", {"hook": hook["id"]}), ("ping", {"hook": hook["id"]})):
        r = writer.post(f"{settings(hooked, name)}/webhooks/{action}", data={"csrf": csrf, **fields})
        assert r.status_code == 403 and "only the admins of" in r.text, action
    assert meta_tip(hooked.store) == tip and [h["id"] for h in hooks_of(hooked, name)] == [hook["id"]]


def test_to_whoever_may_not_pull_a_private_repository_its_webhook_forms_are_the_404_page(hooked):
    name = new_repository(hooked, "private")
    hook = add_hook(hooked, name, "http://127.0.0.1:9/hook")
    outsider, csrf = logged_in(hooked, make_user(hooked))
    missing = outsider.post(f"{settings(hooked, 'alice/no-such-repository')}/webhooks/delete",
                            data={"csrf": csrf, "hook": hook["id"]})
    hidden = outsider.post(f"{settings(hooked, name)}/webhooks/delete", data={"csrf": csrf, "hook": hook["id"]})
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text
    assert [h["id"] for h in hooks_of(hooked, name)] == [hook["id"]]


def test_an_add_the_plugin_refuses_shows_the_page_again_with_the_reason_and_changes_nothing(hooked):
    name = new_repository(hooked)
    alice, csrf = logged_in(hooked, ALICE)
    tip = meta_tip(hooked.store)
    for fields, reason in (({"url": "ftp://127.0.0.1/hook", "events": "push"}, "is not an http:// or https:// URL"),
                           ({"url": "http://127.0.0.1:9/hook"}, "events must be a non-empty list"),
                           ({"url": "http://127.0.0.1:9/hook", "events": "push", "secret": "short"},
                            "secret must be a string of 16")):
        r = alice.post(f"{settings(hooked, name)}/webhooks/add", data={"csrf": csrf, **fields})
        assert r.status_code == 400 and reason in r.text and 'id="webhooks-heading"' in r.text, r.text
        assert '<p class="problem" role="alert">' in r.text
    assert meta_tip(hooked.store) == tip and hooks_of(hooked, name) == []


def test_an_unknown_action_or_hook_of_the_section_is_the_404_page(hooked):
    name = new_repository(hooked)
    alice, csrf = logged_in(hooked, ALICE)
    for action, fields in (("explode", {}), ("delete", {"hook": "0123456789ab"}), ("ping", {"hook": "../../etc"}),
                           ("redeliver", {"hook": add_hook(hooked, name, "http://127.0.0.1:9/h")["id"],
                                          "delivery": "../nothing"})):
        r = alice.post(f"{settings(hooked, name)}/webhooks/{action}", data={"csrf": csrf, **fields})
        assert r.status_code == 404 and "text/html" in r.headers["Content-Type"], action


def test_the_settings_page_of_a_registry_without_the_plugin_has_no_webhooks_section(secured_registry):
    from tests.test_ui_pages import make_repository
    name = make_repository(secured_registry)
    alice, _ = logged_in(secured_registry, ALICE)
    r = alice.get(settings(secured_registry, name))
    assert r.status_code == 200 and 'id="webhooks"' not in r.text
    r = alice.post(f"{settings(secured_registry, name)}/webhooks/add", data={"csrf": csrf_of(r), "url": "http://x/"})
    assert r.status_code == 404


def test_the_api_sees_what_the_page_added(hooked):
    """The section and the API are two views of the same documents (one commit per change)."""
    name = new_repository(hooked)
    alice, csrf = logged_in(hooked, ALICE)
    r = alice.post(f"{settings(hooked, name)}/webhooks/add",
                   data={"csrf": csrf, "url": "http://127.0.0.1:9/both", "events": ["push", "delete"],
                         "format": "dockerhub", "tags": "v*", "active": "yes"})
    assert r.status_code == 200 and 'id="webhook-new-secret"' in r.text
    [hook] = hooks_of(hooked, name)
    assert {key: hook[key] for key in ("url", "events", "format", "tags", "active")} == {
        "url": "http://127.0.0.1:9/both", "events": ["push", "delete"], "format": "dockerhub", "tags": "v*",
        "active": True}
    assert json.dumps(hook).count("secret") == 0
