"""A pull-through mirror (the built-in plugin plugins/mirror) through real HTTP: a second
`registry serve` as the upstream (an open registry seeded with the sample store, its JSON access log
counting what the mirror asks of it), the mirror with accounts on, skopeo and requests as clients,
and a small relay of our own in front of the upstream for faults (429, 503, a blob cut mid-way).

The mirror's upstreams, by prefix:
- `library/` and every other name: the upstream, names kept, the default TTL (300 s);
- `ttl/`: the upstream with a 1-second TTL (tags moved upstream);
- `faulty/`: the relay (upstream's `library/`), TTL 0: every pull by tag asks the upstream;
- `gone/`: a second upstream the tests stop.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from registry_core.builtin_plugins.mirror.profile import parse_upstream
from registry_core.builtin_plugins.mirror.settings import check_url
from registry_core.names import digest_of
from tests.support.oci import Client, error_codes, unique_name
from tests.support.server import RunningRegistry, free_port
from tests.support.skopeo import Skopeo

ACCEPT = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}


def access_log(server: RunningRegistry, repository: str) -> list[dict]:
    """The requests `server` answered for `repository` (its JSON access log)."""
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{") and '"requestId"' in line:
            entry = json.loads(line)
            if entry.get("repository") == repository:
                entries.append(entry)
    return entries


def open_upstream(root: Path) -> RunningRegistry:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "upstream.yaml"
    config.write_text(yaml.safe_dump({"auth": {"enabled": False}, "http": {"accessLog": "json"}}))
    return RunningRegistry(root / "store", "--config", str(config))


class FaultyRelay:
    """An HTTP relay to `target` on 127.0.0.1; `mode` makes it answer every request 429 (with
    Retry-After: 7) or 503, or cut every blob after half its bytes (the headers announce it whole)."""

    def __init__(self, target: str):
        self.target, self.mode, self.requests = target, "pass", 0
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head: bool):
                relay.requests += 1
                if relay.mode in ("429", "503"):
                    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_response(int(relay.mode))
                    if relay.mode == "429":
                        self.send_header("Retry-After", "7")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                    return
                upstream = requests.request(self.command, relay.target + self.path,
                                            headers={"Accept": self.headers.get("Accept", "*/*")}, timeout=30)
                self.send_response(upstream.status_code)
                for header in ("Content-Type", "Docker-Content-Digest", "Content-Length"):
                    if header in upstream.headers:
                        self.send_header(header, upstream.headers[header])
                self.end_headers()
                if head:
                    return
                if relay.mode == "cut" and "/blobs/" in self.path:
                    self.wfile.write(upstream.content[:len(upstream.content) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(upstream.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    server = open_upstream(tmp_path_factory.mktemp("upstream"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def doomed(tmp_path_factory):
    """An upstream that test_upstream_stopped… stops."""
    server = open_upstream(tmp_path_factory.mktemp("doomed"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay(upstream):
    faulty = FaultyRelay(upstream.url)
    yield faulty
    faulty.stop()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, upstream, doomed, relay):
    root = tmp_path_factory.mktemp("mirror")
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["mirror"], "pluginConfig": {"mirror": {"upstreams": [
        {"prefix": "", "url": upstream.url},
        {"prefix": "ttl/", "url": upstream.url, "tagTtl": 1},
        {"prefix": "faulty/", "url": relay.url, "upstreamPrefix": "library/", "tagTtl": 0},
        {"prefix": "gone/", "url": doomed.url, "upstreamPrefix": "library/"}],
        "timeout": 10}}}))
    server = RunningRegistry(root / "store", "--empty", "--config", str(config))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def relay_passes(relay):
    relay.mode = "pass"
    yield
    relay.mode = "pass"


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + path, headers=ACCEPT, timeout=60, **kwargs)


def skopeo_copy(tmp_path: Path, source: str, check: bool = True):
    skopeo = Skopeo(tmp_path / "skopeo-home")
    return skopeo.run("copy", source, f"oci:{tmp_path / 'image'}:latest", check=check)


def stored_blobs(server: RunningRegistry) -> set[str]:
    folder = server.store / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in folder.rglob("*") if p.is_file() and len(p.name) == 64}


# --- pulling through ------------------------------------------------------------------------------

def test_cold_pull_by_skopeo_fills_the_mirror_and_a_warm_pull_asks_the_upstream_nothing(tmp_path, mirror,
                                                                                       upstream):
    skopeo_copy(tmp_path / "cold", f"docker://{mirror.host}/library/busybox-lite:latest")
    asked = len(access_log(upstream, "library/busybox-lite"))
    assert asked > 0
    skopeo_copy(tmp_path / "warm", f"docker://{mirror.host}/library/busybox-lite:latest")
    assert len(access_log(upstream, "library/busybox-lite")) == asked
    blob_gets = [e for e in access_log(upstream, "library/busybox-lite") if e["method"] == "GET"
                 and e["route"].endswith("/blobs/<digest>")]
    assert len(blob_gets) == 2   # the config and the one layer, each fetched once
    direct = get(upstream, "/v2/library/busybox-lite/manifests/latest")
    through = get(mirror, "/v2/library/busybox-lite/manifests/latest")
    assert through.content == direct.content


def test_a_filled_repository_belongs_to_the_mirror_and_is_public(mirror):
    r = get(mirror, "/v2/library/hello/manifests/latest")
    assert r.status_code == 200
    info = requests.get(f"{mirror.url}/api/v1/repositories/library/hello", timeout=30).json()
    assert info["visibility"] == "public"
    assert info["owner"] == "registry"


def test_anonymous_pull_of_an_uncached_image_is_allowed_before_anything_is_cached(mirror):
    name = "library/busybox-lite"
    token = requests.get(f"{mirror.url}/token", params={"service": "registry",
                                                        "scope": f"repository:ttl/never-{time.time_ns()}:pull"},
                         timeout=30).json()["token"]
    claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "==="))
    assert claims["access"][0]["actions"] == ["pull"]
    assert get(mirror, f"/v2/{name}/tags/list").status_code == 200


def test_only_the_requested_platform_of_an_index_is_fetched(mirror, upstream):
    index = get(mirror, "/v2/library/hello/manifests/latest").json()
    chosen, other = index["manifests"][0], index["manifests"][1]
    image = get(mirror, f"/v2/library/hello/manifests/{chosen['digest']}")
    assert image.status_code == 200
    for layer in image.json()["layers"]:
        assert get(mirror, f"/v2/library/hello/blobs/{layer['digest']}").status_code == 200
    fetched = {e["route"] for e in access_log(upstream, "library/hello")}
    asked = [e for e in access_log(upstream, "library/hello") if e["method"] == "GET"]
    assert fetched and other["digest"] not in stored_blobs(mirror)
    assert len([e for e in asked if e["route"].endswith("/manifests/<reference>")]) == 2  # the index, one image


def test_tags_list_comes_from_the_upstream_merged_with_the_cache(mirror, upstream):
    name = unique_name("library")
    pusher = Client(upstream.url)
    pusher.push_image(name, "one")
    assert get(mirror, f"/v2/{name}/manifests/one").status_code == 200
    pusher.push_image(name, "two")
    assert get(mirror, f"/v2/{name}/tags/list").json()["tags"] == ["one", "two"]


def test_referrers_come_from_the_upstream(mirror, upstream):
    images = [d["digest"] for d in get(upstream, "/v2/library/hello/manifests/latest").json()["manifests"]]
    subject, direct = next((image, found) for image in images
                           if (found := get(upstream, f"/v2/library/hello/referrers/{image}").json()["manifests"]))
    assert get(mirror, f"/v2/library/hello/manifests/{subject}").status_code == 200
    through = get(mirror, f"/v2/library/hello/referrers/{subject}").json()["manifests"]
    assert [d["digest"] for d in through] == [d["digest"] for d in direct]


def test_a_tag_moved_upstream_is_seen_after_the_ttl_with_one_head(mirror, upstream):
    name = unique_name("ttl")
    pusher = Client(upstream.url)
    first, _, _ = pusher.push_image(name, "latest")
    assert get(mirror, f"/v2/{name}/manifests/latest").headers["Docker-Content-Digest"] == first
    second, _, _ = pusher.push_image(name, "latest")
    time.sleep(1.1)   # the TTL of ttl/ is 1 s
    before = len(access_log(upstream, name))
    assert get(mirror, f"/v2/{name}/manifests/latest").headers["Docker-Content-Digest"] == second
    asked = access_log(upstream, name)[before:]
    assert [e["method"] for e in asked] == ["HEAD", "GET"]
    time.sleep(1.1)
    assert get(mirror, f"/v2/{name}/manifests/latest").headers["Docker-Content-Digest"] == second
    assert [e["method"] for e in access_log(upstream, name)[before + 2:]] == ["HEAD"]


def test_a_manifest_by_digest_is_never_asked_again(mirror, upstream):
    name = unique_name("ttl")
    digest, _, _ = Client(upstream.url).push_image(name, "latest")
    assert get(mirror, f"/v2/{name}/manifests/{digest}").status_code == 200
    before = len(access_log(upstream, name))
    time.sleep(1.1)
    assert get(mirror, f"/v2/{name}/manifests/{digest}").status_code == 200
    assert len(access_log(upstream, name)) == before


def test_a_push_to_the_mirror_is_refused_as_unsupported(mirror):
    r = requests.post(f"{mirror.url}/v2/library/busybox-lite/blobs/uploads/", timeout=30)
    assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]
    assert "mirror" in r.json()["errors"][0]["message"]
    r = requests.put(f"{mirror.url}/v2/mine/app/manifests/v1", data=b"{}", timeout=30,
                     auth=("admin", "x"))
    assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]


# --- when the upstream fails ----------------------------------------------------------------------

@pytest.mark.parametrize("status", ["429", "503"])
def test_an_upstream_answering_429_or_503_does_not_fail_a_cached_pull(tmp_path, mirror, relay, status):
    skopeo_copy(tmp_path / "fill", f"docker://{mirror.host}/faulty/busybox-lite:latest")
    relay.mode = status
    before = relay.requests
    skopeo_copy(tmp_path / "stale", f"docker://{mirror.host}/faulty/busybox-lite:latest")
    assert relay.requests > before   # the TTL is 0: it asked, and served its cache
    assert "faulty/busybox-lite:latest" in mirror.log() and "serving cached content" in mirror.log()


def test_an_uncached_image_behind_a_429_answers_503_with_the_retry_after(mirror, relay):
    relay.mode = "429"
    r = get(mirror, "/v2/faulty/hello/manifests/latest")
    assert r.status_code == 503 and error_codes(r) == ["UNAVAILABLE"]
    assert r.headers["Retry-After"] == "7"
    assert "429" in r.json()["errors"][0]["message"]


def test_an_upstream_cut_mid_blob_stores_nothing_and_the_client_sees_a_broken_transfer(mirror, upstream, relay):
    """4 MiB cut after 2: the mirror has started its 200 (streaming) and aborts it short of its
    Content-Length. Nothing is stored, and the next pull fetches the whole blob."""
    name = unique_name("library")
    big = Client(upstream.url).push_blob(name, os.urandom(4 << 20))
    mirrored = "faulty/" + name.split("/", 1)[1]
    relay.mode = "cut"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{mirror.url}/v2/{mirrored}/blobs/{big}", timeout=60).content
    assert big not in stored_blobs(mirror)
    assert not list(mirror.store.glob("uploads/*/data"))
    assert "was not stored, its transfer is aborted" in mirror.log()
    relay.mode = "pass"
    whole = requests.get(f"{mirror.url}/v2/{mirrored}/blobs/{big}", timeout=60)
    assert whole.status_code == 200 and digest_of(whole.content) == big
    assert big in stored_blobs(mirror)


def test_an_upstream_cut_before_the_first_chunk_answers_502_naming_it(mirror, upstream, relay):
    name = unique_name("library")
    small = Client(upstream.url).push_blob(name, os.urandom(1000))
    relay.mode = "cut"
    r = requests.get(f"{mirror.url}/v2/faulty/{name.split('/', 1)[1]}/blobs/{small}", timeout=60)
    assert r.status_code == 502 and error_codes(r) == ["UNAVAILABLE"]
    assert "broke off mid-blob" in r.json()["errors"][0]["message"]
    assert small not in stored_blobs(mirror)


def test_upstream_stopped_cached_pulls_by_tag_and_digest_and_uncached_answers_502(tmp_path, mirror, doomed):
    skopeo_copy(tmp_path / "fill", f"docker://{mirror.host}/gone/busybox-lite:latest")
    digest = get(mirror, "/v2/gone/busybox-lite/manifests/latest").headers["Docker-Content-Digest"]
    doomed.stop()
    # the TTL of gone/ is 300 s: ask by tag with the TTL passed, by removing the check's time
    for checked in (mirror.store / "state" / "pull-through" / "tags" / "gone").rglob("latest"):
        checked.unlink()
    skopeo_copy(tmp_path / "tag", f"docker://{mirror.host}/gone/busybox-lite:latest")
    skopeo_copy(tmp_path / "digest", f"docker://{mirror.host}/gone/busybox-lite@{digest}")
    r = get(mirror, "/v2/gone/hello/manifests/latest")
    assert r.status_code == 502 and error_codes(r) == ["UNAVAILABLE"]
    assert "could not be reached" in r.json()["errors"][0]["message"]
    assert mirror.log().count("upstream " + doomed.url + " failed") == 1


# --- configuration --------------------------------------------------------------------------------

def test_upstream_urls_are_https_or_plain_http_to_loopback_only():
    assert check_url("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert check_url("https://registry-1.docker.io") == "https://registry-1.docker.io"
    for bad in ("http://registry.example", "ftp://127.0.0.1", "https://u:p@host", "https://host/v2",
                "https://host\n"):
        with pytest.raises(ValueError):
            check_url(bad)


def test_init_option_upstream_reads_prefix_and_url():
    assert parse_upstream("https://ghcr.io") == ("", "https://ghcr.io")
    assert parse_upstream("library/*=https://registry-1.docker.io") == ("library/", "https://registry-1.docker.io")
    with pytest.raises(ValueError, match="--upstream"):
        parse_upstream("Library/=https://x.example")


def test_registry_init_profile_mirror_writes_a_config_that_serves(tmp_path, upstream):
    from tests.support.client import cli
    result = cli("init", tmp_path / "m", "--profile", "mirror", "--upstream", f"library/={upstream.url}",
                 "--tag-ttl", "60")
    assert "registry.yaml" in result.output
    written = yaml.safe_load((tmp_path / "m" / "registry.yaml").read_text())
    assert written["plugins"] == ["mirror"]
    assert written["pluginConfig"]["mirror"]["upstreams"] == [{"prefix": "library/", "url": upstream.url}]
    assert written["pluginConfig"]["mirror"]["tagTtl"] == 60
    with RunningRegistry(tmp_path / "m", "--config", str(tmp_path / "m" / "registry.yaml")) as served:
        assert get(served, "/v2/library/busybox-lite/manifests/latest").status_code == 200


# --- an upstream with accounts (Docker token auth), and a mirror for logged-in customers ----------

@pytest.fixture(scope="module")
def members_mirror(tmp_path_factory, secured_registry):
    """`pull: users`; `up/NAME` is NAME on the secured registry (token auth), pulled with alice's
    login from the environment. The mirror's own store is seeded with the demo accounts (bob)."""
    root = tmp_path_factory.mktemp("members")
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["mirror"], "pluginConfig": {"mirror": {
        "upstreams": [{"prefix": "up/", "upstreamPrefix": "", "url": secured_registry.url, "username": "alice",
                       "password": {"$env": "MIRROR_TEST_UPSTREAM_PASSWORD"}}],
        "pull": "users"}}}))
    server = RunningRegistry(root / "store", "--config", str(config),
                             env={"MIRROR_TEST_UPSTREAM_PASSWORD": "alice-demo"})
    yield server
    server.stop()


def test_an_upstream_with_token_auth_is_pulled_with_the_configured_login(tmp_path, members_mirror,
                                                                        secured_registry):
    """alice/notes is private upstream: only the mirror's login (alice) gets a token for it."""
    assert requests.get(f"{secured_registry.url}/v2/alice/notes/tags/list", timeout=30).status_code == 401
    skopeo = Skopeo(tmp_path / "home")
    skopeo.run("copy", "--src-creds", "bob:bob-demo", f"docker://{members_mirror.host}/up/alice/notes:v1",
               f"oci:{tmp_path / 'notes'}:latest")
    assert (tmp_path / "notes" / "index.json").is_file()


def test_pull_users_refuses_the_anonymous_cached_or_not(members_mirror):
    r = get(members_mirror, "/v2/up/alice/notes/manifests/v1")   # cached by the test above, or not
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    r = get(members_mirror, "/v2/up/library/never-pulled/manifests/latest")
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    r = get(members_mirror, "/v2/up/alice/notes/manifests/v1", auth=("bob", "bob-demo"))
    assert r.status_code == 200
