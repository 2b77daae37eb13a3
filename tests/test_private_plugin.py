"""A private registry behind a firewall (the built-in plugin plugins/private) through real HTTP:
the real registry process on 127.0.0.1, requests and skopeo as clients.

Every test connects from 127.0.0.1. The main server trusts 127.0.0.1/32 as a proxy, so an
X-Forwarded-For header stands for a client elsewhere; the other servers do not trust it (a spoofed
header must be ignored) or deny 127.0.0.1 itself, to test the peer's own address."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from registry_core.builtin_plugins.private.firewall import Firewall, action_class
from registry_core.builtin_plugins.private.settings import Settings, parse_network
from registry_core.meta.documents import DocumentInvalid
from registry_core.plugins import make_plugin_manager, validate_plugin_config
from tests.support.oci import Client, error_codes, meta_commits, unique_name
from tests.support.server import REGISTRY, RunningRegistry, free_port
from tests.support.skopeo import Skopeo

ALICE, BOB, ADMIN = ("alice", "alice-demo"), ("bob", "bob-demo"), ("admin", "admin-demo")
BUSYBOX = Path(__file__).resolve().parent.parent / "sample_store" / "layouts" / "busybox-lite"
PUBLIC_MANIFEST = "/v2/library/hello/manifests/latest"
ACCEPT = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}

DENIED_EVERYWHERE = "203.0.113.0/24"     # pluginConfig.private.deny
PUSH_DENIED = "198.51.100.0/24"         # pluginConfig.private.actions.push.deny
DELETE_ALLOWED = "192.0.2.0/24"         # pluginConfig.private.actions.delete.allow: deletes only from here


def start(root: Path, section: dict, *args: str) -> RunningRegistry:
    """A registry with `plugins: [private]` and `section` as `pluginConfig.private`, on a new store
    seeded with the demo (users admin, alice, bob; library/hello public, alice/notes private)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["private"], "pluginConfig": {"private": section}}))
    return RunningRegistry(root / "store", "--config", str(config), *args)


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("private"), {
        "deny": [DENIED_EVERYWHERE],
        "actions": {"push": {"deny": [PUSH_DENIED]}, "delete": {"allow": [DELETE_ALLOWED]},
                    "ui": {"deny": ["0.0.0.0/0", "::/0"]}},
        "trustedProxies": ["127.0.0.1/32"]})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory):
    """127.0.0.1 is no proxy here, and may not pull: its X-Forwarded-For must count for nothing."""
    server = start(tmp_path_factory.mktemp("untrusted"), {
        "actions": {"pull": {"deny": ["127.0.0.1/32"]}}, "trustedProxies": ["10.9.9.9/32"]})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    """The TLS proxy (127.0.0.1) must say the client's certificate was verified, in its own header."""
    server = start(tmp_path_factory.mktemp("certified"), {
        "trustedProxies": ["127.0.0.1/32"],
        "clientCertificate": {"required": True, "header": "X-Client-Cert-Verified", "value": "yes"}})
    yield server
    server.stop()


def get(server, path: str, auth=None, client: str | None = None, **headers) -> requests.Response:
    """GET `path`, as the client at address `client` behind the proxy 127.0.0.1 when given."""
    if client:
        headers["X-Forwarded-For"] = client
    return requests.get(server.url + path, auth=auth, headers={**ACCEPT, **headers}, timeout=30)


def client(server, auth=ALICE, address: str | None = None) -> Client:
    session = requests.Session()
    session.auth = auth
    if address:
        session.headers["X-Forwarded-For"] = address
    return Client(server.url, session)


def message(response: requests.Response) -> str:
    return response.json()["errors"][0]["message"]


def refusals(server, address: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"private: refused {address}" in line]


# --- every request needs a login ------------------------------------------------------------------

def test_anonymous_pull_of_a_public_image_is_refused_with_401_and_the_token_challenge(private):
    for path in ("/v2/", PUBLIC_MANIFEST):
        r = get(private, path)
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"], (path, r.text)
        assert re.fullmatch(rf'Bearer realm="{private.url}/token",service="registry"',
                            r.headers["WWW-Authenticate"])


def test_anonymous_callers_get_401_on_every_class_of_route(private, untrusted):
    """The catalog, the search APIs (the registry's and Docker's v1) and the accounts API alike
    (web pages: the next test). (`untrusted` refuses pulls from
    127.0.0.1, `private` every page: each server answers the classes it lets through.)"""
    for server, path in ((private, "/v2/_catalog"), (private, "/v2/library/hello/tags/list"),
                         (private, "/v2/library/hello/referrers/sha256:" + "0" * 64),
                         (untrusted, "/api/v1/search?q=hello"), (untrusted, "/v1/search?q=hello"),
                         (untrusted, "/api/v1/users/alice")):
        r = get(server, path)
        assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"], (path, r.text)
        assert "log in first" in message(r)


def test_web_pages_send_an_anonymous_visitor_to_the_login_page_and_show_a_logged_in_one_everything(untrusted):
    for path, login in (("/", "/login"), ("/search?q=hello", "/login?next=/search"),
                        ("/r/library/hello", "/login?next=/r/library/hello"),
                        ("/r/alice/notes/tags/latest", "/login?next=/r/alice/notes/tags/latest")):
        r = requests.get(untrusted.url + path, allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"] == login, (path, r.status_code, r.text)
    assert get(untrusted, "/static/ui.css").status_code == 200
    assert get(untrusted, "/repositories/library/hello").status_code == 404  # served by nothing
    browser = requests.Session()
    form = browser.get(f"{untrusted.url}/login?next=/r/library/hello")
    assert form.status_code == 200 and 'name="password"' in form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = browser.post(f"{untrusted.url}/login", data={"csrf": csrf, "username": ALICE[0], "password": ALICE[1],
                                                      "next": "/r/library/hello"})
    assert r.status_code == 200 and r.url == f"{untrusted.url}/r/library/hello", r.url
    assert "docker pull" in r.text and "library/hello" in r.text
    assert browser.get(f"{untrusted.url}/r/alice/notes").status_code == 200  # alice's own private repository


def test_logged_in_callers_pass_the_login_check_on_every_class_of_route(untrusted):
    assert get(untrusted, "/api/v1/search?q=hello", ALICE).json()["results"][0]["name"] == "library/hello"
    assert get(untrusted, "/v1/search?q=hello", ALICE).status_code == 200
    r = get(untrusted, "/repositories/library/hello", ALICE)  # no page is served there: past the login, 404
    assert r.status_code == 404 and error_codes(r) == ["NOT_FOUND"]


def test_anonymous_token_requests_are_refused_and_credentials_get_a_token(private):
    path = "/token?service=registry&scope=repository:library/hello:pull"
    r = get(private, path)
    assert r.status_code == 401 and r.json()["error"] == "invalid_request"
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    token = get(private, path, ALICE).json()["token"]
    r = get(private, PUBLIC_MANIFEST, Authorization=f"Bearer {token}")
    assert r.status_code == 200, r.text


def test_logged_in_pull_is_allowed(private):
    r = get(private, PUBLIC_MANIFEST, ALICE)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"].startswith("sha256:")


def test_wrong_credentials_get_401(private):
    r = get(private, PUBLIC_MANIFEST, ("alice", "not-her-password"))
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]


def test_the_catalog_lists_only_what_the_caller_may_pull(private):
    name = f"alice/{unique_name('secret')}"
    client(private, ALICE).push_image(name, "v1")
    listed = {who: get(private, "/v2/_catalog?n=1000", auth).json()["repositories"]
              for who, auth in (("alice", ALICE), ("bob", BOB), ("admin", ADMIN))}
    assert name in listed["alice"] and name in listed["admin"]
    assert name not in listed["bob"]
    assert "alice/notes" in listed["bob"] and "library/hello" in listed["bob"]  # a collaborator; public
    assert get(private, "/v2/_catalog").status_code == 401


# --- address lists ----------------------------------------------------------------------------

def test_an_address_on_the_deny_list_is_refused_with_403_denied_naming_the_rule(private):
    r = get(private, PUBLIC_MANIFEST, ALICE, client="203.0.113.7")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "203.0.113.7" in message(r) and f"{DENIED_EVERYWHERE} of pluginConfig.private.deny" in message(r)


def test_a_denied_address_is_refused_before_its_login_is_asked_for(private):
    r = get(private, PUBLIC_MANIFEST, client="203.0.113.8")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_the_refusal_is_logged_once_with_the_address(private):
    get(private, "/v2/library/hello/tags/list", ALICE, client="203.0.113.77")
    lines = refusals(private, "203.0.113.77")
    assert len(lines) == 1, private.log()
    assert "via 127.0.0.1" in lines[0] and "pull GET '/v2/library/hello/tags/list'" in lines[0]


def test_an_address_denied_for_push_may_still_pull(private):
    pusher = client(private, ALICE, "198.51.100.7")
    assert pusher.get(PUBLIC_MANIFEST, headers=ACCEPT).status_code == 200
    r = pusher.post(f"/v2/alice/{unique_name('denied')}/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert f"{PUSH_DENIED} of pluginConfig.private.actions.push.deny" in message(r)


def test_every_request_of_an_upload_is_a_push(private):
    """An upload's status (GET) and its cancellation (DELETE) are part of a push, not a pull or a delete."""
    name = f"alice/{unique_name('upload')}"
    location = client(private, ALICE).post(f"/v2/{name}/blobs/uploads/").headers["Location"]
    path = location.removeprefix(private.url)
    for method in ("GET", "DELETE"):
        r = requests.request(method, private.url + path, auth=ALICE, headers={"X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 403 and "actions.push.deny" in message(r), (method, r.text)


def test_a_non_empty_allow_list_refuses_every_other_address(private):
    name = f"alice/{unique_name('deletes')}"
    digest, _, _ = client(private, ALICE).push_image(name, "v1")
    r = client(private, ALICE).delete(f"/v2/{name}/manifests/{digest}")  # from 127.0.0.1
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "127.0.0.1 may not make delete requests: it is in no network of " \
           "pluginConfig.private.actions.delete.allow" == message(r)
    assert client(private, ALICE, "192.0.2.10").delete(f"/v2/{name}/manifests/{digest}").status_code == 202


def test_a_class_denied_everywhere_is_refused_on_any_of_its_paths(private):
    """`ui` is every path outside /v2, /token and the APIs, whether or not anything serves it."""
    for path in ("/", "/repositories/library/hello", "/no/such/page"):
        r = get(private, path, ALICE)
        assert r.status_code == 403 and "pluginConfig.private.actions.ui.deny" in message(r), path
    assert get(private, "/api/v1/search?q=hello", ALICE).status_code == 200


# --- X-Forwarded-For ----------------------------------------------------------------------------

def test_the_right_most_forwarded_address_that_is_not_a_trusted_proxy_is_the_client(private):
    # what the client wrote (left) cannot hide where the proxy says it came from (right)
    assert get(private, PUBLIC_MANIFEST, ALICE, client="192.0.2.1, 203.0.113.7").status_code == 403
    # a denied address the client wrote itself, left of its real one, does not count
    assert get(private, PUBLIC_MANIFEST, ALICE, client="203.0.113.7, 192.0.2.1").status_code == 200
    # trusted proxies in the chain are skipped
    assert get(private, PUBLIC_MANIFEST, ALICE, client="203.0.113.7, 127.0.0.1").status_code == 403


def test_forwarded_addresses_are_read_whole(private):
    r = get(private, PUBLIC_MANIFEST, ALICE, client="192.0.2.1, 203.0.113.7x")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "'203.0.113.7x' where an IP address should be" in message(r)


def test_the_client_behind_a_trusted_proxy_is_recorded_as_the_commit_s_client_address(private):
    name = f"alice/{unique_name('recorded')}"
    client(private, ALICE, "192.0.2.55").push_image(name, "v1")
    pushed = [c for c in meta_commits(private.store) if name in c.message]
    assert pushed and all("Client-Addr: 192.0.2.55" in c.message for c in pushed)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(untrusted):
    """127.0.0.1 may not pull there; saying it forwards for someone else changes nothing."""
    for forwarded in (None, "192.0.2.1", "10.9.9.9"):
        r = get(untrusted, PUBLIC_MANIFEST, ALICE, client=forwarded)
        assert r.status_code == 403 and error_codes(r) == ["DENIED"], forwarded
        assert message(r).startswith("127.0.0.1 may not make pull requests")


def test_the_peer_itself_is_judged_per_class(untrusted):
    """127.0.0.1 is denied pull there, not the API: the same address is refused for one class only."""
    assert get(untrusted, "/v2/_catalog", ALICE).status_code == 403
    assert get(untrusted, "/api/v1/search?q=hello", ALICE).status_code == 200


# --- client certificates ----------------------------------------------------------------------

def test_a_verified_client_certificate_is_required_in_the_configured_header(certified):
    r = get(certified, PUBLIC_MANIFEST, ALICE)
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "X-Client-Cert-Verified is missing" in message(r)
    r = get(certified, PUBLIC_MANIFEST, ALICE, **{"X-Client-Cert-Verified": "no"})
    assert r.status_code == 403 and "is 'no', not 'yes'" in message(r)
    r = get(certified, PUBLIC_MANIFEST, ALICE, **{"X-SSL-Client-Verify": "SUCCESS"})  # not the header asked for
    assert r.status_code == 403
    assert get(certified, PUBLIC_MANIFEST, ALICE, **{"X-Client-Cert-Verified": "yes"}).status_code == 200
    assert get(certified, PUBLIC_MANIFEST, **{"X-Client-Cert-Verified": "yes"}).status_code == 401


def test_the_certificate_header_counts_only_from_a_trusted_proxy():
    settings = Settings.from_config({"trustedProxies": ["10.0.0.5/32"], "clientCertificate": {"required": True}})
    firewall = Firewall(settings)
    through_proxy = firewall.judge("10.0.0.5", "192.0.2.1", "GET", "/v2/", certificate="SUCCESS")
    assert through_proxy.refused is None and str(through_proxy.client) == "192.0.2.1"
    direct = firewall.judge("192.0.2.1", None, "GET", "/v2/", certificate="SUCCESS")
    assert "only a trusted proxy may say so (X-SSL-Client-Verify)" in direct.refused


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("10.0.0.1/8", "has host bits set: the network is 10.0.0.0/8"),
    ("10.0.0.0/33", "is not an IPv4 or IPv6 network"),
    ("10.0.0.0/8\n", "is not an IPv4 or IPv6 network"),
    (" 10.0.0.0/8", "is not an IPv4 or IPv6 network"),
    ("010.0.0.0/8", "is not an IPv4 or IPv6 network"),
    ("10.0.0.0/255.0.0.0", "is not an IPv4 or IPv6 network"),
    ("fe80::1%eth0", "is not an IPv4 or IPv6 network"),
    ("256.0.0.0/8", "is not an IPv4 or IPv6 network"),
])
def test_networks_in_the_config_are_read_whole(text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_network(text)
    with pytest.raises(DocumentInvalid, match=r"pluginConfig/private/actions/push/deny/1: .*is not a 'cidr'"):
        validate_plugin_config(make_plugin_manager(["private"]),
                               {"private": {"actions": {"push": {"deny": ["10.1.0.0/16", text]}}}}, "registry.yaml")


def test_networks_in_the_config_take_addresses_and_ipv6():
    assert str(parse_network("10.1.2.3")) == "10.1.2.3/32"
    assert str(parse_network("2001:db8::/32")) == "2001:db8::/32"


def test_a_bad_cidr_in_the_config_stops_start_up_with_one_line_naming_the_key(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["private"], "pluginConfig": {"private": {
        "trustedProxies": ["10.0.0.0/8"], "allow": ["192.0.2.0/24", "10.0.0.1/8"]}}}))
    result = subprocess.run([REGISTRY, "serve", "--store", str(tmp_path / "store"), "--config", str(config),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: invalid configuration: {config}: pluginConfig/private/allow/1: '10.0.0.1/8' is not a 'cidr' "
        "(10.0.0.1/8 has host bits set: the network is 10.0.0.0/8)"], result.stderr


def test_requiring_a_client_certificate_needs_a_trusted_proxy():
    with pytest.raises(DocumentInvalid, match="pluginConfig/private: 'trustedProxies' is a required property"):
        validate_plugin_config(make_plugin_manager(["private"]),
                               {"private": {"clientCertificate": {"required": True}}}, "registry.yaml")


def test_every_path_has_one_class():
    assert [action_class(m, p) for m, p in [
        ("GET", "/v2/"), ("HEAD", "/v2/a/b/blobs/sha256:00"), ("GET", "/v2/a/blobs/uploads/manifests/latest"),
        ("PUT", "/v2/a/manifests/v1"), ("DELETE", "/v2/a/manifests/v1"), ("DELETE", "/v2/a/blobs/uploads/u1"),
        ("GET", "/v2/a/blobs/uploads/u1"), ("POST", "/v2/a/blobs/uploads/"), ("GET", "/token"), ("POST", "/token"),
        ("GET", "/api/v1/search"), ("GET", "/v1/search"), ("GET", "/"), ("GET", "/v2x"), ("GET", "/token/")]] == [
        "pull", "pull", "pull", "push", "delete", "push", "push", "push", "token", "token", "api", "api", "ui",
        "ui", "ui"]


# --- registry init --profile private -------------------------------------------------------------

def test_registry_init_profile_private_then_serve_pushes_and_pulls_with_credentials(tmp_path):
    directory = tmp_path / "private"
    result = subprocess.run([REGISTRY, "init", str(directory), "--profile", "private", "--allow", "127.0.0.1",
                             "--allow", "10.0.0.0/8", "--deny", "10.66.0.0/16", "--trusted-proxy", "10.0.0.5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    password = re.search(r"Admin login: admin / (\S+)", result.stdout)[1]
    config = directory / "registry.yaml"
    assert f"registry serve --config {config}" in result.stdout
    written = yaml.safe_load(config.read_text())
    assert written["plugins"] == ["private"]
    assert written["pluginConfig"]["private"] == {"allow": ["127.0.0.1/32", "10.0.0.0/8"], "deny": ["10.66.0.0/16"],
                                                  "trustedProxies": ["10.0.0.5/32"]}
    assert "# " in config.read_text()  # commented
    with RunningRegistry(directory, "--config", str(config)) as server:
        skopeo = Skopeo(tmp_path / "skopeo")
        target = f"docker://{server.host}/admin/busybox:1"
        skopeo.run("copy", "--dest-creds", f"admin:{password}", f"oci:{BUSYBOX}:latest", target)
        refused = skopeo.run("inspect", target, check=False)
        assert refused.returncode != 0
        skopeo.run("copy", "--src-creds", f"admin:{password}", target, f"dir:{tmp_path / 'pulled'}")
        assert (tmp_path / "pulled" / "manifest.json").exists()


def test_registry_init_refuses_a_bad_network_before_writing_anything(tmp_path):
    directory = tmp_path / "private"
    result = subprocess.run([REGISTRY, "init", str(directory), "--profile", "private", "--deny", "10.0.0.0/33"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--deny 10.0.0.0/33: '10.0.0.0/33' is not an IPv4 or IPv6 network" in result.stderr
    assert not directory.exists()


def test_registry_init_takes_network_options_only_with_the_profile(tmp_path):
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "s"), "--allow", "10.0.0.0/8"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "add --profile private" in result.stderr
