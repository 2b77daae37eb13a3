"""garbage-collect of a long meta.git history: time and peak memory (issue 12: a 100,000-commit
meta.git under two minutes and 500 MiB).

    .venv/bin/python bench/gc_history.py [--commits 100000] [--repositories 100] [--keep DIR]

Writes a store whose meta.git has COMMITS commits, each a push as the registry records it: a new
manifest document and the tag document pointing at it, in one of REPOSITORIES repositories, at
the paths meta/paths.py gives, authored by one of a few users. The history is written with `git
fast-import` (minutes faster than the registry's own commits), then spread over small packs of
whole objects as the pack writer leaves them (`git repack` is not run). Then runs `registry
garbage-collect --grace 0` and reports its wall time, the peak resident memory of the largest
of it and its children (git's repack and prune) and of the whole process tree at once
(sampled), meta.git's size before and after, and bytes per commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry_core.meta import documents, paths  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from servers import MemorySampler  # noqa: E402

REGISTRY = str(ROOT / ".venv" / "bin" / "registry")
LAYER = "sha256:" + "ab" * 32
USERS = ("alice", "bob", "carol", "ci-bot")


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def fast_import_stream(commits: int, repositories: int, start: int):
    """git fast-import commands for `commits` pushes."""
    yield b"feature done\n"
    for i in range(commits):
        name = f"ns{i % repositories // 100:02d}/app{i % repositories:03d}"
        # digests as content addresses are: spread evenly, so over the fan-out's buckets as a push's
        # would be (counters padded with zeros all fell in _manifests/sha256/0/0/0, one tree that
        # grew to every manifest of the repository and was rewritten whole by each push)
        config = "sha256:" + hashlib.sha256(b"config %d" % i).hexdigest()
        manifest_digest = "sha256:" + hashlib.sha256(b"manifest %d" % i).hexdigest()
        user = USERS[i % len(USERS)]
        manifest = documents.dump({
            "kind": "manifest", "schemaVersion": 1, "digest": manifest_digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1000 + i % 500,
            "pushedBy": user, "pushedAt": "2026-01-01T00:00:00Z",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 500},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": LAYER,
                        "size": 123456}]}, "manifest")
        tag = documents.dump({"kind": "tag", "schemaVersion": 1, "name": f"b{i}", "digest": manifest_digest,
                              "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1000,
                              "pushedBy": user, "pushedAt": "2026-01-01T00:00:00Z"}, "tag")
        message = f"Push {name}:b{i}\n\nActor: {user}\nClient-Addr: 127.0.0.1\n".encode()
        when = start + i
        lines = [b"commit refs/heads/main\n",
                 f"author {user} <{user}@registry> {when} +0000\n".encode(),
                 f"committer registry <registry@localhost> {when} +0000\n".encode(),
                 b"data %d\n" % len(message), message]
        if i == 0:
            lines.append(b"from refs/heads/main^0\n")
        for path, data in ((paths.manifest(name, manifest_digest), manifest), (paths.tag(name, f"b{i}"), tag)):
            lines += [f"M 100644 inline {path}\n".encode(), b"data %d\n" % len(data), data, b"\n"]
        yield b"".join(lines)
    yield b"done\n"


def build(store: Path, commits: int, repositories: int) -> float:
    subprocess.run([REGISTRY, "init", str(store)], check=True, capture_output=True)
    meta = store / "meta.git"
    started = time.perf_counter()
    importer = subprocess.Popen(["git", "--git-dir", str(meta), "fast-import", "--quiet", "--depth=0",
                                 "--big-file-threshold=1m", "--max-pack-size=4m"],
                                stdin=subprocess.PIPE)
    for chunk in fast_import_stream(commits, repositories, int(time.time()) - commits):
        importer.stdin.write(chunk)
    importer.stdin.close()
    if importer.wait() != 0:
        raise SystemExit("git fast-import failed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="build the store here and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gc-history-"))
    store = workdir / "store"
    try:
        if not store.exists():
            took = build(store, args.commits, args.repositories)
            print(f"built {args.commits:,} commits with git fast-import in {took:.1f} s", flush=True)
        meta = store / "meta.git"
        before = du(meta)
        started = time.perf_counter()
        job = subprocess.Popen([REGISTRY, "garbage-collect", "--grace", "0", "--store", str(store), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = MemorySampler(job.pid, interval=0.1)
        sampler.start()
        stdout, stderr = job.communicate()
        sampler.stop()
        seconds = time.perf_counter() - started
        if job.returncode != 0:
            raise SystemExit(f"garbage-collect failed: {stdout}{stderr}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        after = du(meta)
        report = json.loads(stdout)
        summary = {"commits": args.commits, "seconds": round(seconds, 1), "peak_rss_mib": round(peak / 2**20),
                   "peak_tree_rss_mib": round(sampler.peak_rss / 2**20),
                   "meta_mib_before": round(before / 2**20, 1), "meta_mib_after": round(after / 2**20, 1),
                   "bytes_per_commit_after": round(after / args.commits), "freed": report["bytesFreed"]}
        print(json.dumps(summary))
        print(f"garbage-collect of {args.commits:,} commits: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB "
              f"(largest of it and its children; {sampler.peak_rss / 2**20:.0f} MiB the whole tree at once, "
              f"sampled every 0.1 s), meta.git {before / 2**20:.1f} -> {after / 2**20:.1f} MiB "
              f"({after / args.commits:.0f} bytes a commit)")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
