"""GET /token (the Docker token spec) and POST /token (its OAuth2 form), over HTTP on 127.0.0.1.

The routes are the real ones; accounts and policy are the STAND-IN fakes of
tests/support/index_fakes.py until the real Index is wired into app.py.
"""

from __future__ import annotations

import datetime

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from registry_core.index import keys
from registry_core.index.tokens import TokenIssuer, TokenVerifier, granted_access
from tests.support.index_fakes import FakeAccounts, FakePolicy, TokenServer, fake_registry

ISSUER, SERVICE = "routes-index", "routes-registry"
PASSWORDS = {"alice": "alice-secret", "admin": "admin-secret", "locked": "locked-secret"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def pair():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, keys.self_signed_certificate(key, "routes token signing")


@pytest.fixture(scope="module")
def verifier(pair) -> TokenVerifier:
    return TokenVerifier([pair[1]], ISSUER, SERVICE)


@pytest.fixture(scope="module")
def accounts():
    return FakeAccounts(PASSWORDS, locked=("locked",))


@pytest.fixture(scope="module")
def server(pair, accounts):
    policy = FakePolicy({"alice": {"alice/*": {"pull", "push", "delete"}, "library/*": {"pull"}},
                         "admin": {"*": {"pull", "push", "delete"}},
                         None: {"library/*": {"pull"}}}, catalog=("admin",))
    issuer = TokenIssuer(pair[0], pair[1], ISSUER, SERVICE, lifetime=120)
    running = TokenServer(fake_registry(accounts, policy, issuer, service=SERVICE))
    yield running
    running.close()


def get_token(server, *scopes, auth=None, **params):
    return requests.get(server.realm, params={"service": SERVICE, "scope": list(scopes), **params}, auth=auth,
                        timeout=10)


def post_token(server, **form):
    return requests.post(server.realm, data={"service": SERVICE, "client_id": "tests", **form}, headers=FORM,
                         timeout=10)


def access(verifier, token) -> dict:
    claims = verifier.verify(token)
    return {entry["name"]: entry["actions"] for entry in claims["access"]}


# --- GET ------------------------------------------------------------------------------------------

def test_an_anonymous_client_gets_a_token_with_what_anonymous_may_do(server, verifier):
    answer = get_token(server, "repository:library/hello:pull,push", "repository:alice/app:pull")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 120
    issued = datetime.datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert abs(issued.timestamp() - verifier.verify(body["token"])["iat"]) < 1
    assert "refresh_token" not in body
    assert verifier.verify(body["token"])["sub"] == ""
    assert access(verifier, body["token"]) == {"library/hello": ["pull"], "alice/app": []}


def test_a_user_gets_the_intersection_of_the_asked_and_the_allowed_and_less_is_no_error(server, verifier, accounts):
    answer = get_token(server, "repository:alice/app:pull,push", "repository:library/hello:push",
                       "repository:library/hello:pull repository:bob/app:pull", auth=("alice", "alice-secret"))
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert verifier.verify(token)["sub"] == "alice"
    assert access(verifier, token) == {"alice/app": ["pull", "push"], "library/hello": ["pull"], "bob/app": []}
    assert accounts.attempts[-1] == ("alice", "127.0.0.1")


def test_the_catalog_scope_is_granted_to_whom_the_policy_lets_list_it(server, verifier):
    admin = get_token(server, "registry:catalog:*", auth=("admin", "admin-secret")).json()["token"]
    alice = get_token(server, "registry:catalog:*", auth=("alice", "alice-secret")).json()["token"]
    assert granted_access(verifier.verify(admin), "registry", "catalog") == {"*"}
    assert granted_access(verifier.verify(alice), "registry", "catalog") == set()


def test_a_token_without_scope_grants_nothing_and_the_service_may_be_left_out(server, verifier):
    answer = requests.get(server.realm, auth=("alice", "alice-secret"), timeout=10)
    assert answer.status_code == 200, answer.text
    assert verifier.verify(answer.json()["token"])["access"] == []


def test_a_wrong_password_is_401_with_a_basic_challenge_and_a_message(server):
    answer = get_token(server, "repository:alice/app:pull", auth=("alice", "wrong"))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == f'Basic realm="{SERVICE}"'
    assert answer.json() == {"error": "invalid_grant", "error_description": "incorrect username or password",
                             "details": "incorrect username or password"}
    assert get_token(server, auth=("nobody", "x")).status_code == 401


def test_a_rate_limited_login_is_429_with_retry_after(server):
    answer = get_token(server, "repository:alice/app:pull", auth=("locked", "locked-secret"))
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "60"
    assert answer.json()["error"] == "toomanyrequests" and "try again" in answer.json()["details"]


def test_offline_token_gives_a_logged_in_user_a_refresh_token(server, accounts):
    answer = get_token(server, auth=("alice", "alice-secret"), offline_token="true", client_id="docker")
    refresh = answer.json()["refresh_token"]
    assert accounts.refresh_tokens[refresh] == ("alice", "docker")
    assert "refresh_token" not in get_token(server, offline_token="true", client_id="docker").json()


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + "bm9jb2xvbg==", "Basic "])
def test_unreadable_basic_credentials_are_a_bad_request(server, header):
    answer = requests.get(server.realm, headers={"Authorization": header}, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_other_authorization_schemes_are_refused_with_a_basic_challenge(server):
    answer = requests.get(server.realm, headers={"Authorization": "Bearer abc"}, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_malformed_scope_is_invalid_scope_and_another_service_is_invalid_request(server):
    answer = get_token(server, "repository:Alice//app:pull")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope" and "repository:Alice//app:pull" in answer.json()["details"]
    other = requests.get(server.realm, params={"service": "elsewhere"}, timeout=10)
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_request" and SERVICE in other.json()["error_description"]


# --- POST (OAuth2) --------------------------------------------------------------------------------

def test_a_password_grant_answers_an_access_token_with_the_granted_scope(server, verifier):
    answer = post_token(server, grant_type="password", username="alice", password="alice-secret",
                        scope="repository:alice/app:pull,push repository:library/hello:pull,push repository:bob/x:pull")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120 and "issued_at" in body
    assert body["scope"] == "repository:alice/app:pull,push repository:library/hello:pull"
    assert "refresh_token" not in body and "token" not in body
    assert access(verifier, body["access_token"]) == {"alice/app": ["pull", "push"], "library/hello": ["pull"],
                                                      "bob/x": []}


def test_an_offline_password_grant_gives_a_refresh_token_that_gets_tokens_for_the_same_user(server, verifier):
    first = post_token(server, grant_type="password", username="alice", password="alice-secret",
                       access_type="offline").json()
    assert first["scope"] == ""
    refresh = first["refresh_token"]
    answer = post_token(server, grant_type="refresh_token", refresh_token=refresh,
                        scope="repository:alice/other:push")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["refresh_token"] == refresh  # the same one, never a new one
    assert verifier.verify(body["access_token"])["sub"] == "alice"
    assert body["scope"] == "repository:alice/other:push"


def test_an_unknown_refresh_token_is_401_invalid_grant(server):
    answer = post_token(server, grant_type="refresh_token", refresh_token="not-a-token")
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_grant"


def test_a_wrong_password_in_the_form_is_401_invalid_grant(server):
    answer = post_token(server, grant_type="password", username="alice", password="wrong")
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("form, error", [
    ({}, "invalid_request"),
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({"grant_type": "password", "username": "alice"}, "invalid_request"),
    ({"grant_type": "refresh_token"}, "invalid_request"),
    ({"grant_type": "password", "username": "alice", "password": "alice-secret", "client_id": ""}, "invalid_request"),
    ({"grant_type": "password", "username": "alice", "password": "alice-secret", "scope": "repository"},
     "invalid_scope"),
    ({"grant_type": "password", "username": "alice", "password": "alice-secret", "service": "x"}, "invalid_request"),
])
def test_incomplete_or_unsupported_oauth2_requests_are_400_with_the_oauth2_error(server, form, error):
    answer = post_token(server, **form)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


def test_a_post_that_is_not_a_form_is_refused(server):
    answer = requests.post(server.realm, json={"grant_type": "password"}, timeout=10)
    assert answer.status_code == 400
    assert "x-www-form-urlencoded" in answer.json()["error_description"]
    too_big = requests.post(server.realm, data="a=" + "x" * 70_000, headers=FORM, timeout=10)
    assert too_big.status_code == 413


def test_a_registry_role_process_serves_no_token_routes(accounts):
    import bottle

    from registry_core.index.token_routes import register_token_routes
    app = bottle.Bottle()
    register_token_routes(app, fake_registry(accounts, FakePolicy({}), None))
    assert app.routes == []
