"""Distribution 2.8 (Debian's docker-registry), configured with `auth.token` to trust our
certificate, accepts the tokens our token service signs: skopeo logs in at our /token, pushes and
pulls, and is refused without credentials; docker logs in, keeps the refresh token we give it, and
pushes and pulls with tokens it gets for that refresh token (the OAuth2 POST form).

The Index is a real `registry serve` process (demo user alice from the sample store). Only the
last test, which needs tokens signed by keys of other kinds than the server's, serves /token from
the test process over stand-in accounts (tests/support/index_fakes.py).
"""

from __future__ import annotations

import json

import pytest
import requests

import yaml

from registry_core.index import keys
from registry_core.index.tokens import TokenIssuer
from registry_core.meta.store import MetaStore
from tests.support.engines import distribution_registry, docker_engine, make_docker_archive, make_oci_layout
from tests.support.index_fakes import FakeAccounts, FakePolicy, TokenServer, fake_registry
from tests.support.server import RunningRegistry
from tests.support.skopeo import Skopeo

SERVICE, ISSUER = "interop-registry", "interop-index"
USER, PASSWORD = "alice", "alice-demo"


def token_service(issuer: TokenIssuer) -> TokenServer:
    accounts = FakeAccounts({USER: PASSWORD})
    policy = FakePolicy({USER: {"*": {"pull", "push", "delete"}}})
    server = TokenServer(fake_registry(accounts, policy, issuer, service=SERVICE))
    server.accounts = accounts
    return server


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Our Index: a real server with the sample store's users, issuing tokens as ISSUER for SERVICE."""
    root = tmp_path_factory.mktemp("index")
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"auth": {"issuer": ISSUER, "service": SERVICE}}))
    server = RunningRegistry(root / "store", "--config", str(config))
    server.realm = server.url + "/token"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def distribution(tmp_path_factory, tokens):
    """Distribution trusting our certificate, sending clients to our /token."""
    base = tmp_path_factory.mktemp("distribution")
    bundle = base / "trusted.pem"
    bundle.write_bytes((tokens.store / "keys" / keys.CERT_FILE).read_bytes())
    auth = {"token": {"realm": tokens.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle}}
    with distribution_registry(base, auth=auth) as host:
        yield host


def test_skopeo_pushes_and_pulls_with_our_tokens_and_is_refused_without(distribution, tmp_path):
    skopeo = Skopeo(tmp_path / "home")
    index_digest = make_oci_layout(tmp_path / "source", "1")
    ref = f"docker://{distribution}/alice/app:1"

    pushed = skopeo.run("copy", "--all", "--dest-creds", f"{USER}:{PASSWORD}",
                        f"oci:{tmp_path / 'source'}:1", ref)
    assert pushed.returncode == 0, pushed.stderr

    pulled = skopeo.run("copy", "--all", "--src-creds", f"{USER}:{PASSWORD}",
                        ref, f"oci:{tmp_path / 'back'}:1")
    assert pulled.returncode == 0, pulled.stderr
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == index_digest

    anonymous = skopeo.run("inspect", "--raw", ref, check=False)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "401" in anonymous.stderr

    wrong = skopeo.run("inspect", "--raw", "--creds", f"{USER}:not-the-password", ref, check=False)
    assert wrong.returncode != 0
    assert "401" in wrong.stderr or "unauthorized" in wrong.stderr.lower()


def test_distribution_challenges_with_our_realm_and_takes_a_token_from_it(distribution, tokens):
    challenge = requests.get(f"http://{distribution}/v2/alice/app/tags/list", timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"] == (
        f'Bearer realm="{tokens.realm}",service="{SERVICE}",scope="repository:alice/app:pull"')

    answer = requests.get(tokens.realm, params={"service": SERVICE, "scope": "repository:alice/app:pull"},
                          auth=(USER, PASSWORD), timeout=10)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    listed = requests.get(f"http://{distribution}/v2/alice/app/tags/list",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert listed.status_code in (200, 404), listed.text  # 404 when the push test did not run first

    anonymous = requests.get(tokens.realm, params={"service": SERVICE, "scope": "repository:alice/app:pull"},
                             timeout=10).json()["token"]
    refused = requests.get(f"http://{distribution}/v2/alice/app/tags/list",
                           headers={"Authorization": f"Bearer {anonymous}"}, timeout=10)
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]


def test_docker_logs_in_with_a_refresh_token_and_pushes_and_pulls_with_it(distribution, tokens, tmp_path):
    archive = make_docker_archive(tmp_path / "image.tar", "test/image:1")
    ref = f"{distribution}/alice/docker:1"
    with docker_engine(tmp_path / "docker") as docker:
        docker.run("login", "-u", USER, "--password-stdin", distribution, input=PASSWORD + "\n")
        saved = json.loads((tmp_path / "docker" / "client-config" / "config.json").read_text())
        identity = saved["auths"][distribution]["identitytoken"]
        token_id = identity.split("_")[1]
        document = MetaStore(str(tokens.store / "meta.git"), create=False).snapshot().get(
            f"users/{USER}/tokens/{token_id}.yaml")
        assert document["purpose"] == "refresh" and document["clientId"] == "docker"
        docker.run("load", "-i", str(archive))
        docker.run("tag", "test/image:1", ref)
        docker.run("push", ref)
        docker.run("rmi", "-f", ref, "test/image:1")
        docker.run("pull", ref)
        docker.run("logout", distribution)
        docker.run("rmi", "-f", ref)
        refused = docker.run("pull", ref, check=False)
        assert refused.returncode != 0 and "denied" in refused.stderr


@pytest.mark.parametrize("kind, with_certificate", [("rsa", True), ("ec", False)],
                         ids=["RS256-x5c", "ES256-kid-only"])
def test_distribution_accepts_rs256_tokens_and_finds_a_key_by_its_libtrust_kid(
        tmp_path, kind, with_certificate):
    """Without x5c, Distribution finds the signing key only by `kid` among its trusted certificates'
    keys, keyed by libtrust's key id: acceptance proves our `libtrust_key_id` is libtrust's."""
    private_key = keys.generate_private_key(kind)
    certificate = keys.self_signed_certificate(private_key, f"interop {kind}")
    issuer = TokenIssuer(private_key, certificate if with_certificate else None, ISSUER, SERVICE)
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(keys.signing_key(private_key, [certificate]).certificate_pem())
    server = token_service(issuer)
    try:
        auth = {"token": {"realm": server.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle}}
        with distribution_registry(tmp_path / "distribution", auth=auth) as host:
            token = requests.get(server.realm, params={"service": SERVICE, "scope": "registry:catalog:*"},
                                 auth=(USER, PASSWORD), timeout=10).json()["token"]
            # the fake policy lets no one list the catalog: the token grants nothing there
            assert requests.get(f"http://{host}/v2/_catalog", headers={"Authorization": f"Bearer {token}"},
                                timeout=10).status_code == 401
            token = requests.get(server.realm, params={"service": SERVICE, "scope": "repository:alice/x:pull"},
                                 auth=(USER, PASSWORD), timeout=10).json()["token"]
            answer = requests.get(f"http://{host}/v2/alice/x/tags/list",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert answer.status_code == 404, answer.headers.get("WWW-Authenticate")  # past auth: no such repo

            other = TokenIssuer(private_key, None, "someone-else", SERVICE).issue(USER, [])
            refused = requests.get(f"http://{host}/v2/", headers={"Authorization": f"Bearer {other.token}"},
                                   timeout=10)
            assert refused.status_code == 401
            assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    finally:
        server.close()
