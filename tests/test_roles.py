"""Split roles: an Index process (accounts, /token) and a registry-only process that keeps no user
database and trusts the Index's certificate."""

from __future__ import annotations

import pytest
import requests
import yaml

from registry_core.index import keys
from tests.support.oci import Client
from tests.support.server import RunningRegistry


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    server = RunningRegistry(tmp_path_factory.mktemp("index") / "store", "--role", "index")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registry_node(tmp_path_factory, index):
    root = tmp_path_factory.mktemp("registry-node")
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"role": "registry", "auth": {
        "trust": str(index.store / "keys" / keys.CERT_FILE), "realm": index.url + "/token"}}))
    server = RunningRegistry(root / "store", "--empty", "--config", str(config))
    yield server
    server.stop()


def token(index, scope: str, auth=None) -> str:
    answer = requests.get(index.url + "/token", params={"service": "registry", "scope": scope}, auth=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_index_role_serves_tokens_and_no_registry_api(index):
    assert requests.get(index.url + "/v2/").status_code == 404
    assert token(index, "repository:alice/app:pull", ("alice", "alice-demo"))


def test_registry_role_serves_the_api_and_no_token_service(registry_node):
    assert requests.get(registry_node.url + "/token").status_code == 404
    challenge = requests.get(registry_node.url + "/v2/")
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith('Bearer realm="http://127.0.0.1:')


def test_registry_role_accepts_the_index_tokens_and_refuses_basic_credentials(index, registry_node):
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token(index, "repository:alice/split:pull,push",
                                                         ("alice", "alice-demo"))
    client = Client(registry_node.url, session)
    digest, _, body = client.push_image("alice/split", "v1")
    assert client.get("/v2/alice/split/manifests/v1").content == body
    assert requests.get(registry_node.url + "/v2/", auth=("alice", "alice-demo")).status_code == 401


def test_registry_role_refuses_tokens_it_cannot_verify(tmp_path, registry_node):
    from registry_core.index.tokens import TokenIssuer
    stranger = keys.load_or_create(str(tmp_path / "keys"))
    forged = TokenIssuer.from_signing_key(stranger, "registry-core", "registry").issue(
        "alice", [{"type": "repository", "name": "alice/split", "actions": ["pull", "push"]}])
    refused = requests.get(registry_node.url + "/v2/alice/split/tags/list",
                           headers={"Authorization": f"Bearer {forged.token}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_registry_role_without_a_trusted_certificate_does_not_start(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"role": "registry"}))
    with pytest.raises(RuntimeError, match="auth.trust"):
        RunningRegistry(tmp_path / "store", "--empty", "--config", str(config)).stop()  # stopped, if it started
