"""A blob filled from an upstream while it is sent (registry/pullthrough.py StreamingFill): stored by
one append fed batch by batch, on a filesystem store and on S3 (moto); what the upstream cut, the
client left or the digest refused stores nothing and leaves no upload behind."""

from __future__ import annotations

import hashlib
import os
import threading
from types import SimpleNamespace

import pytest

from registry_core.context import Context
from registry_core.errors import RegistryError
from registry_core.registry import pullthrough
from registry_core.registry.blobs import BlobService
from registry_core.registry.pullthrough import StreamingFill
from registry_core.registry.uploads import UploadService
from registry_core.storage.filesystem import FilesystemDriver
from registry_core.storage.s3 import open_s3_driver
from tests.support.s3 import CREDENTIALS

MIB = 1 << 20
NAME = "library/filled"


@pytest.fixture(params=["filesystem", "s3"])
def driver(request, tmp_path):
    if request.param == "filesystem":
        return FilesystemDriver(str(tmp_path / "store"))
    server = request.getfixturevalue("moto_server")
    return open_s3_driver({"bucket": server.new_bucket(), "endpoint": server.endpoint, "region": "us-east-1",
                           "accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                           "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "partSize": 5 * MIB})


def fill(driver, tmp_path, chunks, digest: str, size: int) -> tuple[StreamingFill, list]:
    """A StreamingFill of `chunks` into a store on `driver`, and the events it notifies."""
    events = []
    registry = SimpleNamespace(uploads=UploadService(driver, BlobService(driver)), notify=events.append)
    lock = open(tmp_path / "fill.lock", "a")
    return StreamingFill(SimpleNamespace(registry=registry), NAME, digest, chunks, size, lock,
                         Context(actor="registry")), events


def pieces(data: bytes, size: int = 256 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def stored(driver, digest: str) -> bool:
    return driver.exists(f"blobs/sha256/{digest[7:9]}/{digest[7:]}")


def no_upload_left(driver) -> bool:
    return driver.list("uploads") == []


def test_a_blob_is_sent_whole_and_stored_by_one_append(driver, tmp_path, monkeypatch):
    monkeypatch.setattr(pullthrough, "STORE_BATCH", MIB)  # many batches, one append
    data = os.urandom(13 * MIB + 12345)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    appends = []
    uploads_append = UploadService._append_locked
    monkeypatch.setattr(UploadService, "_append_locked",
                        lambda self, *args: appends.append(args[1]) or uploads_append(self, *args))
    streaming, events = fill(driver, tmp_path, pieces(data), digest, len(data))

    assert b"".join(streaming) == data

    assert len(appends) == 1, "one append for the whole blob, however many batches"
    with driver.reader(f"blobs/sha256/{digest[7:9]}/{digest[7:]}") as f:
        assert f.read() == data
    assert [e.action for e in events] == ["mirror-fill"] and no_upload_left(driver)


def test_bytes_of_another_digest_are_not_stored_and_the_transfer_is_aborted(driver, tmp_path, monkeypatch):
    monkeypatch.setattr(pullthrough, "STORE_BATCH", MIB)
    data = os.urandom(6 * MIB)
    claimed = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    streaming, events = fill(driver, tmp_path, pieces(data), claimed, len(data))

    received = []
    with pytest.raises(RegistryError) as refused:
        for chunk in streaming:
            received.append(chunk)

    assert refused.value.code == "DIGEST_INVALID" and len(b"".join(received)) < len(data)  # the last held back
    assert not stored(driver, claimed) and no_upload_left(driver) and events == []


def test_an_upstream_cut_mid_blob_stores_nothing(driver, tmp_path, monkeypatch):
    monkeypatch.setattr(pullthrough, "STORE_BATCH", MIB)
    data = os.urandom(8 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def cut():
        yield from pieces(data[:5 * MIB])
        raise ConnectionResetError("the upstream went away")

    streaming, events = fill(driver, tmp_path, cut(), digest, len(data))
    with pytest.raises(ConnectionResetError):
        for _ in streaming:
            pass

    assert not stored(driver, digest) and no_upload_left(driver) and events == []


def test_a_client_that_leaves_mid_blob_stops_the_store_and_leaves_nothing(driver, tmp_path, monkeypatch):
    monkeypatch.setattr(pullthrough, "STORE_BATCH", MIB)
    data = os.urandom(8 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    streaming, events = fill(driver, tmp_path, pieces(data), digest, len(data))
    sending = iter(streaming)
    for _ in range(12):  # 3 MiB sent: some batches handed to the storing thread
        next(sending)
    assert storing_threads(), "the blob is being stored while it is sent"

    sending.close()  # what the WSGI server does when the client's connection drops
    streaming.close()

    assert not stored(driver, digest) and no_upload_left(driver) and events == []
    assert storing_threads() == [], "the storing thread ended"


def storing_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("pull-through-store")]
