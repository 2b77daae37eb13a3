"""Hostile and broken input gets a 4xx answer in the distribution spec's JSON error shape, and
anything unexpected a JSON 500 that names the request: never an HTML page, never a traceback.

Numbers in query strings and headers (digits that are not ASCII, numbers too long for int()),
text that is not Unicode (a lone surrogate) and JSON nested deep enough to exhaust recursion, in
manifests and API bodies; requests gunicorn refuses before the app sees them; and a plugin whose
route or hook fails, through the real server."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import requests

from tests.support.oci import OCI_MANIFEST, Client, digest, error_codes, raw_http, unique_name
from tests.support.server import RunningRegistry, open_config

ADMIN = ("admin", "admin-demo")
ALICE = ("alice", "alice-demo")
FAULT_PLUGINS = Path(__file__).parent / "fault_plugins"
LONE_SURROGATE = '"\\ud800"'  # JSON text: the escape of half a surrogate pair, no other half


def assert_json_error(response: requests.Response, status: int, code: str) -> dict:
    """The response is `status` with the spec's error body holding `code`; returns that error."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert "<html" not in response.text.lower() and "Traceback" not in response.text
    assert code in error_codes(response), response.text
    return next(e for e in response.json()["errors"] if e["code"] == code)


# --- numbers in query strings ------------------------------------------------------------------------

NOT_NUMBERS = [
    pytest.param("%B2", id="superscript-two"),        # '²': str.isdigit() says yes, int() says no
    pytest.param("%D9%A3", id="arabic-indic-three"),  # int() takes it; not ASCII digits
    pytest.param("9" * 20, id="twenty-digits"),
    pytest.param("+5", id="plus-sign"),
    pytest.param("5%0A", id="trailing-newline"),
]


@pytest.fixture(scope="module")
def starred_by_alice(secured_registry) -> None:
    """alice has starred a repository, so her starred list has something to page through."""
    r = requests.put(f"{secured_registry.url}/api/v1/repositories/library/hello/star", auth=ALICE)
    assert r.status_code == 200, r.text


# Every listing that takes a page size, with the credentials it needs.
LISTINGS = [
    pytest.param("/v2/library/hello/tags/list", None, id="tags"),
    pytest.param("/v2/_catalog", ADMIN, id="catalog"),
    pytest.param("/api/v1/users", ADMIN, id="users"),
    pytest.param("/api/v1/users/alice/starred", ALICE, id="starred"),
    pytest.param("/api/v1/repositories/library/hello/comments", None, id="comments"),
    pytest.param("/api/v1/search", None, id="search"),
    pytest.param("/v1/search", None, id="docker-search"),
]


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize("path, auth", LISTINGS)
def test_a_page_size_that_is_not_ascii_digits_is_refused_with_400_pagination_number_invalid(
        secured_registry, starred_by_alice, path, auth, value):
    r = requests.get(f"{secured_registry.url}{path}?n={value}", auth=auth)
    error = assert_json_error(r, 400, "PAGINATION_NUMBER_INVALID")
    assert error["message"].startswith("n=") and "whole number" in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/search", "/v1/search"])
@pytest.mark.parametrize("value", NOT_NUMBERS + [pytest.param("0", id="zero")])
def test_a_search_page_that_is_not_a_number_from_1_is_refused_with_400(secured_registry, path, value):
    r = requests.get(f"{secured_registry.url}{path}?q=hello&page={value}")
    error = assert_json_error(r, 400, "PAGINATION_NUMBER_INVALID")
    assert error["message"].startswith("page=")


@pytest.mark.parametrize("path, auth", LISTINGS)
def test_a_page_size_in_ascii_digits_still_pages(secured_registry, starred_by_alice, path, auth):
    r = requests.get(f"{secured_registry.url}{path}?n=1", auth=auth)
    assert r.status_code == 200, r.text


# --- numbers in headers ------------------------------------------------------------------------------


def test_a_blob_range_with_thousands_of_digits_is_unsatisfiable_416(client, name):
    blob = client.push_blob(name, b"some bytes")
    r = client.get(f"/v2/{name}/blobs/{blob}", headers={"Range": "bytes=0-" + "9" * 5000})
    assert_json_error(r, 416, "RANGE_INVALID")
    assert client.get(f"/v2/{name}/blobs/{blob}", headers={"Range": "bytes=0-3"}).content == b"some"


def test_a_chunk_whose_content_range_has_thousands_of_digits_is_refused_with_416(client, name):
    r = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    location = r.headers["Location"]
    r = client.patch(location, data=b"abc", headers={"Content-Range": "0-" + "9" * 5000})
    assert_json_error(r, 416, "RANGE_INVALID")
    assert client.get(location).headers["Range"] == "0-0"


# --- text that is not Unicode ------------------------------------------------------------------------


def manifest_bytes(client: Client, name: str, annotation_json: str) -> bytes:
    """An image manifest whose blobs are in `name`, with an annotation whose value is the JSON
    text `annotation_json` (written out by hand: json.dumps cannot write a lone surrogate)."""
    config = b'{"architecture": "amd64", "os": "linux"}'
    client.push_blob(name, config)
    return (f'{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}", '
            f'"config": {{"mediaType": "application/vnd.oci.image.config.v1+json", '
            f'"digest": "{digest(config)}", "size": {len(config)}}}, "layers": [], '
            f'"annotations": {{"note": {annotation_json}}}}}').encode()


def test_a_manifest_with_a_lone_surrogate_in_an_annotation_is_refused_with_manifest_invalid(client, name):
    r = client.push_manifest(name, "v1", manifest_bytes(client, name, LONE_SURROGATE))
    error = assert_json_error(r, 400, "MANIFEST_INVALID")
    assert "surrogate" in error["message"]
    assert client.get(f"/v2/{name}/manifests/v1").status_code == 404


def test_a_manifest_whose_utf8_encodes_a_surrogate_is_refused_with_manifest_invalid(client, name):
    body = manifest_bytes(client, name, '"x"').replace(b'"x"', b'"\xed\xa0\x80"')  # U+D800 as UTF-8
    assert_json_error(client.push_manifest(name, "v1", body), 400, "MANIFEST_INVALID")


def test_a_manifest_with_a_surrogate_pair_is_accepted(client, name):
    body = manifest_bytes(client, name, '"\\ud83d\\ude00"')  # one emoji, escaped as a pair
    assert client.push_manifest(name, "v1", body).status_code == 201
    assert json.loads(client.get(f"/v2/{name}/manifests/v1").content)["annotations"]["note"] == "\U0001F600"


def raw_json(method: str, url: str, text: str, auth) -> requests.Response:
    return requests.request(method, url, data=text.encode(), auth=auth,
                            headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def alices_repository(secured_registry) -> str:
    name = f"alice/{unique_name('hostile')}"
    session = requests.Session()
    session.auth = ALICE
    Client(secured_registry.url, session).push_image(name, "v1")
    return name


def api_bodies(repository: str) -> list[tuple[str, str, str, tuple, str]]:
    """(method, path, JSON text with {}, credentials, field) for each API body holding free text."""
    return [
        ("PATCH", f"/api/v1/repositories/{repository}", '{{"description": {}}}', ALICE, "description"),
        ("POST", f"/api/v1/repositories/{repository}/comments", '{{"body": {}}}', ALICE, "comment"),
        ("PATCH", "/api/v1/users/alice", '{{"email": {}}}', ALICE, "email"),
        ("POST", "/api/v1/users", '{{"name": "surrogate-user", "password": {}}}', ADMIN, "password"),
    ]


def test_api_bodies_with_a_lone_surrogate_are_refused_with_400(secured_registry, alices_repository):
    for method, path, template, auth, field in api_bodies(alices_repository):
        r = raw_json(method, secured_registry.url + path, template.format(LONE_SURROGATE), auth)
        error = assert_json_error(r, 400, "UNSUPPORTED")
        assert "surrogate" in error["message"], field
    assert requests.get(f"{secured_registry.url}/api/v1/users/surrogate-user", auth=ADMIN).status_code == 404
    r = requests.get(f"{secured_registry.url}/api/v1/repositories/{alices_repository}/comments", auth=ALICE)
    assert r.json()["comments"] == []


# --- JSON nested deep ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 50_000])
def test_a_manifest_nested_deep_is_refused_with_manifest_invalid(client, name, depth):
    nested = "[" * depth + "]" * depth
    r = client.push_manifest(name, "v1", manifest_bytes(client, name, nested))
    error = assert_json_error(r, 400, "MANIFEST_INVALID")
    assert "nested more than 64 levels" in error["message"]


@pytest.mark.parametrize("depth", [100, 30_000])  # 30,000: the most that fits in the 64 KiB limit
def test_api_bodies_nested_deep_are_refused_with_400(secured_registry, alices_repository, depth):
    nested = "[" * depth + "]" * depth
    for method, path, template, auth, field in api_bodies(alices_repository):
        r = raw_json(method, secured_registry.url + path, template.format(nested), auth)
        error = assert_json_error(r, 400, "UNSUPPORTED")
        assert "nested more than 64 levels" in error["message"], field


# --- what gunicorn refuses before the app sees it --------------------------------------------------------


def raw_answer(server: RunningRegistry, head: bytes) -> tuple[int, dict, bytes]:
    answer = raw_http("127.0.0.1", server.port, head)
    head_text, _, body = answer.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("head, status, code", [
    (b"POST /v2/x/blobs/uploads/ HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, "BAD_REQUEST"),
    (b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "URI_TOO_LONG"),
    (b"GET /v2/ HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
     "REQUEST_HEADER_FIELDS_TOO_LARGE"),
], ids=["bad-content-length", "uri-too-long", "header-too-large"])
def test_requests_the_http_server_refuses_are_answered_in_json(registry, head, status, code):
    answer_status, headers, body = raw_answer(registry, head)
    assert answer_status == status, body
    assert headers["content-type"].startswith("application/json"), headers
    assert int(headers["content-length"]) == len(body)
    assert [e["code"] for e in json.loads(body)["errors"]] == [code]


# --- the last resort: a plugin that fails ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exploding(tmp_path_factory):
    """An open registry loading tests/fault_plugins/exploding.py."""
    root = tmp_path_factory.mktemp("exploding")
    server = RunningRegistry(root / "store", "--empty", "--config", open_config(root),
                             "--plugins-dir", str(FAULT_PLUGINS))
    yield server
    server.stop()


def assert_internal_error_names_the_request(server: RunningRegistry, r: requests.Response) -> str:
    error = assert_json_error(r, 500, "UNKNOWN")
    request_id = r.headers["X-Request-Id"]
    assert error["message"] == f"internal error; report request id {request_id}"
    assert "exploding-plugin-internal-detail" not in r.text
    return request_id


def test_an_unexpected_failure_in_a_route_is_a_json_500_naming_the_request(exploding):
    r = requests.get(exploding.url + "/_exploding/boom")
    request_id = assert_internal_error_names_the_request(exploding, r)
    log = exploding.log()
    assert re.search(rf"request {re.escape(request_id)}\).*\nTraceback", log), log
    assert "RuntimeError: the exploding plugin fails on purpose" in log


def test_an_unexpected_failure_in_a_hook_on_a_v2_route_is_a_json_500(exploding):
    r = requests.get(exploding.url + "/v2/exploding/app/tags/list")
    request_id = assert_internal_error_names_the_request(exploding, r)
    assert request_id in exploding.log()


def test_the_clients_request_id_is_the_one_reported(exploding):
    r = requests.get(exploding.url + "/_exploding/boom", headers={"X-Request-Id": "client-chosen-42"})
    assert assert_internal_error_names_the_request(exploding, r) == "client-chosen-42"
    r = requests.get(exploding.url + "/_exploding/boom", headers={"X-Request-Id": "two words"})
    assert assert_internal_error_names_the_request(exploding, r) != "two words"


def test_a_head_request_that_fails_has_no_body(exploding):
    r = requests.head(exploding.url + "/_exploding/boom")
    assert r.status_code == 500 and r.content == b"" and r.headers["X-Request-Id"]


def test_a_plugin_routes_http_error_and_registry_error_answer_in_json(exploding):
    error = assert_json_error(requests.get(exploding.url + "/_exploding/denied"), 403, "DENIED")
    assert error["message"] == "the exploding plugin says no"
    error = assert_json_error(requests.get(exploding.url + "/_exploding/refused"), 404, "NAME_UNKNOWN")
    assert error["message"] == "the exploding plugin knows no such thing"


def test_the_registry_serves_on_after_failures(exploding):
    for _ in range(3):
        requests.get(exploding.url + "/_exploding/boom")
    assert requests.get(exploding.url + "/v2/").status_code == 200


def test_a_connection_that_sends_garbage_gets_json_and_the_server_serves_on(registry):
    with socket.create_connection(("127.0.0.1", registry.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b"application/json" in answer, answer
    assert requests.get(registry.url + "/v2/").status_code == 200
