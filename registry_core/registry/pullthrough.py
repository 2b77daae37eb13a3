"""Pull-through: fill a miss from the upstream a `resolve_upstream` plugin names (mirrors), and keep
what was filled fresh.

- A manifest missing from the store is fetched, verified (digest, manifest parsing) and stored. Its
  repository is created as the mirror's (authored by `registry`, a name no account may have, with
  the upstream's `visibility`), not the first puller's.
- A manifest asked by tag is revalidated with a HEAD to the upstream once the upstream's `tag_ttl`
  seconds have passed since it was last checked (state/pull-through/tags/, shared by the worker
  processes through file times); a moved tag is fetched again. By digest: never asked again.
- When the upstream fails (it raises a RegistryError: timeout, refused connection, 429, 5xx), what
  is cached is served (stale-if-error) and the log says so once per outage; what is not cached
  answers the upstream's error (a 5xx naming the failure), never a 404.
- A blob missing from the store is streamed to the client while it is stored when the upstream
  says its size: the client gets every byte but the last chunk at once, and the last only after the
  whole blob was verified by digest and published. A blob cut short, too long, or of another digest
  is not stored and the client's transfer is aborted before it is complete. One process at a time
  fetches a blob (a lock per digest); who waits for the lock then serves the stored blob.
- The tags list and the referrers come from the upstream while it answers, merged with the cache.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import threading
import time

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.events import event
from registry_core.meta import paths as meta_paths
from registry_core.names import digest_of, is_digest, split_digest

log = logging.getLogger("registry_core.pullthrough")

MIRROR_ACTOR = "registry"   # the author of fills: a reserved name, so no account owns mirrored repositories
STORE_BATCH = 4 << 20       # bytes of a streamed blob handed to the storing thread at a time
FEED_BATCHES = 2            # batches waiting for the storing thread, at most
LOCK_POLL = 0.05            # seconds between tries of a blob's fill lock held by another process


class PullThrough:
    def __init__(self, registry):
        self.registry = registry
        self.state = os.path.join(registry.config.store, "state", "pull-through")
        self._failing: dict[str, str] = {}   # upstream -> the failure logged for it (log once)
        self._failing_lock = threading.Lock()

    # --- which upstream -----------------------------------------------------------------------

    def upstream(self, name: str):
        return self.registry.upstream(name)

    def visibility(self, name: str) -> str | None:
        """How a repository the store does not hold is judged by the access policy: the
        visibility its upstream gives its fills (public unless it says otherwise), or None when no
        upstream serves it."""
        upstream = self.upstream(name)
        return None if upstream is None else getattr(upstream, "visibility", "public")

    # --- manifests ----------------------------------------------------------------------------

    def resolve_manifest(self, name: str, reference: str, context: Context) -> dict:
        """The manifest document of `reference` in `name`: from the store, revalidated or filled
        from the upstream as its TTL says. Raises the store's miss or the upstream's failure."""
        manifests = self.registry.manifests
        upstream = self.upstream(name)
        if upstream is None:
            return manifests.resolve(name, reference)
        try:
            cached = manifests.resolve(name, reference)
        except RegistryError as miss:
            if miss.code not in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
                raise
            cached = None
        if cached is not None and (is_digest(reference) or not self._tag_due(upstream, name, reference)):
            return cached
        try:
            if cached is not None and hasattr(upstream, "head_manifest"):
                current = upstream.head_manifest(name, reference)
                if current is None or current == cached["digest"]:
                    self._tag_checked(name, reference)   # gone upstream: keep serving what was pulled
                    self._answered(upstream)
                    return cached
            filled = self._fill_manifest(upstream, name, reference, context)
        except RegistryError as failure:
            if cached is None or failure.status < 500:
                raise
            self._failed(upstream, failure, f"serving the cached {name}:{reference}")
            return cached
        self._answered(upstream)
        if not filled:
            if cached is not None:
                return cached
            return manifests.resolve(name, reference)   # raises the miss
        return manifests.resolve(name, reference)

    def manifest(self, name: str, reference: str, context: Context) -> bool:
        """Fetch `reference` of `name` from the upstream and store it; False when there is none."""
        upstream = self.upstream(name)
        return upstream is not None and self._fill_manifest(upstream, name, reference, context)

    def _fill_manifest(self, upstream, name: str, reference: str, context: Context) -> bool:
        fetched = upstream.manifest(name, reference)
        if fetched is None:
            return False
        body, media_type = fetched
        if is_digest(reference) and digest_of(body, split_digest(reference)[0]) != reference:
            raise RegistryError("UNAVAILABLE", f"the upstream of {name} answered {reference} with "
                                "content of another digest; nothing was stored", status=502)
        mirror = self._mirror_context(context)
        self._ensure_repository(upstream, name, mirror)
        self.registry.manifests.put(name, reference, body, media_type, mirror, require_references=False)
        if not is_digest(reference):
            self._tag_checked(name, reference)
        self.registry.notify(event("mirror-fill", context, repository=name, tag=None if is_digest(reference)
                                   else reference, digest=digest_of(body), media_type=media_type,
                                   size=len(body)))
        return True

    @staticmethod
    def _mirror_context(context: Context) -> Context:
        """The puller's request, authored by the mirror: fills belong to no account."""
        return Context(actor=MIRROR_ACTOR, client_addr=context.client_addr, request_id=context.request_id)

    def _ensure_repository(self, upstream, name: str, mirror: Context) -> None:
        """The repository of a first fill, owned by the mirror with the upstream's visibility."""
        if self.registry.repositories.get(name) is not None:
            return
        document = {"kind": "repository", "schemaVersion": 1, "name": name,
                    "visibility": getattr(upstream, "visibility", "public"), "owner": MIRROR_ACTOR,
                    "createdBy": MIRROR_ACTOR, "createdAt": now_iso()}
        where = getattr(upstream, "describe", None)
        if callable(where):
            document["upstream"] = where(name)

        def change(txn):
            path = meta_paths.repository(name)
            if txn.exists(path):
                return False
            txn.put(path, document)
            return True
        if self.registry.meta.transact(change, mirror, f"Mirror {name}"):
            self.registry.notify(event("repository-created", mirror, repository=name))

    # --- tag revalidation ---------------------------------------------------------------------

    def _tag_file(self, name: str, tag: str) -> str:
        return os.path.join(self.state, "tags", name, tag)

    def _tag_due(self, upstream, name: str, tag: str) -> bool:
        ttl = getattr(upstream, "tag_ttl", None)
        if ttl is None:
            return False
        try:
            return time.time() - os.stat(self._tag_file(name, tag)).st_mtime >= ttl
        except OSError:
            return True

    def _tag_checked(self, name: str, tag: str) -> None:
        path = self._tag_file(name, tag)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a"):
                pass
            os.utime(path)

    # --- stale-if-error, logged once per outage -----------------------------------------------

    def _outage_file(self, upstream) -> tuple[str, str]:
        """The upstream's name for the log, and the file that marks its outage (shared by the
        worker processes, so that one of them logs it)."""
        key = str(getattr(upstream, "url", type(upstream).__name__))
        return key, os.path.join(self.state, "outages", digest_of(key.encode()).split(":", 1)[1])

    def _failed(self, upstream, failure: RegistryError, doing: str) -> None:
        key, marker = self._outage_file(upstream)
        with self._failing_lock:
            if key in self._failing:
                return
            self._failing[key] = failure.message
        try:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "x") as f:
                f.write(failure.message)
        except FileExistsError:
            return   # another process logged this outage
        except OSError:
            pass
        log.warning("pull-through: upstream %s failed (%s); serving cached content until it answers "
                    "again (first: %s)", key, failure.message, doing)

    def _answered(self, upstream) -> None:
        key, marker = self._outage_file(upstream)
        with self._failing_lock:
            if self._failing.pop(key, None) is None and not os.path.exists(marker):
                return
        try:
            os.unlink(marker)
        except OSError:
            return   # no outage recorded, or another process logged its end
        log.warning("pull-through: upstream %s answers again", key)

    # --- listings -----------------------------------------------------------------------------

    def tags(self, name: str) -> list[str] | None:
        """The upstream's tags of `name` merged with the cached ones (sorted), or None when no
        upstream lists them. The upstream failing: the cached tags, or its error when none are."""
        upstream = self.upstream(name)
        if upstream is None or not hasattr(upstream, "tags"):
            return None
        cached: list[str] = []
        if self.registry.repositories.get(name) is not None:
            cached, _ = self.registry.repositories.tags(name)
        try:
            remote = upstream.tags(name)
        except RegistryError as failure:
            if failure.status < 500 or not cached:
                raise
            self._failed(upstream, failure, f"listing the cached tags of {name}")
            return sorted(cached)
        self._answered(upstream)
        if remote is None and not cached:
            return None
        return sorted(set(cached) | set(remote or ()))

    def referrers(self, name: str, digest: str, cached: list[dict]) -> list[dict]:
        """The upstream's referrers of `digest` added to the `cached` descriptors (by digest)."""
        upstream = self.upstream(name)
        if upstream is None or not hasattr(upstream, "referrers"):
            return cached
        try:
            remote = upstream.referrers(name, digest) or []
        except RegistryError as failure:
            if failure.status < 500:
                raise
            self._failed(upstream, failure, f"listing the cached referrers of {name}@{digest}")
            return cached
        self._answered(upstream)
        known = {d["digest"] for d in cached}
        return cached + [d for d in remote if isinstance(d, dict) and d.get("digest") not in known]

    # --- blobs --------------------------------------------------------------------------------

    def blob(self, name: str, digest: str, context: Context) -> bool:
        """Fetch the blob from the upstream and store it whole; False when there is none."""
        upstream = self.upstream(name)
        if upstream is None:
            return False
        with self._fill_lock(digest):
            if self.registry.blobs.is_linked(name, digest):
                return True   # filled by another request while this one waited
            chunks = upstream.blob(name, digest)
            if chunks is None:
                return False
            try:
                self._store_whole(name, digest, chunks, context)
            finally:
                _close(chunks)
        return True

    def stream_blob(self, name: str, digest: str, context: Context):
        """A `StreamingFill` (iterable, with `size`) that sends the blob from the upstream while it
        is stored; None when there is nothing to stream: no upstream, the upstream has no such
        blob, or it is now in the store (another request filled it, or the upstream gave no size
        and it was stored whole first)."""
        upstream = self.upstream(name)
        if upstream is None:
            return None
        lock = self._acquire(digest)
        try:
            if self.registry.blobs.is_linked(name, digest):
                _release(lock)
                return None
            chunks = upstream.blob(name, digest)
            if chunks is None:
                _release(lock)
                return None
            size = getattr(chunks, "size", None)
            if size is None:
                try:
                    self._store_whole(name, digest, chunks, context)
                finally:
                    _close(chunks)
                _release(lock)
                return None
        except BaseException:
            _release(lock)
            raise
        return StreamingFill(self, name, digest, chunks, size, lock, context)

    def _store_whole(self, name: str, digest: str, chunks, context: Context) -> None:
        uploads = self.registry.uploads
        upload_id = uploads.start(name)
        try:
            size = uploads.finish(name, upload_id, digest, chunks)
        except BaseException:
            uploads.cancel_quietly(upload_id)
            raise
        self.registry.notify(event("mirror-fill", context, repository=name, digest=digest, size=size))

    @contextlib.contextmanager
    def _fill_lock(self, digest: str):
        lock = self._acquire(digest)
        try:
            yield
        finally:
            _release(lock)

    def _acquire(self, digest: str):
        """The fill lock of `digest` (an flock, across worker processes), waited for."""
        folder = os.path.join(self.state, "locks")
        os.makedirs(folder, exist_ok=True)
        handle = open(os.path.join(folder, digest.replace(":", "-")), "a")
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return handle
                except BlockingIOError:
                    time.sleep(LOCK_POLL)
        except BaseException:
            handle.close()
            raise


class StreamingFill:
    """The body of a blob response filled from the upstream as it is sent (see the module's doc).
    Bottle iterates it and calls `close()` when the response ends, however it ends."""

    def __init__(self, pull_through: PullThrough, name: str, digest: str, chunks, size: int, lock,
                 context: Context):
        self.pull_through, self.name, self.digest = pull_through, name, digest
        self.chunks, self.size, self.lock, self.context = chunks, size, lock, context
        self.upload_id: str | None = None
        self.stored = False
        self._closed = False

    def __iter__(self):
        return self._stream()

    def _stream(self):
        """Receive, store and send: the blob is stored by one append, in a thread of its own
        (hashlib and the storage's writes release the GIL), fed a batch at a time while the next
        is received and sent, so memory holds a few batches at most. One append: on S3 the
        parts stream into one multipart upload, with no tail written and read back per batch."""
        uploads = self.pull_through.registry.uploads
        held, batch, batched, received = None, [], 0, 0
        feed = _Feed()
        try:
            self.upload_id = uploads.start(self.name)
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pull-through-store") as storer:
                storing = storer.submit(uploads.finish, self.name, self.upload_id, self.digest, feed.chunks())
                try:
                    for chunk in self.chunks:
                        if not chunk:
                            continue
                        received += len(chunk)
                        if received > self.size:
                            raise self._broken(f"sent more than the {self.size} bytes it announced")
                        batch.append(chunk)
                        batched += len(chunk)
                        if batched >= STORE_BATCH:
                            feed.put(batch, storing)
                            batch, batched = [], 0
                        if held is not None:
                            yield held
                        held = chunk
                    if received != self.size:
                        raise self._broken(f"sent {received} of the {self.size} bytes it announced")
                    feed.put(batch, storing)
                    feed.put(None, storing)
                except BaseException:
                    feed.stop()  # the append ends with FillStopped; close() drops what it stored
                    raise
                storing.result()  # verified by digest, published and linked
            self.stored = True
        except Exception as e:
            log.warning("pull-through: blob %s of %s was not stored, its transfer is aborted: %s",
                        self.digest, self.name, e)
            raise
        finally:
            self.close()
        self.pull_through.registry.notify(event("mirror-fill", self.context, repository=self.name,
                                                digest=self.digest, size=self.size))
        if held is not None:
            yield held

    def _broken(self, what: str) -> RegistryError:
        return RegistryError("UNAVAILABLE", f"the upstream of {self.name} {what} for blob {self.digest}; "
                             "nothing was stored", status=502)

    def close(self) -> None:
        """Give up what is unfinished (the upload, the upstream's response) and the fill lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.stored and self.upload_id is not None:
                self.pull_through.registry.uploads.cancel_quietly(self.upload_id)
            _close(self.chunks)
        finally:
            _release(self.lock)


class FillStopped(Exception):
    """The transfer a streaming fill stored stopped (the upstream failed, the client went away)."""


class _Feed:
    """Batches of chunks handed from the receiving loop to the storing thread, at most
    FEED_BATCHES waiting; None ends them."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(FEED_BATCHES)

    def put(self, batch: list[bytes] | None, storing: concurrent.futures.Future) -> None:
        """Hand over `batch` (None: the end), waiting while the queue is full; if the storing
        thread stopped meanwhile, its error is raised here."""
        while True:
            if storing.done():
                storing.result()  # raises what stopped it
                raise FillStopped("the store ended before the blob did")
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Make the storing thread's chunks raise FillStopped (the transfer ended early)."""
        while True:
            try:
                self._queue.get_nowait()  # make room: what is queued will not be stored anyway
            except queue.Empty:
                pass
            try:
                self._queue.put_nowait(FillStopped("the transfer stopped before the blob ended"))
                return
            except queue.Full:
                continue

    def chunks(self):
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if isinstance(batch, FillStopped):
                raise batch
            yield from batch


def _close(chunks) -> None:
    close = getattr(chunks, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _release(handle) -> None:
    with contextlib.suppress(OSError, ValueError):
        fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
