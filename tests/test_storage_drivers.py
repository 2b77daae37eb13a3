"""The storage driver contract (registry_core.storage.driver), checked against every driver.

Every test here runs unchanged against each factory in DRIVERS: the filesystem driver (plain and
durable), the in-memory driver, and the S3 driver against a moto server on 127.0.0.1 (a bucket per
test, under a key prefix). Add a driver by adding its factory. Driver-specific checks are at the end
and in tests/test_s3_driver.py.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading

import pytest

from registry_core.storage.driver import PathNotFound, StorageDriver
from registry_core.storage.filesystem import FilesystemDriver
from registry_core.storage.memory import MemoryDriver
from tests.support.fsyncs import record_syncs
from tests.support.s3 import CREDENTIALS


def filesystem_driver(tmp_path, request=None) -> FilesystemDriver:
    return FilesystemDriver(str(tmp_path / "store"))


def durable_filesystem_driver(tmp_path, request=None) -> FilesystemDriver:
    return FilesystemDriver(str(tmp_path / "store"), durable=True)


def memory_driver(tmp_path, request=None) -> MemoryDriver:
    return MemoryDriver()


def s3_driver(tmp_path, request):
    from registry_core.storage.s3 import open_s3_driver
    server = request.getfixturevalue("moto_server")
    return open_s3_driver({"bucket": server.new_bucket(), "endpoint": server.endpoint, "region": "us-east-1",
                           "prefix": "store/", "accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                           "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})


DRIVERS = [
    pytest.param(filesystem_driver, id="filesystem"),
    pytest.param(durable_filesystem_driver, id="filesystem-durable"),
    pytest.param(memory_driver, id="memory"),
    pytest.param(s3_driver, id="s3"),
]


@pytest.fixture(params=DRIVERS)
def driver(request, tmp_path) -> StorageDriver:
    return request.param(tmp_path, request)


DATA = bytes(range(256)) * 4 + b"\x00tail\n"


# --- whole content ----------------------------------------------------------------------------


def test_put_content_and_get_content_round_trip(driver):
    driver.put_content("blobs/sha256/ab/abcdef", DATA)
    assert driver.get_content("blobs/sha256/ab/abcdef") == DATA
    driver.put_content("empty", b"")
    assert driver.get_content("empty") == b""
    driver.put_content("blobs/sha256/ab/abcdef", b"replaced")
    assert driver.get_content("blobs/sha256/ab/abcdef") == b"replaced"


def test_put_content_leaves_no_temporary_files(driver):
    for i in range(5):
        driver.put_content("links/a/_blobs/sha256/f", b"x" * i)
        driver.put_content(f"links/a/_blobs/sha256/g{i}", b"")
    assert driver.list("links/a/_blobs/sha256") == ["f"] + [f"g{i}" for i in range(5)]
    local = driver.local_path("links/a/_blobs/sha256")
    if local is not None:
        assert sorted(os.listdir(local)) == ["f"] + [f"g{i}" for i in range(5)]


def test_a_failed_put_content_keeps_the_old_content_and_leaves_nothing_behind(driver):
    driver.put_content("folder/doc", b"old")
    with pytest.raises(TypeError):
        driver.put_content("folder/doc", "not bytes")  # fails while writing
    assert driver.get_content("folder/doc") == b"old"
    assert driver.list("folder") == ["doc"]


def all_whole(seen: list[bytes], size: int) -> bool:
    """Whether every content seen is `size` bytes of a or of b. Each distinct object is compared
    once: a driver that hands out the stored object (memory) is read thousands of times, and
    comparing every read, with the two expected contents made again for each, took 35-50 s where
    glibc's mmap threshold is fixed (as in a server worker: index/passwords.py; each MiB an mmap)."""
    whole = (b"a" * size, b"b" * size)
    return all(content in whole for content in {id(content): content for content in seen}.values())


@contextlib.contextmanager
def reading_all_along(driver, path: str):
    """A thread reads `path` over and over while the block runs; yields the list of what it saw."""
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(driver.get_content(path))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        yield seen
    finally:
        stop.set()
        reader.join()


def test_readers_never_see_a_partly_written_content(driver):
    size = 1 << 20
    driver.put_content("blob", b"a" * size)
    with reading_all_along(driver, "blob") as seen:
        for i in range(30):
            driver.put_content("blob", (b"a", b"b")[i % 2] * size)
    assert seen and all_whole(seen, size)


# --- reading ----------------------------------------------------------------------------------


def test_reader_from_the_start_and_from_an_offset(driver):
    driver.put_content("some/blob", DATA)
    with driver.reader("some/blob") as f:
        assert f.read() == DATA
    with driver.reader("some/blob", 1000) as f:
        assert f.read() == DATA[1000:]
    with driver.reader("some/blob", 10) as f:
        assert f.read(5) == DATA[10:15]
        assert f.read(3) == DATA[15:18]
    with driver.reader("some/blob", len(DATA)) as f:
        assert f.read() == b""


def test_sized_reader_gives_the_whole_file_and_its_size(driver):
    driver.put_content("some/blob", DATA)
    driver.put_content("zero", b"")
    for path, content in (("some/blob", DATA), ("zero", b"")):
        stream, size = driver.sized_reader(path)
        with stream:
            assert (stream.read(), size) == (content, len(content))
    driver.put_content("a-file", b"x")
    for missing in ("missing", "a-file/below"):
        with pytest.raises(PathNotFound):
            driver.sized_reader(missing)


def test_size_and_exists(driver):
    assert not driver.exists("some/blob")
    driver.put_content("some/blob", DATA)
    assert driver.exists("some/blob")
    assert driver.size("some/blob") == len(DATA)
    driver.put_content("zero", b"")
    assert driver.exists("zero") and driver.size("zero") == 0


@pytest.mark.parametrize("operation", ["get_content", "reader", "size"])
@pytest.mark.parametrize("path", ["missing", "missing/deeper/file", "a-file/below"])
def test_missing_paths_raise_path_not_found(driver, operation, path):
    driver.put_content("a-file", b"x")
    with pytest.raises(PathNotFound):
        getattr(driver, operation)(path)
    assert not driver.exists(path)


# --- appending --------------------------------------------------------------------------------


def test_append_creates_the_file_and_its_folders_and_returns_the_new_size(driver):
    assert driver.append("uploads/u1/data", iter([b"abc", b"", b"de"])) == 5
    assert driver.append("uploads/u1/data", (chunk for chunk in [b"fgh"])) == 8
    assert driver.append("uploads/u1/data", iter([])) == 8
    assert driver.get_content("uploads/u1/data") == b"abcdefgh"
    assert driver.size("uploads/u1/data") == 8
    assert driver.append("uploads/u2/data", iter([])) == 0
    assert driver.exists("uploads/u2/data")


# --- listing ----------------------------------------------------------------------------------


def test_list_is_sorted_names_directly_below(driver):
    for path in ["repo/b", "repo/a", "repo/c/deep/file", "repo/B", "repo/_blobs/x", "other/z"]:
        driver.put_content(path, b"x")
    assert driver.list("repo") == ["B", "_blobs", "a", "b", "c"]
    assert driver.list("repo/c") == ["deep"]
    assert driver.list("repo/c/deep") == ["file"]


def test_list_of_a_missing_path_is_empty(driver):
    driver.put_content("a-file", b"x")
    assert driver.list("missing") == []
    assert driver.list("missing/deeper") == []
    assert driver.list("a-file") == []


# --- moving -----------------------------------------------------------------------------------


def test_move_makes_content_visible_and_replaces_the_destination(driver):
    driver.put_content("uploads/u1/data", b"new content")
    driver.move("uploads/u1/data", "blobs/sha256/ne/new")  # destination folders are created
    assert driver.get_content("blobs/sha256/ne/new") == b"new content"
    assert not driver.exists("uploads/u1/data")

    driver.append("uploads/u2/data", iter([b"newer"]))
    driver.move("uploads/u2/data", "blobs/sha256/ne/new")
    assert driver.get_content("blobs/sha256/ne/new") == b"newer"
    assert driver.list("blobs/sha256/ne") == ["new"]
    assert not driver.exists("uploads/u2/data")


def test_move_of_a_missing_source_raises_path_not_found(driver):
    driver.put_content("destination", b"kept")
    with pytest.raises(PathNotFound):
        driver.move("uploads/missing/data", "destination")
    assert driver.get_content("destination") == b"kept"


def test_readers_see_the_old_or_the_new_content_while_moves_replace_it(driver):
    size = 1 << 20
    driver.put_content("blob", b"a" * size)
    with reading_all_along(driver, "blob") as seen:
        for i in range(30):
            driver.put_content(f"uploads/{i}/data", (b"a", b"b")[i % 2] * size)
            driver.move(f"uploads/{i}/data", "blob")
    assert seen and all_whole(seen, size)


# --- deleting ---------------------------------------------------------------------------------


def test_delete_a_file(driver):
    driver.put_content("folder/a", b"1")
    driver.put_content("folder/b", b"2")
    driver.delete("folder/a")
    assert not driver.exists("folder/a")
    assert driver.list("folder") == ["b"]
    with pytest.raises(PathNotFound):
        driver.get_content("folder/a")


def test_delete_a_folder_with_everything_below(driver):
    for path in ["uploads/u1/data", "uploads/u1/started_at", "uploads/u1/deep/er/x", "uploads/u2/data"]:
        driver.put_content(path, b"x")
    driver.delete("uploads/u1")
    assert driver.list("uploads") == ["u2"]
    assert not driver.exists("uploads/u1/data")
    assert not driver.exists("uploads/u1/deep/er/x")
    assert driver.get_content("uploads/u2/data") == b"x"


def test_delete_of_a_missing_path_is_not_an_error(driver):
    driver.put_content("a-file", b"x")
    driver.delete("missing")
    driver.delete("missing/deeper")
    driver.delete("a-file/below")
    assert driver.get_content("a-file") == b"x"


# --- filesystem only --------------------------------------------------------------------------


def test_filesystem_local_path_is_the_file_under_the_root(tmp_path):
    driver = filesystem_driver(tmp_path)
    driver.put_content("blobs/sha256/ab/abc", b"content")
    local = driver.local_path("blobs/sha256/ab/abc")
    assert local == str(tmp_path / "store" / "blobs" / "sha256" / "ab" / "abc")
    with open(local, "rb") as f:
        assert f.read() == b"content"
    with driver.reader("blobs/sha256/ab/abc") as f:
        assert f.fileno() >= 0  # a real file, so the WSGI server can sendfile it


def test_filesystem_files_get_the_same_permissions_however_they_are_written(tmp_path):
    """put_content must not leave mkstemp's 0600: other processes or users sharing the store read them."""
    driver = filesystem_driver(tmp_path)
    driver.put_content("written", b"x")
    driver.append("appended", iter([b"x"]))
    driver.put_content("uploads/u/data", b"x")
    driver.move("uploads/u/data", "moved")
    modes = {name: stat.S_IMODE(os.stat(driver.local_path(name)).st_mode)
             for name in ["written", "appended", "moved"]}
    assert len(set(modes.values())) == 1, modes


def test_a_durable_filesystem_driver_syncs_what_it_writes_before_returning(tmp_path, monkeypatch):
    synced = record_syncs(monkeypatch)
    driver = FilesystemDriver(str(tmp_path / "store"), durable=True)
    root = tmp_path / "store"
    driver.put_content("blobs/sha256/ab/abcdef", DATA)
    assert synced[0].startswith(str(root / "blobs/sha256/ab/.tmp-"))  # the content, then its name
    assert synced[1:] == [str(root / "blobs/sha256/ab")]
    del synced[:]
    driver.append("uploads/u1/data", iter([b"one", b"two"]))
    assert synced == [str(root / "uploads/u1/data")]  # an acknowledged chunk is on disk
    del synced[:]
    driver.move("uploads/u1/data", "blobs/sha256/cd/cdef")
    assert synced == [str(root / "blobs/sha256/cd")]
    del synced[:]
    FilesystemDriver(str(tmp_path / "other")).put_content("x", DATA)
    assert synced == []  # not durable: the kernel writes back when it will
