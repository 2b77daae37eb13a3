"""What the S3 driver does beyond the shared contract (tests/test_storage_drivers.py): streamed
multipart appends whose state is in the bucket, continued by another process, presigned redirects,
and one clear line when the bucket cannot be used. Against a moto server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest
import requests

from registry_core.errors import RegistryError
from registry_core.registry.blobs import BlobService, LinkCache, LinkTable, links_removed_path, note_links_removed
from registry_core.registry.uploads import UploadService
from registry_core.storage.driver import StorageUnavailable
from registry_core.storage.memory import MemoryDriver
from registry_core.storage.s3 import MIN_PART_SIZE, open_s3_driver
from tests.support.s3 import CREDENTIALS, MotoServer

PART = MIN_PART_SIZE
MIB = 1 << 20


def s3_options(server, bucket: str, **more) -> dict:
    return {"bucket": bucket, "endpoint": server.endpoint, "region": "us-east-1", "prefix": "store",
            "accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"], "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "partSize": PART, **more}


@pytest.fixture
def driver(moto_server, s3_bucket):
    return open_s3_driver(s3_options(moto_server, s3_bucket))


def pieces(data: bytes, size: int = 1 << 20):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_append_uploads_whole_parts_while_the_request_still_streams(driver, moto_server, s3_bucket):
    seen_parts = []

    def request_body():
        yield from pieces(b"a" * (2 * PART + MIB))
        # the body is not over, yet the first parts are already in S3, not buffered here
        uploads = moto_server.client().list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        parts = moto_server.client().list_parts(Bucket=s3_bucket, Key=uploads[0]["Key"],
                                                UploadId=uploads[0]["UploadId"]).get("Parts", [])
        seen_parts.append(len(parts))
        yield b"b" * MIB

    assert driver.append("uploads/u1/data", request_body()) == 2 * PART + 2 * MIB
    assert seen_parts[0] >= 1
    assert driver.get_content("uploads/u1/data") == b"a" * (2 * PART + MIB) + b"b" * MIB


def test_an_append_is_continued_by_another_process_from_what_is_in_the_bucket(moto_server, s3_bucket):
    first = open_s3_driver(s3_options(moto_server, s3_bucket))
    second = open_s3_driver(s3_options(moto_server, s3_bucket))  # nothing shared but the bucket
    one, two, three = os.urandom(PART + MIB), os.urandom(PART + 2 * MIB), os.urandom(MIB)
    assert first.append("uploads/u/data", pieces(one)) == len(one)
    assert second.size("uploads/u/data") == len(one)
    assert second.append("uploads/u/data", pieces(two)) == len(one) + len(two)
    assert first.append("uploads/u/data", pieces(three)) == len(one) + len(two) + len(three)
    assert second.list("uploads/u") == ["data"]
    second.move("uploads/u/data", "blobs/sha256/ab/abc")
    assert hashlib.sha256(first.get_content("blobs/sha256/ab/abc")).digest() == hashlib.sha256(one + two + three).digest()
    assert moto_server.keys(s3_bucket, "store/uploads/") == []
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("first_size", [MIB, PART + MIB], ids=["small", "over-a-part"])
def test_append_after_a_read_continues_the_sealed_object(driver, first_size):
    first, more = os.urandom(first_size), os.urandom(PART)
    driver.append("uploads/u/data", pieces(first))
    assert driver.get_content("uploads/u/data") == first  # sealed: completed at its key
    assert driver.append("uploads/u/data", pieces(more)) == first_size + PART
    with driver.reader("uploads/u/data", first_size - 10) as f:
        assert f.read() == first[-10:] + more


def test_a_body_that_stops_short_keeps_the_bytes_received_and_raises(driver):
    def cut_short():
        yield b"x" * (PART + 100)
        raise RegistryError("BLOB_UPLOAD_INVALID", "the request body ended early")

    with pytest.raises(RegistryError):
        driver.append("uploads/u/data", cut_short())
    assert driver.size("uploads/u/data") == PART + 100
    assert driver.append("uploads/u/data", iter([b"rest"])) == PART + 104


def test_an_object_is_returned_in_order_whatever_the_read_sizes(driver):
    data = os.urandom(4 * MIB + 3 * MIB + 12345)
    driver.put_content("blobs/sha256/ab/big", data)
    with driver.reader("blobs/sha256/ab/big") as f:
        parts = [f.read(1), f.read(777_777), f.read(MIB), f.read(3 * MIB + 5)]
        assert [len(part) for part in parts] == [1, 777_777, MIB, 3 * MIB + 5]
        parts.append(f.read())
        assert f.read(10) == b""
    assert b"".join(parts) == data
    assert driver.get_content("blobs/sha256/ab/big") == data
    with driver.reader("blobs/sha256/ab/big", 1) as f:
        assert f.read() == data[1:]


def test_objects_read_to_their_end_leave_their_connection_to_the_next_request(driver):
    driver.put_content("blobs/sha256/ab/big", os.urandom(2 * MIB))
    driver.put_content("blobs/sha256/ab/empty", b"")
    pools = driver.client._endpoint.http_session._manager.pools
    opened_before = sum(pools[key].num_connections for key in pools.keys())
    for _ in range(3):
        for path in ("blobs/sha256/ab/big", "blobs/sha256/ab/empty"):
            stream, size = driver.sized_reader(path)
            with stream:
                received = 0
                while received < size:  # as a blob GET reads: no read after the last byte
                    received += len(stream.read(MIB))
    assert sum(pools[key].num_connections for key in pools.keys()) == opened_before


class ShortBodies:
    """An HTTP server on 127.0.0.1 that answers every request 200 with a Content-Length of
    `claimed` and sends `sent` bytes, then hangs up (a connection S3 drops mid-body: moto cannot)."""

    def __init__(self, claimed: int, sent: int):
        self.claimed, self.sent = claimed, sent
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.claimed}\r\n\r\n".encode()
                             + b"x" * self.sent)

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("read_size", [MIB, -1])
def test_a_body_shorter_than_its_content_length_raises_instead_of_ending_early(read_size):
    from botocore.exceptions import IncompleteReadError

    server = ShortBodies(claimed=3 * MIB, sent=MIB + 100)
    try:
        driver = open_s3_driver({"bucket": "b", "endpoint": server.endpoint, "region": "us-east-1",
                                 "accessKey": "k", "secretKey": "s"}, check=False)
        stream, size = driver.sized_reader("blobs/sha256/ab/cut")
        assert size == 3 * MIB
        with pytest.raises(IncompleteReadError):
            for _ in range(8):  # more reads than the body needs: the one that finds it cut raises
                if not stream.read(read_size):
                    break
        stream.close()
    finally:
        server.close()


def test_appends_to_one_session_at_once_from_two_processes_cannot_both_succeed(moto_server, s3_bucket):
    first = open_s3_driver(s3_options(moto_server, s3_bucket))
    second = open_s3_driver(s3_options(moto_server, s3_bucket))
    first.append("uploads/u/data", iter([b"start"]))

    def interleaved():
        yield b"first's chunk"
        second.append("uploads/u/data", iter([b"second's chunk"]))  # while first still streams

    with pytest.raises(RegistryError) as refused:
        first.append("uploads/u/data", interleaved())
    assert refused.value.status == 409
    assert first.get_content("uploads/u/data") == b"start" + b"second's chunk"


def test_deleting_a_session_aborts_its_multipart_upload(driver, moto_server, s3_bucket):
    driver.put_content("uploads/u/started_at", b"now")
    driver.append("uploads/u/data", pieces(b"z" * (PART + 1)))
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    driver.delete("uploads/u")
    assert moto_server.keys(s3_bucket) == []
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_objects_are_under_the_prefix(driver, moto_server, s3_bucket):
    driver.put_content("blobs/sha256/ab/abc", b"x")
    assert moto_server.keys(s3_bucket) == ["store/blobs/sha256/ab/abc"]
    assert driver.local_path("blobs/sha256/ab/abc") is None


def test_redirect_url_is_a_presigned_get_only_when_redirect_is_on(moto_server, s3_bucket):
    plain = open_s3_driver(s3_options(moto_server, s3_bucket))
    redirecting = open_s3_driver(s3_options(moto_server, s3_bucket, redirect=True))
    plain.put_content("blobs/sha256/ab/abc", b"the bytes")
    assert plain.redirect_url("blobs/sha256/ab/abc") is None
    url = redirecting.redirect_url("blobs/sha256/ab/abc")
    assert url.startswith(moto_server.endpoint) and "Signature" in url
    assert requests.get(url, timeout=10).content == b"the bytes"


def test_an_upload_completes_on_a_driver_without_local_files():
    """UploadService serialises each session in the process when the driver has no local files
    (its lock used to be the one the running hashes take too, so an append deadlocked)."""
    driver = MemoryDriver()
    uploads = UploadService(driver, BlobService(driver))
    outcome = []

    def push():
        upload = uploads.start("library/x")
        uploads.append("library/x", upload, iter([b"hello "]))
        outcome.append(uploads.finish("library/x", upload, "sha256:" + hashlib.sha256(b"hello world").hexdigest(),
                                      iter([b"world"])))

    worker = threading.Thread(target=push, daemon=True)
    worker.start()
    worker.join(60)
    assert outcome == [11]


# --- blob reads: what a blob GET asks S3 ----------------------------------------------------------

BLOB = os.urandom(4 * MIB + 12345)
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def s3_calls(driver) -> list[str]:
    """The S3 operations `driver` sends from now on, in order (botocore's own events)."""
    calls = []
    driver.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    return calls


def s3_calls_by_key(driver) -> list[tuple[str, str]]:
    """(operation, key below the prefix) of what `driver` sends from now on, in order."""
    calls = []
    driver.client.meta.events.register(
        "before-parameter-build.s3.*",
        lambda model, params, **_: calls.append((model.name, params.get("Key", "").removeprefix("store/"))))
    return calls


def test_a_session_starts_with_two_puts_and_a_link_is_one_put(driver):
    """Paths nothing appends to (a session's small files, links) are written without looking for
    an append to end there (put_fresh_content): one request each."""
    blobs = BlobService(driver)
    calls = s3_calls_by_key(driver)
    upload_id = UploadService(driver, blobs).start("library/a")
    blobs.link("library/a", BLOB_DIGEST)
    assert calls == [("PutObject", f"uploads/{upload_id}/started_at"), ("PutObject", f"uploads/{upload_id}/repository"),
                     ("PutObject", f"links/library/a/_blobs/sha256/{BLOB_DIGEST[7:]}")]


def test_put_content_still_ends_an_append_in_progress_at_its_path(driver):
    driver.append("folder/file", iter([b"x" * (PART + 10)]))
    driver.put_content("folder/file", b"replaced")
    assert driver.append("folder/file", iter([b"!"])) == len(b"replaced!")
    assert driver.get_content("folder/file") == b"replaced!"


def test_a_monolithic_upload_reads_its_session_once_and_seals_it_without_asking_again(driver):
    """POST ?digest= with the blob: the session's repository is read once; the data's size before
    the append is what the driver's append reads anyway (its state, then a HEAD); the state is
    read once more by the move that seals it, and there is no HEAD of the data after that."""
    uploads = UploadService(driver, BlobService(driver))
    data = os.urandom(PART + MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = uploads.start("library/a")
    calls = s3_calls_by_key(driver)

    assert uploads.finish("library/a", upload_id, digest, pieces(data)) == len(data)

    session = f"uploads/{upload_id}/"
    state = f"uploads/{upload_id}/.append-data/state.json"
    assert calls.count(("GetObject", session + "repository")) == 1
    assert calls.count(("GetObject", state)) == 2  # the driver's append, the move
    assert calls.count(("HeadObject", session + "data")) == 1  # the driver's append
    assert driver.get_content(f"blobs/sha256/{digest[7:9]}/{digest[7:]}") == data


def test_a_chunk_that_does_not_start_at_the_end_is_refused_before_anything_is_sent(driver):
    """The size a chunk must start at comes from the append state the driver reads; a chunk
    that starts elsewhere is refused (416) with the upload's end, and nothing reaches S3."""
    uploads = UploadService(driver, BlobService(driver))
    upload_id = uploads.start("library/a")
    assert uploads.append("library/a", upload_id, pieces(b"x" * (PART + 10)), start=0) == PART + 10
    calls = s3_calls_by_key(driver)

    with pytest.raises(RegistryError) as refused:
        uploads.append("library/a", upload_id, pieces(b"y" * 10), start=PART)

    assert refused.value.code == "RANGE_INVALID" and refused.value.headers["Range"] == f"0-{PART + 9}"
    assert {operation for operation, _ in calls} == {"GetObject"}  # the repository, the state
    assert uploads.append("library/a", upload_id, pieces(b"z" * 10), start=PART + 10) == PART + 20
    digest = "sha256:" + hashlib.sha256(b"x" * (PART + 10) + b"z" * 10).hexdigest()
    assert uploads.finish("library/a", upload_id, digest) == PART + 20


def test_a_session_another_process_completed_meanwhile_is_blob_upload_unknown(driver):
    """On S3 the session's lock is per process: a retried PUT in another process that checked the
    session before the first completed it finds no bytes, and answers BLOB_UPLOAD_UNKNOWN (the
    session is gone), not DIGEST_INVALID."""
    import contextlib
    first, second = UploadService(driver, BlobService(driver)), UploadService(driver, BlobService(driver))
    data = os.urandom(PART + MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = first.start("library/a")
    first.append("library/a", upload_id, pieces(data))
    holding = second._locked

    @contextlib.contextmanager
    def while_the_other_completes(repository, session):
        with holding(repository, session):
            first.finish(repository, session, digest)
            yield

    second._locked = while_the_other_completes
    with pytest.raises(RegistryError) as refused:
        second.finish("library/a", upload_id, digest)

    assert refused.value.code == "BLOB_UPLOAD_UNKNOWN"
    assert driver.get_content(f"blobs/sha256/{digest[7:9]}/{digest[7:]}") == data


def test_a_session_another_process_is_completing_links_nothing_and_tells_nothing_of_other_blobs(driver):
    """Caught between the other process's publishing the blob and its removing the session, a
    retried PUT sees no bytes: it answers DIGEST_INVALID saying what to do, links nothing itself,
    and does not ask whether the blob exists (an answer that differed by that would tell any
    pusher which digests the registry holds)."""
    import contextlib
    first, second = UploadService(driver, BlobService(driver)), UploadService(driver, BlobService(driver))
    data = os.urandom(MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = first.start("library/a")
    first.append("library/a", upload_id, [data])
    holding = second._locked
    linked = []
    second.blobs.link = lambda *args: linked.append(args)

    @contextlib.contextmanager
    def while_the_other_publishes(repository, session):
        with holding(repository, session):
            first._complete_locked(repository, session, digest, None, None)  # its session not removed yet
            yield

    second._locked = while_the_other_publishes
    with pytest.raises(RegistryError) as refused:
        second.finish("library/a", upload_id, digest)

    assert refused.value.code == "DIGEST_INVALID" and "HEAD the blob" in refused.value.message and linked == []
    assert driver.get_content(f"blobs/sha256/{digest[7:9]}/{digest[7:]}") == data


@pytest.mark.parametrize("before", [MIB, PART + MIB])  # a tail only; a multipart upload and a tail
def test_a_chunk_whose_session_another_process_cancels_meanwhile_is_blob_upload_unknown_and_leaves_nothing(
        moto_server, s3_bucket, before):
    """Another node cancels the session while a PATCH streams into it: the PATCH answers 404
    BLOB_UPLOAD_UNKNOWN (not a 500 from S3), and what it had sent (a tail object, a multipart
    upload) is removed rather than left in the bucket."""
    options = s3_options(moto_server, s3_bucket)
    here, there = (UploadService(d, BlobService(d)) for d in (open_s3_driver(options), open_s3_driver(options)))
    upload_id = here.start("library/a")
    here.append("library/a", upload_id, [os.urandom(before)])

    def body():
        yield os.urandom(3 * MIB)
        there.cancel("library/a", upload_id)
        yield os.urandom(3 * MIB)

    with pytest.raises(RegistryError) as refused:
        here.append("library/a", upload_id, body())

    assert refused.value.code == "BLOB_UPLOAD_UNKNOWN"
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert moto_server.keys(s3_bucket) == []


@pytest.fixture
def stored(driver):
    """The S3 driver with one blob linked into library/a (written as a push writes them)."""
    blobs = BlobService(driver)
    driver.put_content(f"blobs/sha256/{BLOB_DIGEST[7:9]}/{BLOB_DIGEST[7:]}", BLOB)
    blobs.link("library/a", BLOB_DIGEST)
    return driver


def read_all(opened) -> tuple[bytes, int]:
    stream, size = opened
    with stream:
        return stream.read(), size


def test_a_blob_get_asks_for_its_link_and_its_bytes_and_learns_the_size_from_the_get(stored):
    calls = s3_calls(stored)
    assert read_all(BlobService(stored).open("library/a", BLOB_DIGEST)) == (BLOB, len(BLOB))
    assert sorted(calls) == ["GetObject", "HeadObject"]  # the link; no HEAD of the blob for its size


def test_a_blob_get_of_an_unlinked_or_missing_blob_is_blob_unknown(stored):
    blobs = BlobService(stored)
    with pytest.raises(RegistryError) as unlinked:
        blobs.open("library/b", BLOB_DIGEST)
    assert unlinked.value.code == "BLOB_UNKNOWN"
    missing = "sha256:" + hashlib.sha256(b"never stored").hexdigest()
    blobs.link("library/a", missing)
    with pytest.raises(RegistryError) as gone:
        blobs.open("library/a", missing)
    assert gone.value.code == "BLOB_UNKNOWN"


def test_a_link_seen_once_is_not_asked_for_again(stored, tmp_path):
    blobs = BlobService(stored, links_removed_path(str(tmp_path)))
    assert read_all(blobs.open("library/a", BLOB_DIGEST))[1] == len(BLOB)
    calls = s3_calls(stored)
    assert read_all(blobs.open("library/a", BLOB_DIGEST)) == (BLOB, len(BLOB))
    assert calls == ["GetObject"]


def test_a_head_of_a_known_link_asks_only_for_the_blob_size(stored, tmp_path):
    blobs = BlobService(stored, links_removed_path(str(tmp_path)))
    assert blobs.size("library/a", BLOB_DIGEST) == len(BLOB)
    calls = s3_calls(stored)
    assert blobs.size("library/a", BLOB_DIGEST) == len(BLOB)
    assert calls == ["HeadObject"]


def test_a_link_removed_by_another_process_is_asked_for_again_at_once(stored, tmp_path):
    reader = BlobService(stored, links_removed_path(str(tmp_path)))
    other_process = BlobService(stored, links_removed_path(str(tmp_path)))
    assert read_all(reader.open("library/a", BLOB_DIGEST))[1] == len(BLOB)
    other_process.unlink("library/a", BLOB_DIGEST)
    for ask in (reader.open, reader.size):
        with pytest.raises(RegistryError) as unknown:
            ask("library/a", BLOB_DIGEST)
        assert unknown.value.code == "BLOB_UNKNOWN"


def test_a_link_written_in_this_process_is_known_without_asking(stored, tmp_path):
    blobs = BlobService(stored, links_removed_path(str(tmp_path)))
    blobs.link("library/c", BLOB_DIGEST)   # as a push or a mount writes it
    calls = s3_calls(stored)
    assert read_all(blobs.open("library/c", BLOB_DIGEST))[0] == BLOB
    assert calls == ["GetObject"]


def test_a_link_written_by_another_process_of_the_store_is_known_without_asking(stored, tmp_path):
    pusher = BlobService(stored, links_removed_path(str(tmp_path)))   # the worker that took the push
    puller = BlobService(stored, links_removed_path(str(tmp_path)))   # another worker
    pusher.link("library/d", BLOB_DIGEST)
    calls = s3_calls(stored)
    assert read_all(puller.open("library/d", BLOB_DIGEST))[0] == BLOB
    assert calls == ["GetObject"]


def test_the_shared_link_table_forgets_on_a_removal_and_when_two_links_share_a_slot(tmp_path):
    stamp_path = links_removed_path(str(tmp_path))
    one, other = (LinkTable(str(tmp_path / "state" / "links-known"), slots=1) for _ in range(2))
    one.remember("stamp", "a", BLOB_DIGEST)
    assert other.knows("stamp", "a", BLOB_DIGEST) and not other.knows("stamp", "b", BLOB_DIGEST)
    assert not other.knows("another stamp", "a", BLOB_DIGEST), "a removal (a new stamp) forgets every link"
    other.remember("stamp", "b", BLOB_DIGEST)  # the one slot
    assert one.knows("stamp", "b", BLOB_DIGEST) and not one.knows("stamp", "a", BLOB_DIGEST)
    one.forget("stamp", "b", BLOB_DIGEST)
    assert not other.knows("stamp", "b", BLOB_DIGEST)
    cache = LinkCache(stamp_path, table=one)
    cache.remember("c", BLOB_DIGEST, cache.stamp())
    note_links_removed(stamp_path)
    assert not LinkCache(stamp_path, table=other).knows("c", BLOB_DIGEST)[0]


def test_a_known_link_whose_blob_is_gone_is_blob_unknown_and_forgotten(stored, tmp_path):
    blobs = BlobService(stored, links_removed_path(str(tmp_path)))
    read_all(blobs.open("library/a", BLOB_DIGEST))
    stored.delete(f"blobs/sha256/{BLOB_DIGEST[7:9]}/{BLOB_DIGEST[7:]}")   # as garbage collection does
    for _ in range(2):
        with pytest.raises(RegistryError) as unknown:
            blobs.open("library/a", BLOB_DIGEST)
        assert unknown.value.code == "BLOB_UNKNOWN"
    assert not blobs._known.knows("library/a", BLOB_DIGEST)[0]


def test_the_link_cache_keeps_at_most_its_entries_the_least_recently_used_going_first(tmp_path):
    cache = LinkCache(links_removed_path(str(tmp_path)), entries=2)
    for name in ("a", "b"):
        cache.remember(name, BLOB_DIGEST, cache.stamp())
    assert cache.knows("a", BLOB_DIGEST)[0]        # a is now the most recently used
    cache.remember("c", BLOB_DIGEST, cache.stamp())
    assert [cache.knows(name, BLOB_DIGEST)[0] for name in ("a", "b", "c")] == [True, False, True]


def test_a_link_found_before_a_removal_is_not_remembered_after_it(tmp_path):
    """A link check that raced a removal: what it found must not outlive the removal."""
    stamp_path = links_removed_path(str(tmp_path))
    cache = LinkCache(stamp_path)
    stamp = cache.knows("a", BLOB_DIGEST)[1]       # read before asking S3 for the link
    note_links_removed(stamp_path)                 # the link is removed meanwhile
    cache.remember("a", BLOB_DIGEST, stamp)        # the answer arrives: "linked"
    assert not cache.knows("a", BLOB_DIGEST)[0]


# --- one clear line when the bucket cannot be used -----------------------------------------------

def test_a_missing_bucket_option_is_one_line():
    with pytest.raises(StorageUnavailable, match="needs storage.options.bucket"):
        open_s3_driver({"endpoint": "http://127.0.0.1:1"})


def test_a_bucket_that_does_not_exist_is_one_line(moto_server):
    with pytest.raises(StorageUnavailable, match=r"bucket 'no-such-bucket' at .* does not exist: create it"):
        open_s3_driver(s3_options(moto_server, "no-such-bucket"))


def test_an_unreachable_endpoint_is_one_line(moto_server, s3_bucket):
    from tests.support.server import free_port
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        open_s3_driver(s3_options(moto_server, s3_bucket, endpoint=f"http://127.0.0.1:{free_port()}"))


@pytest.fixture(scope="module")
def checking_moto(tmp_path_factory, moto_server):
    """A moto server that checks credentials (moto accepts any unless told to check)."""
    server = MotoServer(tmp_path_factory.mktemp("moto-auth") / "moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield server
    server.stop()


def test_wrong_credentials_are_one_line(checking_moto):
    with pytest.raises(StorageUnavailable, match="refused these credentials"):
        open_s3_driver(s3_options(checking_moto, "some-bucket", accessKey="AKIAWRONG", secretKey="wrong"))
