"""Who authors a metadata commit: only a validated account name reaches a commit's author and
committer, the client address and request id become trailers that cannot carry a line break, and
the commit encoder refuses anything `git fsck` would. Every store these tests write ends with
`git fsck --full --strict` clean."""

from __future__ import annotations

import subprocess

import pytest
import requests
from click.testing import CliRunner

from registry_core.cli import main
from registry_core.context import Actor, Context, InvalidIdentity
from registry_core.index.accounts import Accounts, check_account_name
from registry_core.errors import RegistryError
from registry_core.meta import packs
from registry_core.meta.store import MetaStore
from tests.support.oci import error_codes, meta_commits, meta_tip

FORGED = "eve <evil@x> 0 +0000"
ADMIN = ("admin", "admin-demo")
BOB = ("bob", "bob-demo")


def git_fsck(meta_git) -> None:
    result = subprocess.run(["git", "-C", str(meta_git), "fsck", "--full", "--strict"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stderr, result.stdout + result.stderr


def trailers(commit) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in commit.message.strip().split("\n\n")[-1].splitlines())


# --- the parts: context, actor, encoder ------------------------------------------------------------


@pytest.mark.parametrize("name", [FORGED, "eve\n", "eve\nAuthor: admin", "Eve", "", "a" * 65, "eve\r", "e\0ve",
                                  "eve ", "-eve", "ev/e"])
def test_a_context_or_actor_with_a_name_that_is_not_an_account_name_is_refused(name):
    with pytest.raises(InvalidIdentity):
        Context(actor=name)
    with pytest.raises(InvalidIdentity):
        Actor(name=name)
    with pytest.raises(InvalidIdentity):
        Actor.coerce({"name": name})


@pytest.mark.parametrize("field,value", [("client_addr", "127.0.0.1\nActor: admin"), ("request_id", "abc def"),
                                         ("request_id", "x\n"), ("request_id", ""), ("client_addr", "é")])
def test_a_trailer_value_that_could_leave_its_line_is_refused(field, value):
    with pytest.raises(InvalidIdentity):
        Context(actor="alice", **{field: value})


@pytest.mark.parametrize("author", [(FORGED, "x@registry"), ("eve\n", "eve@registry"), ("eve", "eve@x>\n"),
                                    ("<eve>", "eve@registry"), ("", "e@registry"), (" eve", "eve@registry"),
                                    ("eve", "")])
def test_the_commit_encoder_refuses_an_identity_git_fsck_would_reject(author):
    with pytest.raises(packs.InvalidCommit):
        packs.encode_commit(b"\0" * 20, [], author, ("registry", "registry@localhost"), "message\n")


def test_the_commit_encoder_refuses_a_nul_in_the_message():
    with pytest.raises(packs.InvalidCommit):
        packs.encode_commit(b"\0" * 20, [], ("alice", "alice@registry"), ("registry", "registry@localhost"),
                            "message\0\n")


def test_reserved_names_cannot_be_taken_by_an_account():
    for name in ("registry", "anonymous"):
        with pytest.raises(RegistryError):
            Accounts(None).add_user(None, name, "a-password-123")  # refused before the transaction is read
    assert check_account_name("carol") == "carol"


def test_a_token_description_with_line_breaks_stays_on_the_commit_subject_line(tmp_path):
    meta = MetaStore(str(tmp_path / "meta.git"))
    accounts = Accounts(meta)
    context = Context(actor="carol", client_addr="127.0.0.1", request_id="req-1")
    accounts.create_user(context, "carol", "carol-password-1")
    accounts.create_token(context, "carol", description="ci\n\nActor: admin\nRequest-Id: forged")
    commit = meta_commits(tmp_path)[0]
    subject, _, rest = commit.message.partition("\n")
    assert subject.startswith("Add access token ") and "ci Actor: admin Request-Id: forged" in subject
    assert trailers(commit) == {"Actor": "carol", "Client-Addr": "127.0.0.1", "Request-Id": "req-1"}
    assert (commit.author.name, commit.author.email) == ("carol", "carol@registry")
    git_fsck(tmp_path / "meta.git")


# --- the CLI's --as ----------------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path, cli_isolation):
    path = tmp_path / "store"
    result = CliRunner().invoke(main, ["init", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("acting", [FORGED, "eve\n", "Eve", "eve\nAuthor: admin"])
def test_registry_user_add_as_a_forged_identity_is_refused_and_commits_nothing(cli_store, acting):
    tip = meta_tip(cli_store)
    result = CliRunner().invoke(main, ["user", "add", "carol", "--password-stdin", "--as", acting,
                                       "--store", str(cli_store)], input="carol-password-1\n")
    assert result.exit_code == 2, result.output
    assert "--as" in result.output and "account name" in result.output
    assert meta_tip(cli_store) == tip
    git_fsck(cli_store / "meta.git")


def test_registry_user_add_as_an_account_name_authors_the_commit(cli_store):
    result = CliRunner().invoke(main, ["user", "add", "carol", "--password-stdin", "--as", "ops.team",
                                       "--store", str(cli_store)], input="carol-password-1\n")
    assert result.exit_code == 0, result.output
    commit = meta_commits(cli_store)[0]
    assert (commit.author.name, commit.author.email) == ("ops.team", "ops.team@registry")
    assert trailers(commit)["Actor"] == "ops.team"
    git_fsck(cli_store / "meta.git")


def test_a_login_name_that_is_not_an_account_name_must_be_replaced_with_as(cli_store, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "John Doe")
    tip = meta_tip(cli_store)
    result = CliRunner().invoke(main, ["user", "add", "carol", "--password-stdin", "--store", str(cli_store)],
                                input="carol-password-1\n")
    assert result.exit_code == 2 and "give --as NAME" in result.output, result.output
    assert meta_tip(cli_store) == tip


# --- through the server ------------------------------------------------------------------------


def still_serving(server) -> None:
    """The store is readable: an anonymous token, a listing and fsck all work."""
    r = requests.get(f"{server.url}/token", params={"service": "registry", "scope": "repository:library/hello:pull"})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    r = requests.get(f"{server.url}/v2/library/hello/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    git_fsck(server.store / "meta.git")


@pytest.mark.parametrize("name", ["eve\n", "eve\r\n", FORGED, "Eve"])
def test_an_account_name_ending_in_a_newline_is_refused_with_400_and_commits_nothing(secured_registry, name):
    tip = meta_tip(secured_registry.store)
    r = requests.post(f"{secured_registry.url}/api/v1/users", auth=ADMIN,
                      json={"name": name, "password": "eve-password-123"})
    assert r.status_code == 400, r.text
    assert error_codes(r) == ["NAME_INVALID"]
    assert meta_tip(secured_registry.store) == tip
    still_serving(secured_registry)


def test_a_robot_name_ending_in_a_newline_is_refused_with_400_and_commits_nothing(secured_registry):
    tip = meta_tip(secured_registry.store)
    r = requests.post(f"{secured_registry.url}/api/v1/robots", auth=BOB, json={"name": "bob-bot\n", "owner": "bob"})
    assert r.status_code == 400, r.text
    assert meta_tip(secured_registry.store) == tip
    still_serving(secured_registry)


def test_a_tag_ending_in_a_newline_is_refused_and_never_listed(client, name):
    digest, manifest, body = client.push_image(name, "latest")
    for reference in ("latest%0A", "latest%0D%0A", "v1%0A"):
        r = client.put(f"/v2/{name}/manifests/{reference}", data=body,
                       headers={"Content-Type": manifest["mediaType"]})
        assert r.status_code == 400, (reference, r.text)
        assert error_codes(r) == ["TAG_INVALID"]
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["latest"]
    for path in (f"/v2/{name}/manifests/latest%0A", f"/v2/{name}/blobs/{digest}%0A",
                 f"/v2/{name}%0A/manifests/latest"):
        assert client.get(path).status_code in (400, 404), path


def test_a_request_id_that_could_leave_its_trailer_line_is_replaced(registry, client, name):
    client.push_image(name, "v1")
    digest, manifest, body = client.push_image(name)
    r = client.put(f"/v2/{name}/manifests/v2", data=body, headers={
        "Content-Type": manifest["mediaType"], "X-Request-Id": "abc Actor: admin"})
    assert r.status_code == 201, r.text
    forged = meta_commits(registry.store)[0]
    assert forged.message.startswith(f"Push {name}:v2")
    assert trailers(forged)["Request-Id"] != "abc Actor: admin"
    r = client.put(f"/v2/{name}/manifests/v3", data=body, headers={
        "Content-Type": manifest["mediaType"], "X-Request-Id": "ci-run-42.7"})
    assert r.status_code == 201, r.text
    assert trailers(meta_commits(registry.store)[0])["Request-Id"] == "ci-run-42.7"
    git_fsck(registry.store / "meta.git")
