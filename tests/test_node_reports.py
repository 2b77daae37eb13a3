"""An Index and a registry-role node with separate stores: what is pushed to the node is reported
to the Index (signed, through the node's durable outbox), and the node's catalog answers per the
token's user, as the Index's access policy says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry_core.builtin_plugins.reporting import signing
from registry_core.index import keys
from tests.support.oci import Client
from tests.support.server import REGISTRY, RunningRegistry, wait_until

NODE = "node-1"
ALICE, BOB, ADMIN = ("alice", "alice-demo"), ("bob", "bob-demo"), ("admin", "admin-demo")


def node_key(store: Path, tmp: Path) -> str:
    """The node's public key, as its operator gets it: `registry node-key`."""
    config = tmp / "plugins-only.yaml"
    config.write_text("plugins: [reporting]\n")
    out = subprocess.run([REGISTRY, "node-key", "--store", str(store)], capture_output=True, text=True,
                         env={**os.environ, "REGISTRY_CONFIG": str(config)}, check=True)
    return out.stdout.strip()


def start_index(store: Path, tmp: Path, public_key: str) -> RunningRegistry:
    config = tmp / "index.yaml"
    config.write_text(yaml.safe_dump({"role": "index", "plugins": ["reporting"], "pluginConfig": {
        "reporting": {"nodes": [{"name": NODE, "publicKey": public_key}]}}}))
    return RunningRegistry(store, "--config", str(config))


def start_node(store: Path, tmp: Path, index: RunningRegistry, *args: str) -> RunningRegistry:
    config = tmp / "node.yaml"
    config.write_text(yaml.safe_dump({"role": "registry", "plugins": ["reporting"], "auth": {
        "trust": str(index.store / "keys" / keys.CERT_FILE), "realm": index.url + "/token"},
        "pluginConfig": {"reporting": {"index": index.url, "node": NODE,
                                       "retry": {"initialInterval": "100ms", "maxInterval": "1s"}}}}))
    return RunningRegistry(store, "--empty", "--config", str(config), *args)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("nodes")
    public_key = node_key(root / "node-store", root)
    index = start_index(root / "index-store", root, public_key)
    try:
        node = start_node(root / "node-store", root, index)
    except BaseException:
        index.stop()
        raise
    yield index, node
    node.stop()
    index.stop()


def token(index, scope: str, auth) -> str:
    answer = requests.get(index.url + "/token", params={"service": "registry", "scope": scope}, auth=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def node_client(index, node, name: str, auth=ALICE) -> Client:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token(index, f"repository:{name}:pull,push,delete", auth)
    return Client(node.url, session)


def summary(index, name: str, auth=ALICE) -> dict | None:
    answer = requests.get(f"{index.url}/api/v1/repositories/{name}", auth=auth)
    return answer.json() if answer.status_code == 200 else None


def index_tags(index, name: str) -> dict[str, list[str]]:
    """tag → the digests the Index's history shows pushed to it, oldest first (one per report)."""
    answer = requests.get(f"{index.url}/api/v1/repositories/{name}/history", auth=ADMIN)
    if answer.status_code != 200:
        return {}
    pushes: dict[str, list[str]] = {}
    for entry in reversed(answer.json()["entries"]):
        if entry["action"] in ("push", "tag-move") and entry["target"].startswith(name + ":"):
            pushes.setdefault(entry["target"][len(name) + 1:], []).append(entry)
    return pushes


def repository(prefix: str = "alice") -> str:
    return f"{prefix}/reported-{uuid.uuid4().hex[:8]}"


def test_a_push_to_the_node_appears_in_the_index_search_and_repository_api(pair):
    index, node = pair
    name = repository()
    digest, _, _ = node_client(index, node, name).push_image(name, "v1")

    found = wait_until(lambda: [r for r in requests.get(f"{index.url}/api/v1/search", params={"q": name},
                                                         auth=ALICE).json()["results"] if r["name"] == name],
                       "the Index's search lists the repository pushed to the node")
    assert len(found) == 1
    about = summary(index, name)
    assert about["owner"] == "alice" and about["tag_count"] == 1
    assert about["visibility"] == "private"  # the Index's default, as a first push there makes it
    assert summary(index, name, auth=BOB) is None  # and its access policy applies to it
    (entry,) = index_tags(index, name)["v1"]
    assert entry["actor"] == "alice" and entry["current"] == digest


def test_a_tag_deleted_on_the_node_disappears_from_the_index(pair):
    index, node = pair
    name = repository()
    client = node_client(index, node, name)
    client.push_image(name, "keep")
    client.push_image(name, "drop")
    wait_until(lambda: (summary(index, name) or {}).get("tag_count") == 2, "both tags reach the Index")
    assert client.delete(f"/v2/{name}/manifests/drop").status_code == 202
    wait_until(lambda: summary(index, name)["tag_count"] == 1, "the deleted tag leaves the Index")
    history = requests.get(f"{index.url}/api/v1/repositories/{name}/history", auth=ALICE).json()["entries"]
    assert history[0]["action"] == "tag-delete" and history[0]["target"] == f"{name}:drop"


def test_a_node_killed_with_a_backlog_delivers_every_report_once_after_its_restart(tmp_path):
    public_key = node_key(tmp_path / "node-store", tmp_path)
    index = start_index(tmp_path / "index-store", tmp_path, public_key)
    node = start_node(tmp_path / "node-store", tmp_path, index)
    name = repository()
    try:
        client = node_client(index, node, name)
        client.push_image(name, "before")
        wait_until(lambda: summary(index, name), "the first push reaches the Index")
        index.stop()  # the Index is down: the node's reports wait in its outbox
        digests = {f"t{i}": client.push_image(name, f"t{i}")[0] for i in range(5)}
        queue = tmp_path / "node-store" / "state" / "reports" / "hooks" / "registry-index" / "queue"
        records = wait_until(lambda: [json.loads(p.read_text()) for p in sorted(queue.glob("*.json"))]
                             if len(list(queue.glob("*.json"))) == 5 else None, "five reports queued")
        wait_until(lambda: any(json.loads(p.read_text()).get("tries", 0) >= 2 for p in queue.glob("*.json")),
                   "the oldest report is retried")
        assert [r["report"]["tag"] for r in records] == [f"t{i}" for i in range(5)]
        os.killpg(node.process.pid, signal.SIGKILL)
    finally:
        node.stop()
        index.stop()

    index = start_index(tmp_path / "index-store", tmp_path, public_key)
    node = start_node(tmp_path / "node-store", tmp_path, index)
    try:
        wait_until(lambda: (summary(index, name) or {}).get("tag_count") == 6, "every tag reaches the Index")
        wait_until(lambda: not list(queue.glob("*.json")), "the node's queue empties")
        pushes = index_tags(index, name)
    finally:
        node.stop()
        index.stop()
    assert sorted(pushes) == sorted(["before", *digests])
    for tag, digest in digests.items():
        (entry,) = pushes[tag]  # recorded once
        assert entry["current"] == digest
    seen = list((tmp_path / "index-store" / "state" / "node-reports" / NODE).iterdir())
    assert len(seen) == 6


def signed(payload: dict, key, kid: str = NODE) -> bytes:
    now = int(time.time())
    return jwt.encode({"iss": kid, "aud": signing.AUDIENCE, "iat": now, "exp": now + 60, **payload}, key,
                      algorithm="EdDSA", headers={"kid": kid}).encode()


def a_report(name: str, tag: str = "v1") -> dict:
    return {"id": uuid.uuid4().hex, "node": NODE, "action": "push", "repository": name, "tag": tag,
            "digest": "sha256:" + uuid.uuid4().hex * 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 123, "actor": "alice", "time": "2024-05-01T12:00:00Z"}


def post_report(index, body: bytes) -> requests.Response:
    return requests.post(index.url + "/api/v1/nodes/reports", data=body,
                         headers={"Content-Type": "application/jose"})


def test_a_report_not_signed_by_a_trusted_node_key_is_refused_with_401(pair):
    index, node = pair
    name = repository()
    stranger = Ed25519PrivateKey.generate()
    for body in (signed({"report": a_report(name)}, stranger),          # the node's name, another key
                 signed({"report": a_report(name)}, stranger, "node-9"),  # a node nobody listed
                 json.dumps({"report": a_report(name)}).encode(),         # not signed at all
                 b""):
        refused = post_report(index, body)
        assert refused.status_code == 401, refused.text
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert summary(index, name, auth=ADMIN) is None  # nothing was recorded


def test_a_replayed_report_is_answered_as_a_duplicate_and_changes_nothing(pair):
    index, node = pair
    key = signing.load_or_create(str(node.store / "keys"))
    name = repository()
    first, later = a_report(name), a_report(name)
    body = signed({"report": first}, key)
    assert post_report(index, body).json() == {"id": first["id"], "applied": True, "changed": True}
    assert post_report(index, signed({"report": later}, key)).json()["applied"]  # the tag moves on
    replayed = post_report(index, body)
    assert replayed.json() == {"id": first["id"], "applied": False, "duplicate": True}
    pushes = index_tags(index, name)["v1"]
    assert [e["current"] for e in pushes] == [first["digest"], later["digest"]]  # the newest stands


def test_a_report_with_a_field_the_index_cannot_read_is_refused_with_400(pair):
    index, node = pair
    key = signing.load_or_create(str(node.store / "keys"))
    for change in ({"repository": "Not/A/Name"}, {"tag": "-bad"}, {"node": "node-2"}, {"colour": "red"},
                   {"time": "yesterday"}):
        report = {**a_report(repository()), **change}
        refused = post_report(index, signed({"report": report}, key))
        assert refused.status_code == 400, (change, refused.text)
        assert refused.json()["errors"][0]["message"].startswith("the report cannot be applied")


def catalog(node, index, auth) -> list[str]:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token(index, "registry:catalog:*", auth)
    answer = session.get(node.url + "/v2/_catalog", params={"n": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["repositories"]


def test_the_nodes_catalog_lists_what_the_tokens_user_may_pull_on_the_index(pair):
    index, node = pair
    alices, bobs = repository("alice"), repository("bob")
    node_client(index, node, alices).push_image(alices, "v1")
    node_client(index, node, bobs, auth=BOB).push_image(bobs, "v1")
    wait_until(lambda: summary(index, bobs, auth=BOB), "bob's repository reaches the Index")
    alice_sees, bob_sees, admin_sees = (catalog(node, index, auth) for auth in (ALICE, BOB, ADMIN))
    assert alices in alice_sees and bobs not in alice_sees
    assert bobs in bob_sees and alices not in bob_sees
    assert {alices, bobs} <= set(admin_sees)
    made_public = requests.patch(f"{index.url}/api/v1/repositories/{bobs}", json={"visibility": "public"},
                                 auth=BOB)
    assert made_public.status_code == 200, made_public.text
    assert bobs in catalog(node, index, ALICE)  # the Index's visibility, at once


def test_a_registry_node_on_the_index_store_lists_private_repositories_to_an_admin_token(tmp_path):
    index = RunningRegistry(tmp_path / "store", "--role", "index")
    try:
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump({"role": "registry", "auth": {
            "trust": str(index.store / "keys" / keys.CERT_FILE), "realm": index.url + "/token"}}))
        with RunningRegistry(tmp_path / "store", "--config", str(config)) as node:
            assert "alice/notes" in catalog(node, index, ADMIN)        # private: alice's, bob reads it
            assert "alice/notes" in catalog(node, index, BOB)
    finally:
        index.stop()


def test_an_index_listing_a_node_key_that_is_not_a_key_does_not_start_and_says_which(tmp_path):
    with pytest.raises(RuntimeError, match=r"pluginConfig/reporting/nodes/0/publicKey: .*not a public key"):
        start_index(tmp_path / "store", tmp_path, "ssh-ed25519 not-base64-at-all").stop()
