"""What fuzzing the request path found (tests/fuzz/fuzz_wsgi.py), through the real server: each
request once answered a 500 UNKNOWN or broke the response, and now gets a clear 4xx in the spec's
JSON error shape. The last test replays every request the fuzzer saved (tests/fuzz/findings/)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests

from tests.support.oci import raw_http
from tests.test_hostile_input import (ADMIN, ALICE, alices_repository, api_bodies, assert_json_error,  # noqa: F401
                                     manifest_bytes, raw_json)

# --- numbers longer than Python converts ---------------------------------------------------------------

HUGE_NUMBER = "1" + "0" * 5000  # over sys.get_int_max_str_digits() (4,300): json.loads raises ValueError


def test_a_manifest_with_a_number_of_thousands_of_digits_is_refused_with_manifest_invalid(client, name):
    r = client.push_manifest(name, "v1", manifest_bytes(client, name, HUGE_NUMBER))
    error = assert_json_error(r, 400, "MANIFEST_INVALID")
    assert "digits" in error["message"]
    assert client.get(f"/v2/{name}/manifests/v1").status_code == 404


def test_api_bodies_with_a_number_of_thousands_of_digits_are_refused_with_400(secured_registry,
                                                                                alices_repository):
    for method, path, template, auth, field in api_bodies(alices_repository):
        r = raw_json(method, secured_registry.url + path, template.format(HUGE_NUMBER), auth)
        error = assert_json_error(r, 400, "UNSUPPORTED")
        assert "digits" in error["message"], field
    assert requests.get(f"{secured_registry.url}/api/v1/users/surrogate-user", auth=ADMIN).status_code == 404
    r = requests.get(f"{secured_registry.url}/api/v1/repositories/{alices_repository}/comments", auth=ALICE)
    assert r.json()["comments"] == []


# --- Basic credentials that are not ASCII ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/", "/v2/library/hello/tags/list", "/api/v1/users/alice"])
def test_basic_credentials_with_characters_beyond_ascii_are_refused_with_401(secured_registry, path):
    r = requests.get(secured_registry.url + path, headers={"Authorization": "Basic YWxpY2U6\xe9\xe9"})
    error = assert_json_error(r, 401, "UNAUTHORIZED")
    assert "malformed Basic credentials" in error["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


# --- every request the fuzzer saved ----------------------------------------------------------------------

FINDINGS = sorted((Path(__file__).parent / "fuzz" / "findings").glob("*.json"))


def wire_request(saved: dict, host: str) -> bytes:
    """The saved request as bytes on the wire: its target as it is, its headers in latin-1 (as
    the fuzzer gave them to the app), its Content-Length as saved (which may disagree with the
    body, or not be a number) or its body chunked."""
    headers = {"Host": host, **saved["headers"]}
    body = base64.b64decode(saved["body"])
    if saved["chunked"]:
        headers["Transfer-Encoding"] = "chunked"
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif saved["content_length"] is not None:
        headers["Content-Length"] = saved["content_length"]
    head = f"{saved['method']} {saved['target']} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()) + "Connection: close\r\n\r\n"
    return head.encode("latin-1") + body


@pytest.mark.parametrize("path", FINDINGS, ids=[path.stem for path in FINDINGS])
def test_each_request_the_fuzzer_saved_gets_an_answer_that_is_not_a_500(registry, secured_registry, path):
    saved = json.loads(path.read_text())
    server = secured_registry if saved["config"] == "secured" else registry
    answer = raw_http("127.0.0.1", server.port, wire_request(saved, server.host))
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert status < 500, answer[:2000]
    if status >= 400 and saved["method"] != "HEAD":
        assert "errors" in json.loads(body) or "error" in json.loads(body), answer[:2000]
