"""Packing meta.git's loose objects: a step of `registry garbage-collect`.

Why: every commit writes its new objects as loose files (a tag push: the tag document, the trees
on its path and the commit, eight files), each taking at least one file system block; 100,000
pushes leave 800,000 files, about 3 GB on a file system of 4 KiB blocks. A pack holds the same
objects in one file, the trees as deltas of each other (measured in tests/test_gc.py and
bench/RESULTS.md).

Safe beside a serving registry: the loose objects are listed first; the pack and its index are
written whole (libgit2's indexer writes them under temporary names and renames them into
objects/pack/); only then are the listed loose files removed. A process that later looks for one
of them finds no loose file and, as libgit2 does on every miss, rescans objects/pack/ and reads it
from the new pack. Objects written after the listing stay loose until the next run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pygit2

_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_HEX38 = re.compile(r"^[0-9a-f]{38}$")


@dataclass
class PackResult:
    objects: int = 0          # loose objects packed (or, in a dry run, that would be)
    loose_bytes: int = 0      # the disk space they took (allocated blocks)
    pack_bytes: int = 0       # the size of the pack and its index written

    def as_json(self) -> dict:
        return {"objects": self.objects, "looseBytes": self.loose_bytes, "packBytes": self.pack_bytes}


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


def pack_loose_objects(repo_path: str, dry_run: bool = False) -> PackResult:
    """Pack the loose objects of the bare repository at `repo_path`, then remove their loose files."""
    objects_dir = os.path.join(repo_path, "objects")
    loose = loose_objects(objects_dir)
    result = PackResult(objects=len(loose), loose_bytes=sum(size for _, _, size in loose))
    if dry_run or not loose:
        return result
    repo = pygit2.Repository(repo_path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    builder = pygit2.PackBuilder(repo)
    for hex_id, _, _ in loose:
        builder.add(pygit2.Oid(hex=hex_id))
    pack_dir = os.path.join(objects_dir, "pack")
    before = set(os.listdir(pack_dir)) if os.path.isdir(pack_dir) else set()
    builder.write()
    written = set(os.listdir(pack_dir)) - before
    result.pack_bytes = sum(os.path.getsize(os.path.join(pack_dir, name)) for name in written)
    if builder.written_objects_count != len(loose) or not any(name.endswith(".idx") for name in written):
        raise RuntimeError(f"packing {repo_path} wrote {builder.written_objects_count} of {len(loose)} "
                           "objects: the loose objects were left in place")
    for _, path, _ in loose:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return result  # the emptied objects/xx folders stay: the next commits write into them
