"""Who may do what: every kind of actor against every kind of operation, on the default config.

The fixture builds an organisation `mxorg` with a private and a public repository, collaborators
of each role, an org member, an outsider, a pull-only token and an expired one, and a disabled
user, directly in the running server's store (another process committing, as on shared storage).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from registry_core.context import Context
from registry_core.index.accounts import Accounts
from registry_core.index.collaborators import set_collaborator, set_visibility
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore
from tests.support.oci import Client, error_codes

PASSWORD = "matrix-password"
ROLES = ["anonymous", "outsider", "reader", "writer", "repo_admin", "org_member", "owner",
         "registry_admin", "pull_only_token", "expired_token", "disabled"]


class World:
    """The names and credentials of the matrix, and one HTTP client per actor."""

    def __init__(self, server):
        self.url = server.url
        suffix = uuid.uuid4().hex[:6]
        self.org = f"mxorg{suffix}"
        self.users = {role: f"mx-{role.replace('_', '-')}-{suffix}" for role in ROLES if role not in (
            "anonymous", "registry_admin", "pull_only_token", "expired_token")}
        self.private = f"{self.org}/private"
        self.public = f"{self.org}/public"
        self.missing = f"{self.org}/does-not-exist"
        meta = MetaStore(str(server.store / "meta.git"), create=False)
        accounts = Accounts(meta)
        admin = Context(actor="admin")
        for name in self.users.values():
            accounts.create_user(admin, name, PASSWORD)
        accounts.create_org(Context(actor=self.users["owner"]), self.org, self.users["owner"])
        accounts.set_member(Context(actor=self.users["owner"]), self.org, self.users["org_member"], "member")
        self.credentials = {role: (name, PASSWORD) for role, name in self.users.items()}
        self.credentials["registry_admin"] = ("admin", "admin-demo")
        self.credentials["anonymous"] = None
        owner_client = self.client("owner")
        self.private_image = owner_client.push_image(self.private, "v1")
        self.public_image = owner_client.push_image(self.public, "v1")
        self.layer = self.private_image[1]["layers"][0]["digest"]
        self.referrer = owner_client.push_image(self.private, None, subject={
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.private_image[0],
            "size": len(self.private_image[2])})
        owner = Context(actor=self.users["owner"])
        set_visibility(meta, owner, self.public, "public")
        for role, grant in (("reader", "read"), ("writer", "write"), ("repo_admin", "admin")):
            set_collaborator(meta, owner, self.private, self.users[role], grant)
        secret, _ = accounts.create_token(Context(actor=self.users["writer"]), self.users["writer"],
                                          description="pull only", actions=["pull"])
        self.credentials["pull_only_token"] = (self.users["writer"], secret)
        expired, document = accounts.create_token(Context(actor=self.users["writer"]), self.users["writer"],
                                                  description="expired")

        def expire(txn):
            path = meta_paths.token(self.users["writer"], document["id"])
            txn.put(path, {**txn.get(path), "expiresAt": "2020-01-01T00:00:00Z"})
        meta.transact(expire, Context(actor=self.users["writer"]), "Expire a token")
        self.credentials["expired_token"] = (self.users["writer"], expired)
        accounts.update_user(admin, self.users["disabled"], "Disable", disabled=True)

    def client(self, role: str) -> Client:
        session = requests.Session()
        session.auth = self.credentials[role]
        return Client(self.url, session)


@pytest.fixture(scope="module")
def world(secured_registry) -> World:
    return World(secured_registry)


def status_of(world: World, role: str, operation: str) -> int:
    client = world.client(role)
    image_digest, manifest, body = world.private_image
    if operation == "pull public":
        return client.get(f"/v2/{world.public}/manifests/v1").status_code
    if operation == "pull private":
        return client.get(f"/v2/{world.private}/manifests/v1").status_code
    if operation == "push":
        return client.post(f"/v2/{world.private}/blobs/uploads/").status_code
    if operation == "delete":
        return client.delete(f"/v2/{world.private}/manifests/{world.referrer[0]}").status_code
    if operation == "tags list":
        return client.get(f"/v2/{world.private}/tags/list").status_code
    if operation == "referrers":
        return client.get(f"/v2/{world.private}/referrers/{image_digest}").status_code
    if operation == "blob by digest":
        return client.get(f"/v2/{world.private}/blobs/{world.layer}").status_code
    raise ValueError(operation)


OK = "ok"
# (role) -> expected outcome of each operation; "ok" means 2xx.
EXPECTED = {
    "anonymous":       {"pull public": OK, "pull private": 401, "push": 401, "tags list": 401, "referrers": 401, "blob by digest": 401},
    "outsider":        {"pull public": OK, "pull private": 403, "push": 403, "tags list": 403, "referrers": 403, "blob by digest": 403},
    "reader":          {"pull public": OK, "pull private": OK, "push": 403, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "writer":          {"pull public": OK, "pull private": OK, "push": OK, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "repo_admin":      {"pull public": OK, "pull private": OK, "push": OK, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "org_member":      {"pull public": OK, "pull private": OK, "push": 403, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "owner":           {"pull public": OK, "pull private": OK, "push": OK, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "registry_admin":  {"pull public": OK, "pull private": OK, "push": OK, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "pull_only_token": {"pull public": OK, "pull private": OK, "push": 403, "tags list": OK, "referrers": OK, "blob by digest": OK},
    "expired_token":   {"pull public": 401, "pull private": 401, "push": 401, "tags list": 401, "referrers": 401, "blob by digest": 401},
    "disabled":        {"pull public": 401, "pull private": 401, "push": 401, "tags list": 401, "referrers": 401, "blob by digest": 401},
}
CASES = [(role, operation) for role in ROLES for operation in EXPECTED[role]]


@pytest.mark.parametrize("role,operation", CASES)
def test_permission_matrix(world, role, operation):
    status = status_of(world, role, operation)
    expected = EXPECTED[role][operation]
    if expected == OK:
        assert 200 <= status < 300, f"{role} {operation}: {status}"
    else:
        assert status == expected, f"{role} {operation}: {status}"


DELETERS = {"repo_admin": True, "owner": True, "registry_admin": True, "anonymous": False, "outsider": False,
            "reader": False, "writer": False, "org_member": False, "pull_only_token": False}


@pytest.mark.parametrize("role", sorted(DELETERS))
def test_only_repository_admins_delete(world, role):
    client = world.client(role)
    if DELETERS[role]:
        digest_to_delete, _, _ = world.client("owner").push_image(world.private, f"doomed-{role}")
        assert client.delete(f"/v2/{world.private}/manifests/{digest_to_delete}").status_code == 202
    else:
        status = client.delete(f"/v2/{world.private}/manifests/{world.referrer[0]}").status_code
        assert status == (401 if role == "anonymous" else 403)


def test_catalog_lists_only_what_the_actor_may_pull(world):
    def catalog(role):
        return set(world.client(role).get("/v2/_catalog", params={"n": 10000}).json()["repositories"])
    assert world.public in catalog("anonymous") and world.private not in catalog("anonymous")
    assert world.private not in catalog("outsider")
    for role in ("reader", "org_member", "owner", "registry_admin"):
        assert world.private in catalog(role), role


@pytest.mark.parametrize("role", ["anonymous", "outsider"])
@pytest.mark.parametrize("path", ["/manifests/v1", "/tags/list", "/blobs/{layer}", "/referrers/{digest}"])
def test_private_and_missing_repositories_look_the_same_to_outsiders(world, role, path):
    client = world.client(role)
    path = path.format(layer=world.layer, digest=world.private_image[0])
    private = client.get(f"/v2/{world.private}{path}")
    missing = client.get(f"/v2/{world.missing}{path}")
    assert private.status_code == missing.status_code
    assert error_codes(private) == error_codes(missing)
    assert private.json()["errors"][0]["message"].replace(world.private, "X") == \
        missing.json()["errors"][0]["message"].replace(world.missing, "X")
    assert private.headers.get("WWW-Authenticate", "").replace(world.private, "X") == \
        missing.headers.get("WWW-Authenticate", "").replace(world.missing, "X")


def test_a_private_blob_cannot_be_read_through_another_repository(world):
    outsider = world.client("outsider")
    own = f"{world.users['outsider']}/mine"
    outsider.push_image(own, "v1")
    assert outsider.get(f"/v2/{own}/blobs/{world.layer}").status_code == 404
    assert outsider.head(f"/v2/{own}/blobs/{world.layer}").status_code == 404


@pytest.mark.parametrize("role,mounted", [("outsider", False), ("reader", True), ("anonymous", None)])
def test_mount_from_a_private_repository_needs_pull_access_there(world, role, mounted):
    client = world.client(role)
    target = f"{world.users.get(role, 'nobody')}/mounted"
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": world.layer, "from": world.private})
    if mounted is None:
        assert r.status_code == 401
    elif mounted:
        assert r.status_code == 201
        assert client.get(f"/v2/{target}/blobs/{world.layer}").status_code == 200
    else:
        assert r.status_code == 202  # an upload session instead: nothing was linked
        assert client.get(f"/v2/{target}/blobs/{world.layer}").status_code == 404


def test_short_names_mean_library(secured_registry):
    anonymous = Client(secured_registry.url)
    short = anonymous.get("/v2/hello/manifests/latest")
    full = anonymous.get("/v2/library/hello/manifests/latest")
    assert short.status_code == 200 and short.content == full.content


def test_anonymous_base_endpoint_is_challenged_so_clients_log_in(secured_registry):
    r = requests.get(secured_registry.url + "/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="') and 'service="registry"' in r.headers["WWW-Authenticate"]
    assert r.json()["errors"] == [{"code": "UNAUTHORIZED",
                                   "message": "authentication required: log in first (docker login, registry login)"}]
    assert requests.get(secured_registry.url + "/v2/", auth=("alice", "alice-demo")).status_code == 200


def test_wrong_password_is_401_and_repeated_failures_are_rate_limited(secured_registry):
    url = secured_registry.url + "/v2/"
    user = f"limited-{uuid.uuid4().hex[:6]}"
    Accounts(MetaStore(str(secured_registry.store / "meta.git"), create=False)).create_user(
        Context(actor="admin"), user, PASSWORD)
    statuses = [requests.get(url, auth=(user, f"wrong-{i}")).status_code for i in range(12)]
    assert statuses[:10] == [401] * 10
    limited = requests.get(url, auth=(user, PASSWORD))
    assert limited.status_code == 429 and error_codes(limited) == ["TOOMANYREQUESTS"]
    assert int(limited.headers["Retry-After"]) > 0
    assert requests.get(url, auth=("alice", "alice-demo")).status_code == 200  # other users are not affected


def test_the_first_pusher_creates_a_private_repository_and_becomes_its_admin(secured_registry):
    meta = MetaStore(str(secured_registry.store / "meta.git"), create=False)
    accounts = Accounts(meta)
    suffix = uuid.uuid4().hex[:6]
    owner, maintainer, org = f"po-{suffix}", f"pm-{suffix}", f"porg{suffix}"
    for user in (owner, maintainer):
        accounts.create_user(Context(actor="admin"), user, PASSWORD)
    accounts.create_org(Context(actor=owner), org, owner)
    accounts.set_member(Context(actor=owner), org, maintainer, "maintainer")
    session = requests.Session()
    session.auth = (maintainer, PASSWORD)
    client = Client(secured_registry.url, session)
    digest, _, _ = client.push_image(f"{org}/new", "v1")
    document = meta.snapshot().get(meta_paths.repository(f"{org}/new"))
    assert document["visibility"] == "private" and document["owner"] == maintainer
    assert client.delete(f"/v2/{org}/new/manifests/{digest}").status_code == 202  # admin, not just write
    other = Client(secured_registry.url)
    assert other.get(f"/v2/{org}/new/tags/list").status_code == 401
