"""The base endpoint, the sample store that `make run` serves, and the error format."""

from tests.support.oci import OCI_INDEX, error_codes


def test_base_endpoint_answers_200_with_api_version_header(client):
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_new_store_is_seeded_with_the_sample_images(client):
    assert {"library/hello", "library/busybox-lite", "alice/notes"} <= set(client.get("/v2/_catalog").json()["repositories"])
    assert client.get("/v2/library/hello/tags/list").json()["tags"] == ["1.0", "latest"]
    r = client.get("/v2/library/hello/manifests/latest")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert len(r.json()["manifests"]) == 2


def test_errors_are_spec_json_with_code_message_and_version_header(client):
    r = client.get("/v2/library/hello/manifests/no-such-tag")
    assert r.status_code == 404
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    error = r.json()["errors"][0]
    assert error["code"] == "MANIFEST_UNKNOWN"
    assert "no-such-tag" in error["message"]


def test_invalid_repository_name_is_rejected_before_touching_storage(client):
    for bad in ["UPPER/case", "a/../b", "-lead/x", "a//b", "x" * 256]:
        r = client.get(f"/v2/{bad}/tags/list")
        assert r.status_code in (400, 404), bad
        if r.status_code == 400:
            assert error_codes(r) == ["NAME_INVALID"]


def test_unknown_repository_is_name_unknown(client):
    r = client.get("/v2/nobody/nothing/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]


def test_unrouted_requests_answer_spec_json_not_html(client):
    r = client.patch("/v2/some/repo/blobs/uploads/")
    assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/json")
    assert error_codes(r) == ["UNSUPPORTED"]
    r = client.get("/nothing/here")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NOT_FOUND"
