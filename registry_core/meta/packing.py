"""Packing meta.git whole and pruning what no commit reaches: a step of `registry garbage-collect`,
done by git's own tools: `git rev-list` lists what the refs reach, `git pack-objects` writes it
as one pack with deltas and the unreachable objects younger than the grace period as a cruft
pack, `git prune` and `git prune-packed` remove loose files: the steps of `git repack -a -d
--cruft` (what an operator's `git gc` runs), with one change: the name each object is sorted by.

git looks for an object's delta base among the objects sorted next to it: by type, then by a
hash of the last 16 characters of its path. meta.git's trees end alike in every repository
(`.../_manifests/sha256/a/b/c`), so under git's own names a tree's previous version sorts among
every other repository's trees of that shape, as far back as other repositories were pushed to in
between, and only a wide window (slow) finds it. Each path is therefore named by a hash of the
whole path (`named_by_path`): the versions of one tree sort together and a window of 10 finds
them (the time and size this saves at 100,000 commits: bench/profiles/notes.md).

Commits write their objects as small packs of whole objects (packs.py, or loose objects from the
libgit2 writer); a commit that lost its compare-and-swap leaves objects no branch reaches. This
step writes every reachable object into one pack with deltas (1,000 image pushes: 76 MiB as loose
files, under 2 MiB packed: tests/test_gc.py, bench/RESULTS.md), and an unreachable object only
while it is younger than the grace period, in a cruft pack (git's own way of remembering when an
unreachable object was last written: its .mtimes file).

Safe beside a serving registry, as `git gc` is beside git: a commit being written has its objects
in a pack or loose files younger than the grace period, so they are kept even before its branch
moves (choose a grace longer than any commit takes: seconds). Only the packs listed before the
refs were read are deleted; packs written after are left alone. Small packs are not merged
meanwhile (the merge lock is held).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from registry_core.meta import packs
from registry_core.storage.filesystem import sync_folder

LEFTOVER_AGE = 3600.0  # seconds: a temporary file this old was left by a killed writer
# A writer renames a pack's index into place microseconds after the pack: a pack without an index
# for this long was left by a killed writer, and git counts it as garbage (`git count-objects`),
# so they are removed (or waited for) before packing.
INDEXLESS_AGE = 60.0
# What earlier versions kept inside objects/pack/, where git counts it as garbage: merges.py's
# bookkeeping now lives in meta.git/merges/ (packs.merges_dir).
_OLD_BOOKKEEPING = ("retired.list", "retired", "merge.lock", "last-merge")


# git's memory while it packs, bounded: its defaults map up to 8 GiB of packs and let each
# thread's delta window grow without limit. Small windows and caches trade a little time for
# memory; what they cannot bound is git's list of the objects themselves (about 200 bytes an
# object; figures for 100,000 commits in bench/profiles/notes.md, "garbage-collect"). One thread:
# reading objects from many packs through a 32 MiB mapping, two threads spent more time in the
# kernel (mapping, unmapping and the other thread's TLB) than the second one saved: 100,000
# commits, pack-objects 69 s with one, 87-104 s with two.
BOUNDED_MEMORY = ("-c", "core.packedGitLimit=32m", "-c", "core.packedGitWindowSize=8m",
                  "-c", "core.deltaBaseCacheLimit=8m", "-c", "pack.windowMemory=8m",
                  "-c", "pack.deltaCacheSize=4m", "-c", "pack.threads=1")


# Where git looks for an object's delta base (with each path named by its own hash, above): the
# 10 objects sorted before it, with chains of up to 250 deltas (a chain of versions of one tree
# is cut into fewer whole copies).
DELTA_WINDOW = 10
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
        listed = _packs(pack_dir)
        written = _pack_reachable(repo_path, pack_dir, fsync)
        written += _pack_unreachable(repo_path, pack_dir, written, [n for n in listed if n not in written], expire,
                                     fsync)
        for name in listed:
            if name not in written:
                _delete_pack(pack_dir, name)
        _remove_path(os.path.join(pack_dir, "multi-pack-index"))  # it would list deleted packs
        _git(repo_path, *fsync, "prune-packed", "--quiet")
        _git(repo_path, *fsync, "prune", f"--expire={expire}")
        _git(repo_path, "update-server-info")
        packs.delete_retired(pack_dir)
        _remove_leftovers(pack_dir)
    result.pack_bytes = objects_bytes(repo_path)
    result.bytes_freed = max(result.bytes_before - result.pack_bytes, 0)
    return result


# The extensions of a pack's files, in the order they are deleted (the index first: a reader
# that lists packs by their indexes no longer finds one whose data is going).
_PACK_FILES = (".idx", ".pack", ".rev", ".bitmap", ".mtimes", ".promisor")


def _packs(pack_dir: str) -> list[str]:
    """The packs in `pack_dir` (by name, without extension) that may be replaced: those with an
    index and no .keep file (git's way of saying a pack stays as it is)."""
    names = set(os.listdir(pack_dir))
    return sorted(name[:-4] for name in names
                  if name.startswith("pack-") and name.endswith(".idx") and name[:-4] + ".keep" not in names)


def _pack_reachable(repo_path: str, pack_dir: str, fsync: list[str]) -> list[str]:
    """Write every object the refs reach into one pack with deltas; its name (in a list: none
    when there is nothing to pack). The objects are listed by `git rev-list --objects`, each with
    a name that is a hash of its whole path (see the module's doc), and packed from that list."""
    with tempfile.TemporaryFile(dir=repo_path) as objects:
        lister = subprocess.Popen(["git", "--git-dir", repo_path, *BOUNDED_MEMORY, "rev-list", "--objects", "--all", "--reflog",
                                   "--indexed-objects"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with lister.stdout:
            for line in lister.stdout:
                objects.write(named_by_path(line))
        errors = lister.stderr.read().decode(errors="replace").strip()
        if lister.wait() != 0:
            raise PackingFailed(f"git rev-list --objects failed: {errors}")
        objects.seek(0)
        return _pack_objects(repo_path, pack_dir, fsync, ["--no-reuse-delta", "--delta-base-offset",
                                                          f"--window={DELTA_WINDOW}", f"--depth={DELTA_DEPTH}",
                                                          "--honor-pack-keep", "--non-empty"], objects)


def named_by_path(line: bytes) -> bytes:
    """A line of `git rev-list --objects` ("<id> <path>", or "<id>" for a commit or a root tree),
    the path replaced by 16 hex digits of its hash: git sorts objects for deltas by their name's
    last 16 characters, which this makes the whole path's."""
    object_id, space, path = line.rstrip(b"\n").partition(b" ")
    if not space or not path:
        return object_id + b"\n"
    return object_id + b" " + hashlib.blake2b(path, digest_size=8).hexdigest().encode() + b"\n"


def _pack_unreachable(repo_path: str, pack_dir: str, kept: list[str], replaced: list[str], expire: str,
                      fsync: list[str]) -> list[str]:
    """Write the objects of the `replaced` packs (and loose files) that no ref reaches and that
    were written after `expire` into a cruft pack (whose .mtimes file remembers when); its name
    (in a list: none when there are none)."""
    names = "".join([f"{name}.pack\n" for name in kept] + [f"-{name}.pack\n" for name in replaced])
    with tempfile.TemporaryFile(dir=repo_path) as listing:
        listing.write(names.encode())
        listing.seek(0)
        return _pack_objects(repo_path, pack_dir, fsync, ["--cruft", f"--cruft-expiration={expire}",
                                                          "--honor-pack-keep", "--non-empty"], listing)


def _pack_objects(repo_path: str, pack_dir: str, fsync: list[str], options: list[str], stdin) -> list[str]:
    """Run `git pack-objects OPTIONS` on `stdin`, writing beside the packs under a temporary
    name, then give what it wrote its pack's name (the index last, as git does); the names."""
    base = os.path.join(pack_dir, f"tmp_gc_{os.getpid()}")
    done = subprocess.run(["git", "--git-dir", repo_path, *fsync, *BOUNDED_MEMORY, "pack-objects", "--quiet",
                           *options, base], stdin=stdin, capture_output=True)
    if done.returncode != 0:
        _remove_written(pack_dir, os.path.basename(base))
        raise PackingFailed(f"git pack-objects {' '.join(options)} failed: "
                            f"{done.stderr.decode(errors='replace').strip()}")
    written = []
    for checksum in done.stdout.decode().split():
        name = f"pack-{checksum}"
        for extension in (".pack", ".rev", ".mtimes", ".idx"):
            if os.path.exists(f"{base}-{checksum}{extension}"):
                os.replace(f"{base}-{checksum}{extension}", os.path.join(pack_dir, name + extension))
        written.append(name)
    if written and fsync:
        sync_folder(pack_dir)
    return written


def _remove_written(pack_dir: str, prefix: str) -> None:
    for name in os.listdir(pack_dir):
        if name.startswith(prefix):
            _remove_path(os.path.join(pack_dir, name))


def _delete_pack(pack_dir: str, name: str) -> None:
    for extension in _PACK_FILES:
        _remove_path(os.path.join(pack_dir, name + extension))


def _remove_path(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
