"""The web UI's third slice over HTTP: sign-up where the configuration opens it (the sponsor
plugin's `signup: open`, the decision `POST /api/v1/users` asks), a repository's collaborators
and webhooks in its settings, the pull command's copy control under a policy that runs only
the site's own script file. Helpers are test_ui_pages.py's; the browser tests are
test_ui_browser.py's."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from registry_core.ui.site import SECURITY_HEADERS
from tests.support.oci import meta_commits, meta_tip
from tests.support.server import RunningRegistry
from tests.test_sponsor_plugin import session_from
from tests.test_ui_pages import ALICE, api, csrf_of, logged_in, make_repository, make_user

ADMIN = ("admin", "admin-demo")


def start(root: Path, config: dict) -> RunningRegistry:
    root.mkdir(parents=True, exist_ok=True)
    (root / "registry.yaml").write_text(yaml.safe_dump(config))
    return RunningRegistry(root / "store", "--config", str(root / "registry.yaml"))


@pytest.fixture(scope="module")
def open_signup(tmp_path_factory):
    """A sponsor's registry (sign-up open, 3 sign-ups an hour per address), with the webhooks plugin."""
    server = start(tmp_path_factory.mktemp("ui-signup"), {
        "plugins": ["sponsor", "webhooks"], "pluginConfig": {"sponsor": {"signupLimit": "3/1h"}}})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed_signup(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("ui-closed"), {"plugins": ["sponsor"],
                                                          "pluginConfig": {"sponsor": {"signup": "closed"}}})
    yield server
    server.stop()


def fresh_address() -> str:
    """A loopback address of its own, so each test has the sign-up limit of an address to itself."""
    number = uuid.uuid4().int
    return f"127.{number % 250 + 1}.{number // 250 % 250 + 1}.{number // 62500 % 250 + 1}"


def signup_form(server, address: str | None = None) -> tuple[requests.Session, str]:
    browser = session_from(address or fresh_address())
    page = browser.get(f"{server.url}/signup")
    assert page.status_code == 200, page.text
    return browser, csrf_of(page)


# --- signing up -------------------------------------------------------------------------------------

def test_where_sign_up_is_open_a_visitor_makes_an_account_authored_by_themself_and_is_logged_in(open_signup):
    assert 'href="/signup"' in requests.get(f"{open_signup.url}/login").text
    assert 'href="/signup"' in requests.get(f"{open_signup.url}/").text
    browser, csrf = signup_form(open_signup)
    name = f"s{uuid.uuid4().hex[:10]}"
    tip = meta_tip(open_signup.store)
    r = browser.post(f"{open_signup.url}/signup", data={"csrf": csrf, "username": name, "email": "",
                                                         "password": "a-long-password", "again": "a-long-password"},
                     allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"/u/{name}"
    assert [commit.author.name for commit in meta_commits(open_signup.store, since=tip)] == [name]
    account = requests.get(api(open_signup, f"/users/{name}"), auth=(name, "a-long-password"))
    assert account.status_code == 200 and account.json()["admin"] is False
    assert f'href="/u/{name}"' in browser.get(f"{open_signup.url}/").text  # logged in as the new user


def test_sign_up_is_a_404_where_the_configuration_does_not_open_it(closed_signup, secured_registry):
    for server in (closed_signup, secured_registry):
        assert requests.get(f"{server.url}/signup").status_code == 404
        assert 'href="/signup"' not in requests.get(f"{server.url}/login").text
        # even with a session's CSRF token, the form makes nothing
        browser = requests.Session()
        csrf = csrf_of(browser.get(f"{server.url}/login"))
        tip = meta_tip(server.store)
        r = browser.post(f"{server.url}/signup", data={"csrf": csrf, "username": f"s{uuid.uuid4().hex[:10]}",
                                                       "password": "a-long-password", "again": "a-long-password"})
        assert r.status_code == 404 and meta_tip(server.store) == tip


def test_sign_up_without_the_csrf_token_is_refused_and_makes_nothing(open_signup):
    browser, csrf = signup_form(open_signup)
    tip = meta_tip(open_signup.store)
    for form in ({}, {"csrf": csrf + "x"}):
        r = browser.post(f"{open_signup.url}/signup", data={**form, "username": f"s{uuid.uuid4().hex[:10]}",
                                                             "password": "a-long-password", "again": "a-long-password"},
                         headers={"X-Forwarded-For": "x"})
        assert r.status_code == 403 and "text/html" in r.headers["Content-Type"]
    assert meta_tip(open_signup.store) == tip


@pytest.mark.parametrize("fields, shown", [
    ({"username": "Not Valid", "password": "a-long-password", "again": "a-long-password"}, "invalid account name"),
    ({"username": "admin", "password": "a-long-password", "again": "a-long-password"}, "is taken"),
    ({"username": "fresh-name", "password": "short", "again": "short"}, "at least 8 characters"),
    ({"username": "fresh-name", "password": "a-long-password", "again": "another-password"}, "differ"),
])
def test_a_refused_sign_up_shows_the_form_again_with_the_reason(open_signup, fields, shown):
    browser, csrf = signup_form(open_signup)
    tip = meta_tip(open_signup.store)
    r = browser.post(f"{open_signup.url}/signup", data={"csrf": csrf, **fields})
    assert r.status_code in (400, 409) and shown in r.text and 'action="/signup"' in r.text
    assert meta_tip(open_signup.store) == tip


def test_the_sign_up_form_shares_the_apis_limit_per_client_address(open_signup):
    address = fresh_address()
    browser, csrf = signup_form(open_signup, address)
    refused = {"csrf": csrf, "username": "Not Valid", "password": "a-long-password", "again": "a-long-password"}
    for _ in range(2):
        assert browser.post(f"{open_signup.url}/signup", data=refused).status_code == 400
    r = session_from(address).post(api(open_signup, "/users"), json={"name": "Not Valid", "password": "x" * 8})
    assert r.status_code == 400  # the third of 3 an hour
    r = browser.post(f"{open_signup.url}/signup", data={**refused, "username": f"s{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 429 and "signupLimit" in r.text and int(r.headers["Retry-After"]) > 0


def test_past_the_sign_up_limit_a_browser_gets_the_ui_page_with_retry_after_and_a_script_the_json(open_signup):
    address = fresh_address()
    browser, csrf = signup_form(open_signup, address)
    refused = {"csrf": csrf, "username": "Not Valid", "password": "a-long-password", "again": "a-long-password"}
    for _ in range(3):
        assert browser.post(f"{open_signup.url}/signup", data=refused).status_code == 400
    tip = meta_tip(open_signup.store)
    page = browser.post(f"{open_signup.url}/signup", data={**refused, "username": f"s{uuid.uuid4().hex[:10]}"},
                        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 429 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(page.headers["Retry-After"]) > 0
    assert "<h1>Too Many Requests</h1>" in page.text and "too many sign-ups from this address" in page.text
    assert page.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    script = session_from(address).post(api(open_signup, "/users"), json={"name": "Not Valid", "password": "x" * 8},
                                        headers={"Accept": "application/json"})
    assert script.status_code == 429 and script.headers["Content-Type"].startswith("application/json")
    assert script.json()["errors"][0]["code"] == "TOOMANYREQUESTS" and int(script.headers["Retry-After"]) > 0
    assert meta_tip(open_signup.store) == tip


# --- collaborators ----------------------------------------------------------------------------------

def collaborators(server, name: str) -> dict[str, str]:
    r = requests.get(api(server, f"/repositories/{name}/collaborators"), auth=ALICE)
    assert r.status_code == 200, r.text
    return {entry["user"]: entry["role"] for entry in r.json()["collaborators"]}


def test_an_admin_adds_changes_and_removes_a_collaborator_and_the_api_sees_each_step(secured_registry):
    name = make_repository(secured_registry, "private")
    user = make_user(secured_registry)
    alice, csrf = logged_in(secured_registry, ALICE)
    settings = f"{secured_registry.url}/r/{name}/settings"
    tip = meta_tip(secured_registry.store)
    r = alice.post(f"{settings}/collaborators", data={"csrf": csrf, "user": user[0], "role": "read"},
                   allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"/r/{name}/settings#collaborators"
    assert collaborators(secured_registry, name) == {user[0]: "read"}
    assert requests.get(f"{secured_registry.url}/v2/{name}/tags/list", auth=user).status_code == 200
    page = alice.get(settings).text
    assert f'<a href="/u/{user[0]}">{user[0]}</a>' in page and '<option value="read" selected>' in page
    alice.post(f"{settings}/collaborators", data={"csrf": csrf, "user": user[0], "role": "write"})
    assert collaborators(secured_registry, name) == {user[0]: "write"}
    r = alice.post(f"{settings}/collaborators/{user[0]}/remove", data={"csrf": csrf}, allow_redirects=False)
    assert r.status_code == 303
    assert collaborators(secured_registry, name) == {}
    assert [commit.author.name for commit in meta_commits(secured_registry.store, since=tip)] == ["alice"] * 3


@pytest.mark.parametrize("fields, status, shown", [
    ({"user": "no-such-user-here", "role": "read"}, 404, "not found"),
    ({"user": "bob", "role": "owner"}, 400, "role must be one of read, write, admin"),
    ({"user": "Bob Smith", "role": "read"}, 400, "invalid account name"),
])
def test_a_collaborator_the_service_refuses_changes_nothing_and_says_why(secured_registry, fields, status, shown):
    name = make_repository(secured_registry)
    alice, csrf = logged_in(secured_registry, ALICE)
    tip = meta_tip(secured_registry.store)
    r = alice.post(f"{secured_registry.url}/r/{name}/settings/collaborators", data={"csrf": csrf, **fields})
    assert r.status_code == status and shown in r.text.lower() and "text/html" in r.headers["Content-Type"]
    assert meta_tip(secured_registry.store) == tip


def test_a_robot_is_never_made_a_collaborator(secured_registry):
    name = make_repository(secured_registry)
    robot = f"robot{uuid.uuid4().hex[:8]}"
    r = requests.post(api(secured_registry, "/robots"), auth=ALICE, json={"owner": "alice", "name": robot})
    assert r.status_code == 201, r.text
    alice, csrf = logged_in(secured_registry, ALICE)
    r = alice.post(f"{secured_registry.url}/r/{name}/settings/collaborators",
                   data={"csrf": csrf, "user": robot, "role": "read"})
    assert r.status_code == 400 and "is a robot" in r.text
    assert collaborators(secured_registry, name) == {}


def test_only_admins_change_collaborators(secured_registry):
    name = make_repository(secured_registry)
    user = make_user(secured_registry)
    outsider, csrf = logged_in(secured_registry, user)
    tip = meta_tip(secured_registry.store)
    r = outsider.post(f"{secured_registry.url}/r/{name}/settings/collaborators",
                      data={"csrf": csrf, "user": user[0], "role": "admin"})
    assert r.status_code == 403
    r = outsider.post(f"{secured_registry.url}/r/{name}/settings/collaborators/bob/remove", data={"csrf": csrf})
    assert r.status_code == 403
    assert meta_tip(secured_registry.store) == tip


@pytest.mark.parametrize("path", ["/settings/collaborators", "/settings/collaborators/bob/remove"])
def test_collaborator_forms_are_refused_without_the_csrf_token(secured_registry, path):
    name = make_repository(secured_registry)
    alice, csrf = logged_in(secured_registry, ALICE)
    tip = meta_tip(secured_registry.store)
    for form in ({}, {"csrf": csrf + "x"}):
        r = alice.post(f"{secured_registry.url}/r/{name}{path}", data={**form, "user": "bob", "role": "read"})
        assert r.status_code == 403
    assert meta_tip(secured_registry.store) == tip


# --- webhooks and the copy control ------------------------------------------------------------------

def test_settings_show_how_to_manage_webhooks_only_where_the_plugin_is_enabled(open_signup, secured_registry):
    for server, shown in ((open_signup, True), (secured_registry, False)):
        name = make_repository(server)
        alice, _ = logged_in(server, ALICE)
        page = alice.get(f"{server.url}/r/{name}/settings").text
        assert ('id="webhooks-heading"' in page) is shown
        assert (f"{server.url}/api/v1/repositories/{name}/webhooks" in page) is shown


def test_the_pull_command_is_a_selectable_field_with_a_copy_control_from_the_sites_own_script(secured_registry):
    name = make_repository(secured_registry)
    page = requests.get(f"{secured_registry.url}/r/{name}")
    command = re.search(r'<input id="pull-command"[^>]*>', page.text).group(0)
    assert "readonly" in command and "data-copy=" in command
    assert f'value="docker pull {secured_registry.host}/{name}:v1"' in command
    assert '<script src="/static/ui.js" defer></script>' in page.text
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/ui.js" defer>']  # no inline script
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    script = requests.get(f"{secured_registry.url}/static/ui.js")
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "input[data-copy]" in script.text
