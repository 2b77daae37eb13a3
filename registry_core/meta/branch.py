"""Moving `refs/heads/main`: git's lock-file protocol, without freeing an inode a commit.

git moves a branch by creating `main.lock` exclusively, writing the new id into it and renaming it
over `main`, so git, libgit2 and every registry process can write beside each other. The rename
frees the old `main`'s inode, and on ext4 each freed inode is skipped (and its inode table block
read) by every file creation in its group for the next minute: at a few hundred commits a second,
creating the next commit's pack cost 0.25-1 ms instead of 0.06 ms (bench/profiles/notes.md,
session 4).

So the branch's files are recycled: `branch-files/` in the repository holds SPARES small files, and
each of them is, in turn, the lock and then the branch. A writer takes the lock by hard-linking the
spare after the current branch's as `main.lock` (link fails when the name exists, like an
exclusive create), checks that the branch has not moved, writes the new id into it and renames it
over `main`. The old `main` keeps its link in `branch-files/`, so nothing is freed. A spare is
written again only SPARES commits after it stopped being the branch; a reader that opened the
branch file then and has still not read it would be the only one to see the write. Readers tell
a new branch by its file's (inode, mtime, size) (store.py `snapshot`): a spare comes back with a
newer mtime unless SPARES commits fit in one tick of the file system's clock (1-10 ms on Linux
file systems; a file system with 1 s timestamps would need a check of the content instead).

Without the folder (a read-only store, a file system without hard links), the lock is created
the classic way. Done here rather than by libgit2 (create_commit with a ref) since session 2:
libgit2's rename of its lock waited on the disk (_write_at_start). Like git in a bare
repository, no reflog is kept.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

import pygit2

from registry_core.meta import packs

SPARES = 64
SPARE_FOLDER = "branch-files"
STALE_LOCK = 30.0  # seconds: a branch lock this old was left by a writer that died
log = logging.getLogger("registry_core")


class Branch:
    """One branch of the bare repository at `repo_path` (`name` like refs/heads/main)."""

    def __init__(self, repo_path: str, name: str, durable: bool = False):
        self.repo_path = repo_path
        self.name = name
        self.path = os.path.join(repo_path, *name.split("/"))
        self.lock = self.path + ".lock"
        self.durable = durable
        self.spare_folder = os.path.join(repo_path, SPARE_FOLDER)
        self._spares: list[tuple[str, int]] | None = None  # (path, inode) in ring order

    def prepare_spares(self) -> None:
        """Make the spare files if the folder is missing: in a folder of their own first, renamed
        into place whole, so a process starting beside this one sees all of them or none."""
        if os.path.isdir(self.spare_folder):
            return
        making = f"{self.spare_folder}.tmp_{os.getpid()}"
        try:
            os.makedirs(making, exist_ok=True)
            for number in range(SPARES):
                fd = os.open(os.path.join(making, f"{number:02d}"), os.O_WRONLY | os.O_CREAT, 0o666)
                try:
                    _write_at_start(fd, b"0" * 40 + b"\n")
                finally:
                    os.close(fd)
            os.rename(making, self.spare_folder)
        except OSError as error:  # another process was first; or read-only, full: classic locks
            shutil.rmtree(making, ignore_errors=True)
            if not os.path.isdir(self.spare_folder):
                log.info("no spare branch files in %s (%s): branch locks are created each commit",
                         self.repo_path, error)

    def _read_target(self) -> tuple[pygit2.Oid | None, int | None]:
        """Where the branch points on disk now (its ref file, or its line in packed-refs), and the
        ref file's inode (None when packed)."""
        try:
            with open(self.path, "rb") as f:
                return pygit2.Oid(hex=f.read(40).decode()), os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            pass
        try:
            with open(os.path.join(self.repo_path, "packed-refs"), "rb") as f:
                for line in f:
                    if line.rstrip(b"\n").endswith(b" " + self.name.encode()):
                        return pygit2.Oid(hex=line[:40].decode()), None
        except FileNotFoundError:
            pass
        return None, None

    def move(self, old: pygit2.Oid | None, new: pygit2.Oid) -> bool:
        """Move the branch from `old` to `new` unless another writer moved it first (then False)."""
        if not self._take_lock():
            return False
        fd = None
        try:
            fd = os.open(self.lock, os.O_WRONLY)
            lock_inode = os.fstat(fd).st_ino
            target, inode = self._read_target()
            if inode == lock_inode:  # branch-files was made anew since it was listed here
                self._spares = None
            if target != old or inode == lock_inode:
                os.close(fd)
                fd = None
                os.unlink(self.lock)
                return False
            _write_at_start(fd, f"{new}\n".encode())
            if self.durable:
                os.fdatasync(fd)
            os.close(fd)
            fd = None
            os.rename(self.lock, self.path)
            if self.durable:
                packs.sync_folder(os.path.dirname(self.path))
            return True
        except BaseException:
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(self.lock)
            except FileNotFoundError:
                pass
            raise

    def _take_lock(self) -> bool:
        """Create the lock, as a link to the spare after the current branch's (or as a new file
        when there are no spares); False when another writer holds it."""
        spare = self._next_spare()
        try:
            if spare is None:
                os.close(os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            else:
                os.utime(spare[0])  # the lock's age is its modification time (_remove_stale_lock)
                os.link(spare[0], self.lock)
            return True
        except FileExistsError:
            self._remove_stale_lock()
            return False
        except FileNotFoundError:
            if spare is None:
                raise
            self._spares = None  # a spare was removed by hand: look again next time
            return False

    def _next_spare(self) -> tuple[str, int] | None:
        spares = self._spare_files()
        if not spares:
            return None
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        for position, (_, inode) in enumerate(spares):
            if inode == current:
                return spares[(position + 1) % len(spares)]
        return spares[0]

    def _spare_files(self) -> list[tuple[str, int]]:
        if self._spares is None:
            try:
                names = sorted(os.listdir(self.spare_folder))
                spares = [(path, os.stat(path).st_ino)
                          for path in (os.path.join(self.spare_folder, name) for name in names)]
            except OSError:
                spares = []
            self._spares = spares if len(spares) >= 2 else []
        return self._spares

    def _remove_stale_lock(self) -> None:
        """A writer holds the lock for well under a second; one older than STALE_LOCK seconds was
        left by a process killed between creating and renaming it, and would stop every commit."""
        try:
            age = time.time() - os.stat(self.lock).st_mtime
            if age > STALE_LOCK:
                os.unlink(self.lock)
                log.warning("removed %s, left %.0f s ago by a writer that stopped midway", self.lock, age)
        except FileNotFoundError:
            pass


def _write_at_start(fd: int, data: bytes) -> None:
    """Write `data` as the whole file, its block allocated first: ext4 flushes a file's
    not-yet-allocated data when it is renamed over another, waiting on the disk (a quarter of a
    tag push's time when libgit2 did the rename, notes.md session 2)."""
    if os.fstat(fd).st_size != len(data):
        os.ftruncate(fd, 0)
        try:
            os.posix_fallocate(fd, 0, len(data))
        except OSError:  # a file system without it: the rename may flush, nothing worse
            pass
    os.pwrite(fd, data, 0)
