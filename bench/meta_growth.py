"""How much meta.git grows a push, as one repository fills with manifests (CI pipelines).

    .venv/bin/python bench/meta_growth.py [--counts 100,1000,10000] [--window 50] [--no-gc]
                                          [--layout 16x16x16|16x16|256] [--keep-in DIR]

Pushes N distinct manifests into one repository through the services in this process (no
server): each push is what a CI pipeline makes, a new config blob (the build number in it), the
same three layers, and the manifest under its own tag `build-<i>`: one commit each, by
`ManifestService.put` as a request would make it (actor, client address and request id in the
commit). At each count it prints what meta.git grew over the last `--window` pushes, per push
(`du -sb` of meta.git: everything on disk, including the packs merged away into merges/retired/
that `registry garbage-collect` deletes, and the live part without them), and the average a
push since the previous count (the window can hold a large merge, or none); then, unless --no-gc,
runs `registry garbage-collect` on the store (the metadata packed as one pack with deltas) and
prints meta.git's size a commit after it. The pushes then go on from the collected store, as a
registry collected now and then would.

`--layout` changes the fan-out of meta/paths.py for this run only (tags, manifests and referrer
subjects alike), to compare shapes: 16x16x16 (the registry's: three levels of one hex digit),
16x16 (two levels), 256 (one level of two hex digits, the tag layout before).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry_core.app import Registry  # noqa: E402
from registry_core.context import Context  # noqa: E402
from registry_core.meta import paths as meta_paths  # noqa: E402
from registry_core.serving import read_config  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY = "ci/app"
LAYOUTS = {"16x16x16": (3, None), "16x16": (2, None), "256": (1, lambda key: key[:2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,1000,10000", help="manifest counts to measure at")
    parser.add_argument("--window", type=int, default=50, help="pushes measured before each count")
    parser.add_argument("--no-gc", action="store_true", help="do not run garbage-collect at each count")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="16x16x16")
    parser.add_argument("--keep-in", metavar="DIR", help="make the store in DIR and keep it")
    args = parser.parse_args()
    levels, fan_out = LAYOUTS[args.layout]
    meta_paths.FANOUT_LEVELS = levels
    if fan_out is not None:
        meta_paths.fan_out = fan_out
    counts = sorted(int(count) for count in args.counts.split(","))
    store = tempfile.mkdtemp(prefix="meta-growth-", dir=args.keep_in)
    try:
        run(store, counts, args.window, not args.no_gc, args.layout)
    finally:
        if not args.keep_in:
            shutil.rmtree(store, ignore_errors=True)


def du(path: str) -> int:
    return int(subprocess.run(["du", "-sb", path], check=True, capture_output=True, text=True).stdout.split()[0])


def commits(meta_git: str) -> int:
    return int(subprocess.run(["git", "--git-dir", meta_git, "rev-list", "--count", "main"], check=True,
                              capture_output=True, text=True).stdout)


def run(store: str, counts: list[int], window: int, collect: bool, layout: str) -> None:
    config = read_config(None, store)
    config.auth.enabled = False
    registry = Registry(config)
    meta_git = os.path.join(store, "meta.git")
    retired = os.path.join(meta_git, "merges", "retired")
    layers = [os.urandom(100) for _ in range(3)]
    for layer in layers:
        registry.blobs.put(layer, "sha256:" + hashlib.sha256(layer).hexdigest())

    def descriptor(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        registry.blobs.put(data, digest)
        registry.blobs.link(REPOSITORY, digest)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def push(i: int) -> None:
        config_blob = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"build": str(i)}}})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": descriptor(config_blob.encode(), "application/vnd.oci.image.config.v1+json"),
                               "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar")
                                          for layer in layers]}).encode()
        context = Context(actor="ci-bot", client_addr="127.0.0.1", request_id=os.urandom(16).hex())
        registry.manifests.put(REPOSITORY, f"build-{i}", manifest, OCI_MANIFEST, context)

    print(f"layout {layout}: one repository, a distinct manifest and its tag a push; "
          f"growth over the {window} pushes before each count (du -sb of meta.git)", flush=True)
    pushed, started = 0, time.perf_counter()
    since, since_count = du(meta_git), 0   # the size after the previous count (and its garbage-collect)
    for count in counts:
        while pushed < count - window:
            push(pushed)
            pushed += 1
        before, before_retired = du(meta_git), du(retired) if os.path.isdir(retired) else 0
        while pushed < count:
            push(pushed)
            pushed += 1
        after, after_retired = du(meta_git), du(retired) if os.path.isdir(retired) else 0
        grown, merged_away = after - before, after_retired - before_retired
        line = (f"{count:>6} manifests: {grown / window / 1024:5.1f} KiB a push "
                f"({(grown - merged_away) / window / 1024:.1f} KiB live, {merged_away / window / 1024:.1f} KiB "
                f"merged-away packs); {(after - since) / (count - since_count) / 1024:.1f} KiB a push on average "
                f"since {since_count}; meta.git {after / 2**20:.1f} MiB, {commits(meta_git)} commits")
        since, since_count = after, count
        if collect:
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "registry"), "garbage-collect",
                            "--store", store, "--as", "admin"], check=True, capture_output=True, cwd=ROOT)
            since, made = du(meta_git), commits(meta_git)
            line += f"; after garbage-collect {since / 2**20:.1f} MiB, {since / made:.0f} bytes a commit"
        print(line + f"  [{time.perf_counter() - started:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
