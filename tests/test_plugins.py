"""The plugin contract: each hook, exercised through a real server that loads tests/plugins/."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pygit2
import pytest
import requests
import yaml
from click.testing import CliRunner

from registry_core import cli
from registry_core.app import Registry
from registry_core.config import Config
from registry_core.meta.documents import DocumentInvalid
from registry_core.plugins import Hooks, PluginError, make_plugin_manager
from registry_core.seed import REF_NAME, sample_store_dir
from tests.support.oci import Client, error_codes, unique_name
from tests.support.server import REGISTRY, RunningRegistry, free_port, open_config

PLUGINS_DIR = Path(__file__).parent / "plugins"


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def plugged(tmp_path_factory, registry):
    """A registry loading tests/plugins/everything.py, with the session registry as its upstream."""
    root = tmp_path_factory.mktemp("plugged")
    log = root / "events.jsonl"
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({
        "auth": {"enabled": False},
        "storage": {"driver": "everything-fs"},
        "pluginConfig": {"everything": {"log": str(log), "upstream": registry.url}}}))
    server = RunningRegistry(root / "store", "--empty", "--config", str(config), "--plugins-dir", str(PLUGINS_DIR))
    server.events_log = log
    yield server
    server.stop()


@pytest.fixture
def pclient(plugged) -> Client:
    return Client(plugged.url)


def test_hook_plugin_config_schema_rejects_a_section_that_does_not_match(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "pluginConfig": {"everything": {"log": 5}}}))
    result = subprocess.run([REGISTRY, "serve", "--store", str(tmp_path / "s"), "--config", str(config),
                             "--plugins-dir", str(PLUGINS_DIR), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert str(config) in result.stderr and "pluginConfig/everything/log" in result.stderr
    assert "is not of type 'string'" in result.stderr


def test_hook_plugin_config_formats_checks_strings_of_a_declared_format(tmp_path):
    pm = make_plugin_manager(plugins_dir=str(PLUGINS_DIR), auth=False)
    with pytest.raises(DocumentInvalid) as refused:
        Registry.check_config(Config(plugin_config={"everything": {"upstream": "ftp://mirror.example"}}), pm)
    assert str(refused.value).endswith("pluginConfig/everything/upstream: 'ftp://mirror.example' is not a "
                                       "'everything-url' (the upstream must be an http:// or https:// URL)")
    Registry.check_config(Config(plugin_config={"everything": {"upstream": "http://127.0.0.1:5000"}}), pm)
    with pytest.raises(DocumentInvalid, match="is not of type 'string'"):  # other types: the schema's `type`
        Registry.check_config(Config(plugin_config={"everything": {"upstream": 5}}), pm)


def test_plugin_config_for_a_plugin_that_is_not_loaded_is_refused(tmp_path):
    with pytest.raises(DocumentInvalid, match="pluginConfig/nobody"):
        Registry(Config(store=str(tmp_path), plugin_config={"nobody": {}}))


def test_hook_register_storage_drivers_provides_the_configured_driver(plugged):
    assert (plugged.store / "everything-driver").exists()


def test_hook_startup_runs_in_each_worker(plugged):
    assert any(e["hook"] == "startup" for e in events(plugged.events_log))


def test_hook_register_routes_adds_routes_that_see_the_actor(pclient):
    r = pclient.get("/_everything/ping", headers={"X-Everything-User": "carol"})
    assert r.status_code == 200
    assert r.json() == {"pong": True, "actor": "carol"}


def test_hook_register_commands_adds_cli_commands(monkeypatch):
    monkeypatch.setenv("REGISTRY_PLUGINS_DIR", str(PLUGINS_DIR))
    result = CliRunner().invoke(cli.main, ["everything-hello", "world"])
    assert result.exit_code == 0, result.output
    assert "hello world from a plugin" in result.output


def test_hook_filter_request_can_answer_with_a_spec_error_or_any_response(pclient):
    r = pclient.get("/v2/", headers={"X-Everything-Block": "error"})
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert pclient.get("/v2/", headers={"X-Everything-Block": "teapot"}).status_code == 418
    assert pclient.get("/v2/").status_code == 200


def test_hook_actor_from_request_names_the_commit_author(pclient, plugged):
    name = unique_name("carols")
    pclient.http.headers["X-Everything-User"] = "carol"
    pclient.push_image(name, "v1")
    repo = pygit2.Repository(str(plugged.store / "meta.git"))
    head = repo[repo.lookup_reference("refs/heads/main").target]
    assert head.author.name == "carol"
    assert f"Push {name}:v1" in head.message and "Actor: carol" in head.message


def test_hook_actor_from_request_can_refuse_credentials(pclient):
    r = pclient.get("/v2/", headers={"X-Everything-User": "wrong"})
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]


def test_hook_permission_allowed_any_false_denies(pclient):
    r = pclient.get("/v2/everything-denied/x/tags/list")
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    assert "WWW-Authenticate" in r.headers
    r = pclient.get("/v2/everything-denied/x/tags/list", headers={"X-Everything-User": "carol"})
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_hook_before_pull_adds_headers_to_a_manifest_answer_or_refuses_it(pclient):
    name = unique_name()
    digest, _, _ = pclient.push_image(name, "v1")
    assert pclient.get(f"/v2/{name}/manifests/v1").headers["X-Everything-Pulled"] == "GET v1"
    assert pclient.head(f"/v2/{name}/manifests/{digest}").headers["X-Everything-Pulled"] == f"HEAD {digest}"
    refused = unique_name("everything-unpulled")
    pclient.push_image(refused, "v1")
    r = pclient.get(f"/v2/{refused}/manifests/v1")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert r.json()["errors"][0]["message"] == f"{refused} may not be pulled (everything plugin, GET)"


def test_hook_validate_manifest_problems_reject_the_push_with_manifest_invalid(pclient):
    name = unique_name()
    with pytest.raises(AssertionError) as refused:
        pclient.push_image(name, "v1", annotations={"everything.reject": "yes"})
    assert "MANIFEST_INVALID" in str(refused.value) and "everything.reject" in str(refused.value)
    digest, _, _ = pclient.push_image(name, "v2", annotations={"fine": "yes"})
    assert pclient.head(f"/v2/{name}/manifests/v2").headers["Docker-Content-Digest"] == digest


def test_hook_resolve_upstream_fills_misses_from_the_upstream(pclient, client, plugged):
    upstream = client.get("/v2/library/busybox-lite/manifests/latest")
    r = pclient.get("/v2/everything-mirror/library/busybox-lite/manifests/latest")
    assert r.status_code == 200
    assert r.content == upstream.content
    assert r.headers["Docker-Content-Digest"] == upstream.headers["Docker-Content-Digest"]
    layer = upstream.json()["layers"][0]["digest"]
    blob = pclient.get(f"/v2/everything-mirror/library/busybox-lite/blobs/{layer}")
    assert blob.status_code == 200 and blob.content == client.get(f"/v2/library/busybox-lite/blobs/{layer}").content
    fills = [e for e in events(plugged.events_log) if e.get("action") == "mirror-fill"]
    assert {e.get("digest") for e in fills} >= {layer, upstream.headers["Docker-Content-Digest"]}
    assert pclient.get("/v2/everything-mirror/library/busybox-lite/manifests/nope").status_code == 404


def test_hook_before_event_vetoes_changes(pclient):
    r = pclient.post("/v2/everything-readonly/x/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "read-only" in r.json()["errors"][0]["message"]


def test_hook_track_event_sees_typed_events_after_success_only(pclient, plugged):
    name = unique_name()
    pclient.push_image(name, "v1")
    r = pclient.push_manifest(name, "v2", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                      "digest": "sha256:" + "0" * 64, "size": 3}, "layers": []})
    assert r.status_code == 404
    pushes = [e for e in events(plugged.events_log) if e.get("action") == "push" and e.get("repository") == name]
    manifest_pushes = [e for e in pushes if e.get("media_type")]
    assert [e["tag"] for e in manifest_pushes] == ["v1"]
    assert {"actor", "client_addr", "request_id", "digest", "size", "timestamp"} <= set(manifest_pushes[0])
    assert any(e.get("action") == "repository-created" and e["repository"] == name for e in events(plugged.events_log))


def test_hook_track_event_failure_never_fails_the_request(plugged, pclient):
    name = unique_name("everything-crash")
    digest, _, _ = pclient.push_image(name, "v1")
    assert digest.startswith("sha256:")
    assert pclient.get(f"/v2/{name}/manifests/v1").status_code == 200
    # the plugin heard of the push and raised, and the server logged it
    assert any(e["hook"] == "track_event" and e.get("repository") == name for e in events(plugged.events_log))
    assert "fails on purpose" in plugged.log() and "track_event of plugin" in plugged.log()


def test_hook_ui_panels_adds_panels(tmp_path):
    registry = Registry(Config(store=str(tmp_path)), make_plugin_manager(plugins_dir=str(PLUGINS_DIR), auth=False))
    panels = registry.ui_panels("repository", "library/hello", None)
    assert [panel["title"] for panel in panels] == ["Everything <i>panel</i>", "Everything text"]
    assert panels[0]["html"].startswith("<p>repository library/hello for anonymous</p>")


@pytest.fixture(scope="module")
def plugged_index(tmp_path_factory):
    """The default (secured) configuration, seeded, loading tests/plugins/everything.py: the web UI is served."""
    server = RunningRegistry(tmp_path_factory.mktemp("plugged-index") / "store", "--plugins-dir", str(PLUGINS_DIR))
    yield server
    server.stop()


def test_hook_ui_panels_shows_panels_on_the_home_and_repository_pages_with_their_markup_inert(plugged_index):
    home = requests.get(f"{plugged_index.url}/")
    repository = requests.get(f"{plugged_index.url}/r/library/hello")
    assert home.status_code == repository.status_code == 200
    assert "<p>home  for anonymous</p>" in home.text
    assert "<p>repository library/hello for anonymous</p>" in repository.text
    for page in (home, repository):
        assert "Everything &lt;i&gt;panel&lt;/i&gt;" in page.text  # the title is text
        assert "&lt;b&gt;plain text&lt;/b&gt;" in page.text  # so is a text panel
        assert '<a href="https://example.com/scan" rel="nofollow noopener noreferrer">the report</a>' in page.text
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/ui.js" defer>']  # the site's own
        assert "onerror" not in page.text and "javascript:" not in page.text
        assert "<img" not in page.text


def test_hook_ui_panels_is_told_who_is_visiting(plugged_index):
    browser = requests.Session()
    form = browser.get(f"{plugged_index.url}/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = browser.post(f"{plugged_index.url}/login", data={"csrf": csrf, "username": "alice", "password": "alice-demo"})
    assert r.status_code == 200
    assert "<p>home  for alice</p>" in browser.get(f"{plugged_index.url}/").text


def ui_session(server, user: tuple[str, str]) -> tuple[requests.Session, str]:
    """A browser-like session logged in to the web UI as `user`, and its CSRF token."""
    browser = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"{server.url}/login").text).group(1)
    r = browser.post(f"{server.url}/login", data={"csrf": csrf, "username": user[0], "password": user[1]},
                     allow_redirects=False)
    assert r.status_code == 303, r.text
    return browser, re.search(r'name="csrf" value="([^"]+)"', browser.get(f"{server.url}/").text).group(1)


def section_notes(server) -> list[dict]:
    return events(Path(server.store) / "everything-section.jsonl")


def test_hook_ui_settings_sections_shows_admins_a_section_and_hands_it_their_checked_forms(plugged_index):
    alice, bob = ("alice", "alice-demo"), ("bob", "bob-demo")
    name = f"alice/sections-{unique_name().rsplit('/', 1)[-1]}"
    session = requests.Session()
    session.auth = alice
    Client(plugged_index.url, session).push_image(name, "v1")
    assert requests.patch(f"{plugged_index.url}/api/v1/repositories/{name}", auth=alice,
                          json={"visibility": "public"}).status_code == 200
    settings = f"{plugged_index.url}/r/{name}/settings"
    browser, csrf = ui_session(plugged_index, alice)
    page = browser.get(settings).text
    assert '<h2 id="everything-heading">Everything &lt;i&gt;section&lt;/i&gt;</h2>' in page
    assert "for alice: &lt;script&gt;alert(&#34;section&#34;)&lt;/script&gt;" in page  # values are text
    assert "Everything shadowing" not in page and "Everything as a dict" not in page  # malformed: left out
    assert f'<form action="/r/{name}/settings/everything/note" method="post">' in page

    r = browser.post(f"{settings}/everything/note", data={"csrf": csrf, "text": "<b>noted</b>"})
    assert r.status_code == 200 and '<p id="everything-said">&lt;b&gt;noted&lt;/b&gt;</p>' in r.text
    r = browser.post(f"{settings}/everything/note", data={"csrf": csrf, "text": "refuse"})
    assert r.status_code == 400 and '<p class="problem">the everything section refuses &lt;this&gt;</p>' in r.text
    assert [note for note in section_notes(plugged_index) if note["repository"] == name] == [
        {"repository": name, "actor": "alice", "author": "alice", "text": text} for text in ("<b>noted</b>", "refuse")]

    before = section_notes(plugged_index)
    for form in ({}, {"csrf": csrf + "x"}):  # the core checks the token before the plugin hears of the form
        assert browser.post(f"{settings}/everything/note", data={**form, "text": "forged"}).status_code == 403
    reader, reader_csrf = ui_session(plugged_index, bob)  # may pull it, is not its admin
    shown = reader.get(settings)
    assert shown.status_code == 403 and "Everything" not in shown.text.replace("Everything &lt;i&gt;panel", "")
    r = reader.post(f"{settings}/everything/note", data={"csrf": reader_csrf, "text": "from bob"})
    assert r.status_code == 403
    r = browser.post(f"{settings}/everything/no-such-action", data={"csrf": csrf, "text": "x"})
    assert r.status_code == 404
    assert section_notes(plugged_index) == before


def test_hook_filter_request_refusing_a_ui_page_answers_a_browser_with_the_html_page_and_others_with_json(
        plugged_index):
    blocked = {"X-Everything-Block": "error"}
    page = requests.get(f"{plugged_index.url}/search?q=x", headers={**blocked, "Accept": "text/html"})
    assert page.status_code == 403 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "blocked by the everything plugin&#39;s request filter" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    form = requests.post(f"{plugged_index.url}/login", headers=blocked, data={"username": "alice"})
    assert form.status_code == 403 and form.headers["Content-Type"].startswith("text/html")
    for path, accept in (("/search?q=x", "application/json"), ("/api/v1/search?q=x", "text/html"),
                         ("/v2/", "text/html"), ("/no/such/page", "text/html")):
        r = requests.get(f"{plugged_index.url}{path}", headers={**blocked, "Accept": accept})
        assert r.status_code == 403 and error_codes(r) == ["DENIED"], path


def test_misspelled_hook_implementation_stops_start_up(tmp_path):
    (tmp_path / "typo.py").write_text("from registry_core.hookspecs import hookimpl\n\n"
                                      "@hookimpl\ndef track_evnt(event):\n    pass\n")
    with pytest.raises(PluginError, match="track_evnt"):
        make_plugin_manager(plugins_dir=str(tmp_path))


def test_unknown_plugin_name_stops_start_up():
    with pytest.raises(PluginError, match="unknown plugin 'no-such-plugin'"):
        make_plugin_manager(["no-such-plugin"])


def test_registry_plugins_lists_plugins_hooks_and_sources():
    result = CliRunner().invoke(cli.main, ["plugins", "--plugins-dir", str(PLUGINS_DIR), "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["default_plugins"]["source"] == "default"
    assert listed["everything"]["source"].startswith("plugins dir")
    assert "track_event" in listed["everything"]["hooks"]


def test_out_of_tree_plugin_package_works_through_its_entry_point(tmp_path):
    record = tmp_path / "pushes.jsonl"
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "plugins": ["source_policy"],
                                      "pluginConfig": {"source_policy": {"record": str(record)}}}))
    server = RunningRegistry(tmp_path / "store", "--empty", "--config", str(config))
    try:
        client, name = Client(server.url), unique_name()
        with pytest.raises(AssertionError) as refused:
            client.push_image(name, "v1")
        assert "MANIFEST_INVALID" in str(refused.value)
        assert "org.opencontainers.image.source" in str(refused.value)
        digest, _, _ = client.push_image(name, "v2", annotations={
            "org.opencontainers.image.source": "https://example.test/app"})
        assert [json.loads(line) for line in record.read_text().splitlines()] == [
            {"repository": name, "digest": digest, "tag": "v2", "actor": "anonymous"}]
        listed = CliRunner().invoke(cli.main, ["plugins", "--config", str(config)])
        assert "source_policy  (entry point registry-source-policy)" in listed.output
    finally:
        server.stop()


def documented_example_plugin() -> str:
    """The plugin docs/plugins.md has a reader save as my-plugins/source_policy.py."""
    docs = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    example = re.search(r"as `my-plugins/source_policy\.py`:\n\n```python\n(.*?)```", docs, re.S)
    assert example, "docs/plugins.md no longer has the source_policy example"
    return example[1]


def test_the_documented_example_plugin_lets_a_new_store_be_seeded_and_still_guards_pushes(tmp_path):
    plugins = tmp_path / "my-plugins"
    plugins.mkdir()
    (plugins / "source_policy.py").write_text(documented_example_plugin())
    server = RunningRegistry(tmp_path / "store", "--config", open_config(tmp_path), "--plugins-dir", str(plugins))
    try:
        client = Client(server.url)
        seed = yaml.safe_load((sample_store_dir() / "store.yaml").read_text())
        assert set(client.get("/v2/_catalog").json()["repositories"]) == {r["name"] for r in seed["repositories"]}
        for repository in seed["repositories"]:
            index = json.loads((sample_store_dir() / repository["layout"] / "index.json").read_text())
            tags = {m["annotations"][REF_NAME] for m in index["manifests"] if REF_NAME in m.get("annotations", {})}
            assert set(client.get(f"/v2/{repository['name']}/tags/list").json()["tags"]) == tags
        with pytest.raises(AssertionError) as refused:  # what clients push is still checked
            client.push_image(unique_name(), "v1")
        assert "MANIFEST_INVALID" in str(refused.value) and "org.opencontainers.image.source" in str(refused.value)
    finally:
        server.stop()


def test_read_only_mode_from_the_default_plugins_refuses_changes_and_serves_pulls(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "readOnly": True}))
    server = RunningRegistry(tmp_path / "store", "--empty", "--config", str(config))
    try:
        client = Client(server.url)
        r = client.post(f"/v2/{unique_name()}/blobs/uploads/")
        assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]
        assert "read-only" in r.json()["errors"][0]["message"]
        assert client.get("/v2/").status_code == 200
    finally:
        server.stop()


def test_a_hook_with_one_plain_implementation_is_called_directly_with_the_hooks_answers():
    import pluggy

    from registry_core import hookspecs
    from registry_core.hookspecs import hookimpl

    class Says:
        def __init__(self, answer):
            self.answer = answer

        @hookimpl
        def permission_allowed(self, actor, action):  # an implementation may take fewer arguments
            return self.answer(actor, action)

        @hookimpl
        def actor_from_request(self, request):
            return self.answer(request, None)

    class Wraps:
        @hookimpl(wrapper=True)
        def permission_allowed(self):
            return (yield)

    def manager(*plugins):
        pm = pluggy.PluginManager("registry_core")
        pm.add_hookspecs(hookspecs)
        for plugin in plugins:
            pm.register(plugin)
        return pm

    asked = {"actor": "alice", "action": "pull", "repository": "r", "registry": None}
    for answer in (lambda *a: True, lambda *a: None, lambda *a: list(a)):
        pm = manager(Says(answer))
        hooks = Hooks(pm)
        assert hooks.permission_allowed is not pm.hook.permission_allowed
        assert hooks.permission_allowed(**asked) == pm.hook.permission_allowed(**asked)
        assert hooks.actor_from_request(request="q", registry=None) == pm.hook.actor_from_request(request="q", registry=None)
        assert hooks.implemented("permission_allowed") and not hooks.implemented("track_event")
        assert hooks.track_event(event=None, registry=None) == [] and hooks.resolve_upstream(repository="r", registry=None) is None
    two = manager(Says(lambda *a: True), Says(lambda *a: False))
    assert Hooks(two).permission_allowed is two.hook.permission_allowed
    assert [call(**asked) for _, call in Hooks(two).each("permission_allowed")] == two.hook.permission_allowed(**asked)
    wrapped = manager(Says(lambda *a: True), Wraps())
    assert Hooks(wrapped).permission_allowed is wrapped.hook.permission_allowed
