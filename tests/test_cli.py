"""The `registry` command (registry_core.cli) and registry.yaml loading (registry_core.config)."""

from __future__ import annotations

import re
import shlex
import subprocess
import time

import pygit2
import pytest
import requests
import yaml
from click.testing import CliRunner

from registry_core import config as config_module
from registry_core.cli import main
from registry_core.index.passwords import password_matches
from registry_core.meta.documents import DocumentInvalid
from registry_core.meta.store import BRANCH
from tests.support.server import REGISTRY, RunningRegistry


pytestmark = pytest.mark.usefixtures("cli_isolation")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def command_names() -> list[str]:
    """The built-in commands (plugin commands are tested with their plugins, in test_plugins.py)."""
    return sorted(main.commands)


# --- help -------------------------------------------------------------------------------------


def test_help(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert {"serve", "init"} <= set(command_names())
    for name in command_names():
        assert re.search(rf"^\s+{name}\s", result.output, re.M), result.output
    assert runner.invoke(main, ["-h"]).output == result.output


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help(runner, name):
    result = runner.invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {name}") or result.output.startswith(f"Usage: registry {name}")
    assert "--help" in result.output


def test_an_unknown_command_is_refused(runner):
    result = runner.invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


# --- init -------------------------------------------------------------------------------------


def admin_password(output: str, name: str = "admin") -> str:
    found = re.findall(rf"^Admin login: {name} / (\S+)", output, re.M)
    assert len(found) == 1, output
    return found[0]


def test_init_creates_an_empty_store_with_an_admin(runner, tmp_path):
    store = tmp_path / "store"
    result = runner.invoke(main, ["init", str(store)])
    assert result.exit_code == 0, result.output
    password = admin_password(result.output)
    assert len(password) >= 16
    assert result.output.count(password) == 1  # printed once

    repo = pygit2.Repository(str(store / "meta.git"))
    assert repo.is_bare
    tip = repo.get(repo.lookup_reference(BRANCH).target)
    assert [entry.name for entry in tip.tree] == ["users"]  # no repositories: an empty store
    assert [entry.name for entry in tip.tree["users"]] == ["admin.yaml"]
    data = tip.tree["users/admin.yaml"].data
    assert password.encode() not in data
    document = yaml.safe_load(data)
    assert document["kind"] == "user" and document["name"] == "admin" and document["admin"] is True
    assert document["passwordHash"].startswith("$argon2id$")
    assert password_matches(document["passwordHash"], password)
    assert not password_matches(document["passwordHash"], password + "x")


def test_serve_empty_says_how_to_create_the_first_admin_and_that_command_works(tmp_path):
    server = RunningRegistry(tmp_path / "store", "--empty")
    try:
        deadline = time.monotonic() + 30
        while "Registry serving on" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)  # the banner is printed once gunicorn listens
        hint = re.search(r"No admin account yet: create one with `registry (user add [^`]+)`", server.log())
        assert hint, server.log()
        made = subprocess.run([REGISTRY, *shlex.split(hint[1])], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        password = re.search(r"^Password: (\S+)", made.stdout, re.M)[1]
        answer = requests.get(f"{server.url}/api/v1/users/admin", auth=("admin", password), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["admin"] is True
    finally:
        server.stop()


def test_serve_says_nothing_of_a_first_admin_where_there_is_one(secured_registry):
    assert "Registry serving on" in secured_registry.log()
    assert "No admin account yet" not in secured_registry.log()  # the sample store's admin


def wait_for_banner(server: RunningRegistry) -> str:
    deadline = time.monotonic() + 30
    while "Registry serving on" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)  # the banner is printed once gunicorn listens
    return server.log()


DEMO_LOGINS = "Demo logins: admin / admin-demo, alice / alice-demo, bob / bob-demo"


def test_every_start_of_the_demo_store_prints_its_logins_and_a_first_command_that_works(tmp_path):
    store = tmp_path / "store"
    RunningRegistry(store).stop()  # the first start: seeds the store
    server = RunningRegistry(store, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})  # `registry` not on PATH
    try:
        banner = wait_for_banner(server)
        assert f"Registry serving on {server.url}  (store: {store})" in banner  # not new
        assert DEMO_LOGINS in banner
        first = re.search(r"^Try: (.+)$", banner, re.M)
        assert first, banner
        tried = subprocess.run(shlex.split(first[1]), capture_output=True, text=True, timeout=60)
        assert tried.returncode == 0, tried.stderr
        assert '"Name": "' + server.host + '/library/hello"' in tried.stdout
        assert re.search(r"^Then: .*`\. \S+/bin/activate` first puts the `registry` command on your PATH", banner, re.M)
    finally:
        server.stop()


def test_the_banner_leaves_out_a_demo_login_whose_password_was_changed(tmp_path):
    from registry_core.app import Registry
    from registry_core.cli import start_banner
    from registry_core.context import SYSTEM
    from registry_core.index.accounts import Accounts
    from registry_core.seed import seed

    config = config_module.Config(store=str(tmp_path / "store"))
    registry = Registry(config)
    seed(registry)
    assert DEMO_LOGINS in start_banner(config, created=False)
    Accounts(registry.meta).update_user(SYSTEM, "alice", "Change alice's password", password="not-the-demo-one")
    banner = start_banner(config, created=False)
    assert "Demo logins: admin / admin-demo, bob / bob-demo" in banner.splitlines()


def test_the_banner_of_a_store_without_the_demo_has_no_demo_lines(tmp_path):
    from registry_core.app import Registry
    from registry_core.cli import start_banner

    config = config_module.Config(store=str(tmp_path / "store"))
    Registry(config)
    banner = start_banner(config, created=True)
    assert banner.splitlines()[0].endswith(", new)")
    assert not re.search(r"^(Demo logins|Demo images|Try|Then):", banner, re.M), banner


def test_init_with_another_admin_name(runner, tmp_path):
    result = runner.invoke(main, ["init", str(tmp_path / "store"), "--admin", "root"])
    assert result.exit_code == 0, result.output
    password = admin_password(result.output, "root")
    repo = pygit2.Repository(str(tmp_path / "store" / "meta.git"))
    tree = repo.get(repo.lookup_reference(BRANCH).target).tree
    assert "users/admin.yaml" not in tree
    assert password_matches(yaml.safe_load(tree["users/root.yaml"].data)["passwordHash"], password)


def test_init_twice_is_refused_and_changes_nothing(runner, tmp_path):
    store = tmp_path / "store"
    first = runner.invoke(main, ["init", str(store)])
    assert first.exit_code == 0, first.output
    repo = pygit2.Repository(str(store / "meta.git"))
    before = repo.lookup_reference(BRANCH).target

    second = runner.invoke(main, ["init", str(store)])
    assert second.exit_code == 1
    assert "Error: " in second.output and str(store) in second.output
    assert "already holds a store" in second.output
    assert "Admin login" not in second.output
    assert pygit2.Repository(str(store / "meta.git")).lookup_reference(BRANCH).target == before


# --- configuration ----------------------------------------------------------------------------


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, key, problem", [
    ("http:\n  port: 5000\nsurprise: 1\n", "surprise", "was unexpected"),
    ("http:\n  port: 5000\n  colour: blue\n", "colour", "was unexpected"),
    ("http:\n  port: not-a-number\n", "http/port", "is not of type 'integer'"),
    ("http:\n  workers: 0\n", "http/workers", "less than the minimum"),
    ("repositories:\n  defaultVisibility: secret\n", "repositories/defaultVisibility", "is not one of"),
    ("plugins: webhooks\n", "plugins", "is not of type 'array'"),
])
def test_serve_refuses_an_invalid_config_naming_the_file_and_the_key(runner, tmp_path, text, key, problem):
    config = write(tmp_path / "bad.yaml", text)
    store = tmp_path / "store"
    result = runner.invoke(main, ["serve", "--config", config, "--store", str(store)])
    assert result.exit_code == 1, result.output
    assert "invalid configuration" in result.output
    assert config in result.output
    assert key in result.output and problem in result.output
    assert not store.exists()  # refused before anything started


def test_serve_refuses_a_config_that_is_not_yaml(runner, tmp_path):
    config = write(tmp_path / "bad.yaml", "http: [unclosed\n")
    result = runner.invoke(main, ["serve", "--config", config, "--store", str(tmp_path / "store")])
    assert result.exit_code == 1
    assert config in result.output and "not valid YAML" in result.output


def test_serve_refuses_a_config_with_an_unset_secret(runner, tmp_path):
    config = write(tmp_path / "registry.yaml", "http:\n  publicUrl: {$env: REGISTRY_TEST_UNSET_URL}\n")
    result = runner.invoke(main, ["serve", "--config", config, "--store", str(tmp_path / "store")])
    assert result.exit_code == 1
    assert config in result.output
    assert "http/publicUrl" in result.output and "REGISTRY_TEST_UNSET_URL is not set" in result.output


def test_config_defaults_without_a_file():
    config = config_module.load(None)
    assert (config.host, config.port, config.store) == ("127.0.0.1", 5000, config_module.DEFAULT_STORE)


def test_config_values_and_a_relative_store(tmp_path):
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc" / "registry.yaml", """
kind: config
schemaVersion: 1
store: ../data
http: {host: 0.0.0.0, port: 5050, workers: 3, threads: 4, publicUrl: "https://r.example.test"}
repositories: {defaultVisibility: public}
limits: {manifestBytes: 2048}
""")
    config = config_module.load(path)
    assert config.store == str(tmp_path / "etc" / ".." / "data")
    assert (config.host, config.port, config.workers, config.threads) == ("0.0.0.0", 5050, 3, 4)
    assert config.public_url == "https://r.example.test"
    assert config.default_visibility == "public"
    assert config.manifest_limit == 2048
    assert config.source == path


def test_env_and_file_secrets_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_TEST_URL", "https://registry.example.test")
    monkeypatch.setenv("REGISTRY_TEST_TOKEN", "s3cr3t")
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("from-a-file\n")
    path = write(tmp_path / "registry.yaml", f"""
http:
  publicUrl: {{$env: REGISTRY_TEST_URL}}
pluginConfig:
  webhooks:
    endpoints:
      - url: https://hooks.example.test
        token: {{$env: REGISTRY_TEST_TOKEN}}
        secret: {{$file: {secret_file}}}
""")
    config = config_module.load(path)
    assert config.public_url == "https://registry.example.test"
    endpoint = config.plugin_config["webhooks"]["endpoints"][0]
    assert endpoint == {"url": "https://hooks.example.test", "token": "s3cr3t", "secret": "from-a-file"}


def test_env_and_file_values_become_the_numbers_and_booleans_the_schema_asks_for(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_TEST_PORT", "5123")
    monkeypatch.setenv("REGISTRY_TEST_READ_ONLY", "true")
    monkeypatch.setenv("REGISTRY_TEST_ISSUER", "12345")  # a string field keeps digits as text
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "workers").write_text("3\n")
    path = write(tmp_path / "conf" / "registry.yaml", """
http:
  port: {$env: REGISTRY_TEST_PORT}
  workers: {$file: workers}
readOnly: {$env: REGISTRY_TEST_READ_ONLY}
auth:
  issuer: {$env: REGISTRY_TEST_ISSUER}
""")
    monkeypatch.chdir(tmp_path)  # a $file path is relative to the config file, not to here
    config = config_module.load(path)
    assert (config.port, config.workers, config.read_only) == (5123, 3, True)
    assert config.auth.issuer == "12345" and type(config.auth.issuer) is str

    monkeypatch.setenv("REGISTRY_TEST_PORT", "five thousand")
    with pytest.raises(DocumentInvalid, match=r"http/port: 'five thousand' is not of type 'integer'"):
        config_module.load(path)


def test_an_unset_env_secret_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("REGISTRY_TEST_UNSET", raising=False)
    path = write(tmp_path / "registry.yaml",
                 "pluginConfig:\n  webhooks:\n    endpoints:\n      - token: {$env: REGISTRY_TEST_UNSET}\n")
    with pytest.raises(DocumentInvalid) as caught:
        config_module.load(path)
    assert caught.value.path == path
    assert str(caught.value) == (f"{path}: pluginConfig/webhooks/endpoints/0/token: "
                                 "environment variable REGISTRY_TEST_UNSET is not set")


def test_an_unreadable_file_secret_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-secret"
    path = write(tmp_path / "registry.yaml", f"http:\n  publicUrl: {{$file: {missing}}}\n")
    with pytest.raises(DocumentInvalid) as caught:
        config_module.load(path)
    assert str(caught.value).startswith(f"{path}: http/publicUrl: cannot read {missing}")


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(DocumentInvalid, match=r"cannot read the config file"):
        config_module.load(str(tmp_path / "nothing.yaml"))
