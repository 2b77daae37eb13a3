"""The S3 driver: blobs, links and upload sessions as objects in one bucket (boto3).

Driver path P is the object `<prefix>P`; a folder is a key prefix, listed with the "/" delimiter.
Nothing is kept on local disk, so several processes and machines can share one bucket.

Whole content (`put_content`) is one PUT, which S3 makes visible at once: readers see the old or
the new object, never part of one. `move` is a server-side copy and a delete.

Appending (the bytes of an upload session) uses an S3 multipart upload at the file's own key:

    <folder>/.append-<name>/state.json    the session state: multipart upload id, parts (number,
                                          ETag, size), the tail's name and the total size; its
                                          presence means "being appended to"
    <folder>/.append-<name>/tail-<uuid>   the bytes after the last whole part (under `part_size`),
                                          a new object for each append, so a writer that loses
                                          the race below cannot overwrite the winner's

Each `append` streams the request into parts of `part_size` bytes (8 MiB by default, at least
5 MiB as S3 requires of every part but the last), one uploading while the next fills, so at most
two parts are in memory and nothing is on local disk; the rest is written as a new tail object and
the state is written last, with S3's conditional PUT (If-Match / If-None-Match), so two processes
appending to the same session at once cannot both succeed (the loser answers 409; the parts it
uploaded may have replaced the winner's, in which case completing the upload fails rather than
storing other bytes: clients send a session's chunks one after the other). Any process can continue a session:
everything it needs is in the bucket. Reading, moving or sizing a file that is being appended to
first seals it: the tail becomes the last part (a server-side copy) and the multipart upload is
completed at the file's key. A file with no whole part yet is sealed by copying its tail.

The running sha256 of an upload lives in the process that received its bytes (uploads.py); when
another process continues a session, that hash is lost and completing the upload reads the sealed
data back from S3 once to hash it (hashlib's state cannot be saved). When a request body stops
short, the bytes received so far are kept, as the filesystem driver keeps what it appended.

Blob GETs can be redirected (307) to a presigned URL with `redirect: true`; off by default, so
clients that cannot reach the bucket's endpoint still pull through the registry. A GET's body is
read straight from the http.client response under botocore and urllib3 (`ObjectBody`), on the
caller's thread: the kernel's receive buffer, which grows to several MiB, holds what S3 sends
while the caller sends the last bytes to its client. Over plain HTTP, a caller may receive the
rest of a body from the connection's socket itself (`ObjectBody.rest_source`: a blob GET relays it
to its client, registry_core/socket_bodies.py). `sized_reader` gives the object's size with
its stream, from the GET's Content-Length, so a blob GET sends no HEAD for the size.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterator

from registry_core.errors import RegistryError
from registry_core.storage.driver import PathNotFound, StorageUnavailable

MIB = 1 << 20
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB          # S3's minimum for every part of a multipart upload but the last
MAX_COPY_PART = 5 * 1024 * MIB   # S3's maximum for one UploadPartCopy
APPEND_MARK = ".append-"
REDIRECT_SECONDS = 20 * 60
READ_TIMEOUT = 60                # seconds S3 may send nothing in the middle of an answer
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Driver:
    name = "s3"

    def __init__(self, client, bucket: str, prefix: str = "", redirect: bool = False,
                 part_size: int = DEFAULT_PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"partSize must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.redirect = redirect
        self.part_size = part_size
        self._parts = ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3-parts")

    # --- whole content --------------------------------------------------------------------------

    def local_path(self, path: str) -> None:
        return None

    def get_content(self, path: str) -> bytes:
        with self.reader(path) as f:
            return f.read()

    def put_content(self, path: str, data: bytes) -> None:
        self.put_fresh_content(path, data)
        self._discard_append(path)

    def put_fresh_content(self, path: str, data: bytes) -> None:
        """`put_content` for a path nothing appends to: no look for an append to end there."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"content must be bytes, not {type(data).__name__}")
        self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=bytes(data))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """The object's bytes from `offset` on, streamed from one GET (with a Range after 0) and
        read only as the caller asks (ObjectBody)."""
        return self._get(path, offset)[0]

    def sized_reader(self, path: str) -> tuple[BinaryIO, int]:
        """The whole object and its size, both from one GET (its Content-Length): no HEAD, unless
        a service answers without a Content-Length."""
        stream, length = self._get(path, 0)
        if length is None:
            try:
                length = self.size(path)
            except BaseException:
                stream.close()
                raise
        return stream, length

    def _get(self, path: str, offset: int) -> tuple[BinaryIO, int | None]:
        """The GET behind `reader`, and the length of what it returns (None if not told)."""
        for attempt in (1, 2):
            arguments = {"Bucket": self.bucket, "Key": self._key(path)}
            if offset:
                arguments["Range"] = f"bytes={offset}-"
            try:
                answer = self.client.get_object(**arguments)
                length = answer.get("ContentLength")
                return (answer["Body"] if length is None else ObjectBody(answer["Body"], length)), length
            except self._client_error() as e:
                code = e.response.get("Error", {}).get("Code")
                if code == "InvalidRange":  # at or after the end
                    return io.BytesIO(b""), 0
                if code not in _MISSING:
                    raise
                if attempt == 2 or not self._seal(path):
                    raise PathNotFound(path) from None
        raise PathNotFound(path)

    def size(self, path: str) -> int:
        head = self._head(path)
        if head is not None:
            return head["ContentLength"]
        state = self._state(path)[0]
        if state is None:
            raise PathNotFound(path)
        return state["size"]

    def exists(self, path: str) -> bool:
        return self._head(path) is not None or self._state(path)[0] is not None

    def modified(self, path: str) -> float | None:
        """When the file was last written, in seconds since the epoch (for gc); None for a folder."""
        head = self._head(path) or self._head_key(self._state_key(path))
        return head["LastModified"].timestamp() if head is not None else None

    def redirect_url(self, path: str) -> str | None:
        """A presigned GET URL for the object when `redirect` is on, else None."""
        if not self.redirect:
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(path)}, ExpiresIn=REDIRECT_SECONDS)

    # --- listing, moving, deleting --------------------------------------------------------------

    def list(self, path: str) -> list[str]:
        folder = self._key(path).rstrip("/") + "/" if path.strip("/") else self.prefix
        names = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(folder):].rstrip("/")
                names.add(name[len(APPEND_MARK):] if name.startswith(APPEND_MARK) else name)
            for item in page.get("Contents", []):
                if item["Key"][len(folder):]:
                    names.add(item["Key"][len(folder):])
        return sorted(names)

    def move(self, source: str, destination: str) -> None:
        with self._gone_as_not_found(source):
            self._move(source, destination)

    def _move(self, source: str, destination: str) -> None:
        state, _ = self._state(source)
        if state is not None and not state["parts"]:
            # nothing but a tail: it is the whole content, copied straight to the destination
            if state["tail"]:
                self._copy(self._tail_key(source, state), destination, state["size"])
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(destination), Body=b"")
            self._discard_append(source, state)
            return
        if state is not None:
            self._seal(source, state)
            size = state["size"]
        else:
            head = self._head(source)
            if head is None:
                raise PathNotFound(source)
            size = head["ContentLength"]
        self._copy(self._key(source), destination, size)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(source))

    def delete(self, path: str) -> None:
        """Delete the object at `path` and everything below it, and abort their multipart uploads."""
        key = self._key(path)
        keys = [key]
        for below in (key + "/", self._hidden(path)):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=below):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key or upload["Key"].startswith(key + "/"):
                    self._abort(upload["Key"], upload["UploadId"])

    # --- appending ------------------------------------------------------------------------------

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append the chunks as parts of the file's multipart upload; returns the new size."""
        return self.append_from(path, chunks)

    def append_from(self, path: str, chunks: Iterator[bytes], starting: Callable[[int], None] | None = None) -> int:
        """`append`, first calling `starting` with the file's size before it (from the append
        state, or the object's HEAD, that the append reads anyway); if that raises, nothing is
        written."""
        state, etag = self._state(path)
        head = self._head(path) if state is None else None
        replaces_object = head is not None
        if starting is not None:
            starting(state["size"] if state is not None else head["ContentLength"] if head is not None else 0)
        if state is None:
            state = self._start_append(path, head)
        buffer = bytearray()
        if state["tail"]:
            buffer += self.client.get_object(Bucket=self.bucket, Key=self._tail_key(path, state))["Body"].read()
        size = state["size"]
        parts = list(state["parts"])
        pending: Future | None = None
        stopped: list[Exception] = []

        def received():
            try:
                yield from chunks
            except Exception as e:  # the request body stopped short: keep what arrived, then say so
                stopped.append(e)

        for chunk in received():
            buffer += chunk
            size += len(chunk)
            while len(buffer) >= self.part_size:
                part = bytes(buffer[:self.part_size])
                del buffer[:self.part_size]
                if pending is not None:
                    parts.append(pending.result())
                state = self._ensure_upload(path, state)
                pending = self._parts.submit(self._upload_part, path, state["uploadId"], len(parts) + 1, part)
        if pending is not None:
            parts.append(pending.result())
        old_tail = self._tail_key(path, state) if state["tail"] else None
        state = {**state, "parts": parts, "tail": len(buffer), "tailKey": f"tail-{uuid.uuid4().hex}", "size": size}
        if buffer:
            self.client.put_object(Bucket=self.bucket, Key=self._tail_key(path, state), Body=bytes(buffer))
        try:
            self._write_state(path, state, etag)
        except RegistryError:
            self.client.delete_object(Bucket=self.bucket, Key=self._tail_key(path, state))
            raise
        if old_tail is not None:
            self.client.delete_object(Bucket=self.bucket, Key=old_tail)
        if replaces_object:  # its bytes are now the first part or the tail: one place for them
            self.client.delete_object(Bucket=self.bucket, Key=self._key(path))
        if stopped:
            raise stopped[0]
        return size

    def _start_append(self, path: str, head: dict | None) -> dict:
        """The state of a file about to be appended to: empty, or holding what its object has."""
        state = {"uploadId": None, "parts": [], "tail": 0, "tailKey": "tail-0", "size": 0}
        if head is None:
            return state
        size = head["ContentLength"]
        state["size"] = size
        if size < MIN_PART_SIZE:
            if size:
                self._copy(self._key(path), None, size, to_key=self._tail_key(path, state))
            state["tail"] = size
            return state
        state = self._ensure_upload(path, state)
        count = -(-size // MAX_COPY_PART)
        step = -(-size // count)
        for number, start in enumerate(range(0, size, step), start=1):
            end = min(start + step, size) - 1
            answer = self.client.upload_part_copy(
                Bucket=self.bucket, Key=self._key(path), UploadId=state["uploadId"], PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": self._key(path)}, CopySourceRange=f"bytes={start}-{end}")
            state["parts"].append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"],
                                   "size": end - start + 1})
        return state

    def _ensure_upload(self, path: str, state: dict) -> dict:
        if state["uploadId"] is not None:
            return state
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(path))
        return {**state, "uploadId": created["UploadId"]}

    def _upload_part(self, path: str, upload_id: str, number: int, data: bytes) -> dict:
        answer = self.client.upload_part(Bucket=self.bucket, Key=self._key(path), UploadId=upload_id,
                                         PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"], "size": len(data)}

    def _seal(self, path: str, state: dict | None = None) -> bool:
        """Turn a file being appended to (its `state`, read here if not given) into a plain object
        at its key; False if there is none."""
        with self._gone_as_not_found(path):
            return self._seal_state(path, state)

    @contextlib.contextmanager
    def _gone_as_not_found(self, path: str):
        """An object, tail or multipart upload that S3 no longer has, part-way through moving or
        sealing `path` (another process completed or removed the same append meanwhile), is
        PathNotFound: the caller can tell what became of it, where a ClientError says nothing."""
        try:
            yield
        except self._client_error() as e:
            if e.response.get("Error", {}).get("Code") in _MISSING | {"NoSuchUpload"}:
                raise PathNotFound(path) from None
            raise

    def _seal_state(self, path: str, state: dict | None) -> bool:
        if state is None:
            state, _ = self._state(path)
        if state is None:
            return False
        if not state["parts"]:
            if state["tail"]:
                self._copy(self._tail_key(path, state), path, state["size"])
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=b"")
        else:
            parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in state["parts"]]
            if state["tail"]:
                number = len(parts) + 1
                answer = self.client.upload_part_copy(
                    Bucket=self.bucket, Key=self._key(path), UploadId=state["uploadId"], PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": self._tail_key(path, state)})
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self._key(path),
                                                  UploadId=state["uploadId"], MultipartUpload={"Parts": parts})
            state = {**state, "uploadId": None}
        self._discard_append(path, state)
        return True

    def _discard_append(self, path: str, state: dict | None = None) -> None:
        """Forget that `path` is being appended to: its state and tail, and its multipart upload."""
        if state is None:
            state, _ = self._state(path)
            if state is None:
                return
        if state.get("uploadId"):
            self._abort(self._key(path), state["uploadId"])
        self.client.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": self._state_key(path)}, {"Key": self._tail_key(path, state)}], "Quiet": True})

    def _state(self, path: str) -> tuple[dict | None, str | None]:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._state_key(path))
        except self._client_error() as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                return None, None
            raise
        return json.loads(answer["Body"].read()), answer["ETag"]

    def _write_state(self, path: str, state: dict, etag: str | None) -> None:
        """Write the state only if nobody else did since it was read (S3 conditional PUT)."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._state_key(path),
                                   Body=json.dumps(state).encode(), **condition)
        except self._client_error() as e:
            if e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            raise RegistryError("BLOB_UPLOAD_INVALID", "another request appended to this upload at the same "
                                "time, so this chunk was not kept: GET the upload URL for its offset and "
                                "send the chunks one at a time", status=409) from None

    # --- helpers --------------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self.prefix + path.strip("/")

    def _hidden(self, path: str) -> str:
        """The key prefix of the objects that hold an append in progress to `path`."""
        folder, _, name = path.strip("/").rpartition("/")
        return self.prefix + (folder + "/" if folder else "") + APPEND_MARK + name + "/"

    def _state_key(self, path: str) -> str:
        return self._hidden(path) + "state.json"

    def _tail_key(self, path: str, state: dict) -> str:
        return self._hidden(path) + state["tailKey"]

    def _head(self, path: str) -> dict | None:
        return self._head_key(self._key(path))

    def _head_key(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except self._client_error() as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def _copy(self, source_key: str, destination: str | None, size: int, to_key: str | None = None) -> None:
        """Server-side copy of the object at `source_key` (one CopyObject up to 5 GiB, else a
        multipart copy) to the driver path `destination` (or the key `to_key`)."""
        target = to_key or self._key(destination)
        source = {"Bucket": self.bucket, "Key": source_key}
        if size <= MAX_COPY_PART:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=source)
        else:
            self.client.copy(source, self.bucket, target)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except self._client_error() as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise

    def _client_error(self):
        return self.client.exceptions.ClientError

    def close(self) -> None:
        self._parts.shutdown(wait=False)
        getattr(self.client, "close", lambda: None)()


class ObjectBody:
    """A GET's body read straight from the http.client response under botocore's StreamingBody
    and urllib3's HTTPResponse (each `read` is then one BufferedReader.read, which receives into
    the bytes it returns), with the same end: fewer bytes than the Content-Length raise
    botocore's IncompleteReadError, and a body read to its end gives its connection back to
    urllib3's pool. Bodies of other shapes (another HTTP client, a stub) are read as they are."""

    def __init__(self, body, length: int):
        raw = getattr(body, "_raw_stream", None)
        inner = getattr(raw, "_fp", None)
        self._body = body
        self._pooled = raw
        self._direct = inner if isinstance(inner, http.client.HTTPResponse) and not inner.chunked else None
        self._expected = length
        self._received = 0
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        amount = None if size is None or size < 0 else size
        if self._direct is None:
            return self._body.read(amount)
        if self._ended:
            return b""
        try:
            data = self._direct.read(amount)
        except http.client.IncompleteRead as e:  # a read of the whole rest that stopped short
            self._received += len(e.partial)
            self._end()
            raise
        except (OSError, http.client.HTTPException) as e:
            raise _stream_error(e) from e
        self._received += len(data)
        if self._direct.isclosed():  # the whole body, or the connection ended early
            self._end()
        return data

    def _end(self) -> None:
        self._ended = True
        if self._received != self._expected:
            from botocore.exceptions import IncompleteReadError
            raise IncompleteReadError(actual_bytes=self._received, expected_bytes=self._expected)
        self._pooled.release_conn()

    def rest_source(self) -> tuple[int, float] | None:
        """The descriptor of the S3 connection's socket and its read timeout in seconds, for a
        caller that receives the rest of the body from it itself (socket_bodies.py):
        only over plain HTTP (over https its bytes are not the body), None for a body of another
        shape or once the body has ended. The caller first takes `read_buffered()`, then receives
        at most the rest from the descriptor and reports how much with `received_from_socket`.
        (moto and other HTTP/1.0 servers close each connection after its response: http.client
        has then let go of the connection's socket, and the response's file holds it.)"""
        from urllib3.connection import HTTPConnection, HTTPSConnection

        if self._direct is None or self._ended or self._direct.length is None or self._direct.fp is None:
            return None
        connection = getattr(self._pooled, "connection", None)
        if not isinstance(connection, HTTPConnection) or isinstance(connection, HTTPSConnection):
            return None
        if not isinstance(getattr(self._direct.fp, "raw", None), socket.SocketIO):
            return None
        timeout = connection.timeout if isinstance(connection.timeout, (int, float)) else READ_TIMEOUT
        return self._direct.fp.fileno(), timeout

    def read_buffered(self, limit: int) -> bytes:
        """Up to `limit` bytes that http.client has already received off the socket (what came
        with the headers), or one receive of them when nothing has; after it, the rest of the
        body is on the socket only."""
        fp = self._direct.fp if self._direct is not None else None
        if fp is None or limit <= 0:
            return b""
        try:
            waiting = len(fp.peek())
        except OSError as e:
            raise _stream_error(e) from e
        return self.read(min(waiting, limit)) if waiting else b""

    def received_from_socket(self, count: int) -> None:
        """Count `count` bytes of the body the caller received from `rest_source` itself, in
        http.client's count of what is left too: a body so read to its end gives its connection
        back to the pool at `close` (or the next `read`), as one read through `read` does."""
        self._direct.length -= count
        self._received += count

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._direct is not None and not self._ended and self._received == self._expected:
            self.read(0)  # an empty body, never read: it is over, its connection can serve again
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stream_error(error: Exception) -> Exception:
    from botocore.exceptions import ResponseStreamingError
    return ResponseStreamingError(error=error)


def open_s3_driver(options: dict, check: bool = True) -> S3Driver:
    """The driver for registry.yaml's `storage.options` (bucket, region, endpoint, prefix, redirect,
    accessKey, secretKey, sessionToken, partSize). Credentials not given there come from boto3's
    usual places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role). With
    `check`, the bucket is asked for once, and any problem is a StorageUnavailable with one line."""
    import boto3
    from botocore.config import Config as BotoConfig

    bucket = options.get("bucket")
    if not bucket:
        raise StorageUnavailable("storage driver s3 needs storage.options.bucket (the bucket that holds the blobs)")
    endpoint = options.get("endpoint")
    session = boto3.session.Session(aws_access_key_id=options.get("accessKey"),
                                    aws_secret_access_key=options.get("secretKey"),
                                    aws_session_token=options.get("sessionToken"),
                                    region_name=options.get("region"))
    config = BotoConfig(s3={"addressing_style": "path" if endpoint else "auto"}, signature_version="s3v4",
                        max_pool_connections=64, connect_timeout=5, read_timeout=READ_TIMEOUT,
                        retries={"mode": "standard", "max_attempts": 3})
    client = session.client("s3", endpoint_url=endpoint, config=config)
    driver = S3Driver(client, bucket, prefix=options.get("prefix", ""), redirect=options.get("redirect", False),
                      part_size=options.get("partSize", DEFAULT_PART_SIZE))
    if check:
        check_bucket(driver, endpoint)
    return driver


def check_bucket(driver: S3Driver, endpoint: str | None) -> None:
    """Raise StorageUnavailable, with what to do, unless the bucket answers with these credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    where = f"bucket {driver.bucket!r}" + (f" at {endpoint}" if endpoint else "")
    try:
        driver.client.head_bucket(Bucket=driver.bucket)
    except (NoCredentialsError, PartialCredentialsError):
        raise StorageUnavailable(f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY, or storage.options accessKey and secretKey") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageUnavailable(f"{where} does not exist: create it, or fix storage.options.bucket") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageUnavailable(f"{where} refused these credentials (access denied): check "
                                     "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or storage.options "
                                     "accessKey / secretKey) and the bucket's policy") from None
        raise StorageUnavailable(f"{where} cannot be used: {code} {e}") from None
    except BotoCoreError as e:
        raise StorageUnavailable(f"{where} cannot be reached: {e}") from None
