"""The web UI in a real browser: Debian's Chromium (/usr/bin/chromium, headless) driven by
Playwright's sync API against the secured registry. A user logs in, searches, opens a repository,
stars and unstars it, opens a tag and logs out; markup in descriptions and comments stays text;
the main pages are photographed at a laptop's and a phone's width into tests/screenshots/.

Without Chromium these tests are skipped on a workstation, and fail under CI (`CI=true`), where
a missing browser means the suite did not test the UI at all."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.oci import Client
from tests.support.server import RunningRegistry

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
ALICE = ("alice", "alice-demo")
XSS = '<script>alert("xss")</script><img src=x onerror="alert(1)"><b>bold</b>'
WIDTHS = {"laptop": 1280, "phone": 390}


def _browser_missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the browser tests (make test installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        _browser_missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) whose every dialog fails the test: a dialog means a
    script of the page ran."""
    context = browser.new_context(viewport={"width": WIDTHS["laptop"], "height": 900})
    opened = context.new_page()
    dialogs = []

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()
    opened.on("dialog", on_dialog)
    yield opened
    context.close()
    assert dialogs == [], f"a script ran in the page and opened dialogs: {dialogs}"


def make_repository(server, description: str, visibility: str = "public") -> str:
    name = f"alice/ui{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    Client(server.url, session).push_image(name, "v1", layers=2)
    r = requests.patch(f"{server.url}/api/v1/repositories/{name}", auth=ALICE,
                       json={"visibility": visibility, "description": description})
    assert r.status_code == 200, r.text
    return name


def log_in(page, server, user=ALICE, next_path: str = "/"):
    page.goto(f"{server.url}/login?next={next_path}")
    page.get_by_label("Username").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Log in").click()


def test_a_user_logs_in_searches_stars_unstars_opens_a_tag_and_logs_out(page, secured_registry):
    word = f"zq{uuid.uuid4().hex[:8]}"
    name = make_repository(secured_registry, f"a demo image about {word}")

    log_in(page, secured_registry)
    assert page.url == f"{secured_registry.url}/"
    assert page.locator("header .who").inner_text() == "alice"

    page.get_by_label("Search repositories").fill(word)
    page.get_by_label("Search repositories").press("Enter")
    assert page.get_by_role("heading", level=1).inner_text() == f"Repositories matching “{word}”"
    page.get_by_role("link", name=name).click()

    assert page.get_by_role("heading", level=1).inner_text().startswith(name)
    assert page.locator("#pull-command").input_value() == f"docker pull 127.0.0.1:{secured_registry.port}/{name}:v1"
    assert page.locator("#star-count").inner_text() == "★ 0 stars"
    page.get_by_role("button", name="Star", exact=True).click()
    assert page.locator("#star-count").inner_text() == "★ 1 star"
    page.get_by_role("button", name="Unstar").click()
    assert page.locator("#star-count").inner_text() == "★ 0 stars"

    page.get_by_role("link", name="v1", exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"{name}:v1"
    digest = requests.head(f"{secured_registry.url}/v2/{name}/manifests/v1", auth=ALICE,
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
                           ).headers["Docker-Content-Digest"]
    assert digest in page.locator("dl.facts").inner_text()
    assert page.locator("tbody tr").count() == 3  # the config and two layers

    page.get_by_role("button", name="Log out").click()
    assert page.get_by_role("link", name="Log in").is_visible()
    assert page.locator("header .who").count() == 0


def test_markup_in_a_description_and_a_comment_renders_as_inert_text(page, secured_registry):
    name = make_repository(secured_registry, XSS)
    r = requests.post(f"{secured_registry.url}/api/v1/repositories/{name}/comments", auth=ALICE,
                      json={"body": XSS})
    assert r.status_code == 201, r.text

    source = requests.get(f"{secured_registry.url}/r/{name}").text
    assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in source and "<script>" not in source

    for path in (f"/r/{name}", f"/search?q={name}", "/"):
        page.goto(secured_registry.url + path)
        assert page.locator("main script, main img, main b").count() == 0, path
    page.goto(f"{secured_registry.url}/r/{name}")
    assert page.locator("p.description").inner_text() == XSS
    assert page.locator("ol.comments .body").inner_text() == XSS


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_main_pages_fit_the_screen_and_are_photographed(browser, secured_registry, width):
    SCREENSHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTHS[width], "height": 900})
    page = context.new_page()
    try:
        for label, path in (("home", "/"), ("search", "/search?q=library"), ("repository", "/r/library/hello"),
                            ("tag", "/r/library/hello/tags/latest"), ("history", "/r/library/hello/history"),
                            ("user", "/u/alice")):
            response = page.goto(secured_registry.url + path)
            assert response.status == 200, path
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {WIDTHS[width]}px screen"
            page.screenshot(path=str(SCREENSHOTS / f"{label}-{WIDTHS[width]}.png"), full_page=True)
    finally:
        context.close()


# --- the second slice: comments, bookmarks, settings, tokens, the image graph ----------------------

MARKDOWN_XSS = ('**bold** <script>alert("md")</script> [link](javascript:alert(2)) '
                '<img src=x onerror="alert(3)"> <svg onload="alert(4)"></svg>')


def inert(page) -> None:
    """Nothing of what users wrote became an element that runs or loads something."""
    assert page.locator("main script, main img, main iframe, main object, main embed, main [onerror], "
                        "main [onload], main [onclick], main a[href^='javascript' i], main a[href^='data' i]"
                        ).count() == 0


def test_a_user_comments_edits_and_deletes_the_comment_and_bookmarks(page, secured_registry):
    name = make_repository(secured_registry, "a repository to talk about")
    log_in(page, secured_registry, next_path=f"/r/{name}")
    page.get_by_label("Add a comment (Markdown)").fill(MARKDOWN_XSS)
    page.get_by_role("button", name="Comment", exact=True).click()
    comment = page.locator("ol.comments > li")
    assert comment.count() == 1
    assert comment.locator(".body strong").inner_text() == "bold"
    inert(page)
    comment.get_by_text("Edit", exact=True).click()
    comment.get_by_label("Your comment (Markdown)").fill("*changed* text")
    comment.get_by_role("button", name="Save").click()
    assert page.locator("ol.comments .body em").inner_text() == "changed"
    assert page.locator("ol.comments .edited").is_visible()
    page.locator("ol.comments").get_by_role("button", name="Delete").click()
    assert page.locator("ol.comments > li").count() == 0 and page.get_by_text("No comments yet.").is_visible()

    page.get_by_role("button", name="Bookmark", exact=True).click()
    assert page.get_by_role("button", name="Remove bookmark").is_visible()
    page.goto(f"{secured_registry.url}/u/alice")
    assert page.locator("#bookmarks").get_by_role("link", name=name).is_visible()


def test_an_admin_makes_a_repository_private_and_it_disappears_for_the_anonymous(browser, page, secured_registry):
    name = make_repository(secured_registry, "soon private")
    log_in(page, secured_registry, next_path=f"/r/{name}")
    page.get_by_role("link", name="Settings", exact=True).last.click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Settings of {name}"
    page.get_by_label("README (Markdown)").fill("# Read me\n\n" + MARKDOWN_XSS)
    page.get_by_label("Private: only its collaborators and its namespace's members").check()
    page.get_by_role("button", name="Save").click()
    page.goto(f"{secured_registry.url}/r/{name}")
    assert page.locator(".readme h1").inner_text() == "Read me" and page.locator(".badge.private").is_visible()
    inert(page)

    anonymous = browser.new_context()
    try:
        response = anonymous.new_page().goto(f"{secured_registry.url}/r/{name}")
        assert response.status == 404
    finally:
        anonymous.close()


def test_a_user_creates_a_token_sees_it_once_and_revokes_it(page, secured_registry):
    user = (f"u{uuid.uuid4().hex[:10]}", "a-long-password")
    r = requests.post(f"{secured_registry.url}/api/v1/users", auth=("admin", "admin-demo"),
                      json={"name": user[0], "password": user[1]})
    assert r.status_code == 201, r.text
    log_in(page, secured_registry, user, next_path="/settings/tokens")
    page.get_by_label("Description").fill("laptop")
    page.get_by_label("It may").select_option("push")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text()
    assert requests.get(f"{secured_registry.url}/v2/library/hello/tags/list", auth=(user[0], secret)).status_code == 200
    page.goto(f"{secured_registry.url}/settings/tokens")
    assert page.locator("#new-secret").count() == 0 and page.get_by_role("cell", name="pull, push").is_visible()
    page.get_by_role("button", name="Revoke laptop").click()
    assert page.get_by_text("No access tokens.").is_visible()
    assert requests.get(f"{secured_registry.url}/v2/library/hello/tags/list", auth=(user[0], secret)).status_code == 401


def test_a_tag_page_draws_the_image_graph_and_its_labels_stay_text(page, secured_registry):
    from tests.test_community_graph import repository_with_an_index

    repo = repository_with_an_index(secured_registry)
    page.goto(f"{secured_registry.url}/r/{repo['name']}/tags/multi")
    graph = page.locator("svg.image-graph")
    assert graph.is_visible()
    assert graph.locator("g.node.layer").count() == 5 and graph.locator("g.node.manifest").count() == 2
    assert graph.locator("g.node.referrer").count() == 1 and graph.locator("g.node.index").count() == 1
    assert page.locator("dl.labels dd").first.inner_text() == "<img src=x onerror=alert(1)>"
    inert(page)


@pytest.mark.parametrize("path", ['/r/alice/<script>alert(1)</script>', '/r/library/hello/tags/"><img src=x onerror=alert(1)>',
                                  "/u/<svg onload=alert(1)>", '/search?q=<script>alert(1)</script>',
                                  '/r/library/hello/history?before="><script>alert(1)</script>'])
def test_markup_in_names_and_parameters_never_runs(page, secured_registry, path):
    page.goto(secured_registry.url + path)
    inert(page)


# --- the third slice: plugins' panels, sign-up, collaborators, the copy button ----------------------

@pytest.fixture(scope="module")
def panels_and_signup(tmp_path_factory):
    """The default configuration with sign-up open (the sponsor plugin) and tests/plugins/everything.py,
    whose panels carry markup that must not run."""
    root = tmp_path_factory.mktemp("ui-third")
    (root / "registry.yaml").write_text(yaml.safe_dump({"plugins": ["sponsor"]}))
    server = RunningRegistry(root / "store", "--config", str(root / "registry.yaml"),
                             "--plugins-dir", str(Path(__file__).parent / "plugins"))
    yield server
    server.stop()


def test_a_plugins_panels_show_on_the_home_and_repository_pages_and_their_markup_stays_inert(page, panels_and_signup):
    for path, first_line in (("/", "home for anonymous"), ("/r/library/hello", "repository library/hello for anonymous")):
        page.goto(panels_and_signup.url + path)
        panels = page.locator("aside.panels section.panel")
        assert panels.count() == 2, path
        assert panels.nth(0).get_by_role("heading").inner_text() == "Everything <i>panel</i>"
        assert panels.nth(0).locator("p").first.inner_text() == first_line
        assert panels.nth(0).get_by_role("link", name="the report").get_attribute("href") == "https://example.com/scan"
        assert panels.nth(1).locator("p").inner_text() == "<b>plain text</b>"
        inert(page)


def test_a_visitor_signs_up_where_it_is_open_and_is_logged_in(page, panels_and_signup):
    name = f"s{uuid.uuid4().hex[:10]}"
    page.goto(f"{panels_and_signup.url}/login")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill("a-long-password")
    page.get_by_label("The password again").fill("a-long-password")
    page.get_by_role("button", name="Sign up").click()
    assert page.url == f"{panels_and_signup.url}/u/{name}"
    assert page.locator("header .who").inner_text() == name
    assert requests.get(f"{panels_and_signup.url}/api/v1/users/{name}", auth=(name, "a-long-password")).status_code == 200


def test_the_sign_up_link_and_page_are_absent_where_sign_up_is_closed(page, secured_registry):
    page.goto(f"{secured_registry.url}/login")
    assert page.get_by_role("link", name="Sign up").count() == 0
    assert page.goto(f"{secured_registry.url}/signup").status == 404


def test_an_admin_adds_a_collaborator_who_then_sees_the_private_repository_and_removes_them(browser, page,
                                                                                            secured_registry):
    name = make_repository(secured_registry, "shared with one", visibility="private")
    user = (f"u{uuid.uuid4().hex[:10]}", "a-long-password")
    r = requests.post(f"{secured_registry.url}/api/v1/users", auth=("admin", "admin-demo"),
                      json={"name": user[0], "password": user[1]})
    assert r.status_code == 201, r.text
    assert requests.get(f"{secured_registry.url}/v2/{name}/tags/list", auth=user).status_code in (401, 403)
    log_in(page, secured_registry, next_path=f"/r/{name}/settings")
    page.get_by_label("Add a collaborator (username)").fill(user[0])
    page.get_by_label("Role", exact=True).select_option("read")
    page.get_by_role("button", name="Add", exact=True).click()
    row = page.locator("table.collaborators tbody tr")
    assert row.count() == 1 and row.get_by_role("link", name=user[0]).is_visible()
    assert requests.get(f"{secured_registry.url}/v2/{name}/tags/list", auth=user).status_code == 200

    row.get_by_label(f"Role of {user[0]}").select_option("write")
    row.get_by_role("button", name="Change").click()
    collaborators = requests.get(f"{secured_registry.url}/api/v1/repositories/{name}/collaborators", auth=ALICE)
    assert collaborators.json()["collaborators"][0]["role"] == "write"

    page.get_by_role("button", name=f"Remove {user[0]}").click()
    assert page.locator("table.collaborators").count() == 0
    assert requests.get(f"{secured_registry.url}/api/v1/repositories/{name}/collaborators",
                        auth=ALICE).json()["collaborators"] == []


def test_the_copy_button_puts_the_pull_command_on_the_clipboard(browser, secured_registry):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        page.goto(f"{secured_registry.url}/r/library/hello")
        command = page.locator("#pull-command").input_value()
        assert command.startswith(f"docker pull 127.0.0.1:{secured_registry.port}/library/hello")
        page.get_by_role("button", name="Copy the pull command").click()
        from playwright.sync_api import expect
        expect(page.get_by_role("status")).to_have_text("Copied")  # the clipboard answers asynchronously
        assert page.evaluate("navigator.clipboard.readText()") == command
    finally:
        context.close()
