"""The web UI over HTTP, on the default configuration (the secured registry): who sees which page,
the session cookie and its CSRF tokens, logins that never leave the site, security headers on every
answer, HTML error pages beside the API's JSON ones. The browser tests are test_ui_browser.py."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from registry_core.ui.site import local_path
from registry_core.ui.sessions import Sessions
from tests.support.oci import Client
from tests.support.server import RunningRegistry

ADMIN = ("admin", "admin-demo")
ALICE = ("alice", "alice-demo")
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def api(server, path: str) -> str:
    return f"{server.url}/api/v1{path}"


def make_repository(server, visibility: str = "public", description: str | None = None) -> str:
    """A repository of alice's with one tag `v1`, and the given visibility and description."""
    name = f"alice/ui{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    Client(server.url, session).push_image(name, "v1")
    change = {"visibility": visibility, **({"description": description} if description is not None else {})}
    assert requests.patch(api(server, f"/repositories/{name}"), auth=ALICE, json=change).status_code == 200
    return name


def make_user(server) -> tuple[str, str]:
    name, password = f"u{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    r = requests.post(api(server, "/users"), auth=ADMIN, json={"name": name, "password": password})
    assert r.status_code == 201, r.text
    return name, password


def csrf_of(response: requests.Response) -> str:
    found = CSRF_FIELD.search(response.text)
    assert found, response.text
    return found.group(1)


def logged_in(server, user: tuple[str, str]) -> tuple[requests.Session, str]:
    """A browser-like session logged in as `user`, and the CSRF token of its forms."""
    browser = requests.Session()
    form = browser.get(f"{server.url}/login")
    r = browser.post(f"{server.url}/login", data={"csrf": csrf_of(form), "username": user[0],
                                                  "password": user[1], "next": "/"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return browser, csrf_of(browser.get(f"{server.url}/"))


# --- who sees what ----------------------------------------------------------------------------------

def test_a_private_repository_answers_an_anonymous_visitor_exactly_like_a_missing_one(secured_registry):
    private = make_repository(secured_registry, "private")
    missing = f"alice/ui{uuid.uuid4().hex[:10]}"
    for page in ("", "/tags/v1"):
        hidden = requests.get(f"{secured_registry.url}/r/{private}{page}")
        absent = requests.get(f"{secured_registry.url}/r/{missing}{page}")
        assert hidden.status_code == absent.status_code == 404
        assert hidden.text == absent.text
        assert "text/html" in hidden.headers["Content-Type"] and private not in hidden.text


def test_a_private_repository_is_shown_to_those_who_may_pull_it_and_hidden_from_others(secured_registry):
    private = make_repository(secured_registry, "private", description="only for alice")
    alice, _ = logged_in(secured_registry, ALICE)
    outsider, _ = logged_in(secured_registry, make_user(secured_registry))
    page = alice.get(f"{secured_registry.url}/r/{private}")
    assert page.status_code == 200 and "only for alice" in page.text
    assert outsider.get(f"{secured_registry.url}/r/{private}").status_code == 404
    link = f'href="/r/{private}"'
    assert link not in outsider.get(f"{secured_registry.url}/search", params={"q": private}).text
    assert link in alice.get(f"{secured_registry.url}/search", params={"q": private}).text


def test_search_shows_star_counts_and_the_official_badge(secured_registry):
    r = requests.get(f"{secured_registry.url}/search", params={"q": "library/hello"})
    assert r.status_code == 200
    entry = r.text[r.text.index('href="/r/library/hello"'):]
    entry = entry[:entry.index("</li>")]
    assert "official" in entry and re.search(r"★ \d+", entry)


def test_a_page_number_that_is_not_a_whole_number_gets_the_400_page(secured_registry):
    for page in ("x", "0", "-1", "1\n", "٣", "9" * 19):
        r = requests.get(f"{secured_registry.url}/search", params={"q": "", "page": page})
        assert r.status_code == 400, page
        assert "text/html" in r.headers["Content-Type"] and "whole number" in r.text


def test_the_api_keeps_answering_json_beside_the_ui(secured_registry):
    r = requests.get(f"{secured_registry.url}/api/v1/search", params={"page": "x"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
    r = requests.get(f"{secured_registry.url}/v2/alice/nothing-here/tags/list")
    assert r.status_code == 401 and "errors" in r.json()
    r = requests.get(f"{secured_registry.url}/no/page/here")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/r/hello/tags/a%0Ab", "/r/library/hello/tags/v1%0Aevil", "/r/Alice/x",
                                  "/r/alice/x%0A", "/r/library/hello/tags/..%2F..", "/r/%C3%A9", "/r/a..b"])
def test_names_and_tags_outside_their_grammars_get_the_404_page(secured_registry, path):
    r = requests.get(secured_registry.url + path, allow_redirects=False)
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"], path


def test_starring_a_name_outside_the_grammar_gets_the_404_page(secured_registry):
    alice, token = logged_in(secured_registry, ALICE)
    for name in ("Alice/x", "%C3%A9", "a..b"):
        r = alice.post(f"{secured_registry.url}/r/{name}/star", data={"csrf": token}, allow_redirects=False)
        assert r.status_code == 404 and "text/html" in r.headers["Content-Type"], name


def test_a_short_name_leads_to_the_official_repository(secured_registry):
    r = requests.get(f"{secured_registry.url}/r/hello", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/r/library/hello"


# --- headers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/search?q=hello", "/r/library/hello", "/r/library/hello/tags/latest",
                                  "/login", "/r/alice/no-such-thing", "/search?page=x", "/static/ui.css",
                                  "/static/ui.js"])
def test_every_ui_answer_carries_the_security_headers(secured_registry, path):
    r = requests.get(secured_registry.url + path)
    policy = r.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "default-src 'none'" in policy
    assert "script-src 'self';" in policy  # the site's own script files, nothing inline, nothing elsewhere
    assert "frame-ancestors 'none'" in policy
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_have_a_title_a_viewport_and_labelled_inputs(secured_registry):
    for path in ("/", "/search?q=hello", "/r/library/hello", "/r/library/hello/tags/latest", "/login"):
        html = requests.get(secured_registry.url + path).text
        assert re.search(r"<title>[^<]+</title>", html) and '<meta name="viewport"' in html
        assert "<h1>" in html or "<h1 " in html
        for field in re.findall(r'<input id="([^"]+)"', html):
            assert f'<label for="{field}"' in html, (path, field)


# --- sessions, CSRF and logging in -----------------------------------------------------------------

def test_the_session_cookie_is_httponly_samesite_lax_and_not_secure_over_plain_http(secured_registry):
    r = requests.get(f"{secured_registry.url}/login")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("registry_session=")
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes


def test_the_session_cookie_is_secure_when_the_public_url_is_https(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text("http:\n  publicUrl: https://registry.example.test\n")
    with RunningRegistry(tmp_path / "store", "--config", str(config), "--empty", "--workers", "1") as server:
        cookie = requests.get(f"{server.url}/login").headers["Set-Cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "secure" in attributes and "httponly" in attributes and "samesite=lax" in attributes


@pytest.mark.parametrize("path", ["/login", "/logout", "/r/library/hello/star", "/r/library/hello/unstar"])
def test_a_post_without_the_csrf_token_is_refused_with_403(secured_registry, path):
    alice, token = logged_in(secured_registry, ALICE)
    for form in ({}, {"csrf": ""}, {"csrf": token + "x"}, {"csrf": "é"}):
        r = alice.post(secured_registry.url + path, data={**form, "username": "alice", "password": "alice-demo"},
                       allow_redirects=False)
        assert r.status_code == 403, (path, form)
        assert "text/html" in r.headers["Content-Type"]
    assert alice.get(f"{secured_registry.url}/").text.count("Log out") == 1  # still logged in


def test_a_csrf_token_of_another_session_is_refused(secured_registry):
    alice, _ = logged_in(secured_registry, ALICE)
    _, other_token = logged_in(secured_registry, ALICE)
    r = alice.post(f"{secured_registry.url}/r/library/hello/star", data={"csrf": other_token},
                   allow_redirects=False)
    assert r.status_code == 403


def test_login_follows_next_only_to_a_local_path(secured_registry):
    for given, expected in (("/r/library/hello", "/r/library/hello"), ("//evil.example/x", "/"),
                            ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("/\tevil", "/"),
                            ("javascript:alert(1)", "/"), ("", "/")):
        browser = requests.Session()
        form = browser.get(f"{secured_registry.url}/login")
        r = browser.post(f"{secured_registry.url}/login", data={
            "csrf": csrf_of(form), "username": "alice", "password": "alice-demo", "next": given},
            allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"] == expected, given


def test_local_path_takes_only_paths_of_this_site():
    assert local_path("/search?q=a") == "/search?q=a"
    for value in (None, "", "//x", "/\\x", "http://x/", "x/y", "/a\nb", "/a b", "\\\\x", "/é", "/€"):
        assert local_path(value) == "/", value


def test_a_wrong_password_shows_the_form_again_and_logs_nobody_in(secured_registry):
    browser = requests.Session()
    form = browser.get(f"{secured_registry.url}/login")
    r = browser.post(f"{secured_registry.url}/login", data={"csrf": csrf_of(form), "username": "alice",
                                                            "password": "wrong"}, allow_redirects=False)
    assert r.status_code == 200 and "Wrong username or password" in r.text
    assert "Log out" not in browser.get(f"{secured_registry.url}/").text


def test_an_access_token_is_not_a_password_for_the_ui(secured_registry):
    r = requests.post(api(secured_registry, "/users/alice/tokens"), auth=ALICE, json={"actions": ["pull"]})
    secret = r.json()["secret"]
    browser = requests.Session()
    form = browser.get(f"{secured_registry.url}/login")
    r = browser.post(f"{secured_registry.url}/login", data={"csrf": csrf_of(form), "username": "alice",
                                                            "password": secret}, allow_redirects=False)
    assert r.status_code == 200 and "Log in with your password" in r.text


def test_failed_logins_are_limited_like_the_api_s(secured_registry):
    name = f"nobody{uuid.uuid4().hex[:8]}"
    browser = requests.Session()
    token = csrf_of(browser.get(f"{secured_registry.url}/login"))
    statuses = [browser.post(f"{secured_registry.url}/login", data={"csrf": token, "username": name,
                                                                    "password": "guess"}).status_code
                for _ in range(11)]
    assert statuses[:10] == [200] * 10 and statuses[10] == 429


def test_logging_out_ends_the_session(secured_registry):
    alice, token = logged_in(secured_registry, ALICE)
    r = alice.post(f"{secured_registry.url}/logout", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert "Log out" not in alice.get(f"{secured_registry.url}/").text


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(secured_registry):
    user = make_user(secured_registry)
    browser, _ = logged_in(secured_registry, user)
    assert "Log out" in browser.get(f"{secured_registry.url}/").text
    r = requests.patch(api(secured_registry, f"/users/{user[0]}"), auth=user, json={"password": "another-pw-1"})
    assert r.status_code == 200
    assert "Log out" not in browser.get(f"{secured_registry.url}/").text


def test_starring_from_the_ui_is_one_commit_authored_by_the_user(secured_registry):
    name = make_repository(secured_registry, "public")
    alice, token = logged_in(secured_registry, ALICE)
    r = alice.post(f"{secured_registry.url}/r/{name}/star", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"/r/{name}"
    summary = requests.get(api(secured_registry, f"/repositories/{name}"), auth=ALICE).json()
    assert summary["star_count"] == 1 and summary["starred"]
    r = alice.post(f"{secured_registry.url}/r/{name}/unstar", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303
    assert requests.get(api(secured_registry, f"/repositories/{name}"), auth=ALICE).json()["star_count"] == 0


def test_an_outsider_cannot_star_a_private_repository_from_the_ui(secured_registry):
    private = make_repository(secured_registry, "private")
    outsider, token = logged_in(secured_registry, make_user(secured_registry))
    r = outsider.post(f"{secured_registry.url}/r/{private}/star", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 404
    assert requests.get(api(secured_registry, f"/repositories/{private}"), auth=ALICE).json()["star_count"] == 0


# --- the session values themselves -----------------------------------------------------------------

def test_a_session_value_cannot_be_forged_or_kept_past_its_expiry():
    now = [1_000_000.0]
    sessions = Sessions(b"k" * 64, clock=lambda: now[0], lifetime=60)
    value = sessions.encode(sessions.new("alice", "hash"))
    assert sessions.decode(value).user == "alice"
    payload, signature = value.split(".")
    forged = Sessions(b"x" * 64, clock=lambda: now[0]).encode(sessions.new("admin", "hash"))
    other_signature = ("B" if signature[0] == "A" else "A") + signature[1:]
    for bad in (forged, f"{payload}.{other_signature}", f"{payload}x.{signature}", payload, "", "é.é", None):
        assert sessions.decode(bad) is None, bad
    now[0] += 61
    assert sessions.decode(value) is None


def test_each_session_has_its_own_csrf_token():
    sessions = Sessions(b"k" * 64, clock=time.time)
    first, second = sessions.new(None), sessions.new(None)
    assert sessions.csrf_matches(first, sessions.csrf_token(first))
    assert not sessions.csrf_matches(second, sessions.csrf_token(first))
    assert not sessions.csrf_matches(None, sessions.csrf_token(first))


def test_the_wheel_carries_every_template_and_stylesheet():
    """pyproject.toml lists package data by pattern: a template it misses would be absent from an
    installed registry (a 500 on its page) while working from the source tree."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "registry_core.ui" in setuptools["packages"]
    patterns = setuptools["package-data"]["registry_core.ui"]
    package = root / "registry_core" / "ui"
    files = [path.relative_to(package).as_posix() for folder in ("templates", "static")
             for path in (package / folder).rglob("*") if path.is_file()]
    assert files
    for file in files:
        assert any(fnmatch.fnmatchcase(file, pattern) for pattern in patterns), file
