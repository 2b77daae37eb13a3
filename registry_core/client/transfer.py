"""Copying an image graph from a source to a destination: `push`, `pull` and `copy` are all this,
between a registry, an OCI layout and a docker archive.

The plan is made first (which manifests, which blobs), then blobs move in parallel on a thread
pool (largest first, so the long ones start early), then manifests go in children-first order
and the destination commits. The first failing blob cancels the others, and the destination
is aborted, which for local destinations means nothing was written.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from registry_core.client import manifests as mf
from registry_core.client.errors import NotFound
from registry_core.client.progress import Progress

DEFAULT_JOBS = 4


@dataclass
class Plan:
    root: mf.Descriptor
    manifests: list[tuple[mf.Descriptor, bytes]]  # children before parents; the root is last
    blobs: list[mf.Descriptor]
    platforms: list[str] = field(default_factory=list)


@dataclass
class Result:
    source: str
    destination: str
    digest: str
    media_type: str
    size: int
    platforms: list[str]
    manifests: int
    blobs: dict[str, int]
    bytes_total: int
    bytes_transferred: int
    seconds: float
    resumed: int = 0

    def to_json(self) -> dict:
        return {"source": self.source, "destination": self.destination, "digest": self.digest,
                "mediaType": self.media_type, "size": self.size, "platforms": self.platforms,
                "manifests": self.manifests, "blobs": self.blobs, "bytes": self.bytes_total,
                "bytesTransferred": self.bytes_transferred, "seconds": round(self.seconds, 3),
                "resumedUploads": self.resumed}


def plan(source, platform: mf.Platform | None = None, all_platforms: bool = False,
         strict: bool = True) -> Plan:
    """What to copy. An index is copied whole with `all_platforms` (or when no platform is asked
    for), else only the entry for `platform`. A single image is copied whatever its platform,
    unless `strict` (the user named the platform): then it must be that platform's."""
    root, body = source.root()
    manifest = mf.parse(body, root.media_type)
    if root.media_type not in mf.MANIFEST_TYPES:
        root.media_type = manifest.media_type
    if manifest.is_index and platform is not None and not all_platforms:
        root = mf.choose(manifest, platform)
        body = source.manifest(root)
        manifest = mf.parse(body, root.media_type)
    elif not manifest.is_index and platform is not None and strict and manifest.config is not None \
            and manifest.config.media_type in mf.IMAGE_CONFIGS:
        config = json.loads(source.blob_bytes(manifest.config))
        actual = mf.Platform.of(config)
        if actual is not None and not platform.matches(actual):
            raise NotFound(f"{source} is an image for {actual}, not {platform}", code="PLATFORM_UNKNOWN",
                           detail={"available": [str(actual)]})
    result = Plan(root, [], [])
    seen: set[str] = set()
    _collect(source, root, body, manifest, result, seen)
    if not manifest.is_index and mf.Platform.of(root.platform):
        result.platforms.append(str(mf.Platform.of(root.platform)))
    return result


def _collect(source, descriptor, body, manifest, result: Plan, seen: set[str]) -> None:
    if manifest.is_index:
        for child in manifest.manifests:
            if child.digest in seen:
                continue
            if child.is_manifest:
                seen.add(child.digest)
                child_body = source.manifest(child)
                _collect(source, child, child_body, mf.parse(child_body, child.media_type), result, seen)
            else:
                seen.add(child.digest)
                result.blobs.append(child)
            platform = mf.Platform.of(child.platform)
            if platform and platform.os != "unknown":
                result.platforms.append(str(platform))
    else:
        for blob in manifest.blobs():
            if blob.digest not in seen:
                seen.add(blob.digest)
                result.blobs.append(blob)
    result.manifests.append((descriptor, body))


def run(source, destination, the_plan: Plan, *, tag: str | None = None, jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None) -> Result:
    progress = progress or Progress(False)
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    transferred = [0]
    lock = threading.Lock()
    cancel = threading.Event()
    destination.prepare(the_plan)
    blobs = sorted(the_plan.blobs, key=lambda b: -b.size)
    total = sum(b.size for b in blobs)

    def move(blob: mf.Descriptor) -> None:
        with progress.blob(blob.digest, blob.size) as bar:
            outcome = destination.put_blob(blob, source, bar, cancel)
        if outcome not in ("uploaded", "downloaded"):
            progress.skip(blob.size)
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome in ("uploaded", "downloaded"):
                transferred[0] += blob.size

    try:
        progress.start(total, len(blobs), max(1, min(jobs, len(blobs))))
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="blob") as pool:
            futures = [pool.submit(move, blob) for blob in blobs]
            try:
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    raise failed[0].exception()
            except BaseException:
                cancel.set()
                for future in futures:
                    future.cancel()
                raise
        for descriptor, body in the_plan.manifests:
            destination.put_manifest(descriptor, body, tag if descriptor is the_plan.root else None)
        destination.commit()
    except BaseException:
        destination.abort()
        raise
    finally:
        progress.close()
    return Result(source=str(source), destination=str(destination), digest=the_plan.root.digest,
                  media_type=the_plan.root.media_type, size=the_plan.root.size,
                  platforms=the_plan.platforms, manifests=len(the_plan.manifests),
                  blobs={"total": len(blobs), **outcomes}, bytes_total=total,
                  bytes_transferred=transferred[0], seconds=time.monotonic() - started,
                  resumed=getattr(destination, "resumes", 0))
