"""Request ids and the JSON access log, through the real server: every response carries
X-Request-Id (the client's own when the whole of it is a well-formed id, else a new one), and with
`http.accessLog: json` each request is one JSON line of the server's output carrying that id."""

from __future__ import annotations

import datetime
import json
import time

import pytest
import requests

from registry_core.config import load
from registry_core.meta.documents import DocumentInvalid
from registry_core.web import request_id
from tests.support.oci import Client, digest, raw_http, unique_name
from tests.support.server import RunningRegistry

FIELDS = {"time", "requestId", "method", "route", "repository", "actor", "status", "bytesIn", "bytesOut",
          "durationMs", "client"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A registry with accounts (the demo users) and the JSON access log."""
    root = tmp_path_factory.mktemp("access-log")
    config = root / "registry.yaml"
    config.write_text("http:\n  accessLog: json\n")
    with RunningRegistry(root / "store", "--config", str(config)) as running:
        yield running


def access_lines(server) -> list[dict]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def line_of(server, identifier: str) -> dict:
    """The access log line of the request `identifier` (written once its response is made)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [line for line in access_lines(server) if line.get("requestId") == identifier]
        if found:
            [line] = found
            return line
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {identifier}:\n{server.log()[-3000:]}")


def test_the_clients_request_id_comes_back_and_names_the_log_line(logged):
    r = requests.get(logged.url + "/v2/library/hello/manifests/latest", headers={"X-Request-Id": "trace-42.a/b"},
                     timeout=10)
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "trace-42.a/b"
    line = line_of(logged, "trace-42.a/b")
    assert set(line) == FIELDS
    assert line["method"] == "GET" and line["route"] == "/v2/<name:path>/manifests/<reference>"
    assert line["repository"] == "library/hello" and line["actor"] == "anonymous" and line["status"] == 200
    assert line["bytesIn"] == 0 and line["bytesOut"] == len(r.content) and line["client"] == "127.0.0.1"
    assert isinstance(line["durationMs"], float) and line["durationMs"] >= 0
    assert datetime.datetime.fromisoformat(line["time"].replace("Z", "+00:00")).tzinfo is not None


def test_a_line_names_the_authenticated_actor_and_the_bytes_pushed(logged):
    data = b"pushed by alice\n" * 100
    r = requests.post(f"{logged.url}/v2/alice/{unique_name('logged')}/blobs/uploads/", params={"digest": digest(data)},
                      data=data, auth=("alice", "alice-demo"), headers={"Content-Type": "application/octet-stream"},
                      timeout=10)
    assert r.status_code == 201, r.text
    line = line_of(logged, r.headers["X-Request-Id"])
    assert line["actor"] == "alice" and line["method"] == "POST" and line["status"] == 201
    assert line["route"] == "/v2/<name:path>/blobs/uploads/" and line["bytesIn"] == len(data)


def test_an_error_and_an_unrouted_path_are_logged_too(logged):
    denied = requests.get(logged.url + "/v2/alice/notes/tags/list", timeout=10)
    assert denied.status_code == 401
    assert line_of(logged, denied.headers["X-Request-Id"])["status"] == 401
    nowhere = requests.get(logged.url + "/nowhere", timeout=10)
    line = line_of(logged, nowhere.headers["X-Request-Id"])
    assert line["status"] == 404 and line["route"] == "(unmatched)" and line["actor"] is None


@pytest.mark.parametrize("given", ["x" * 201, "two\twords", "caf\u00e9", ""])
def test_a_malformed_request_id_is_replaced_by_a_new_one(logged, given):
    head = (f"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Request-Id: {given}\r\nConnection: close\r\n\r\n").encode("latin-1")
    answer = raw_http("127.0.0.1", logged.port, head).decode("latin-1")
    assert answer.startswith("HTTP/1.1 401")
    [returned] = [line.split(": ", 1)[1] for line in answer.split("\r\n") if line.lower().startswith("x-request-id:")]
    assert returned and returned != given and (not given or given not in returned)
    assert line_of(logged, returned)["status"] == 401


def test_a_request_id_is_checked_whole_so_a_trailing_newline_is_refused():
    assert request_id({"HTTP_X_REQUEST_ID": "abc\n"}) != "abc\n"
    assert request_id({"HTTP_X_REQUEST_ID": "x" * 200}) == "x" * 200


def test_a_request_gunicorn_refuses_still_answers_with_a_request_id(logged):
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n def\r\n\r\n"  # obsolete line folding
    answer = raw_http("127.0.0.1", logged.port, head).decode("latin-1")
    assert answer.startswith("HTTP/1.1 400")
    assert [line for line in answer.split("\r\n") if line.startswith("X-Request-Id: ") and len(line) > 14]


def test_every_response_carries_a_request_id(registry):
    for path in ("/v2/", "/healthz", "/nowhere", "/v2/library/hello/manifests/latest"):
        r = requests.get(registry.url + path, timeout=10)
        assert r.headers["X-Request-Id"]
    ids = {requests.get(registry.url + "/v2/", timeout=10).headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


def test_the_default_server_writes_no_access_log_lines(registry):
    requests.get(registry.url + "/v2/", timeout=10)
    assert not [line for line in registry.log().splitlines() if line.startswith('{"time"')]


def test_an_unknown_access_log_format_is_refused_with_the_key(tmp_path):
    config = tmp_path / "registry.yaml"
    config.write_text("http:\n  accessLog: xml\n")
    with pytest.raises(DocumentInvalid, match="accessLog"):
        load(str(config))
