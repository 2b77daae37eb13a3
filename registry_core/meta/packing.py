"""Packing meta.git whole and pruning what no commit reaches: a step of `registry garbage-collect`,
done by git's own tools (`git repack`, `git prune`), which know every file git may leave in
objects/pack/ (.bitmap, .rev, .mtimes, .keep) and are what an operator's `git gc` runs too.

Commits write their objects as small packs of whole objects (packs.py, or loose objects from the
libgit2 writer); a commit that lost its compare-and-swap leaves objects no branch reaches. This
step writes every reachable object into one pack with deltas (1,000 image pushes: 76 MiB as loose
files, under 2 MiB packed: tests/test_gc.py, bench/RESULTS.md), and an unreachable object only
while it is younger than the grace period, in a cruft pack (git's own way of remembering when an
unreachable object was last written: its .mtimes file).

Safe beside a serving registry, as `git gc` is beside git: a commit being written has its objects
in a pack or loose files younger than the grace period, so they are kept even before its branch
moves (choose a grace longer than any commit takes: seconds). Packs written after git listed the
folder are left alone. Small packs are not merged meanwhile (the merge lock is held).
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from registry_core.meta import packs

LEFTOVER_AGE = 3600.0  # seconds: a temporary file this old was left by a killed writer
# A writer renames a pack's index into place microseconds after the pack: a pack without an index
# for this long was left by a killed writer. git's repack lists *.pack files and fails on one
# without an index, so they are removed (or waited for) before it runs.
INDEXLESS_AGE = 60.0
# What earlier versions kept inside objects/pack/, where git counts it as garbage: merges.py's
# bookkeeping now lives in meta.git/merges/ (packs.merges_dir).
_OLD_BOOKKEEPING = ("retired.list", "retired", "merge.lock", "last-merge")


# git's memory while it repacks, bounded: its defaults map up to 8 GiB of packs and let each
# thread's delta window grow without limit. Small windows and caches trade a little time for
# memory; what they cannot bound is git's list of the objects themselves (about 330 bytes an
# object; figures for 100,000 commits in bench/profiles/notes.md, "garbage-collect").
BOUNDED_MEMORY = ("-c", "core.packedGitLimit=32m", "-c", "core.packedGitWindowSize=8m",
                  "-c", "core.deltaBaseCacheLimit=8m", "-c", "pack.windowMemory=8m",
                  "-c", "pack.deltaCacheSize=4m", "-c", "pack.threads=2")


# Where git looks for a tree's delta base. It sorts trees by a hash of their path's last 16
# characters, so `<repo>/_manifests/sha256` of every repository sorts together, and the previous
# version of one repository's tree is as many places back as other repositories were pushed to
# in between: with git's window of 10, pushes round-robin over 100 repositories left those
# 450-byte trees whole (bench/gc_history.py, 20,000 commits: 2,190 B a commit in 5 s; window 128
# and depth 250: 1,955 B in 17 s). Depth 250: a chain of versions of the root tree is cut into
# fewer whole copies.
DELTA_WINDOW = 100
DELTA_DEPTH = 250


class PackingFailed(Exception):
    """git could not pack meta.git; nothing was removed."""


@dataclass
class PackResult:
    objects: int = 0          # objects before packing (in packs and loose files)
    loose_objects: int = 0    # of which were loose files
    packs: int = 0            # packs before packing
    bytes_before: int = 0     # disk space of meta.git's objects (and merged packs waiting) before
    pack_bytes: int = 0       # and after
    bytes_freed: int = 0      # measured: the drop; in a dry run, what certainly goes (merged packs)

    def as_json(self) -> dict:
        return {"objects": self.objects, "looseObjects": self.loose_objects, "packs": self.packs,
                "bytesBefore": self.bytes_before, "packBytes": self.pack_bytes, "bytesFreed": self.bytes_freed}


def count_objects(repo_path: str) -> dict[str, int]:
    """`git count-objects -v` as numbers (count, size, in-pack, packs, size-pack, garbage, …; sizes in KiB)."""
    output = _git(repo_path, "count-objects", "-v")
    return {key: int(value) for key, _, value in (line.partition(": ") for line in output.splitlines()) if value}


def objects_bytes(repo_path: str) -> int:
    """Disk space of everything under objects/ and of the merged packs waiting to be deleted
    (allocated blocks): what packing frees is measured, not estimated, since merged packs can be
    most of it (each push's objects are written again by every merge of small packs)."""
    return _allocated(os.path.join(repo_path, "objects")) + _retired_bytes(repo_path)


def _retired_bytes(repo_path: str) -> int:
    return _allocated(os.path.join(repo_path, packs.MERGES_DIR, packs.RETIRED_DIR))


def _allocated(top: str) -> int:
    total = 0
    for folder, _, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def pack_metadata(repo_path: str, dry_run: bool = False, durable: bool = False, grace: float = 3600.0,
                  now: float | None = None) -> PackResult:
    """Pack every object a ref reaches into one pack; keep unreachable objects written within
    `grace` seconds (in a cruft pack) and drop older ones. `durable`: git fsyncs what it writes."""
    pack_dir = os.path.join(repo_path, "objects", "pack")
    os.makedirs(pack_dir, exist_ok=True)
    counted = count_objects(repo_path)
    result = PackResult(objects=counted.get("count", 0) + counted.get("in-pack", 0),
                        loose_objects=counted.get("count", 0), packs=counted.get("packs", 0),
                        bytes_before=objects_bytes(repo_path))
    if dry_run:
        result.pack_bytes = result.bytes_before
        result.bytes_freed = _retired_bytes(repo_path)
        return result
    expire = _git_date((now if now is not None else time.time()) - grace)
    fsync = ["-c", "core.fsync=objects,derived-metadata,reference", "-c", "core.fsyncMethod=fsync"] if durable else []
    with packs.merge_lock(pack_dir) as locked:
        if not locked:  # a commit is merging small packs right now: the next run packs
            result.pack_bytes = result.bytes_before
            return result
        _remove_old_bookkeeping(pack_dir)
        _remove_indexless_packs(pack_dir)
        # -f: look for deltas again for every object. Without it git reuses the whole objects of
        # the commits' small packs as they are: a store of 10,000 pushes packed to 3.7 KB a commit
        # instead of 2.0 KB (most trees stayed whole; bench/profiles/notes.md "meta.git growth").
        _git(repo_path, *fsync, *BOUNDED_MEMORY, "-c", "repack.writeBitmaps=false", "repack", "-a", "-d", "-f", "-q",
             f"--window={DELTA_WINDOW}", f"--depth={DELTA_DEPTH}", "--cruft", f"--cruft-expiration={expire}")
        _git(repo_path, *fsync, "prune", f"--expire={expire}")
        packs.delete_retired(pack_dir)
        _remove_leftovers(pack_dir)
    result.pack_bytes = objects_bytes(repo_path)
    result.bytes_freed = max(result.bytes_before - result.pack_bytes, 0)
    return result


def _git(repo_path: str, *args: str) -> str:
    try:
        done = subprocess.run(["git", "--git-dir", repo_path, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise PackingFailed("the git command is not installed: `apt-get install git` (meta.git is packed "
                            "with git's own repack and prune)") from None
    if done.returncode != 0:
        raise PackingFailed(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _git_date(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")


def _remove_old_bookkeeping(pack_dir: str) -> None:
    for name in _OLD_BOOKKEEPING:
        path = os.path.join(pack_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)


def _remove_indexless_packs(pack_dir: str, wait: float = 2.0) -> None:
    """Remove the packs without an index older than INDEXLESS_AGE; wait up to `wait` seconds for
    the index of a younger one (a commit being written), else raise PackingFailed."""
    deadline = time.monotonic() + wait
    retired = os.path.join(packs.merges_dir(pack_dir), packs.RETIRED_DIR)
    while True:
        names = set(os.listdir(pack_dir))
        young = []
        for name in names:
            if name.endswith(".pack") and name[:-5] + ".idx" not in names:
                path = os.path.join(pack_dir, name)
                try:
                    # a merged pack whose retiring stopped between its index and itself, or one a
                    # killed writer left
                    if os.path.exists(os.path.join(retired, name[:-5] + ".idx")) or \
                            time.time() - os.stat(path).st_mtime > INDEXLESS_AGE:
                        os.unlink(path)
                    else:
                        young.append(name)
                except FileNotFoundError:
                    pass
        if not young:
            return
        if time.monotonic() > deadline:
            raise PackingFailed(f"{young[0]} has no index yet (a commit being written, or a writer killed "
                                f"less than {INDEXLESS_AGE:.0f} s ago): run garbage-collect again")
        time.sleep(0.1)


def _remove_leftovers(pack_dir: str) -> None:
    """Temporary files a killed writer left (older than LEFTOVER_AGE: a younger one may belong to
    a commit being written)."""
    now = time.time()
    for entry in os.scandir(pack_dir):
        try:
            if entry.name.startswith("tmp_") and now - entry.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE:
                shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
        except FileNotFoundError:
            pass
