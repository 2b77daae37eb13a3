"""`registry user | org | repo | token` on a store made by `registry init`: each change is one
commit authored by the acting OS user (or --as), and no password or token secret reaches git."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.context import Context, now_iso
from registry_core.index.accounts import Accounts
from registry_core.index.passwords import password_matches
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore
from tests.support.oci import meta_commits, meta_tip

PASSWORD = "cli-password-1"


pytestmark = pytest.mark.usefixtures("cli_isolation")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def store(runner, tmp_path):
    path = tmp_path / "store"
    result = runner.invoke(main, ["init", str(path)])
    assert result.exit_code == 0, result.output
    return path


def meta(store) -> MetaStore:
    return MetaStore(str(store / "meta.git"), create=False)


def run(runner, store, *args, input=None, expect=0):
    """Run `registry ARGS --store STORE`, check that it makes exactly one commit when it succeeds
    (none when it fails); return the result and that commit."""
    tip = meta_tip(store)
    result = runner.invoke(main, [*args, "--store", str(store)], input=input)
    assert result.exit_code == expect, result.output
    commits = meta_commits(store, since=tip)
    assert len(commits) == (1 if expect == 0 else 0), [c.message for c in commits]
    return result, (commits[0] if commits else None)


def add_user(runner, store, name, password=PASSWORD, *extra):
    return run(runner, store, "user", "add", name, "--password-stdin", *extra, input=password + "\n")


def add_repository(store, name):
    def change(txn):
        txn.put(meta_paths.repository(name), {"kind": "repository", "schemaVersion": 1, "name": name,
                                               "visibility": "private", "owner": "admin", "createdAt": now_iso()})
    meta(store).transact(change, Context(actor="admin"), f"Add {name}")


# --- user ---------------------------------------------------------------------------------------

def test_user_add_reads_the_password_from_stdin_and_commits_as_the_os_user(runner, store):
    result, commit = add_user(runner, store, "carol", PASSWORD, "--email", "carol@example.test")
    assert "Added user carol" in result.output and PASSWORD not in result.output
    assert commit.author.name == "operator" and "Actor: operator" in commit.message
    document = Accounts(meta(store)).user("carol")
    assert document["email"] == "carol@example.test" and document["admin"] is False
    assert password_matches(document["passwordHash"], PASSWORD)
    assert Accounts(meta(store)).authenticate("carol", PASSWORD).name == "carol"


def test_user_add_as_another_author_and_as_an_admin(runner, store):
    _, commit = run(runner, store, "user", "add", "dave", "--admin", "--as", "ops-team", "--password-stdin",
                    input=PASSWORD)
    assert commit.author.name == "ops-team"
    assert Accounts(meta(store)).user("dave")["admin"] is True


def test_user_add_prompts_for_the_password_twice(runner, store):
    result, _ = run(runner, store, "user", "add", "erin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert PASSWORD not in result.output
    assert Accounts(meta(store)).authenticate("erin", PASSWORD) is not None
    mismatch = runner.invoke(main, ["user", "add", "frank", "--store", str(store)],
                             input=f"{PASSWORD}\nsomething-else\n" * 3)
    assert mismatch.exit_code != 0 and Accounts(meta(store)).user("frank") is None


def test_user_add_can_generate_a_password_shown_once(runner, store):
    result, _ = run(runner, store, "user", "add", "gina", "--generate-password")
    [password] = re.findall(r"^Password: (\S+)", result.output, re.M)
    assert result.output.count(password) == 1
    assert Accounts(meta(store)).authenticate("gina", password) is not None


@pytest.mark.parametrize("args,input,message", [
    (["user", "add", "admin", "--password-stdin"], PASSWORD, "taken"),
    (["user", "add", "Bad Name", "--password-stdin"], PASSWORD, "invalid account name"),
    (["user", "add", "hank", "--password-stdin"], "short", "at least 8 characters"),
    (["user", "passwd", "nobody", "--password-stdin"], PASSWORD, "no user nobody"),
    (["user", "disable", "nobody"], None, "no user nobody"),
])
def test_user_commands_refuse_with_a_clear_message(runner, store, args, input, message):
    result, _ = run(runner, store, *args, input=input, expect=1)
    assert message in result.output


def test_user_passwd_disable_enable_and_list(runner, store):
    add_user(runner, store, "ivan")
    new = "cli-password-2"
    _, commit = run(runner, store, "user", "passwd", "ivan", "--password-stdin", input=new + "\n")
    assert "Change the password of ivan" in commit.message
    accounts = Accounts(meta(store))
    assert accounts.authenticate("ivan", PASSWORD) is None and accounts.authenticate("ivan", new) is not None
    _, commit = run(runner, store, "user", "disable", "ivan")
    assert "Disable ivan" in commit.message
    assert Accounts(meta(store)).authenticate("ivan", new) is None
    listing = runner.invoke(main, ["user", "list", "--store", str(store)])
    assert re.search(r"^ivan\s.*disabled", listing.output, re.M), listing.output
    assert re.search(r"^admin\s.*admin", listing.output, re.M)
    run(runner, store, "user", "enable", "ivan")
    assert Accounts(meta(store)).authenticate("ivan", new) is not None
    users = json.loads(runner.invoke(main, ["user", "list", "--json", "--store", str(store)]).output)
    assert [u["name"] for u in users] == ["admin", "ivan"]
    assert users[1]["disabled"] is False and "passwordHash" not in users[1]


# --- org ----------------------------------------------------------------------------------------

def test_org_add_and_its_members(runner, store):
    add_user(runner, store, "jane")
    add_user(runner, store, "kim")
    _, commit = run(runner, store, "org", "add", "acme", "--owner", "jane", "--description", "A team")
    assert commit.author.name == "operator"
    assert Accounts(meta(store)).org("acme")["members"] == {"jane": "owner"}
    run(runner, store, "org", "member", "add", "acme", "kim", "--role", "maintainer")
    assert Accounts(meta(store)).org("acme")["members"] == {"jane": "owner", "kim": "maintainer"}
    result, _ = run(runner, store, "org", "member", "remove", "acme", "jane", expect=1)
    assert "at least one owner" in result.output
    run(runner, store, "org", "member", "remove", "acme", "kim")
    assert Accounts(meta(store)).org("acme")["members"] == {"jane": "owner"}
    result, _ = run(runner, store, "org", "add", "jane", "--owner", "jane", expect=1)
    assert "taken" in result.output
    result, _ = run(runner, store, "org", "member", "add", "acme", "kim", "--role", "boss", expect=2)


# --- repo ---------------------------------------------------------------------------------------

def test_repo_visibility_and_collaborators(runner, store):
    add_user(runner, store, "lee")
    add_repository(store, "library/hello")
    _, commit = run(runner, store, "repo", "visibility", "hello", "public")
    assert "Make library/hello public" in commit.message
    assert meta(store).snapshot().get(meta_paths.repository("library/hello"))["visibility"] == "public"
    run(runner, store, "repo", "collaborator", "add", "library/hello", "lee", "--role", "write")
    assert meta(store).snapshot().get(meta_paths.collaborator("library/hello", "lee"))["role"] == "write"
    run(runner, store, "repo", "collaborator", "remove", "library/hello", "lee")
    assert meta(store).snapshot().get(meta_paths.collaborator("library/hello", "lee")) is None
    result, _ = run(runner, store, "repo", "visibility", "library/missing", "public", expect=1)
    assert "not known" in result.output
    result, _ = run(runner, store, "repo", "collaborator", "add", "library/hello", "nobody", expect=1)
    assert "no user nobody" in result.output
    run(runner, store, "repo", "visibility", "Not/Valid", "public", expect=2)


# --- token --------------------------------------------------------------------------------------

def test_token_create_list_and_revoke(runner, store):
    add_user(runner, store, "mia")
    result, commit = run(runner, store, "token", "create", "mia", "--push", "--repository", "mia/app",
                         "--expires-in-days", "7", "--description", "ci", "--json")
    created = json.loads(result.output)
    secret = created["secret"]
    assert created["actions"] == ["pull", "push"] and created["repositories"] == ["mia/app"]
    assert created["expiresAt"] and "secretHash" not in created
    assert secret not in commit.message
    actor = Accounts(meta(store)).authenticate("mia", secret)
    assert actor.name == "mia" and actor.scopes == {"actions": ["pull", "push"], "repositories": ["mia/app"]}
    listing = runner.invoke(main, ["token", "list", "mia", "--json", "--store", str(store)])
    [token] = json.loads(listing.output)
    assert token["id"] == created["id"] and "secret" not in token and "secretHash" not in token
    text = runner.invoke(main, ["token", "list", "mia", "--store", str(store)]).output
    assert created["id"] in text and "pull,push" in text and secret not in text
    _, commit = run(runner, store, "token", "revoke", "mia", created["id"])
    assert f"Revoke token {created['id']} of mia" in commit.message
    assert Accounts(meta(store)).authenticate("mia", secret) is None
    result, _ = run(runner, store, "token", "revoke", "mia", created["id"], expect=1)
    assert "has no token" in result.output
    run(runner, store, "token", "revoke", "mia", "../../x", expect=2)


def test_token_create_prints_the_secret_once_and_defaults_to_pull(runner, store):
    add_user(runner, store, "ned")
    result, _ = run(runner, store, "token", "create", "ned")
    [secret] = re.findall(r"^Secret: (\S+)", result.output, re.M)
    assert result.output.count(secret) == 1
    assert Accounts(meta(store)).authenticate("ned", secret).scopes["actions"] == ["pull"]
    result, _ = run(runner, store, "token", "create", "nobody", expect=1)
    assert "no user nobody" in result.output
    run(runner, store, "token", "create", "ned", "--expires-in-days", "0", expect=1)


# --- the store ----------------------------------------------------------------------------------

def test_a_missing_store_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(main, ["user", "list", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "registry init" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_the_store_comes_from_the_config_or_the_default_directory(runner, tmp_path, store):
    config = tmp_path / "registry.yaml"
    config.write_text(f"store: {store}\n")
    result = runner.invoke(main, ["user", "list", "--config", str(config)])
    assert result.exit_code == 0 and result.output.startswith("admin"), result.output
    (tmp_path / "store").rename(tmp_path / "registry-data")
    result = runner.invoke(main, ["user", "list"])
    assert result.exit_code == 0 and result.output.startswith("admin"), result.output


def test_no_password_or_token_secret_reaches_the_history(runner, store):
    add_user(runner, store, "olga")
    run(runner, store, "user", "passwd", "olga", "--password-stdin", input="cli-password-3")
    result, _ = run(runner, store, "token", "create", "olga", "--json")
    secret = json.loads(result.output)["secret"]
    result, _ = run(runner, store, "user", "add", "pia", "--generate-password")
    [generated] = re.findall(r"^Password: (\S+)", result.output, re.M)
    history = subprocess.run(["git", "--git-dir", str(store / "meta.git"), "log", "-p", "--all"],
                             capture_output=True, text=True, check=True).stdout
    assert "passwordHash: $argon2id$" in history and "secretHash: sha256:" in history
    for leaked in (PASSWORD, "cli-password-3", secret.rsplit("_", 1)[1], generated):
        assert leaked not in history


def test_every_account_command_has_help(runner):
    for path in (["user"], ["user", "add"], ["user", "passwd"], ["user", "disable"], ["user", "enable"],
                 ["user", "list"], ["org"], ["org", "add"], ["org", "member"], ["org", "member", "add"],
                 ["org", "member", "remove"], ["repo"], ["repo", "visibility"], ["repo", "collaborator"],
                 ["repo", "collaborator", "add"], ["repo", "collaborator", "remove"], ["token"],
                 ["token", "create"], ["token", "list"], ["token", "revoke"]):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path
