"""A sponsor's community registry (the built-in plugin plugins/sponsor) through real HTTP: the real
registry process (two gunicorn workers) on 127.0.0.1, requests as the client.

Each test that counts anonymous pulls connects from an address of its own in 127.0.0.0/8 (all of
it is the loopback), so the per-address counters of one test do not spill into another's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from registry_core.builtin_plugins.sponsor.settings import parse_limit, parse_size
from registry_core.meta.documents import DocumentInvalid
from registry_core.plugins import make_plugin_manager, validate_plugin_config
from tests.support.oci import OCI_MANIFEST, Client, descriptor, digest, error_codes
from tests.support.server import REGISTRY, FromAddress, RunningRegistry

ALICE = ("alice", "alice-demo")
ACCEPT = {"Accept": "application/vnd.oci.image.index.v1+json, " + OCI_MANIFEST}
HELLO = "/v2/library/hello/manifests/latest"
QUOTA = 64 * 1024


def session_from(address: str, auth=None) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    session.auth = auth
    session.headers.update(ACCEPT)
    return session


def start(root: Path, section: dict) -> RunningRegistry:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["sponsor"], "pluginConfig": {"sponsor": section}}))
    return RunningRegistry(root / "store", "--config", str(config), "--workers", "2")


@pytest.fixture(scope="module")
def sponsor(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("sponsor"), {
        "pullLimit": "100/6h", "userPullLimit": "150/6h", "quota": "64KiB", "signupLimit": "3/1h"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("closed"), {"signup": "closed"})
    yield server
    server.stop()


def sign_up(server, name: str, password: str = "a-long-password", address: str = "127.0.0.1"):
    return session_from(address).post(f"{server.url}/api/v1/users", json={"name": name, "password": password})


def new_user(server) -> tuple[str, str]:
    name = f"u{uuid.uuid4().hex[:10]}"
    r = sign_up(server, name, address=f"127.0.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}")
    assert r.status_code == 201, r.text
    return name, "a-long-password"


def message(response: requests.Response) -> str:
    return response.json()["errors"][0]["message"]


# --- sign-up ---------------------------------------------------------------------------------------

def test_sign_up_without_credentials_then_push_to_one_s_own_namespace(sponsor):
    name = f"u{uuid.uuid4().hex[:10]}"
    r = sign_up(sponsor, name, address="127.0.1.1")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and r.json()["admin"] is False and "password" not in r.json()
    user = Client(sponsor.url, session_from("127.0.1.1", (name, "a-long-password")))
    pushed, _, _ = user.push_image(f"{name}/app", "v1")
    assert user.get(f"/v2/{name}/app/manifests/v1").headers["Docker-Content-Digest"] == pushed
    r = user.post("/v2/alice/theirs/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_sign_up_takes_no_admin_flag_nor_a_taken_name(sponsor):
    r = session_from("127.0.1.2").post(f"{sponsor.url}/api/v1/users",
                                       json={"name": "mallory", "password": "a-long-password", "admin": True})
    assert r.status_code == 400 and "unknown field admin" in message(r)
    r = sign_up(sponsor, "alice", address="127.0.1.2")
    assert r.status_code == 409 and "taken" in message(r)


def test_sign_ups_are_limited_per_client_address(sponsor):
    for attempt in range(3):
        assert sign_up(sponsor, f"u{uuid.uuid4().hex[:10]}", address="127.0.1.3").status_code == 201
    r = sign_up(sponsor, f"u{uuid.uuid4().hex[:10]}", address="127.0.1.3")
    assert r.status_code == 429 and error_codes(r) == ["TOOMANYREQUESTS"]
    assert "pluginConfig.sponsor.signupLimit" in message(r) and int(r.headers["Retry-After"]) > 0
    assert sign_up(sponsor, f"u{uuid.uuid4().hex[:10]}", address="127.0.1.4").status_code == 201


def test_with_sign_up_closed_an_anonymous_post_gets_401(closed):
    r = sign_up(closed, "dave")
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]


# --- pull limits -----------------------------------------------------------------------------------

def test_the_101st_anonymous_manifest_get_is_429_with_retry_after_and_the_headers_count_down(sponsor):
    client = session_from("127.0.2.1")
    remaining = []
    for _ in range(100):
        r = client.get(sponsor.url + HELLO)
        assert r.status_code == 200, r.text
        assert r.headers["RateLimit-Limit"] == "100;w=21600"
        assert r.headers["Docker-RateLimit-Source"] == "127.0.2.1"
        remaining.append(r.headers["RateLimit-Remaining"])
    assert remaining == [f"{n};w=21600" for n in range(99, -1, -1)]
    r = client.get(sponsor.url + HELLO)
    assert r.status_code == 429 and error_codes(r) == ["TOOMANYREQUESTS"]
    assert 0 < int(r.headers["Retry-After"]) <= 21600
    assert r.headers["RateLimit-Remaining"] == "0;w=21600"
    assert "pull rate limit of 100/6h" in message(r) and "log in for a higher limit" in message(r)
    assert session_from("127.0.2.2").get(sponsor.url + HELLO).status_code == 200  # another address


def test_head_is_not_counted_and_shows_what_is_left(sponsor):
    client = session_from("127.0.2.3")
    assert client.get(sponsor.url + HELLO).headers["RateLimit-Remaining"] == "99;w=21600"
    for _ in range(5):
        r = client.head(sponsor.url + HELLO)
        assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "99;w=21600"
    assert client.get(sponsor.url + HELLO).headers["RateLimit-Remaining"] == "98;w=21600"


def test_blob_pulls_are_not_counted(sponsor):
    client = session_from("127.0.2.4")
    layer = client.get(sponsor.url + "/v2/library/hello/manifests/latest").json()
    child = layer["manifests"][0]["digest"] if "manifests" in layer else None
    if child:
        layer = client.get(f"{sponsor.url}/v2/library/hello/manifests/{child}").json()
    for _ in range(3):
        assert client.get(f"{sponsor.url}/v2/library/hello/blobs/{layer['config']['digest']}").status_code == 200
    expected = 98 if child else 99
    assert client.head(sponsor.url + HELLO).headers["RateLimit-Remaining"] == f"{expected};w=21600"


def test_logged_in_users_have_a_higher_limit_of_their_own(sponsor):
    user = session_from("127.0.2.5", ALICE)
    anonymous = session_from("127.0.2.5")
    for _ in range(100):
        assert anonymous.get(sponsor.url + HELLO).status_code == 200
    assert anonymous.get(sponsor.url + HELLO).status_code == 429
    for n in range(149, 48, -1):
        r = user.get(sponsor.url + HELLO)
        assert r.status_code == 200 and r.headers["RateLimit-Limit"] == "150;w=21600"
        assert r.headers["RateLimit-Remaining"] == f"{n};w=21600" and r.headers["Docker-RateLimit-Source"] == "alice"


def test_the_count_is_shared_by_the_workers_and_survives_their_restart(sponsor):
    client = session_from("127.0.2.6")
    for _ in range(10):
        assert client.get(sponsor.url + HELLO).status_code == 200
    workers = sponsor.pids()[1:]
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # gunicorn starts new workers
        fresh = [pid for pid in sponsor.pids()[1:] if pid not in workers]
        if len(fresh) == 2:
            try:
                r = client.get(sponsor.url + HELLO)
                break
            except requests.ConnectionError:
                pass
        time.sleep(0.2)
    assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "89;w=21600"
    assert (sponsor.store / "state" / "sponsor" / "counters.sqlite").is_file()


# --- quotas ----------------------------------------------------------------------------------------

def build(layer: bytes) -> tuple[bytes, bytes]:
    """(config, manifest body) of an image of one layer."""
    config = json.dumps({"os": "linux", "nonce": uuid.uuid4().hex}).encode()
    return config, json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
                               "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar")]}).encode()


def push_image(user: Client, name: str, layer: bytes, tag: str) -> requests.Response:
    config, body = build(layer)
    user.push_blob(name, config)
    user.push_blob(name, layer)
    r = user.push_manifest(name, tag, body)
    r.sizes = {digest(body): len(body), digest(config): len(config), digest(layer): len(layer)}
    return r


def test_a_layer_shared_by_two_images_of_a_namespace_counts_once(sponsor):
    name, password = new_user(sponsor)
    user = Client(sponsor.url, session_from("127.0.3.1", (name, password)))
    layer = os.urandom(40 * 1024)  # twice is over the 64 KiB quota; once is not
    first = push_image(user, f"{name}/one", layer, "v1")
    second = push_image(user, f"{name}/two", layer, "v1")
    assert first.status_code == 201 and second.status_code == 201, second.text
    usage = user.get(f"/api/v1/namespaces/{name}/usage").json()
    assert usage["usedBytes"] == sum({**first.sizes, **second.sizes}.values())
    assert usage["quotaBytes"] == QUOTA and usage["quota"] == "64KiB (pluginConfig.sponsor.quota)"
    assert usage["repositories"] == 2 and usage["manifests"] == 2


def test_a_push_over_the_quota_is_403_denied_naming_it_and_its_blobs_are_removed(sponsor):
    name, password = new_user(sponsor)
    user = Client(sponsor.url, session_from("127.0.3.2", (name, password)))
    assert push_image(user, f"{name}/one", os.urandom(40 * 1024), "v1").status_code == 201
    layer = os.urandom(30 * 1024)
    r = push_image(user, f"{name}/two", layer, "v1")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert re.fullmatch(rf"pushing {name}/two:v1 would bring the namespace {name} to 70\.\d KiB \(\d+ bytes\), "
                        r"over its quota of 64KiB \(pluginConfig\.sponsor\.quota\): delete images you no longer "
                        r"need, then push again \(the layers uploaded for this push were removed\)", message(r))
    r2 = user.get(f"/v2/{name}/two/blobs/{digest(layer)}")
    assert r2.status_code == 404 and error_codes(r2) == ["BLOB_UNKNOWN"]
    assert user.get(f"/v2/{name}/two/manifests/v1").status_code == 404
    # deleting the first image makes room
    one = user.get(f"/v2/{name}/one/manifests/v1").headers["Docker-Content-Digest"]
    assert user.delete(f"/v2/{name}/one/manifests/{one}").status_code == 202
    assert push_image(user, f"{name}/two", layer, "v1").status_code == 201


def test_a_blob_upload_into_a_full_namespace_is_refused_as_it_starts(sponsor):
    name, password = new_user(sponsor)
    user = Client(sponsor.url, session_from("127.0.3.3", (name, password)))
    config, body = build(os.urandom(60000))
    exactly = os.urandom(QUOTA - len(config) - len(body))  # as many digits as 60000: the same overhead
    pushed = push_image(user, f"{name}/big", exactly, "v1")
    assert pushed.status_code == 201 and sum(pushed.sizes.values()) == QUOTA
    r = user.post(f"/v2/{name}/small/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert message(r).startswith(f"the namespace {name} is full")


def test_the_usage_of_a_namespace_is_shown_to_its_user_only(sponsor):
    name, password = new_user(sponsor)
    r = session_from("127.0.3.4", ALICE).get(f"{sponsor.url}/api/v1/namespaces/{name}/usage")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert session_from("127.0.3.4").get(f"{sponsor.url}/api/v1/namespaces/{name}/usage").status_code == 401
    r = session_from("127.0.3.4", (name, password)).get(f"{sponsor.url}/api/v1/namespaces/{name}/usage")
    assert r.json() == {"namespace": name, "usedBytes": 0, "quotaBytes": QUOTA,
                        "quota": "64KiB (pluginConfig.sponsor.quota)", "repositories": 0, "manifests": 0}


# --- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("100/6h", (100, 21600)), ("5/m", (5, 60)), ("1/1d", (1, 86400))])
def test_limits_are_read(text, expected):
    limit = parse_limit(text)
    assert (limit.count, limit.period) == expected


@pytest.mark.parametrize("text", ["100/6h\n", "0/6h", "100/6", "100 / 6h", "100/6w", "-1/6h", "100"])
def test_limits_are_read_whole(text):
    with pytest.raises(ValueError, match="is not a limit"):
        parse_limit(text)


@pytest.mark.parametrize("text, expected", [("10GiB", 10 * 2**30), ("500MB", 500 * 10**6), ("1024", 1024),
                                            ("64 KiB", 65536)])
def test_sizes_are_read(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["10GiB\n", "10 GiB ", "1.5GiB", "10gib", "GiB", "-1"])
def test_sizes_are_read_whole(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
    with pytest.raises(DocumentInvalid, match=r"pluginConfig/sponsor/quota: .* is not a 'size'"):
        validate_plugin_config(make_plugin_manager(["sponsor"]), {"sponsor": {"quota": text}}, "registry.yaml")


def test_registry_init_profile_sponsor_writes_the_config(tmp_path):
    directory = tmp_path / "sponsor"
    result = subprocess.run([REGISTRY, "init", str(directory), "--profile", "sponsor", "--pull-limit", "2/1h",
                             "--quota", "10GiB", "--signup", "closed"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = directory / "registry.yaml"
    assert yaml.safe_load(config.read_text())["pluginConfig"]["sponsor"] == {
        "signup": "closed", "signupLimit": "10/1h", "pullLimit": "2/1h", "userPullLimit": "4/1h", "quota": "10GiB"}
    with RunningRegistry(directory, "--config", str(config)) as server:
        password = re.search(r"Admin login: admin / (\S+)", result.stdout)[1]
        admin = Client(server.url, session_from("127.0.4.1", ("admin", password)))
        admin.push_image("admin/app", "v1")
        assert requests.patch(f"{server.url}/api/v1/repositories/admin/app", json={"visibility": "public"},
                              auth=("admin", password)).status_code == 200
        anonymous = session_from("127.0.4.2")
        assert [anonymous.get(f"{server.url}/v2/admin/app/manifests/v1").status_code for _ in range(3)] == \
            [200, 200, 429]
        assert sign_up(server, "dave").status_code == 401


def test_registry_init_refuses_a_bad_limit_and_sponsor_options_without_the_profile(tmp_path):
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "bad"), "--profile", "sponsor", "--quota", "10 GB!"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--quota 10 GB!: '10 GB!' is not a size" in result.stderr
    assert not (tmp_path / "bad").exists()
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "s"), "--pull-limit", "1/1h"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "add --profile sponsor" in result.stderr
