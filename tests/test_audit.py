"""`registry audit`: meta.git's history as a timeline of who did what, from where, with which request;
filtered by repository, date and author; one JSON object per line; read as a stream. `--verify`:
every commit not signed by a trusted node key, as git itself sees the signatures too."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pygit2
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry_core.cli import main
from registry_core.context import Context
from registry_core.maintenance import audit, history
from registry_core.meta import packs, signing
from registry_core.meta.store import MetaStore
from tests.support.oci import Client
from tests.support.server import RunningRegistry
from tests.support.store import commit_by_hand, open_registry, push_image

ALICE = ("alice", "alice-demo")
BOB = ("bob", "bob-demo")

pytestmark = pytest.mark.usefixtures("cli_isolation")


def run_audit(store, *args, expect: int = 0) -> str:
    result = CliRunner().invoke(main, ["audit", "--store", str(store), *args])
    assert result.exit_code == expect, result.output
    return result.output


def events(store, *args) -> list[dict]:
    return [json.loads(line) for line in run_audit(store, *args, "--json").splitlines()]


def client(server, credentials, request_id: str) -> Client:
    session = requests.Session()
    session.auth = credentials
    session.headers["X-Request-Id"] = request_id
    return Client(server.url, session)


class History:
    """What alice and bob did to one repository of a running registry, through its HTTP API."""

    def __init__(self, server):
        self.server = server
        self.store = server.store
        self.name = f"alice/audit-{uuid.uuid4().hex[:8]}"
        api = f"{server.url}/api/v1/repositories/{self.name}"
        self.first, _, _ = client(server, ALICE, "req-first-push").push_image(self.name, "v1")
        self.second, _, _ = client(server, ALICE, "req-move").push_image(self.name, "v1")
        assert requests.put(f"{api}/collaborators/bob", auth=ALICE, json={"role": "write"}).status_code in (200, 201)
        self.bobs, _, _ = client(server, BOB, "req-bob-push").push_image(self.name, "v2")
        # what follows is in a later second than the pushes: --since can tell them apart
        self.later = history.iso(int(time.time()) + 1)
        time.sleep(max(0.0, int(time.time()) + 1.05 - time.time()))
        assert requests.patch(api, auth=ALICE, json={"visibility": "public"}).status_code == 200
        deleted = client(server, ALICE, "req-delete").delete(f"/v2/{self.name}/manifests/v1")
        assert deleted.status_code == 202, deleted.text
        assert requests.put(f"{api}/star", auth=BOB).status_code == 200
        assert requests.post(f"{api}/comments", auth=ALICE, json={"body": "audited"}).status_code == 201
        token = requests.post(f"{server.url}/api/v1/users/alice/tokens", auth=ALICE,
                              json={"actions": ["pull"], "description": "audit test"})
        assert token.status_code == 201, token.text
        self.token_id = token.json()["id"]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> History:
    with RunningRegistry(tmp_path_factory.mktemp("audit") / "store") as server:
        yield History(server)


def test_a_repositorys_audit_shows_its_pushes_tag_moves_and_deletes_with_their_authors_newest_first(done):
    lines = run_audit(done.store, done.name).splitlines()

    shown = [line.split()[2:5] for line in lines]
    actions = [s[1] for s in shown]
    assert actions == ["comment", "star", "tag-delete", "visibility", "push", "collaborator-add", "tag-move",
                       "push", "repository-create"]
    assert [s[0] for s in shown] == ["alice", "bob", "alice", "alice", "bob", "alice", "alice", "alice", "alice"]
    move = lines[actions.index("tag-move")]
    assert f"{done.first[:19]}… → {done.second[:19]}…" in move
    assert "[from 127.0.0.1, request req-move]" in move
    assert "private → public" in lines[actions.index("visibility")]
    assert "request req-delete" in lines[actions.index("tag-delete")]


def test_json_lines_parse_and_carry_the_actor_client_address_request_id_and_digests(done):
    found = events(done.store, done.name)

    by_request = {event["requestId"]: event for event in found if event["action"] in ("push", "tag-move",
                                                                                      "tag-delete")}
    assert by_request["req-first-push"] == {**by_request["req-first-push"], "action": "push", "actor": "alice",
                                            "author": "alice", "clientAddr": "127.0.0.1", "tag": "v1",
                                            "digest": done.first, "repository": done.name}
    assert by_request["req-move"]["action"] == "tag-move"
    assert (by_request["req-move"]["previousDigest"], by_request["req-move"]["digest"]) == (done.first, done.second)
    assert by_request["req-bob-push"]["actor"] == "bob" and by_request["req-bob-push"]["digest"] == done.bobs
    assert by_request["req-delete"]["action"] == "tag-delete" and by_request["req-delete"]["digest"] == done.second
    collaborator = next(event for event in found if event["action"] == "collaborator-add")
    assert (collaborator["user"], collaborator["role"]) == ("bob", "write")
    for event in found:
        assert len(event["commit"]) == 40 and event["time"].endswith("Z") and event["message"]


def test_the_whole_audit_also_shows_accounts_tokens_and_other_repositories(done):
    found = events(done.store)

    token = [event for event in found if event["action"] == "token-create" and event.get("token") == done.token_id]
    assert len(token) == 1 and token[0]["actor"] == "alice" and token[0]["user"] == "alice"
    assert {("registry", "user-add", user) for user in ("admin", "alice", "bob")} <= \
        {(event["actor"], event["action"], event["target"]) for event in found}
    assert {event.get("repository") for event in found} >= {done.name, "library/hello", "alice/notes"}
    assert found[-1]["action"] == "commit" and found[-1]["message"] == "Initialise registry metadata"


def test_author_keeps_only_what_that_user_did(done):
    found = events(done.store, done.name, "--author", "bob")

    assert [(event["actor"], event["action"]) for event in found] == [("bob", "star"), ("bob", "push")]
    assert events(done.store, "--author", "nobody-at-all") == []


def test_since_keeps_what_was_done_from_that_moment_on(done):
    found = events(done.store, done.name, "--since", done.later)

    assert [event["action"] for event in found] == ["comment", "star", "tag-delete", "visibility"]
    assert all(event["time"] >= done.later for event in found)
    today = done.later[:10]
    assert len(events(done.store, done.name, "--since", today)) == 9
    assert events(done.store, done.name, "--since", "2999-01-01T00:00:00+02:00") == []


@pytest.mark.parametrize("since", ["yesterday", "2025-01-01\n", "2025-02-30", "2025-01-01T25:00", "1735689600",
                                  "2025-01-01T10:00:00 UTC"])
def test_a_since_that_is_not_a_whole_date_is_refused_with_the_accepted_forms(done, since):
    output = run_audit(done.store, "--since", since, expect=2)

    assert "is not a date" in output and "YYYY-MM-DD" in output


def test_a_name_that_is_not_a_repository_name_is_refused(done):
    assert "invalid repository name" in run_audit(done.store, "Alice/Bad", expect=2)


# --- in-process: commits made around the registry, and what a walk reads ------------------------


def test_a_commit_made_around_the_registry_is_shown_with_its_git_author_and_no_client(tmp_path):
    local = open_registry(tmp_path / "store")
    push_image(local, "hand/made", "v1")
    commit_by_hand(tmp_path / "store", {"repositories/hand/made/notes.txt": b"written with git\n"})

    newest = events(tmp_path / "store")[0]

    assert (newest["action"], newest["actor"], newest["author"]) == ("change", "by-hand", "by-hand")
    assert newest["path"] == "repositories/hand/made/notes.txt" and newest["status"] == "add"
    assert newest["clientAddr"] is None and newest["requestId"] is None


def test_a_repositorys_audit_diffs_only_the_commits_that_changed_that_repository(tmp_path, monkeypatch):
    local = open_registry(tmp_path / "store")
    for tag in ("a", "b", "c"):
        push_image(local, "counted/one", tag)
    for number in range(20):
        push_image(local, "counted/other", f"v{number}")
    push_image(local, "counted/one/nested", "v1")  # a repository inside the folder of counted/one
    classified = []
    original = audit.classify
    monkeypatch.setattr(audit, "classify", lambda repo, info, changes: classified.append(changes) or
                        original(repo, info, changes))

    found = events(tmp_path / "store", "counted/one")

    assert [(event["action"], event.get("tag")) for event in found] == [
        ("push", "c"), ("push", "b"), ("push", "a"), ("repository-create", None)]
    # the three pushes, and the nested repository's push (its folder is inside counted/one's): never
    # the twenty commits of counted/other
    assert len(classified) == 4
    assert classified[0] == []


def test_the_timeline_is_a_stream_that_reads_the_history_only_as_far_as_it_is_consumed(tmp_path, monkeypatch):
    local = open_registry(tmp_path / "store")
    for number in range(30):
        push_image(local, "streamed/app", f"v{number}")
    parents_read = []
    original = history.first_parent
    monkeypatch.setattr(history, "first_parent", lambda repo, commit: parents_read.append(commit.id) or
                        original(repo, commit))

    entries = audit.timeline(MetaStore(str(tmp_path / "store" / "meta.git"), create=False), "streamed/app")
    first = next(entries)

    assert (first.action, first.details["tag"]) == ("push", "v29")
    assert len(parents_read) <= 1
    entries.close()


# --- signatures: --verify, and git itself ---------------------------------------------------------


def git(store, *args) -> str:
    return subprocess.run(["git", "--git-dir", str(store / "meta.git"), *args], check=True, capture_output=True,
                          text=True).stdout


def good_signatures(store) -> dict[str, bool]:
    """Commit id -> whether git itself, with meta.git's own config only, finds a good signature
    (`%G?` is G; N for none, B for a bad one, E when it cannot check)."""
    shown = git(store, "log", "--format=%H %G?", "main")
    return {commit: status == "G" for commit, status in (line.split() for line in shown.splitlines())}


def test_every_commit_is_signed_by_the_node_key_and_git_verifies_it_with_no_setup(done):
    output = run_audit(done.store, "--verify")

    commits = git(done.store, "rev-list", "main").split()
    assert f"{len(commits)} commit(s) checked: all signed by a trusted node key" in output
    assert good_signatures(done.store) == {commit: True for commit in commits}
    key = done.store / "keys" / "meta-signing-key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert git(done.store, "config", "gpg.format").strip() == "ssh"


def test_a_commit_made_around_the_registry_with_git_is_reported_by_verify_and_unsigned_for_git(tmp_path):
    store = tmp_path / "store"
    push_image(open_registry(store), "around/app", "v1")
    tree = git(store, "rev-parse", "main^{tree}").strip()
    env = {**os.environ, "GIT_AUTHOR_NAME": "mallory", "GIT_AUTHOR_EMAIL": "m@x", "GIT_COMMITTER_NAME": "mallory",
           "GIT_COMMITTER_EMAIL": "m@x"}
    sneaked = subprocess.run(["git", "--git-dir", str(store / "meta.git"), "commit-tree", tree, "-p", "main", "-m",
                              "Nothing to see"], check=True, capture_output=True, text=True, env=env).stdout.strip()
    git(store, "update-ref", "refs/heads/main", sneaked)

    result = CliRunner().invoke(main, ["audit", "--verify", "--store", str(store)])

    assert result.exit_code == 1
    reported = [line for line in result.output.splitlines() if "not signed" in line and "checked" not in line]
    assert len(reported) == 1 and sneaked in reported[0] and "mallory" in reported[0]
    assert "1 not signed by a trusted node key" in result.output
    signatures = good_signatures(store)
    assert signatures.pop(sneaked) is False and all(signatures.values())


def test_a_commit_signed_by_another_key_or_edited_after_signing_is_reported(tmp_path):
    store = tmp_path / "store"
    push_image(open_registry(store), "forged/app", "v1")
    repo = pygit2.Repository(str(store / "meta.git"))
    tip = repo[repo.references["refs/heads/main"].target]
    stranger = signing.CommitSigner(Ed25519PrivateKey.generate())
    foreign = packs.encode_commit(tip.tree_id.raw, [tip.id.raw], ("mallory", "m@x"), ("registry", "registry@localhost"),
                                  "Signed elsewhere\n", sign=stranger.sign)
    foreign_id = repo.odb.write(pygit2.GIT_OBJECT_COMMIT, foreign)
    signed = packs.encode_commit(tip.tree_id.raw, [foreign_id.raw], ("admin", "admin@registry"),
                                 ("registry", "registry@localhost"), "Add user x\n\nActor: admin\n",
                                 sign=signing.load_signer(str(store / "meta.git"), create=False).sign)
    edited_id = repo.odb.write(pygit2.GIT_OBJECT_COMMIT, signed.replace(b"Add user x", b"Add user y"))
    repo.references["refs/heads/main"].set_target(edited_id)

    found = [json.loads(line) for line in run_audit(store, "--verify", "--json", expect=1).splitlines()]

    assert [(event["commit"], event["reason"]) for event in found] == [
        (str(edited_id), "a signature that does not match the commit (edited after signing?)"),
        (str(foreign_id), "signed by a key that is not trusted")]


def test_commits_of_the_libgit2_writer_are_signed_too(tmp_path):
    meta = MetaStore(str(tmp_path / "store" / "meta.git"), writer="libgit2")
    meta.transact(lambda txn: txn.put("users/someone.yaml", {
        "kind": "user", "schemaVersion": 1, "name": "someone", "admin": False, "createdAt": "2025-01-01T00:00:00Z"}),
        Context(actor="operator"), "Add user someone")

    assert "2 commit(s) checked: all signed" in run_audit(tmp_path / "store", "--verify")
    assert all(good_signatures(tmp_path / "store").values())
