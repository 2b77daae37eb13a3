"""Pushing blobs: distribution-spec end-4a/4b (POST), end-5 (PATCH), end-6 (PUT), end-11 (mount),
end-13 (upload status) and end-14 (cancel)."""

import json
import os
import uuid
from urllib.parse import urlsplit

import pytest

from tests.support.oci import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Client, digest, error_codes,
                               keepalive_exchange, range_end, raw_http, start_upload, unique_name,
                               upload_location)

OCTETS = {"Content-Type": "application/octet-stream"}


def assert_blob(client, name, data, d=None):
    d = d or digest(data)
    r = client.get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d


def assert_created(client, name, response, d):
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == d
    location = upload_location(client, response)
    assert urlsplit(location).path == f"/v2/{name}/blobs/{d}"
    assert client.head(location).status_code == 200


def patch(client, location, data, start=None, **headers):
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return client.patch(location, data=data, headers={**OCTETS, **headers})


# --- starting a session (end-4a) ------------------------------------------------------------------

def test_post_starts_an_upload_with_202_location_uuid_and_range(client, name):
    r = client.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202
    upload_id = r.headers["Docker-Upload-UUID"]
    uuid.UUID(upload_id)
    assert urlsplit(upload_location(client, r)).path == f"/v2/{name}/blobs/uploads/{upload_id}"
    assert r.headers["Range"] == "0-0"
    assert int(r.headers["OCI-Chunk-Min-Length"]) >= 0


@pytest.mark.parametrize("bad", ["Upper/case", "a//b", "-lead/x", "a/b_"])
def test_upload_to_an_invalid_repository_name_is_400_name_invalid(client, bad):
    r = client.post(f"/v2/{bad}/blobs/uploads/", params={"digest": digest(b"x")}, data=b"x")
    assert r.status_code == 400
    assert error_codes(r) == ["NAME_INVALID"]


def test_each_post_starts_a_new_session(client, name):
    assert start_upload(client, name) != start_upload(client, name)


# --- monolithic (end-4b, end-6) -------------------------------------------------------------------

def test_monolithic_post_with_digest_creates_the_blob_with_201(client, name):
    data = os.urandom(3000)
    d = digest(data)
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, data=data, headers=OCTETS)
    assert_created(client, name, r, d)
    assert_blob(client, name, data)


def test_monolithic_post_with_the_wrong_digest_is_400_digest_invalid_and_stores_nothing(client, name):
    data = os.urandom(100)
    claimed = digest(b"other content")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": claimed}, data=data, headers=OCTETS)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{name}/blobs/{claimed}").status_code == 404
    assert client.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404


def test_monolithic_post_with_a_malformed_digest_is_400_digest_invalid(client, name):
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": "sha256:nothex"}, data=b"x", headers=OCTETS)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


def test_post_then_put_with_the_body_creates_the_blob(client, name):
    data = os.urandom(5000)
    d = digest(data)
    location = start_upload(client, name)
    r = client.put(location, params={"digest": d}, data=data, headers=OCTETS)
    assert_created(client, name, r, d)
    assert_blob(client, name, data)


def test_post_with_a_body_but_no_digest_keeps_the_bytes_for_the_closing_put(client, name):
    data = os.urandom(600)
    r = client.post(f"/v2/{name}/blobs/uploads/", data=data[:400], headers=OCTETS)
    assert r.status_code == 202
    assert range_end(r) == 399
    r = client.put(upload_location(client, r), params={"digest": digest(data)}, data=data[400:], headers=OCTETS)
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_closing_put_without_a_digest_is_400_and_keeps_the_session(client, name):
    location = start_upload(client, name)
    r = client.put(location, data=b"abc", headers=OCTETS)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert client.get(location).status_code == 204


# --- chunked (end-5, end-6, end-13) ---------------------------------------------------------------

def test_chunked_upload_in_several_chunks_reports_the_range_after_each(client, name):
    data = os.urandom(10_000)
    location = start_upload(client, name)
    for start in range(0, len(data), 3000):
        chunk = data[start:start + 3000]
        r = patch(client, location, chunk, start=start)
        assert r.status_code == 202, r.text
        assert range_end(r) == start + len(chunk) - 1
        assert r.headers["Docker-Upload-UUID"] in r.headers["Location"]
        location = upload_location(client, r)
    r = client.put(location, params={"digest": digest(data)}, headers={"Content-Length": "0"})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_chunked_upload_with_an_out_of_order_chunk_is_rejected_with_416(client, name):
    data = os.urandom(300)
    location = start_upload(client, name)
    assert patch(client, location, data[:100], start=0).status_code == 202
    r = patch(client, location, data[150:250], start=150)  # skips bytes 100-149
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99"
    # The session goes on from where it really is.
    assert patch(client, location, data[100:], start=100).status_code == 202
    r = client.put(location, params={"digest": digest(data)})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_chunked_upload_with_a_repeated_chunk_is_rejected_with_416_and_the_current_range(client, name):
    data = os.urandom(200)
    location = start_upload(client, name)
    assert patch(client, location, data[:100], start=0).status_code == 202
    r = patch(client, location, data[:100], start=0)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    assert range_end(client.get(location)) == 99
    assert patch(client, location, data[100:], start=100).status_code == 202
    assert_created(client, name, client.put(location, params={"digest": digest(data)}), digest(data))
    assert_blob(client, name, data)


def test_upload_session_can_be_continued_over_new_connections(registry, name):
    # Each request on a connection of its own, so the registry's worker processes take turns.
    data = os.urandom(8 * 1000)
    location = start_upload(Client(registry.url), name)
    for start in range(0, len(data), 1000):
        r = patch(Client(registry.url), location, data[start:start + 1000], start=start)
        assert r.status_code == 202, r.text
        assert range_end(Client(registry.url).get(location)) == start + 999
    r = Client(registry.url).put(location, params={"digest": digest(data)})
    assert_created(Client(registry.url), name, r, digest(data))
    assert_blob(Client(registry.url), name, data)


def test_connection_stays_usable_after_a_chunk_is_refused_with_416(registry, client, name):
    location = start_upload(client, name)
    path = urlsplit(location).path
    chunk = os.urandom(1 << 20)
    out_of_order = (f"PATCH {path} HTTP/1.1\r\nHost: {registry.host}\r\nContent-Range: 100-{100 + len(chunk) - 1}\r\n"
                    f"Content-Length: {len(chunk)}\r\n\r\n").encode() + chunk
    status = f"GET {path} HTTP/1.1\r\nHost: {registry.host}\r\n\r\n".encode()
    assert keepalive_exchange("127.0.0.1", registry.port, [out_of_order, status]) == [416, 204]


def test_first_chunk_must_start_at_zero(client, name):
    location = start_upload(client, name)
    r = patch(client, location, b"x" * 10, start=5)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-0"


def test_streamed_patch_without_content_range_appends(client, name):
    data = os.urandom(4096)
    location = start_upload(client, name)
    r = client.patch(location, data=data[:1000], headers=OCTETS)
    assert r.status_code == 202
    assert range_end(r) == 999
    r = client.patch(upload_location(client, r), data=data[1000:], headers=OCTETS)
    assert r.status_code == 202
    assert range_end(r) == len(data) - 1
    r = client.put(upload_location(client, r), params={"digest": digest(data)})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_patch_with_chunked_transfer_encoding_streams_the_body(client, name):
    pieces = [os.urandom(n) for n in (1, 70_000, 3, 1 << 20, 12_345)]
    data = b"".join(pieces)
    location = start_upload(client, name)

    def body():
        yield from pieces

    r = client.patch(location, data=body(), headers=OCTETS)  # a generator: Transfer-Encoding: chunked
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 202, r.text
    assert range_end(r) == len(data) - 1
    r = client.put(upload_location(client, r), params={"digest": digest(data)})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_closing_put_with_a_chunked_transfer_encoding_body(client, name):
    data = os.urandom(50_000)
    location = start_upload(client, name)
    r = client.put(location, params={"digest": digest(data)}, data=iter([data[:10], data[10:]]), headers=OCTETS)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_upload_status_is_204_with_range_and_location(client, name):
    location = start_upload(client, name)
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-0"
    assert upload_location(client, r) == location
    patch(client, location, b"a" * 42, start=0)
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-41"
    assert upload_location(client, r) == location
    assert r.content == b""


def test_closing_put_with_the_last_chunk(client, name):
    data = os.urandom(2500)
    location = start_upload(client, name)
    assert patch(client, location, data[:2000], start=0).status_code == 202
    r = client.put(location, params={"digest": digest(data)}, data=data[2000:],
                   headers={**OCTETS, "Content-Range": f"2000-{len(data) - 1}"})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_closing_put_with_an_out_of_order_last_chunk_is_rejected_with_416(client, name):
    data = os.urandom(300)
    location = start_upload(client, name)
    assert patch(client, location, data[:100], start=0).status_code == 202
    r = client.put(location, params={"digest": digest(data)}, data=data[200:],
                   headers={**OCTETS, "Content-Range": f"200-{len(data) - 1}"})
    assert r.status_code == 416, r.text
    assert r.headers["Range"] == "0-99"
    assert range_end(client.get(location)) == 99  # nothing of the refused chunk was kept
    r = client.put(location, params={"digest": digest(data)}, data=data[100:],
                   headers={**OCTETS, "Content-Range": f"100-{len(data) - 1}"})
    assert_created(client, name, r, digest(data))
    assert_blob(client, name, data)


def test_closing_put_with_the_wrong_digest_is_400_digest_invalid_and_keeps_the_upload(client, name):
    data = os.urandom(1000)
    location = start_upload(client, name)
    assert patch(client, location, data, start=0).status_code == 202
    wrong = digest(data + b"!")
    r = client.put(location, params={"digest": wrong})
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{name}/blobs/{wrong}").status_code == 404
    # The session still answers with everything it had, and a corrected PUT completes it.
    status = client.get(location)
    assert status.status_code == 204
    assert range_end(status) == len(data) - 1
    assert_created(client, name, client.put(location, params={"digest": digest(data)}), digest(data))
    assert_blob(client, name, data)


def test_closing_put_with_a_body_and_the_wrong_digest_keeps_the_body_for_a_corrected_put(client, name):
    data = os.urandom(700)
    location = start_upload(client, name)
    assert patch(client, location, data[:300], start=0).status_code == 202
    r = client.put(location, params={"digest": digest(b"nope")}, data=data[300:], headers=OCTETS)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert range_end(client.get(location)) == len(data) - 1
    assert_created(client, name, client.put(location, params={"digest": digest(data)}), digest(data))


def test_completed_upload_is_gone(client, name):
    data = b"complete me"
    location = start_upload(client, name)
    assert client.put(location, params={"digest": digest(data)}, data=data).status_code == 201
    r = client.get(location)
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert patch(client, location, b"more", start=len(data)).status_code == 404


def test_uploading_a_blob_that_already_exists_succeeds(client, name):
    data = os.urandom(64)
    client.push_blob(name, data)
    other = unique_name()
    location = start_upload(client, other)
    r = client.put(location, params={"digest": digest(data)}, data=data, headers=OCTETS)
    assert_created(client, other, r, digest(data))
    assert_blob(client, other, data)
    assert_blob(client, name, data)


# --- cancelling and unknown sessions (end-14) -----------------------------------------------------

def test_delete_cancels_the_upload_then_it_is_404_blob_upload_unknown(client, name):
    location = start_upload(client, name)
    patch(client, location, b"abc", start=0)
    r = client.delete(location)
    assert r.status_code == 204
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(method, location, params={"digest": digest(b"abc")} if method == "PUT" else None)
        assert r.status_code == 404, method
        assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"], method


def test_upload_id_from_another_repository_is_404_blob_upload_unknown(client, name):
    location = start_upload(client, name)
    patch(client, location, b"secret", start=0)
    upload_id = location.rsplit("/", 1)[1]
    other = unique_name()
    foreign = f"/v2/{other}/blobs/uploads/{upload_id}"
    for method, kwargs in [("GET", {}), ("PATCH", {"data": b"more"}), ("DELETE", {}),
                           ("PUT", {"params": {"digest": digest(b"secret")}})]:
        r = client.request(method, foreign, **kwargs)
        assert r.status_code == 404, method
        assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"], method
    # The session is untouched in its own repository.
    assert range_end(client.get(location)) == len(b"secret") - 1
    assert client.head(f"/v2/{other}/blobs/{digest(b'secret')}").status_code == 404


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "not-a-uuid", "%2e%2e", str(uuid.uuid4()).upper()])
def test_unknown_upload_id_is_404_blob_upload_unknown(client, name, upload_id):
    r = client.get(f"/v2/{name}/blobs/uploads/{upload_id}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


# --- interrupted requests -------------------------------------------------------------------------

def test_truncated_patch_body_loses_nothing_already_stored_and_the_server_keeps_serving(registry, client, name):
    data = os.urandom(3000)
    location = start_upload(client, name)
    assert patch(client, location, data[:1000], start=0).status_code == 202
    path = urlsplit(location).path
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {registry.host}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Range: 1000-2999\r\nContent-Length: 2000\r\n\r\n").encode()
    answer = raw_http("127.0.0.1", registry.port, head, data[1000:1500])  # 500 of the 2000 bytes, then EOF
    assert answer.startswith(b"HTTP/1.1 400") and b"BLOB_UPLOAD_INVALID" in answer, answer

    assert client.get("/v2/").status_code == 200
    status = client.get(location)
    assert status.status_code == 204
    kept = range_end(status) + 1
    assert 1000 <= kept <= 1500  # the first chunk is all there; at most what was sent of the second
    # Resuming from the reported offset completes the blob intact.
    assert patch(client, location, data[kept:], start=kept).status_code == 202
    assert_created(client, name, client.put(location, params={"digest": digest(data)}), digest(data))
    assert_blob(client, name, data)


def test_truncated_chunked_patch_is_400_blob_upload_invalid_and_loses_nothing_already_stored(
        registry, client, name):
    data = os.urandom(3000)
    location = start_upload(client, name)
    assert patch(client, location, data[:1000], start=0).status_code == 202
    head = (f"PATCH {urlsplit(location).path} HTTP/1.1\r\nHost: {registry.host}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    cut = b"%x\r\n" % 1000 + data[1000:2000] + b"\r\n" + b"%x\r\n" % 1000 + data[2000:2400]  # no last chunk
    answer = raw_http("127.0.0.1", registry.port, head, cut)
    assert answer.startswith(b"HTTP/1.1 400") and b"BLOB_UPLOAD_INVALID" in answer, answer

    assert client.get("/v2/").status_code == 200
    kept = range_end(client.get(location)) + 1
    assert 1000 <= kept <= 2400
    assert patch(client, location, data[kept:], start=kept).status_code == 202
    assert_created(client, name, client.put(location, params={"digest": digest(data)}), digest(data))
    assert_blob(client, name, data)


def test_truncated_monolithic_post_stores_no_blob_and_the_server_keeps_serving(registry, client, name):
    data = os.urandom(2000)
    d = digest(data)
    head = (f"POST /v2/{name}/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {registry.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    answer = raw_http("127.0.0.1", registry.port, head, data[:700])
    assert answer.startswith(b"HTTP/1.1 400") and b"BLOB_UPLOAD_INVALID" in answer, answer
    assert client.head(f"/v2/{name}/blobs/{d}").status_code == 404
    assert client.get("/v2/").status_code == 200
    client.push_blob(name, data)  # and the same blob can then be pushed whole
    assert_blob(client, name, data)


# --- cross-repository mount (end-11) --------------------------------------------------------------

def test_mount_from_another_repository_is_201_with_location(client, name):
    data = os.urandom(500)
    d = client.push_blob(name, data)
    target = unique_name()
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": name})
    assert_created(client, target, r, d)
    assert_blob(client, target, data)


def test_mount_when_the_source_does_not_have_the_blob_falls_back_to_an_upload_session(client, name):
    data = os.urandom(500)
    d = client.push_blob(unique_name(), data)  # exists in the registry, but not in `source`
    source = unique_name()
    client.push_blob(source, b"unrelated")
    for params in ({"mount": d, "from": source},      # source lacks it
                   {"mount": d, "from": "No/Such"},   # source is not even a valid name
                   {"mount": d}):                     # no source: never mounted by digest alone
        r = client.post(f"/v2/{name}/blobs/uploads/", params=params)
        assert r.status_code == 202, params
        assert "Docker-Upload-UUID" in r.headers
        assert client.head(f"/v2/{name}/blobs/{d}").status_code == 404
    # The fallback session is an ordinary upload.
    r = client.put(upload_location(client, r), params={"digest": d}, data=data, headers=OCTETS)
    assert_created(client, name, r, d)
    assert_blob(client, name, data)


def test_mount_with_an_invalid_digest_is_400_digest_invalid(client, name):
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"mount": "sha256:1234", "from": unique_name()})
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


# --- other digest algorithms ----------------------------------------------------------------------

def test_sha512_digests_work_end_to_end(client, name):
    monolithic = os.urandom(1500)
    d = digest(monolithic, "sha512")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, data=monolithic, headers=OCTETS)
    assert_created(client, name, r, d)
    assert_blob(client, name, monolithic, d)
    r = client.get(f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == monolithic[-10:]

    chunked = os.urandom(2500)
    d2 = digest(chunked, "sha512")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert r.status_code == 202
    location = upload_location(client, r)
    assert patch(client, location, chunked[:1000], start=0).status_code == 202
    assert patch(client, location, chunked[1000:], start=1000).status_code == 202
    r = client.put(location, params={"digest": d2})
    assert_created(client, name, r, d2)
    assert_blob(client, name, chunked, d2)

    target = unique_name()
    assert_created(client, target, client.post(f"/v2/{target}/blobs/uploads/",
                                               params={"mount": d, "from": name}), d)
    assert client.delete(f"/v2/{name}/blobs/{d}").status_code == 202
    assert client.head(f"/v2/{name}/blobs/{d}").status_code == 404
    assert_blob(client, target, monolithic, d)

    # A manifest may refer to the sha512 blob, and be addressed by a sha512 digest itself.
    config = b'{"os": "linux"}'
    client.push_blob(name, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": d2, "size": len(chunked)}]}).encode()
    r = client.push_manifest(name, digest(manifest, "sha512"), manifest)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/manifests/{digest(manifest, 'sha512')}").content == manifest


def test_a_session_completed_by_another_request_meanwhile_is_blob_upload_unknown_not_a_wrong_digest(tmp_path):
    """Two PUTs completing one session (a client's retry landing on another worker): the one that
    finds the session gone once it holds the lock answers 404 BLOB_UPLOAD_UNKNOWN, not 400
    DIGEST_INVALID about "0 bytes"; the blob the other one published is whole."""
    import contextlib
    import hashlib

    from registry_core.errors import RegistryError
    from registry_core.registry.blobs import BlobService
    from registry_core.registry.uploads import UploadService
    from registry_core.storage.filesystem import FilesystemDriver

    driver = FilesystemDriver(str(tmp_path))
    first, second = UploadService(driver, BlobService(driver)), UploadService(driver, BlobService(driver))
    data = os.urandom(3 << 20)
    blob = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = first.start("t/retried")
    first.append("t/retried", upload_id, [data])
    holding = second._locked

    @contextlib.contextmanager
    def after_the_other_completed(repository, session):
        first.finish(repository, session, blob)  # between the second's check and its lock
        with holding(repository, session):
            yield

    second._locked = after_the_other_completed
    with pytest.raises(RegistryError) as refused:
        second.finish("t/retried", upload_id, blob)

    assert refused.value.code == "BLOB_UPLOAD_UNKNOWN"
    with driver.reader(f"blobs/sha256/{blob[7:9]}/{blob[7:]}") as f:
        assert f.read() == data
