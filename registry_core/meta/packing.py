"""Packing meta.git whole: a step of `registry garbage-collect`.

Why: commits write their objects as small packs of whole objects (packs.py), merged into bigger
ones as they pile up; stores from before that (and the first commit of every store) also have
loose objects, one file each. This step writes all of them, loose and packed, as one pack in which
libgit2's PackBuilder stores the trees as deltas of each other: 1,000 image pushes took 76 MiB as
loose files and take under 2 MiB this way (tests/test_gc.py, bench/RESULTS.md).

Safe beside a serving registry: the loose objects and packs are listed first; the new pack and
its index are written whole in a staging folder and renamed into objects/pack/ (the index last);
only then are the listed loose files and packs removed. A process that later looks for one of
their objects finds no loose file or pack and, as libgit2 does on every miss, rescans
objects/pack/ and reads it from the new pack. Objects written after the listing stay where they
are until the next run.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import pygit2

from registry_core.meta import packs

LEFTOVER_AGE = 3600.0  # seconds: a temporary file or index-less pack this old was left by a killed writer
OLD_RETIRED_LIST = "retired.list"  # merged packs waiting a second to be moved, before 73adfd6 (packs.retire_packs)
_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_HEX38 = re.compile(r"^[0-9a-f]{38}$")


@dataclass
class PackResult:
    objects: int = 0          # objects in the pack written (or, in a dry run, that would be)
    loose_objects: int = 0    # of which were loose files
    packs: int = 0            # packs replaced by it
    bytes_before: int = 0     # disk space of those loose files (allocated blocks) and packs
    pack_bytes: int = 0       # the size of the pack and its index written
    bytes_freed: int = 0      # how much less disk objects/ takes now (allocated blocks of its files);
    #                           in a dry run, what certainly goes: merged packs and leftovers

    def as_json(self) -> dict:
        return {"objects": self.objects, "looseObjects": self.loose_objects, "packs": self.packs,
                "bytesBefore": self.bytes_before, "packBytes": self.pack_bytes, "bytesFreed": self.bytes_freed}


def loose_objects(objects_dir: str) -> list[tuple[str, str, int]]:
    """(hex id, path, bytes allocated on disk) of each loose object file."""
    found = []
    for folder in sorted(os.listdir(objects_dir)):
        if not _HEX2.match(folder):
            continue
        path = os.path.join(objects_dir, folder)
        for entry in os.scandir(path):
            if _HEX38.match(entry.name):
                try:
                    found.append((folder + entry.name, entry.path, entry.stat().st_blocks * 512))
                except FileNotFoundError:  # removed meanwhile (another run)
                    continue
    return found


def pack_metadata(repo_path: str, dry_run: bool = False, durable: bool = False) -> PackResult:
    """Write the loose objects and all packs of the bare repository at `repo_path` as one pack,
    then remove the loose files and the packs it replaces, the packs that commits merged into
    bigger ones (objects/pack/retired/) and what killed writers left. Nothing is packed if that is
    one pack already. `durable`: the new pack is on disk before anything is removed.

    `bytes_freed` is measured, not estimated: the disk space of the files under objects/ before
    and after (merged packs can be most of it: each push's objects are written again by every
    merge of small packs)."""
    objects_dir = os.path.join(repo_path, "objects")
    pack_dir = os.path.join(objects_dir, "pack")
    os.makedirs(pack_dir, exist_ok=True)
    with packs.merge_lock(pack_dir) as locked:
        if not locked:  # a commit is merging small packs right now: the next run packs
            return PackResult()
        before = allocated_bytes(objects_dir)
        loose = loose_objects(objects_dir)
        names = sorted(packs.pack_sizes(pack_dir))
        leftovers = _leftovers(pack_dir, set(names))
        packing = bool(loose) or len(names) >= 2
        if dry_run:
            result = _survey(pack_dir, loose, names)[0] if packing else PackResult()
            result.bytes_freed = sum(_allocated(path) for path in leftovers + _retired(pack_dir))
            return result
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else _unlink(path)
        packs.delete_retired(pack_dir)
        if not packing:
            return PackResult(bytes_freed=max(0, before - allocated_bytes(objects_dir)))
        result, wanted = _survey(pack_dir, loose, names)
        new = _write_one_pack(repo_path, pack_dir, wanted)
        if durable:
            for suffix in (".pack", ".idx"):
                with open(os.path.join(pack_dir, new + suffix), "rb") as f:
                    os.fsync(f.fileno())
            packs.sync_folder(pack_dir)
        result.pack_bytes = sum(_size(os.path.join(pack_dir, new + suffix)) for suffix in (".pack", ".idx"))
        packs.retire_packs(pack_dir, [name for name in names if name != new])
        packs.delete_retired(pack_dir)
    for _, path, _ in loose:
        _unlink(path)
    result.bytes_freed = max(0, before - allocated_bytes(objects_dir))
    return result  # the emptied objects/xx folders stay


def _survey(pack_dir: str, loose: list[tuple[str, str, int]], names: list[str]) -> tuple[PackResult, set[bytes]]:
    """What one pack of `loose` and the packs `names` would hold, and their object ids."""
    wanted = {bytes.fromhex(hex_id) for hex_id, _, _ in loose}
    for name in names:
        wanted.update(packs.read_index(os.path.join(pack_dir, name + ".idx"))[0])
    result = PackResult(objects=len(wanted), loose_objects=len(loose), packs=len(names),
                        bytes_before=sum(size for _, _, size in loose) + sum(
                            _size(os.path.join(pack_dir, name + suffix)) for name in names
                            for suffix in (".pack", ".idx")))
    return result, wanted


def allocated_bytes(folder: str) -> int:
    """The disk space (allocated blocks) of the files below `folder`, as `du` counts them."""
    total = 0
    for path, _, files in os.walk(folder):
        total += sum(_allocated(os.path.join(path, name)) for name in files)
    return total


def _write_one_pack(repo_path: str, pack_dir: str, wanted: set[bytes]) -> str:
    repo = pygit2.Repository(repo_path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    builder = pygit2.PackBuilder(repo)
    for raw in sorted(wanted):
        builder.add(pygit2.Oid(raw=raw))
    staging = tempfile.mkdtemp(prefix="tmp_repack_", dir=pack_dir)
    try:
        builder.write(staging)
        written = [name[:-5] for name in os.listdir(staging) if name.endswith(".pack")]
        if builder.written_objects_count != len(wanted) or len(written) != 1:
            raise RuntimeError(f"packing {repo_path} wrote {builder.written_objects_count} of {len(wanted)} "
                               "objects: the loose objects and packs were left in place")
        for suffix in (".pack", ".idx"):  # the index last: readers only look at packs with one
            os.rename(os.path.join(staging, written[0] + suffix), os.path.join(pack_dir, written[0] + suffix))
        return written[0]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _leftovers(pack_dir: str, packs_with_index: set[str]) -> list[str]:
    """Temporary files and packs without an index that a killed writer left (older than
    LEFTOVER_AGE: a younger one may belong to a commit being written), and the list of packs
    waiting to be moved that earlier versions kept (OLD_RETIRED_LIST)."""
    now, found = time.time(), []
    for entry in os.scandir(pack_dir):
        leftover = entry.name.startswith("tmp_") or entry.name == OLD_RETIRED_LIST or (
            entry.name.startswith("pack-") and entry.name.endswith(".pack") and entry.name[:-5] not in packs_with_index)
        try:
            if leftover and now - entry.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE:
                found.append(entry.path)
        except FileNotFoundError:
            pass
    return found


def _retired(pack_dir: str) -> list[str]:
    folder = os.path.join(pack_dir, packs.RETIRED_DIR)
    try:
        return [os.path.join(folder, name) for name in os.listdir(folder)]
    except FileNotFoundError:
        return []


def _allocated(path: str) -> int:
    """Disk space of a file, or of a folder's files (a staging folder a killed writer left)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return allocated_bytes(path)
        return os.lstat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
