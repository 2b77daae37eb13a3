"""Real clients through the token flow of the default configuration (auth on): skopeo with a
password and with personal access tokens, anonymous pulls of public repositories."""

from __future__ import annotations

import base64
import json
import time
import uuid

import hashlib
import os

import pytest
import requests
import www_authenticate

from registry_core.context import Context
from registry_core.index.accounts import Accounts
from registry_core.meta.store import MetaStore
from tests.support.engines import make_oci_layout
from tests.support.skopeo import Skopeo


@pytest.fixture
def skopeo(tmp_path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo-home")


@pytest.fixture
def accounts(secured_registry) -> Accounts:
    return Accounts(MetaStore(str(secured_registry.store / "meta.git"), create=False))


def test_skopeo_pushes_and_pulls_with_creds_through_the_token_flow(skopeo, secured_registry, tmp_path):
    index_digest = make_oci_layout(tmp_path / "source", "1")
    ref = f"docker://{secured_registry.host}/alice/app-{uuid.uuid4().hex[:6]}:1"
    skopeo.run("copy", "--all", "--dest-creds", "alice:alice-demo", f"oci:{tmp_path / 'source'}:1", ref)
    skopeo.run("copy", "--all", "--src-creds", "alice:alice-demo", ref, f"oci:{tmp_path / 'back'}:1")
    assert json.loads((tmp_path / "back" / "index.json").read_text())["manifests"][0]["digest"] == index_digest
    # the new repository is private by default: bob cannot see it, anonymous cannot either
    assert skopeo.run("inspect", "--raw", "--creds", "bob:bob-demo", ref, check=False).returncode != 0
    assert skopeo.run("inspect", "--raw", ref, check=False).returncode != 0


def test_skopeo_cannot_push_outside_its_namespaces(skopeo, secured_registry, tmp_path):
    make_oci_layout(tmp_path / "source", "1")
    refused = skopeo.run("copy", "--all", "--dest-creds", "bob:bob-demo", f"oci:{tmp_path / 'source'}:1",
                         f"docker://{secured_registry.host}/alice/not-bobs:1", check=False)
    assert refused.returncode != 0 and ("denied" in refused.stderr or "unauthorized" in refused.stderr)


def test_personal_access_tokens_work_as_skopeo_passwords_within_their_scope(skopeo, secured_registry,
                                                                           accounts, tmp_path):
    make_oci_layout(tmp_path / "source", "1")
    alice = Context(actor="alice")
    pull_only, _ = accounts.create_token(alice, "alice", description="ci pull", actions=["pull"])
    push_pull, _ = accounts.create_token(alice, "alice", description="ci push", actions=["pull", "push"])
    ref = f"docker://{secured_registry.host}/alice/ci-{uuid.uuid4().hex[:6]}:1"
    refused = skopeo.run("copy", "--all", "--dest-creds", f"alice:{pull_only}", f"oci:{tmp_path / 'source'}:1",
                         ref, check=False)
    assert refused.returncode != 0
    skopeo.run("copy", "--all", "--dest-creds", f"alice:{push_pull}", f"oci:{tmp_path / 'source'}:1", ref)
    assert skopeo.run("inspect", "--raw", "--creds", f"alice:{pull_only}", ref).returncode == 0


def test_anonymous_pull_of_a_public_repository_needs_no_credentials(skopeo, secured_registry, tmp_path):
    skopeo.run("copy", "--all", f"docker://{secured_registry.host}/library/hello:latest", f"oci:{tmp_path / 'hello'}:latest")
    assert len(json.loads((tmp_path / "hello" / "index.json").read_text())["manifests"]) == 1
    assert skopeo.run("inspect", "--raw", f"docker://{secured_registry.host}/alice/notes:v1", check=False).returncode != 0


def test_token_endpoint_grants_the_intersection_of_asked_and_allowed(secured_registry):
    def granted(auth, scope):
        answer = requests.get(secured_registry.url + "/token", params={"service": "registry", "scope": scope},
                              auth=auth)
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return {a["name"]: sorted(a["actions"]) for a in claims["access"]}
    assert granted(("bob", "bob-demo"), "repository:alice/notes:pull,push") == {"alice/notes": ["pull"]}
    assert granted(None, "repository:alice/notes:pull") == {"alice/notes": []}
    assert granted(None, "repository:hello:pull") == {"library/hello": ["pull"]}
    assert granted(("alice", "alice-demo"), "repository:alice/notes:pull,push,delete") == {
        "alice/notes": ["delete", "pull", "push"]}


def test_a_token_without_the_scope_gets_insufficient_scope(secured_registry):
    token = requests.get(secured_registry.url + "/token", params={
        "service": "registry", "scope": "repository:alice/notes:pull"}, auth=("bob", "bob-demo")).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(secured_registry.url + "/v2/alice/notes/manifests/v1", headers=headers).status_code == 200
    refused = requests.post(secured_registry.url + "/v2/alice/notes/blobs/uploads/", headers=headers)
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert 'scope="repository:alice/notes:pull,push"' in refused.headers["WWW-Authenticate"]


def token_for_challenge(challenge: str, auth) -> str:
    """A token for exactly the scopes a challenge names, asked the way python-dxf and Docker ask:
    the challenge parsed (by python-dxf's own parser), one `scope` parameter per scope in it."""
    bearer = www_authenticate.parse(challenge)["bearer"]
    answer = requests.get(bearer["realm"], auth=auth, params=[("service", bearer["service"])] + [
        ("scope", scope) for scope in bearer["scope"].split()])
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_a_mount_challenge_asks_for_pull_on_the_source_and_its_token_mounts_the_blob(secured_registry):
    url, alice = secured_registry.url, ("alice", "alice-demo")
    source, target = f"alice/mount-from-{uuid.uuid4().hex[:6]}", f"alice/mount-to-{uuid.uuid4().hex[:6]}"
    content = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    upload = f"{url}/v2/{source}/blobs/uploads/?digest={digest}"
    challenge = requests.post(upload).headers["WWW-Authenticate"]
    pushed = requests.post(upload, data=content, headers={
        "Authorization": f"Bearer {token_for_challenge(challenge, alice)}"})
    assert pushed.status_code == 201, pushed.text

    mount = f"{url}/v2/{target}/blobs/uploads/?mount={digest}&from={source}"
    refused = requests.post(mount)
    assert refused.status_code == 401
    scopes = www_authenticate.parse(refused.headers["WWW-Authenticate"])["bearer"]["scope"].split()
    assert scopes == [f"repository:{target}:pull,push", f"repository:{source}:pull"]

    mounted = requests.post(mount, headers={
        "Authorization": f"Bearer {token_for_challenge(refused.headers['WWW-Authenticate'], alice)}"})
    assert mounted.status_code == 201, mounted.text  # mounted: no upload session was opened
    assert mounted.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize("source", ["alice/Not Valid", "alice/notes\n", "alice/x\r\nSet-Cookie: a=b"])
def test_a_mount_challenge_names_only_a_valid_source(secured_registry, source):
    digest = "sha256:" + "a" * 64
    refused = requests.post(f"{secured_registry.url}/v2/alice/mount-to/blobs/uploads/",
                            params={"mount": digest, "from": source})
    assert refused.status_code == 401
    assert www_authenticate.parse(refused.headers["WWW-Authenticate"])["bearer"]["scope"] == \
        "repository:alice/mount-to:pull,push"


def test_an_expired_bearer_token_is_refused_with_invalid_token(secured_registry):
    from registry_core.index import keys
    from registry_core.index.tokens import TokenIssuer

    key = keys.load_or_create(str(secured_registry.store / "keys"))
    an_hour_ago = lambda: time.time() - 3600  # noqa: E731
    expired = TokenIssuer(key.private_key, key.certificate, "registry-core", "registry", lifetime=300,
                          clock=an_hour_ago).issue("alice", [{"type": "repository", "name": "alice/notes",
                                                              "actions": ["pull"]}])
    refused = requests.get(secured_registry.url + "/v2/alice/notes/tags/list",
                           headers={"Authorization": f"Bearer {expired.token}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert "expired" in refused.json()["errors"][0]["message"]


def test_no_secret_is_ever_committed(secured_registry):
    """The metadata history holds hashes only: no demo password, no key, no token secret."""
    import subprocess

    history = subprocess.run(["git", "--git-dir", str(secured_registry.store / "meta.git"), "log", "-p", "--all"],
                             capture_output=True, text=True, check=True).stdout
    assert "passwordHash: $argon2id$" in history
    for secret in ("admin-demo", "alice-demo", "bob-demo", "PRIVATE KEY", "rct_"):
        assert secret not in history, secret
