"""The accounts API (/api/v1/) on the default config: users, tokens, robots, organisations and
repository access; who may do each; one commit per change, authored by the acting user; and no
secret in the history."""

from __future__ import annotations

import contextlib
import subprocess
import uuid

import pytest
import requests

from registry_core.context import Context
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore
from tests.support.oci import Client, error_codes, meta_commits, meta_tip

ADMIN = ("admin", "admin-demo")
ALICE = ("alice", "alice-demo")
BOB = ("bob", "bob-demo")
# Every password and token secret these tests make: none may ever appear in meta.git.
SECRETS: list[str] = ["admin-demo", "alice-demo", "bob-demo"]


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def api(server, path: str) -> str:
    return f"{server.url}/api/v1{path}"


def new_password() -> str:
    password = f"pw-{uuid.uuid4().hex}"
    SECRETS.append(password)
    return password


def make_user(server, prefix: str = "u", **fields) -> tuple[str, str]:
    """A new user (made by the admin through the API); returns its Basic credentials."""
    name, password = unique(prefix), new_password()
    r = requests.post(api(server, "/users"), auth=ADMIN, json={"name": name, "password": password, **fields})
    assert r.status_code == 201, r.text
    return name, password


def make_token(server, auth, owner: str, **fields) -> str:
    r = requests.post(api(server, f"/users/{owner}/tokens"), auth=auth, json={"actions": ["pull"], **fields})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    SECRETS.append(secret.rsplit("_", 1)[1])  # the random part; id and owner are not secret
    return secret


def client(server, auth) -> Client:
    session = requests.Session()
    session.auth = auth
    return Client(server.url, session)


def may_pull(server, auth, name: str) -> int:
    return requests.get(f"{server.url}/v2/{name}/tags/list", auth=auth).status_code


def may_push(server, auth, name: str) -> int:
    return requests.post(f"{server.url}/v2/{name}/blobs/uploads/", auth=auth).status_code


@contextlib.contextmanager
def one_commit_by(server, actor: str):
    """The block makes exactly one commit in meta.git, authored by `actor`, with an Actor trailer."""
    tip = meta_tip(server.store)
    found = {}
    yield found
    commits = meta_commits(server.store, since=tip)
    assert len(commits) == 1, [c.message for c in commits]
    assert commits[0].author.name == actor, commits[0].author.name
    assert f"Actor: {actor}" in commits[0].message
    found["message"] = commits[0].message


@contextlib.contextmanager
def no_commit(server):
    tip = meta_tip(server.store)
    yield
    assert meta_tip(server.store) == tip


# --- who is asking ------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/users"), ("POST", "/users"), ("GET", "/users/alice"), ("PATCH", "/users/alice"),
    ("POST", "/users/alice/tokens"), ("GET", "/users/alice/tokens"), ("POST", "/robots"), ("POST", "/orgs"),
    ("GET", "/orgs/anything"), ("PUT", "/orgs/anything/members/bob"), ("PATCH", "/repositories/alice/notes"),
    ("GET", "/repositories/alice/notes/collaborators"), ("PUT", "/repositories/alice/notes/collaborators/bob"),
])
def test_anonymous_callers_get_401_with_the_bearer_challenge(secured_registry, method, path):
    with no_commit(secured_registry):
        r = requests.request(method, api(secured_registry, path), json={"role": "read"})
    assert r.status_code == 401
    assert error_codes(r) == ["UNAUTHORIZED"]
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="')


def test_a_wrong_password_is_401(secured_registry):
    name, _ = make_user(secured_registry)
    r = requests.get(api(secured_registry, f"/users/{name}"), auth=(name, "not-the-password"))
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]


# --- users --------------------------------------------------------------------------------------

def test_admins_list_users_without_password_hashes_and_page_through_them(secured_registry):
    make_user(secured_registry)
    r = requests.get(api(secured_registry, "/users"), auth=ADMIN)
    assert r.status_code == 200
    users = r.json()["users"]
    names = [u["name"] for u in users]
    assert {"admin", "alice", "bob"} <= set(names) and names == sorted(names)
    assert "passwordHash" not in r.text and "argon2" not in r.text
    assert next(u for u in users if u["name"] == "admin")["admin"] is True
    first = requests.get(api(secured_registry, "/users"), auth=ADMIN, params={"n": 2})
    assert [u["name"] for u in first.json()["users"]] == names[:2]
    assert 'rel="next"' in first.headers["Link"]
    rest = requests.get(api(secured_registry, "/users"), auth=ADMIN, params={"last": names[1]})
    assert [u["name"] for u in rest.json()["users"]] == names[2:]


@pytest.mark.parametrize("auth", [ALICE, BOB])
def test_users_who_are_not_admins_cannot_list_or_add_users(secured_registry, auth):
    with no_commit(secured_registry):
        listing = requests.get(api(secured_registry, "/users"), auth=auth)
        adding = requests.post(api(secured_registry, "/users"), auth=auth, json={"name": unique()})
    assert listing.status_code == 403 and error_codes(listing) == ["DENIED"]
    assert adding.status_code == 403 and error_codes(adding) == ["DENIED"]


def test_an_admin_adds_a_user_with_a_generated_password_shown_once(secured_registry):
    name = unique()
    with one_commit_by(secured_registry, "admin") as commit:
        r = requests.post(api(secured_registry, "/users"), auth=ADMIN,
                          json={"name": name, "email": f"{name}@example.test"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/api/v1/users/{name}")
    created = r.json()
    password = created.pop("password")
    SECRETS.append(password)
    assert len(password) >= 16
    assert created == {"name": name, "email": f"{name}@example.test", "admin": False, "disabled": False,
                       "robot": False, "createdAt": created["createdAt"]}
    assert f"Add user {name}" in commit["message"]
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, password)).status_code == 200
    shown = requests.get(api(secured_registry, f"/users/{name}"), auth=ADMIN)
    assert shown.status_code == 200 and "password" not in shown.text.lower()


def test_an_admin_adds_another_admin(secured_registry):
    name, password = make_user(secured_registry, admin=True)
    assert requests.get(api(secured_registry, "/users"), auth=(name, password)).status_code == 200


@pytest.mark.parametrize("body,status,code", [
    ({"name": "Not Valid"}, 400, "NAME_INVALID"),
    ({"name": "alice"}, 409, "DENIED"),
    ({"name": "library"}, 409, "DENIED"),
    ({"name": "shortpw", "password": "short"}, 400, "UNSUPPORTED"),
    ({"name": "x1", "colour": "blue"}, 400, "UNSUPPORTED"),
    ({"name": "x2", "admin": "yes"}, 400, "UNSUPPORTED"),
    ({"password": "long-enough-password"}, 400, "UNSUPPORTED"),
    (["not", "an", "object"], 400, "UNSUPPORTED"),
])
def test_adding_a_user_checks_the_request(secured_registry, body, status, code):
    with no_commit(secured_registry):
        r = requests.post(api(secured_registry, "/users"), auth=ADMIN, json=body)
    assert r.status_code == status, r.text
    assert error_codes(r) == [code]


def test_a_body_that_is_not_json_is_400(secured_registry):
    r = requests.post(api(secured_registry, "/users"), auth=ADMIN, data=b"{not json",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["errors"][0]["message"]


def test_a_user_reads_their_own_account_but_not_others(secured_registry):
    name, password = make_user(secured_registry, email="me@example.test")
    own = requests.get(api(secured_registry, f"/users/{name}"), auth=(name, password))
    assert own.status_code == 200 and own.json()["email"] == "me@example.test"
    assert "Hash" not in own.text
    other = requests.get(api(secured_registry, "/users/alice"), auth=(name, password))
    assert other.status_code == 403 and error_codes(other) == ["DENIED"]
    missing = requests.get(api(secured_registry, f"/users/{unique()}"), auth=(name, password))
    assert missing.status_code == 403  # no probing for names
    assert requests.get(api(secured_registry, f"/users/{name}"), auth=ADMIN).status_code == 200
    assert requests.get(api(secured_registry, f"/users/{unique()}"), auth=ADMIN).status_code == 404


def test_a_user_changes_their_own_password_and_email_but_not_their_admin_flag(secured_registry):
    name, old = make_user(secured_registry)
    new = new_password()
    with one_commit_by(secured_registry, name) as commit:
        r = requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, old),
                           json={"password": new, "email": "new@example.test"})
    assert r.status_code == 200, r.text
    assert r.json()["email"] == "new@example.test"
    assert f"Change the password of {name}" in commit["message"]
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, old)).status_code == 401
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, new)).status_code == 200
    with no_commit(secured_registry):
        for change in ({"admin": True}, {"disabled": True}, {"admin": True, "email": "x@example.test"}):
            refused = requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, new), json=change)
            assert refused.status_code == 403 and error_codes(refused) == ["DENIED"], change
        others = requests.patch(api(secured_registry, "/users/bob"), auth=(name, new),
                                json={"password": "taken-over-password"})
        assert others.status_code == 403
        short = requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, new), json={"password": "x"})
        assert short.status_code == 400
        empty = requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, new), json={})
        assert empty.status_code == 400
    assert requests.get(api(secured_registry, f"/users/{name}"), auth=ADMIN).json()["admin"] is False


def test_an_admin_sets_passwords_and_the_admin_flag(secured_registry):
    name, _ = make_user(secured_registry)
    password = new_password()
    with one_commit_by(secured_registry, "admin"):
        r = requests.patch(api(secured_registry, f"/users/{name}"), auth=ADMIN,
                           json={"password": password, "admin": True})
    assert r.status_code == 200 and r.json()["admin"] is True
    assert requests.get(api(secured_registry, "/users"), auth=(name, password)).status_code == 200


def test_a_disabled_user_can_no_longer_authenticate_until_enabled(secured_registry):
    name, password = make_user(secured_registry)
    secret = make_token(secured_registry, (name, password), name)
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, password)).status_code == 200
    issued = requests.get(f"{secured_registry.url}/token?service=registry", auth=(name, password))
    bearer = {"Authorization": "Bearer " + issued.json()["token"]}
    for _ in range(4):  # each worker has seen the account active
        assert requests.get(f"{secured_registry.url}/v2/", headers=bearer).status_code == 200
    with one_commit_by(secured_registry, "admin") as commit:
        r = requests.patch(api(secured_registry, f"/users/{name}"), auth=ADMIN, json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert f"Disable {name}" in commit["message"]
    for _ in range(4):  # a token issued before: refused from the commit on, by every worker
        refused = requests.get(f"{secured_registry.url}/v2/", headers=bearer)
        assert refused.status_code == 401 and "disabled or gone" in refused.text
    for credential in ((name, password), (name, secret)):
        assert requests.get(f"{secured_registry.url}/v2/", auth=credential).status_code == 401
        assert requests.get(api(secured_registry, f"/users/{name}"), auth=credential).status_code == 401
    requests.patch(api(secured_registry, f"/users/{name}"), auth=ADMIN, json={"disabled": False})
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, password)).status_code == 200


def test_an_admin_cannot_disable_or_demote_themselves(secured_registry):
    name, password = make_user(secured_registry, admin=True)
    with no_commit(secured_registry):
        for change in ({"disabled": True}, {"admin": False}):
            r = requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, password), json=change)
            assert r.status_code == 409, change


# --- tokens -------------------------------------------------------------------------------------

def test_a_token_is_shown_once_and_listed_without_secret_or_hash(secured_registry):
    name, password = make_user(secured_registry)
    with one_commit_by(secured_registry, name) as commit:
        r = requests.post(api(secured_registry, f"/users/{name}/tokens"), auth=(name, password),
                          json={"description": "ci", "actions": ["push", "pull"], "expiresInDays": 30})
    assert r.status_code == 201, r.text
    created = r.json()
    SECRETS.append(created["secret"].rsplit("_", 1)[1])
    assert created["actions"] == ["pull", "push"] and created["description"] == "ci"
    assert created["expiresAt"] and created["expired"] is False
    assert "secretHash" not in created
    assert "ci" in commit["message"] and created["secret"] not in commit["message"]
    listing = requests.get(api(secured_registry, f"/users/{name}/tokens"), auth=(name, password))
    assert listing.status_code == 200
    [token] = listing.json()["tokens"]
    assert token["id"] == created["id"] and token["owner"] == name
    assert "secret" not in token and "secretHash" not in token and "sha256:" not in listing.text


def test_a_token_is_a_password_for_basic_auth_limited_to_its_actions_and_repositories(secured_registry):
    name, password = make_user(secured_registry)
    app, other = f"{name}/app", f"{name}/other"
    owner = client(secured_registry, (name, password))
    owner.push_image(app, "v1")
    owner.push_image(other, "v1")
    pull_app = make_token(secured_registry, (name, password), name, repositories=[app])
    push_all = make_token(secured_registry, (name, password), name, actions=["pull", "push"])
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, pull_app)).status_code == 200
    assert may_pull(secured_registry, (name, pull_app), app) == 200
    assert may_push(secured_registry, (name, pull_app), app) == 403
    assert may_pull(secured_registry, (name, pull_app), other) == 403
    assert may_pull(secured_registry, (name, push_all), other) == 200
    assert may_push(secured_registry, (name, push_all), other) == 202
    # a token never does more than its owner may
    assert may_pull(secured_registry, (name, push_all), "alice/notes") == 403
    # and it is a credential for this account only
    assert requests.get(f"{secured_registry.url}/v2/", auth=("alice", pull_app)).status_code == 401


def test_a_token_cannot_manage_accounts(secured_registry):
    name, password = make_user(secured_registry)
    secret = make_token(secured_registry, (name, password), name, actions=["pull", "push"])
    with no_commit(secured_registry):
        for method, path, body in (("POST", f"/users/{name}/tokens", {"actions": ["pull", "push"]}),
                                   ("PATCH", f"/users/{name}", {"password": "another-password"}),
                                   ("POST", "/orgs", {"name": unique("o")})):
            r = requests.request(method, api(secured_registry, path), auth=(name, secret), json=body)
            assert r.status_code == 403 and error_codes(r) == ["DENIED"], (method, path)


def test_a_revoked_token_stops_working(secured_registry):
    name, password = make_user(secured_registry)
    secret = make_token(secured_registry, (name, password), name)
    token_id = secret.split("_")[1]
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, secret)).status_code == 200
    with one_commit_by(secured_registry, name) as commit:
        r = requests.delete(api(secured_registry, f"/users/{name}/tokens/{token_id}"), auth=(name, password))
    assert r.status_code == 204
    assert f"Revoke token {token_id} of {name}" in commit["message"]
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, secret)).status_code == 401
    assert requests.get(api(secured_registry, f"/users/{name}/tokens"), auth=(name, password)).json() == {"tokens": []}
    again = requests.delete(api(secured_registry, f"/users/{name}/tokens/{token_id}"), auth=(name, password))
    assert again.status_code == 404
    bad_id = requests.delete(api(secured_registry, f"/users/{name}/tokens/..%2Fx"), auth=(name, password))
    assert bad_id.status_code == 404


def test_an_expired_token_stops_working(secured_registry):
    name, password = make_user(secured_registry)
    secret = make_token(secured_registry, (name, password), name, expiresInDays=1)
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, secret)).status_code == 200
    path = meta_paths.token(name, secret.split("_")[1])

    def expire(txn):  # a day passes
        txn.put(path, {**txn.get(path), "expiresAt": "2020-01-01T00:00:00Z"})
    MetaStore(str(secured_registry.store / "meta.git"), create=False).transact(expire, Context(actor="clock"), "Expire")
    assert requests.get(f"{secured_registry.url}/v2/", auth=(name, secret)).status_code == 401
    [token] = requests.get(api(secured_registry, f"/users/{name}/tokens"), auth=(name, password)).json()["tokens"]
    assert token["expired"] is True


def test_only_the_owner_or_an_admin_manages_a_users_tokens(secured_registry):
    name, password = make_user(secured_registry)
    secret = make_token(secured_registry, (name, password), name)
    token_id = secret.split("_")[1]
    with no_commit(secured_registry):
        for method, path in (("POST", f"/users/{name}/tokens"), ("GET", f"/users/{name}/tokens"),
                             ("DELETE", f"/users/{name}/tokens/{token_id}")):
            r = requests.request(method, api(secured_registry, path), auth=BOB, json={"actions": ["pull"]})
            assert r.status_code == 403, (method, path)
    with one_commit_by(secured_registry, "admin"):
        assert make_token(secured_registry, ADMIN, name)
    assert requests.delete(api(secured_registry, f"/users/{name}/tokens/{token_id}"), auth=ADMIN).status_code == 204


@pytest.mark.parametrize("body", [
    {"actions": ["push"]}, {"actions": ["pull", "delete"]}, {"actions": []}, {"actions": "pull"}, {},
    {"actions": ["pull"], "expiresInDays": 0}, {"actions": ["pull"], "expiresInDays": "7"},
    {"actions": ["pull"], "repositories": ["Not/Valid"]}, {"actions": ["pull"], "repositories": []},
    {"actions": ["pull"], "description": "x" * 300}, {"actions": ["pull"], "secret": "mine"},
])
def test_creating_a_token_checks_the_request(secured_registry, body):
    with no_commit(secured_registry):
        r = requests.post(api(secured_registry, "/users/alice/tokens"), auth=ALICE, json=body)
    assert r.status_code == 400, r.text


# --- robots -------------------------------------------------------------------------------------

def test_a_user_adds_a_robot_whose_tokens_push_only_to_the_owners_namespace(secured_registry):
    name, password = make_user(secured_registry)
    robot = unique("bot")
    with one_commit_by(secured_registry, name):
        r = requests.post(api(secured_registry, "/robots"), auth=(name, password), json={"owner": name, "name": robot})
    assert r.status_code == 201, r.text
    assert r.json()["robot"] is True and r.json()["owner"] == name
    secret = make_token(secured_registry, (name, password), robot, actions=["pull", "push"])
    robot_client = client(secured_registry, (robot, secret))
    robot_client.push_image(f"{name}/built", "v1")
    assert may_push(secured_registry, (robot, secret), "alice/notes") == 403
    assert may_push(secured_registry, (robot, secret), f"{robot}/own") == 403
    # others may not touch the robot
    with no_commit(secured_registry):
        assert requests.post(api(secured_registry, f"/users/{robot}/tokens"), auth=BOB,
                             json={"actions": ["pull"]}).status_code == 403
        assert requests.get(api(secured_registry, f"/users/{robot}/tokens"), auth=BOB).status_code == 403
    listing = requests.get(api(secured_registry, f"/users/{robot}/tokens"), auth=(name, password))
    assert len(listing.json()["tokens"]) == 1
    # its owner may disable it, which stops its tokens
    r = requests.patch(api(secured_registry, f"/users/{robot}"), auth=(name, password), json={"disabled": True})
    assert r.status_code == 200
    assert requests.get(f"{secured_registry.url}/v2/", auth=(robot, secret)).status_code == 401
    no_password = requests.patch(api(secured_registry, f"/users/{robot}"), auth=ADMIN,
                                 json={"password": "robots-have-none"})
    assert no_password.status_code == 400


def add_robot(server, auth, owner: str) -> requests.Response:
    return requests.post(api(server, "/robots"), auth=auth, json={"owner": owner, "name": unique("bot")})


def test_robots_are_added_only_for_yourself_or_an_organisation_you_own(secured_registry):
    name, password = make_user(secured_registry)
    with no_commit(secured_registry):
        r = add_robot(secured_registry, (name, password), "alice")
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert add_robot(secured_registry, ADMIN, "alice").status_code == 201
    assert add_robot(secured_registry, ADMIN, unique()).status_code == 404


# --- organisations ------------------------------------------------------------------------------

def test_the_creator_of_an_organisation_owns_it_and_manages_its_members(secured_registry):
    owner, owner_password = make_user(secured_registry, "own")
    member, member_password = make_user(secured_registry, "mem")
    org = unique("org")
    with one_commit_by(secured_registry, owner):
        r = requests.post(api(secured_registry, "/orgs"), auth=(owner, owner_password),
                          json={"name": org, "description": "Our team"})
    assert r.status_code == 201, r.text
    assert r.json()["members"] == {owner: "owner"} and r.json()["description"] == "Our team"
    with one_commit_by(secured_registry, owner) as commit:
        r = requests.put(api(secured_registry, f"/orgs/{org}/members/{member}"), auth=(owner, owner_password),
                         json={"role": "maintainer"})
    assert r.status_code == 200 and r.json()["members"] == {owner: "owner", member: "maintainer"}
    assert f"Set {member} as maintainer of {org}" in commit["message"]
    # the role means something: a maintainer pushes to the organisation's repositories
    client(secured_registry, (member, member_password)).push_image(f"{org}/app", "v1")
    shown = requests.get(api(secured_registry, f"/orgs/{org}"), auth=(member, member_password))
    assert shown.status_code == 200 and shown.json()["members"][member] == "maintainer"
    # members who are not owners, and outsiders, manage nobody
    with no_commit(secured_registry):
        r = requests.put(api(secured_registry, f"/orgs/{org}/members/bob"), auth=(member, member_password),
                         json={"role": "member"})
        assert r.status_code == 403
        assert requests.put(api(secured_registry, f"/orgs/{org}/members/bob"), auth=BOB,
                            json={"role": "owner"}).status_code == 403
        assert requests.get(api(secured_registry, f"/orgs/{org}"), auth=BOB).status_code == 403
        last_owner = requests.delete(api(secured_registry, f"/orgs/{org}/members/{owner}"),
                                     auth=(owner, owner_password))
        assert last_owner.status_code == 409
        bad_role = requests.put(api(secured_registry, f"/orgs/{org}/members/bob"), auth=(owner, owner_password),
                                json={"role": "boss"})
        assert bad_role.status_code == 400
    # an admin manages any organisation; a member may leave
    assert requests.put(api(secured_registry, f"/orgs/{org}/members/bob"), auth=ADMIN,
                        json={"role": "member"}).status_code == 200
    assert requests.delete(api(secured_registry, f"/orgs/{org}/members/bob"), auth=BOB).status_code == 204
    with one_commit_by(secured_registry, owner):
        r = requests.delete(api(secured_registry, f"/orgs/{org}/members/{member}"), auth=(owner, owner_password))
    assert r.status_code == 204
    assert may_push(secured_registry, (member, member_password), f"{org}/app") == 403
    assert requests.get(api(secured_registry, f"/orgs/{unique('org')}"), auth=ADMIN).status_code == 404


def test_organisation_names_share_the_namespace_of_users(secured_registry):
    name, password = make_user(secured_registry)
    with no_commit(secured_registry):
        for taken in ("alice", name, "library"):
            r = requests.post(api(secured_registry, "/orgs"), auth=(name, password), json={"name": taken})
            assert r.status_code == 409, taken


def test_an_organisation_owner_adds_robots_for_it(secured_registry):
    owner, password = make_user(secured_registry, "own")
    org = unique("org")
    requests.post(api(secured_registry, "/orgs"), auth=(owner, password), json={"name": org})
    robot = unique("bot")
    r = requests.post(api(secured_registry, "/robots"), auth=(owner, password), json={"owner": org, "name": robot})
    assert r.status_code == 201, r.text
    secret = make_token(secured_registry, (owner, password), robot, actions=["pull", "push"])
    client(secured_registry, (robot, secret)).push_image(f"{org}/built", "v1")
    assert add_robot(secured_registry, BOB, org).status_code == 403


# --- repositories -------------------------------------------------------------------------------

def test_a_repository_admin_sets_its_visibility_and_description(secured_registry):
    name, password = make_user(secured_registry)
    repository = f"{name}/site"
    client(secured_registry, (name, password)).push_image(repository, "v1")
    assert may_pull(secured_registry, None, repository) == 401  # private by default
    with one_commit_by(secured_registry, name) as commit:
        r = requests.patch(api(secured_registry, f"/repositories/{repository}"), auth=(name, password),
                           json={"visibility": "public", "description": "Our web site"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": repository, "visibility": "public", "description": "Our web site", "owner": name}
    assert f"Make {repository} public" in commit["message"]
    assert may_pull(secured_registry, None, repository) == 200
    r = requests.patch(api(secured_registry, f"/repositories/{repository}"), auth=(name, password),
                       json={"description": "Only the description"})
    assert r.json()["visibility"] == "public" and r.json()["description"] == "Only the description"
    with no_commit(secured_registry):
        assert requests.patch(api(secured_registry, f"/repositories/{repository}"), auth=BOB,
                              json={"visibility": "private"}).status_code == 403
        assert requests.patch(api(secured_registry, f"/repositories/{repository}"), auth=(name, password),
                              json={"visibility": "secret"}).status_code == 400
        assert requests.patch(api(secured_registry, f"/repositories/{repository}"), auth=(name, password),
                              json={}).status_code == 400
    missing = requests.patch(api(secured_registry, f"/repositories/{name}/missing"), auth=(name, password),
                             json={"visibility": "public"})
    assert missing.status_code == 404 and error_codes(missing) == ["NAME_UNKNOWN"]


def test_private_and_missing_repositories_look_the_same_to_outsiders(secured_registry):
    private = requests.patch(api(secured_registry, "/repositories/alice/notes"), auth=BOB, json={"description": "x"})
    missing = requests.patch(api(secured_registry, "/repositories/alice/nothing"), auth=BOB, json={"description": "x"})
    assert private.status_code == missing.status_code == 403


def test_a_repository_admin_manages_its_collaborators(secured_registry):
    owner, owner_password = make_user(secured_registry, "own")
    helper, helper_password = make_user(secured_registry, "help")
    repository = f"{owner}/app"
    client(secured_registry, (owner, owner_password)).push_image(repository, "v1")
    url = api(secured_registry, f"/repositories/{repository}/collaborators")
    assert may_pull(secured_registry, (helper, helper_password), repository) == 403
    with one_commit_by(secured_registry, owner) as commit:
        r = requests.put(f"{url}/{helper}", auth=(owner, owner_password), json={"role": "read"})
    assert r.status_code == 200 and r.json() == {"user": helper, "role": "read"}
    assert f"Give {helper} read access to {repository}" in commit["message"]
    assert may_pull(secured_registry, (helper, helper_password), repository) == 200
    assert may_push(secured_registry, (helper, helper_password), repository) == 403
    # a reader cannot see or change the collaborators
    with no_commit(secured_registry):
        assert requests.get(url, auth=(helper, helper_password)).status_code == 403
        promoted = requests.put(f"{url}/{helper}", auth=(helper, helper_password), json={"role": "admin"})
        assert promoted.status_code == 403
    # an admin collaborator can
    requests.put(f"{url}/{helper}", auth=(owner, owner_password), json={"role": "admin"})
    with one_commit_by(secured_registry, helper):
        r = requests.put(f"{url}/bob", auth=(helper, helper_password), json={"role": "write"})
    assert r.status_code == 200
    listing = requests.get(url, auth=(helper, helper_password))
    assert listing.status_code == 200
    assert [(c["user"], c["role"]) for c in listing.json()["collaborators"]] == [("bob", "write"), (helper, "admin")]
    assert requests.get(f"{url}/bob", auth=(owner, owner_password)).json()["role"] == "write"
    assert may_push(secured_registry, BOB, repository) == 202
    with one_commit_by(secured_registry, owner):
        assert requests.delete(f"{url}/bob", auth=(owner, owner_password)).status_code == 204
    assert may_pull(secured_registry, BOB, repository) == 403
    assert requests.get(f"{url}/bob", auth=(owner, owner_password)).status_code == 404
    assert requests.delete(f"{url}/bob", auth=(owner, owner_password)).status_code == 404
    assert requests.put(f"{url}/{unique()}", auth=(owner, owner_password), json={"role": "read"}).status_code == 404
    assert requests.put(f"{url}/bob", auth=(owner, owner_password), json={"role": "owner"}).status_code == 400


def test_short_repository_names_mean_library(secured_registry):
    r = requests.get(api(secured_registry, "/repositories/hello/collaborators"), auth=ADMIN)
    assert r.status_code == 200 and r.json()["name"] == "library/hello"


# --- the history holds no secret (keep this test last: it checks every secret made above) -------

def test_no_password_or_token_secret_appears_in_the_history(secured_registry):
    name, password = make_user(secured_registry)
    make_token(secured_registry, (name, password), name, description="scan")
    requests.patch(api(secured_registry, f"/users/{name}"), auth=(name, password), json={"password": new_password()})
    generated = requests.post(api(secured_registry, "/users"), auth=ADMIN, json={"name": unique()}).json()["password"]
    SECRETS.append(generated)
    history = subprocess.run(["git", "--git-dir", str(secured_registry.store / "meta.git"), "log", "-p", "--all"],
                             capture_output=True, text=True, check=True).stdout
    assert "passwordHash: $argon2id$" in history and "secretHash: sha256:" in history  # we did look at them
    leaked = [secret for secret in SECRETS if secret in history]
    assert not leaked, f"{len(leaked)} secrets are in the history of meta.git"
