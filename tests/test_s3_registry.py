"""The registry with `storage: {driver: s3}`: real `registry serve` processes whose blobs, links
and upload sessions are in moto's S3 on 127.0.0.1 (meta.git stays in the local store), real skopeo,
fsck and garbage-collect on the bucket, and the start-up errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from registry_core.cli import main
from tests.support.oci import Client, digest, error_codes, raw_http, start_upload, unique_name
from tests.support.s3 import CREDENTIALS, MotoServer
from tests.support.server import REGISTRY, RunningRegistry
from tests.support.skopeo import Skopeo

MIB = 1 << 20
PART = 5 * MIB
SAMPLE_LAYOUTS = Path(__file__).resolve().parent.parent / "sample_store" / "layouts"


def write_config(path: Path, storage: dict) -> Path:
    path.write_text(json.dumps({"auth": {"enabled": False}, "storage": storage}))  # JSON is YAML
    return path


def s3_storage(server, bucket: str, **more) -> dict:
    return {"driver": "s3", "options": {"bucket": bucket, "endpoint": server.endpoint, "region": "us-east-1",
                                        "partSize": PART, **more}}


class S3Store:
    """A local store (meta.git) whose blobs are in `bucket`, and its registry.yaml."""

    def __init__(self, root: Path, server: MotoServer, bucket: str, **options):
        self.root, self.server, self.bucket = root / "store", server, bucket
        self.config = write_config(root / "registry.yaml", s3_storage(server, bucket, **options))

    def serve(self, *args: str, **kwargs) -> RunningRegistry:
        kwargs.setdefault("env", CREDENTIALS)  # the standard AWS variables
        return RunningRegistry(self.root, "--config", str(self.config), "--empty", *args, **kwargs)

    def keys(self, prefix: str = "") -> list[str]:
        return self.server.keys(self.bucket, prefix)

    def has_blob(self, blob_digest: str) -> bool:
        encoded = blob_digest.split(":")[1]
        return f"blobs/sha256/{encoded[:2]}/{encoded}" in self.keys("blobs/")

    def local_files(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory, moto_server) -> S3Store:
    return S3Store(tmp_path_factory.mktemp("s3-store"), moto_server, moto_server.new_bucket())


@pytest.fixture(scope="module")
def s3_registry(s3_store):
    with s3_store.serve() as server:
        yield server


# --- pushing and pulling ---------------------------------------------------------------------------

def test_skopeo_pushes_and_pulls_a_two_platform_image_whose_blobs_are_in_the_bucket(s3_store, s3_registry, tmp_path):
    assert shutil.which("skopeo"), "skopeo is not installed (make system-deps installs it)"
    skopeo = Skopeo(tmp_path / "skopeo-home")
    source = SAMPLE_LAYOUTS / "hello"
    name = unique_name("s3")
    result = skopeo.run("copy", "--all", f"oci:{source}:latest", f"docker://{s3_registry.host}/{name}:multi")
    assert "Copying 2 of 2 images in list" in result.stdout

    back = tmp_path / "back"
    skopeo.run("copy", "--all", f"docker://{s3_registry.host}/{name}:multi", f"oci:{back}:multi")
    pushed = sorted(p.name for p in (back / "blobs" / "sha256").iterdir())  # the index's whole graph
    assert len(pushed) >= 7  # index, 2 manifests, their configs and layers
    for encoded in pushed:
        assert (back / "blobs" / "sha256" / encoded).read_bytes() == (source / "blobs" / "sha256" / encoded).read_bytes()
        assert s3_store.has_blob(f"sha256:{encoded}")
    assert any(key.startswith(f"links/{name}/_blobs/sha256/") for key in s3_store.keys("links/"))
    # nothing of the blobs on local disk: the store holds meta.git and the server's own state only
    assert not {"blobs", "uploads", "links"} & {p.name for p in s3_store.root.iterdir()}
    assert not set(pushed) & {Path(f).name for f in s3_store.local_files()}


def test_a_chunked_upload_is_continued_by_another_server_process(s3_store, s3_registry, tmp_path):
    """The second process has nothing of the session but what is in the bucket (and reads its
    credentials through {$env: NAME} rather than the standard AWS variables)."""
    other_config = write_config(tmp_path / "other.yaml", s3_storage(
        s3_store.server, s3_store.bucket, accessKey={"$env": "BLOB_KEY"}, secretKey={"$env": "BLOB_SECRET"}))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(BLOB_KEY=CREDENTIALS["AWS_ACCESS_KEY_ID"], BLOB_SECRET=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                       AWS_DEFAULT_REGION="us-east-1")
    first, second = os.urandom(PART + MIB), os.urandom(PART + 2 * MIB)
    blob = digest(first + second)
    name = unique_name("s3")
    with RunningRegistry(s3_store.root, "--config", str(other_config), environment=environment) as other:
        location = start_upload(Client(s3_registry.url), name)
        r = requests.patch(location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{len(first) - 1}"

        elsewhere = location.replace(s3_registry.url, other.url)
        r = requests.patch(elsewhere, data=second,
                           headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
        assert r.status_code == 202, r.text
        r = requests.put(elsewhere, params={"digest": blob})
        assert r.status_code == 201, r.text
    assert s3_store.has_blob(blob)
    r = requests.get(f"{s3_registry.url}/v2/{name}/blobs/{blob}")
    assert hashlib.sha256(r.content).hexdigest() == blob.split(":")[1]
    r = requests.get(f"{s3_registry.url}/v2/{name}/blobs/{blob}", headers={"Range": f"bytes={PART}-{PART + 9}"})
    assert r.status_code == 206 and r.content == (first + second)[PART:PART + 10]


def test_a_truncated_upload_is_refused_and_nothing_is_stored_at_its_digest(s3_store, s3_registry):
    data = os.urandom(PART + MIB)
    blob = digest(data)
    name = unique_name("s3")
    head = (f"POST /v2/{name}/blobs/uploads/?digest={blob} HTTP/1.1\r\nHost: {s3_registry.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    answer = raw_http("127.0.0.1", s3_registry.port, head, data[:PART + 1000], timeout=30)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert not s3_store.has_blob(blob)
    assert requests.head(f"{s3_registry.url}/v2/{name}/blobs/{blob}").status_code == 404


def test_a_wrong_digest_is_refused_and_nothing_is_stored_at_either_digest(s3_store, s3_registry):
    data = os.urandom(PART + MIB)
    wrong = digest(b"something else")
    name = unique_name("s3")
    location = start_upload(Client(s3_registry.url), name)
    r = requests.patch(location, data=data)
    assert r.status_code == 202
    r = requests.put(location, params={"digest": wrong})
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    assert not s3_store.has_blob(wrong) and not s3_store.has_blob(digest(data))
    r = requests.put(location, params={"digest": digest(data)})  # the upload was kept
    assert r.status_code == 201, r.text
    assert s3_store.has_blob(digest(data))


def test_blob_get_head_and_ranges_answer_the_blob_and_its_length(s3_registry):
    data = os.urandom(4 * MIB + 12345)    # several reads of routes.limited
    name = unique_name("s3")
    blob = Client(s3_registry.url).push_blob(name, data)
    url = f"{s3_registry.url}/v2/{name}/blobs/{blob}"
    r = requests.get(url)
    assert r.status_code == 200 and r.content == data and r.headers["Content-Length"] == str(len(data))
    r = requests.head(url)
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(data)) and r.content == b""
    r = requests.get(url, headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    assert r.headers["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"


def pulled_by_every_worker(url: str, times: int = 8, method: str = "GET") -> list[int]:
    """The statuses of `times` requests, each on a new connection (so both workers answer some)."""
    return [requests.request(method, url).status_code for _ in range(times)]


def test_a_deleted_blob_is_unknown_to_every_worker_at_once(s3_registry):
    """Workers remember the links they have seen (registry/blobs.py LinkCache): a DELETE in one
    must reach the others before it is answered."""
    name = unique_name("s3")
    client = Client(s3_registry.url)
    blob = client.push_blob(name, os.urandom(1000))
    url = f"{s3_registry.url}/v2/{name}/blobs/{blob}"
    assert pulled_by_every_worker(url) == [200] * 8
    assert pulled_by_every_worker(url, method="HEAD") == [200] * 8
    assert client.delete(f"/v2/{name}/blobs/{blob}").status_code == 202
    assert pulled_by_every_worker(url) == [404] * 8
    assert pulled_by_every_worker(url, method="HEAD") == [404] * 8


@pytest.mark.usefixtures("aws_credentials")
def test_a_link_garbage_collection_removes_is_unknown_to_every_worker_at_once(moto_server, s3_bucket, tmp_path):
    store = S3Store(tmp_path, moto_server, s3_bucket)
    with store.serve() as server:
        client = Client(server.url)
        _, manifest, _ = client.push_image("s3/kept", "v1")
        layer = manifest["layers"][0]["digest"]
        client.push_blob("s3/loose", client.get(f"/v2/s3/kept/blobs/{layer}").content)  # no manifest needs it here
        loose = f"{server.url}/v2/s3/loose/blobs/{layer}"
        assert pulled_by_every_worker(loose) == [200] * 8

        result = run_cli(store, "garbage-collect", "--grace", "0")
        assert result.exit_code == 0, result.output
        removed = {(item["kind"], item.get("repository")) for item in json.loads(result.output)["removed"]}
        assert ("link", "s3/loose") in removed and store.has_blob(layer)
        assert pulled_by_every_worker(loose) == [404] * 8
        assert pulled_by_every_worker(f"{server.url}/v2/s3/kept/blobs/{layer}") == [200] * 8


def test_with_redirect_blob_gets_answer_307_to_a_presigned_url(moto_server, s3_bucket, tmp_path):
    store = S3Store(tmp_path, moto_server, s3_bucket, redirect=True)
    with store.serve() as server:
        name = unique_name("s3")
        blob = Client(server.url).push_blob(name, b"served by S3 itself")
        r = requests.get(f"{server.url}/v2/{name}/blobs/{blob}", allow_redirects=False)
        assert r.status_code == 307 and r.headers["Location"].startswith(moto_server.endpoint)
        assert requests.get(r.headers["Location"]).content == b"served by S3 itself"
        r = requests.get(f"{server.url}/v2/{name}/blobs/{blob}", headers={"Range": "bytes=10-"}, allow_redirects=False)
        assert r.status_code == 206 and r.content == b"served by S3 itself"[10:]  # ranges are streamed


# --- maintenance -----------------------------------------------------------------------------------

def run_cli(store: S3Store, *args: str):
    return CliRunner().invoke(main, [*args, "--store", str(store.root), "--config", str(store.config), "--json"])


@pytest.mark.usefixtures("aws_credentials")
def test_fsck_and_garbage_collect_work_on_an_s3_store(moto_server, s3_bucket, tmp_path):
    store = S3Store(tmp_path, moto_server, s3_bucket)
    with store.serve() as server:
        client = Client(server.url)
        _, manifest, _ = client.push_image("s3/fsck", "v1", layers=2)
        orphan = client.push_blob("s3/fsck", b"no manifest needs me")
        start_upload(client, "s3/fsck")
        requests.patch(start_upload(client, "s3/fsck"), data=os.urandom(PART + 1))  # a multipart upload

    result = run_cli(store, "fsck")
    assert result.exit_code == 0, result.output

    result = run_cli(store, "garbage-collect", "--grace", "0", "--upload-age", "0")
    assert result.exit_code == 0, result.output
    removed = {(item["kind"], item["path"]) for item in json.loads(result.output)["removed"]}
    encoded = orphan.split(":")[1]
    assert ("blob", f"blobs/sha256/{encoded[:2]}/{encoded}") in removed
    assert not store.has_blob(orphan) and store.keys("uploads/") == []
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert run_cli(store, "fsck").exit_code == 0  # what the image needs is all still there

    # a blob whose bytes changed in the bucket is found by fsck
    victim = manifest["layers"][0]["digest"].split(":")[1]
    store.server.client().put_object(Bucket=s3_bucket, Key=f"blobs/sha256/{victim[:2]}/{victim}", Body=b"bit rot")
    result = run_cli(store, "fsck")
    assert result.exit_code == 1 and victim in result.output


# --- start-up ----------------------------------------------------------------------------------------

def serve_fails(tmp_path: Path, storage: dict, env: dict | None = None) -> str:
    config = write_config(tmp_path / "registry.yaml", storage)
    result = subprocess.run([REGISTRY, "serve", "--store", str(tmp_path / "store"), "--config", str(config),
                             "--port", "0"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **CREDENTIALS, **(env or {})}, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unknown_storage_driver_is_one_line_at_start_up(tmp_path):
    assert "unknown storage driver 'nosuch' (available: filesystem, s3)" in serve_fails(tmp_path, {"driver": "nosuch"})


def test_a_missing_bucket_is_one_line_at_start_up(tmp_path, moto_server):
    line = serve_fails(tmp_path, {"driver": "s3", "options": {"endpoint": moto_server.endpoint}})
    assert "invalid configuration" in line and "'bucket' is a required property" in line


def test_a_bucket_that_does_not_exist_is_one_line_at_start_up(tmp_path, moto_server):
    line = serve_fails(tmp_path, s3_storage(moto_server, "no-such-bucket"))
    assert "bucket 'no-such-bucket'" in line and "does not exist" in line


def test_wrong_credentials_are_one_line_at_start_up(tmp_path):
    checking = MotoServer(tmp_path / "moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        line = serve_fails(tmp_path, s3_storage(checking, "some-bucket"),
                           env={"AWS_ACCESS_KEY_ID": "AKIAWRONG", "AWS_SECRET_ACCESS_KEY": "wrong"})
    finally:
        checking.stop()
    assert "refused these credentials" in line


def test_an_upload_survives_workers_killed_mid_chunk_and_leaves_no_multipart_upload_behind(
        tmp_path, moto_server, s3_bucket):
    """Every worker SIGKILLed while a PATCH streams into S3 (its multipart upload started, its
    state not yet written): the session goes on from the state in the bucket, completes whole,
    and the multipart upload the killed request started is aborted with the session."""
    import signal
    import socket
    import time
    from urllib.parse import urlsplit

    store = S3Store(tmp_path, moto_server, s3_bucket)
    with store.serve() as server:
        client, name = Client(server.url), unique_name("s3crash")
        location = start_upload(client, name)
        data = os.urandom(8 * MIB)
        first = data[:MIB]  # under a part: a tail only, no multipart upload yet
        assert client.patch(location, data=first, headers={"Content-Range": f"0-{MIB - 1}"}).status_code == 202
        parts = urlsplit(location)
        head = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: {MIB}-{7 * MIB - 1}\r\nContent-Length: {6 * MIB}\r\n\r\n").encode()
        old = server.pids()[1:]
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            connection.sendall(head + data[MIB:MIB + 5 * MIB + MIB // 2])
            deadline = time.monotonic() + 20
            while not moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads"):
                assert time.monotonic() < deadline, "the PATCH never started its multipart upload"
                time.sleep(0.05)
            for pid in old:
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while set(server.pids()[1:]) & set(old) or len(server.pids()) < 3:
            assert time.monotonic() < deadline, "gunicorn did not replace its workers"
            time.sleep(0.1)

        status = client.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{MIB - 1}"  # the state's size
        blob = digest(data)
        finished = client.put(location, params={"digest": blob}, data=data[MIB:],
                              headers={"Content-Range": f"{MIB}-{len(data) - 1}"})
        assert finished.status_code == 201, finished.text
        assert client.get(f"/v2/{name}/blobs/{blob}").content == data
    assert moto_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert store.keys("uploads/") == []
