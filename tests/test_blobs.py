"""Pulling, checking and deleting blobs: distribution-spec end-2 (GET/HEAD) and end-10 (DELETE)."""

import os

import pytest

from tests.support.oci import digest, error_codes, unique_name

SIZE = 1000


@pytest.fixture
def blob(client, name) -> tuple[bytes, str]:
    data = os.urandom(SIZE)
    return data, client.push_blob(name, data)


def test_get_blob_returns_the_content_with_docker_content_digest_and_content_length(client, name, blob):
    data, d = blob
    r = client.get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == str(SIZE)
    assert digest(r.content) == d


def test_head_blob_returns_digest_and_length_without_a_body(client, name, blob):
    _, d = blob
    r = client.head(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.content == b""


def test_empty_blob_can_be_pushed_and_pulled(client, name):
    d = client.push_blob(name, b"")
    r = client.get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


@pytest.mark.parametrize("header, start, end", [
    ("bytes=100-199", 100, 199),
    ("bytes=0-0", 0, 0),
    ("bytes=500-", 500, SIZE - 1),          # open-ended
    ("bytes=-100", SIZE - 100, SIZE - 1),   # suffix: the last 100 bytes
    ("bytes=-5000", 0, SIZE - 1),           # a suffix longer than the blob is the whole blob
    ("bytes=900-5000", 900, SIZE - 1),      # an end past the blob is clamped to its last byte
])
def test_range_request_answers_206_with_content_range(client, name, blob, header, start, end):
    data, d = blob
    r = client.get(f"/v2/{name}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert r.content == data[start:end + 1]


def test_range_request_on_head_answers_206_without_a_body(client, name, blob):
    _, d = blob
    r = client.head(f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 10-19/{SIZE}"
    assert r.headers["Content-Length"] == "10"
    assert r.content == b""


def test_large_blob_is_served_whole_and_by_ranges_across_read_boundaries(client, name):
    data = os.urandom(3 * 1024 * 1024 + 17)
    d = client.push_blob(name, data)
    r = client.get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.content == data
    for start, end in [(1024 * 1024 - 5, 2 * 1024 * 1024 + 5), (len(data) - 1, len(data) - 1), (7, 7)]:
        r = client.get(f"/v2/{name}/blobs/{d}", headers={"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206
        assert r.content == data[start:end + 1]


@pytest.mark.parametrize("header", [
    f"bytes={SIZE}-",            # starts after the last byte
    "bytes=5000-10000",
    "bytes=500-0",               # end before start
    "bytes=-0",                  # an empty suffix
    "bytes=-",
    "bytes=0-1,5-6",             # several ranges are not served
    "lines=0-10",
])
def test_unsatisfiable_range_is_rejected_with_416(client, name, blob, header):
    _, d = blob
    r = client.get(f"/v2/{name}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 416, (header, r.status_code)
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"


def test_unknown_blob_is_404_blob_unknown(client, name, blob):
    missing = digest(os.urandom(16))
    for method in ("GET", "HEAD"):
        r = client.request(method, f"/v2/{name}/blobs/{missing}")
        assert r.status_code == 404
    assert error_codes(client.get(f"/v2/{name}/blobs/{missing}")) == ["BLOB_UNKNOWN"]


def test_delete_blob_answers_202_then_the_blob_is_404_blob_unknown(client, name, blob):
    _, d = blob
    r = client.delete(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 202
    assert client.head(f"/v2/{name}/blobs/{d}").status_code == 404
    r = client.get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_delete_unknown_blob_is_404_blob_unknown(client, name, blob):
    r = client.delete(f"/v2/{name}/blobs/{digest(os.urandom(16))}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_blob_pushed_to_one_repository_is_not_readable_through_another(client, name, blob):
    _, d = blob
    other = unique_name()
    client.push_blob(other, b"something else entirely")  # the other repository exists and has blobs
    for method in ("GET", "HEAD"):
        assert client.request(method, f"/v2/{other}/blobs/{d}").status_code == 404, method
    assert error_codes(client.get(f"/v2/{other}/blobs/{d}")) == ["BLOB_UNKNOWN"]
    assert client.get(f"/v2/{other}/blobs/{d}", headers={"Range": "bytes=0-9"}).status_code == 404
    # Nor can it be deleted through the other repository, and the owner still sees it.
    assert client.delete(f"/v2/{other}/blobs/{d}").status_code == 404
    assert client.head(f"/v2/{name}/blobs/{d}").status_code == 200


def test_deleting_a_blob_in_one_repository_leaves_it_readable_in_another(client, name, blob):
    data, d = blob
    other = unique_name()
    client.push_blob(other, data)
    assert client.delete(f"/v2/{name}/blobs/{d}").status_code == 202
    r = client.get(f"/v2/{other}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data


@pytest.mark.parametrize("bad", [
    "md5:" + "0" * 32,                         # unsupported algorithm
    "sha1:" + "0" * 40,
    "sha256:" + "a" * 63,                      # wrong length
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 64,
    "sha256:" + "A" * 64,                      # uppercase hex
    "SHA256:" + "a" * 64,                      # uppercase algorithm
    "sha256:" + "g" * 64,                      # not hex
    "sha256:",
    "sha256",
])
def test_invalid_digest_is_400_digest_invalid(client, name, blob, bad):
    for method in ("GET", "HEAD", "DELETE"):
        r = client.request(method, f"/v2/{name}/blobs/{bad}")
        assert r.status_code == 400, (method, bad, r.status_code)
    assert error_codes(client.get(f"/v2/{name}/blobs/{bad}")) == ["DIGEST_INVALID"]
