"""`registry login / logout` and authenticated transfers: Basic auth (Distribution 2.8 with an
htpasswd file), Bearer tokens (Distribution 2.8 trusting a token service per the Docker token
spec), logins shared with skopeo and podman through their auth files, credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from registry_core.client.credentials import Credential, CredentialStore
from tests.support.client import (Skopeo, TokenService, cli, distribution, home,  # noqa: F401
                                       htpasswd_line, layout_blobs, unique, write_layout)

USER, PASSWORD = "alice", "wonderland-2024"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    base = tmp_path_factory.mktemp("basic-distribution")
    (base / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
    with distribution(base, f"  htpasswd:\n    realm: client-tests\n    path: {base / 'htpasswd'}\n") as host:
        yield host


@pytest.fixture(scope="module")
def token_service(tmp_path_factory):
    service = TokenService(tmp_path_factory.mktemp("token-service"), {USER: PASSWORD})
    yield service
    service.close()


@pytest.fixture(scope="module")
def bearer_registry(tmp_path_factory, token_service):
    with distribution(tmp_path_factory.mktemp("bearer-distribution"), token_service.registry_auth()) as host:
        yield host


@pytest.fixture
def layout(tmp_path):
    write_layout(tmp_path / "src", "1", layer_sizes=(30_000, 20_000, 10_000))
    return tmp_path / "src"


def docker_config(home) -> dict:
    return json.loads((home / ".docker" / "config.json").read_text())


def test_login_checks_basic_credentials_and_saves_them_where_docker_does(basic_registry, layout, tmp_path, home):
    result = cli("login", "--json", basic_registry, "-u", USER, "--password-stdin", input=PASSWORD + "\n").json()
    assert result["challenge"] == "basic"
    entry = docker_config(home)["auths"][basic_registry]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE(os.stat(home / ".docker" / "config.json").st_mode) == 0o600
    ref = f"{basic_registry}/{unique()}:1"
    cli("push", f"oci:{layout}:1", ref)
    cli("pull", ref, f"oci:{tmp_path / 'back'}")
    assert layout_blobs(tmp_path / "back") == layout_blobs(layout)

    assert cli("logout", "--json", basic_registry).json()["removed"] == [str(home / ".docker" / "config.json")]
    assert basic_registry not in docker_config(home)["auths"]
    denied = cli("pull", "--json", ref, f"oci:{tmp_path / 'again'}", expect=3).json()
    assert "registry login" in denied["error"]["message"]


def test_a_wrong_password_is_refused_and_nothing_is_saved(basic_registry, home):
    cli("login", basic_registry, "-u", USER, "--password-stdin", input="not-it\n", expect=3)
    assert not (home / ".docker" / "config.json").exists()


def test_skopeo_uses_our_login_and_we_use_skopeo_login(basic_registry, layout, tmp_path, home):
    cli("login", basic_registry, "-u", USER, "-p", PASSWORD)
    ref = f"{basic_registry}/{unique()}:1"
    cli("push", f"oci:{layout}:1", ref)
    ours = Skopeo(tmp_path / "skopeo-a", authfile=home / ".docker" / "config.json")
    ours.run("inspect", "--raw", f"docker://{ref}")

    theirs = Skopeo(tmp_path / "skopeo-b")
    theirs.run("login", "-u", USER, "-p", PASSWORD, basic_registry)
    cli("inspect", "--authfile", theirs.authfile, "--json", ref)
    cli("logout", basic_registry)
    cli("inspect", ref, expect=3)


def test_a_podman_style_login_in_xdg_runtime_dir_is_reused(basic_registry, layout, home):
    """podman and skopeo log in to $XDG_RUNTIME_DIR/containers/auth.json by default."""
    (home / "run").mkdir(mode=0o700)
    Skopeo(home / "skopeo", runtime_dir=home / "run").run("login", "-u", USER, "-p", PASSWORD, basic_registry)
    assert basic_registry in json.loads((home / "run" / "containers" / "auth.json").read_text())["auths"]
    cli("push", f"oci:{layout}:1", f"{basic_registry}/{unique()}:1")


def test_a_credential_helper_named_in_the_config_keeps_the_login(basic_registry, layout, tmp_path, home, monkeypatch):
    bin_dir, vault = tmp_path / "bin", tmp_path / "vault.json"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testvault"
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(vault)!r}
try:
    vault = json.load(open(path))
except FileNotFoundError:
    vault = {{}}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    entry = json.loads(data); vault[entry["ServerURL"]] = entry
elif action == "get":
    if data.strip() not in vault:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(vault[data.strip()]))
    sys.exit(0)
elif action == "erase":
    vault.pop(data.strip(), None)
json.dump(vault, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text(json.dumps({"credsStore": "testvault"}))
    result = cli("login", "--json", basic_registry, "-u", USER, "--password-stdin", input=PASSWORD).json()
    assert result["stored"] == "docker-credential-testvault"
    assert "auths" not in docker_config(home)
    assert json.loads(vault.read_text())[basic_registry]["Secret"] == PASSWORD
    cli("push", f"oci:{layout}:1", f"{basic_registry}/{unique()}:1")
    cli("logout", basic_registry)
    assert json.loads(vault.read_text()) == {}


def test_bearer_tokens_from_the_token_service_are_cached_per_scope(bearer_registry, token_service, layout, tmp_path, home):
    login = cli("login", "--json", bearer_registry, "-u", USER, "--password-stdin", input=PASSWORD).json()
    assert login["challenge"] == "bearer"
    token_service.requests.clear()
    name = unique()
    pushed = cli("push", "--json", "-j", "4", f"oci:{layout}:1", f"{bearer_registry}/{name}:1").json()
    assert pushed["blobs"] == {"total": 4, "uploaded": 4}
    assert len(token_service.requests) == 1, token_service.requests  # one push token for every request
    assert token_service.requests[0]["user"] == USER
    assert token_service.requests[0]["scopes"] == [f"repository:{name}:pull,push"]

    token_service.requests.clear()
    copied = cli("copy", "--json", f"{bearer_registry}/{name}:1", f"{bearer_registry}/{unique()}:1").json()
    assert copied["blobs"] == {"total": 4, "mounted": 4}
    assert any(f"repository:{name}:pull" in r["scopes"] for r in token_service.requests)


def test_anonymous_requests_fall_back_to_anonymous_tokens(bearer_registry, token_service, layout, tmp_path, home):
    name = unique()
    cli("login", bearer_registry, "-u", USER, "-p", PASSWORD)
    cli("push", f"oci:{layout}:1", f"{bearer_registry}/{name}:1")
    cli("logout", bearer_registry)
    token_service.requests.clear()
    cli("pull", f"{bearer_registry}/{name}:1", f"oci:{tmp_path / 'anonymous'}")
    assert layout_blobs(tmp_path / "anonymous") == layout_blobs(layout)
    assert {r["user"] for r in token_service.requests} == {None}
    denied = cli("push", "--json", f"oci:{layout}:1", f"{bearer_registry}/{name}:2", expect=3).json()
    assert denied["error"]["code"] in ("DENIED", "UNAUTHORIZED")


def test_bearer_login_with_a_wrong_password_is_refused(bearer_registry, home):
    cli("login", bearer_registry, "-u", USER, "--password-stdin", input="wrong", expect=3)
    assert not (home / ".docker" / "config.json").exists()


def test_the_auth_file_keeps_what_other_tools_wrote(home):
    path = home / ".docker" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "HttpHeaders": {"X-A": "b"},
                                "credHelpers": {"gcr.io": "gcloud"}}))
    store = CredentialStore()
    store.store("registry.example:5000", Credential("u", "p"))
    document = json.loads(path.read_text())
    assert document["HttpHeaders"] == {"X-A": "b"} and document["credHelpers"] == {"gcr.io": "gcloud"}
    assert set(document["auths"]) == {"other.example", "registry.example:5000"}
    assert store.get("registry.example:5000") == Credential("u", "p", str(path))
    store.store("docker.io", Credential("hub", "pw"))
    assert "https://index.docker.io/v1/" in json.loads(path.read_text())["auths"]
    assert store.get("docker.io").username == "hub"


def test_login_at_our_token_service_then_push_and_pull_with_bearer_tokens(secured_registry, layout, tmp_path, home):
    """Our own Index: `registry login` answers its Bearer challenge, and push/pull get tokens there."""
    host = secured_registry.host
    result = cli("login", "--json", host, "-u", "alice", "--password-stdin", input="alice-demo\n").json()
    assert result["challenge"] == "bearer"
    ref = f"{host}/alice/client-{unique().split('/')[-1]}:1"
    cli("push", f"oci:{layout}:1", ref)
    cli("pull", ref, f"oci:{tmp_path / 'back'}")
    assert layout_blobs(tmp_path / "back") == layout_blobs(layout)
    # the pushed repository is alice's and private: without her login it cannot be pulled
    cli("logout", host)
    cli("pull", "--json", ref, f"oci:{tmp_path / 'again'}", expect=3)
    assert cli("login", host, "-u", "alice", "--password-stdin", input="wrong\n", expect=3)
