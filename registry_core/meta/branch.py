"""Moving `refs/heads/main`: git's lock-file protocol, without freeing an inode a commit.

git moves a branch by creating `main.lock` exclusively, writing the new id into it and renaming it
over `main`, so git, libgit2 and every registry process can write beside each other. The rename
frees the old `main`'s inode, and on ext4 each freed inode is skipped (and its inode table block
read) by every file creation in its group for the next minute: at a few hundred commits a second,
creating the next commit's pack cost 0.25-1 ms instead of 0.06 ms (bench/profiles/notes.md).

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
the classic way. The pack writer moves the branch here rather than through libgit2, whose rename
of its lock waited on the disk (_write_at_start); the libgit2 writer (writers.py) uses libgit2's
own reference transaction, waiting on a held lock through `wait_while_locked`. Like git in a bare
repository, no reflog is kept.

A held lock is waited for, not raced: `move` polls it (a writer holds it for microseconds, or
for one fdatasync in durable mode) and returns False only once the branch has moved, so the
caller re-runs its change on the new tip; no commit is written again because of a lock.

A lock left by a writer that died between taking and renaming it (a crash, a SIGKILL, `touch
main.lock` by hand) would stop every commit, so it is removed once judged stale: when this
process has watched it stay the same file, unchanged (inode, size, modification and change
times), for STALE_AFTER seconds, or at first sight when its change time is older than
STALE_LOCK by the wall clock. Why its age and not its owner: the lock's content becomes the
branch (git and libgit2 read it), so it cannot name an owner; the owner may be git, or a
registry process on another node sharing the file system, whose pid means nothing here; and git
takes no flock. A live writer writes its lock at once and renames it after one fdatasync at
most, so a lock untouched for seconds has nobody behind it (on a network file system, attribute
caching must be shorter than STALE_AFTER for this to be seen). Safety if a live writer is judged
stale all the same (stalled on a saturated disk): removal is done under an flock on the branch's
folder after a last look that the file is still the one judged stale, so two removers never take
the next writer's lock with it; a spare whose link was removed is replaced by a new file, so it is
never linked as the lock again; a writer opens its spare before linking it, and just before its
rename checks that the lock is still its own file, else it reports the branch moved and renames
nothing. What is left is a writer stopped for seconds (SIGSTOP, a paused VM) between that check
and its rename. When the lock stays held but keeps changing for WAIT_FOR_LOCK seconds (other
writers that never let this one in), `move` raises BranchLocked: 503 with Retry-After.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from typing import Callable, TypeVar

import pygit2

from registry_core.errors import RegistryError
from registry_core.meta import packs

SPARES = 64
SPARE_FOLDER = "branch-files"
STALE_AFTER = 2.0     # seconds: a lock seen unchanged this long was left by a writer that died
STALE_LOCK = 30.0     # seconds: a lock whose change time is this old is stale at first sight
WAIT_FOR_LOCK = 4.0   # seconds a move waits for a lock that stays held (and changes) before BranchLocked
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0005, 0.05  # seconds between two looks at a held lock
log = logging.getLogger("registry_core")
T = TypeVar("T")


class BranchLocked(RegistryError):
    """Other writers held the branch's lock all the while this one waited: nothing was committed."""

    def __init__(self, waited: float):
        super().__init__("UNAVAILABLE", f"the metadata store is busy: another writer held its branch lock "
                         f"for the {waited:.1f} s this request waited; nothing was changed, try again",
                         headers={"Retry-After": "1"})


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
        self.stale_after = STALE_AFTER
        self.wait_for_lock = WAIT_FOR_LOCK
        self._watched: tuple[tuple, float] | None = None  # a held lock's identity, and when first seen so

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

    def read_target(self) -> tuple[pygit2.Oid | None, int | None]:
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
        """Move the branch from `old` to `new` unless another writer moved it first (then False).
        Waits while another writer holds the lock; raises BranchLocked if that lasts."""
        taken = self._wait_for_lock(old)
        if taken is None:
            return False
        fd, lock_inode = taken
        try:
            target, inode = self.read_target()
            if inode == lock_inode:  # branch-files was made anew since it was listed here
                self._spares = None
            if target != old or inode == lock_inode:
                self._unlink_own_lock(lock_inode)
                return False
            _write_at_start(fd, f"{new}\n".encode())
            if self.durable:
                os.fdatasync(fd)
            if _inode_of(self.lock) != lock_inode:  # judged stale and removed while this writer stalled
                log.warning("%s was removed as stale while this writer held it; trying again", self.lock)
                return False
            os.rename(self.lock, self.path)
        except BaseException:
            self._unlink_own_lock(lock_inode)
            raise
        finally:
            os.close(fd)  # only now: while it is open, no other file can have its inode number
        if self.durable:
            packs.sync_folder(os.path.dirname(self.path))
        return True

    def _unlink_own_lock(self, inode: int) -> None:
        if _inode_of(self.lock) == inode:
            try:
                os.unlink(self.lock)
            except FileNotFoundError:
                pass

    def _wait_for_lock(self, old: pygit2.Oid | None) -> tuple[int, int] | None:
        """Take the lock: (an open descriptor of it, its inode), or None once another writer moved
        the branch from `old`."""
        return self.wait_while_locked(old, self._take_lock)

    def wait_while_locked(self, old: pygit2.Oid | None, take: Callable[[], T | None]) -> T | None:
        """`take()` (an attempt at the lock: None while another writer holds it) until it succeeds;
        None once another writer moved the branch from `old`. Waits while others hold the lock,
        removes it once it is stale (module docstring), and raises BranchLocked when it stays held
        for `wait_for_lock` seconds. The libgit2 writer waits through here too (writers.py)."""
        started = pause = None
        while True:
            taken = take()
            if taken is not None:
                return taken
            if self.read_target()[0] != old:
                return None
            if self._remove_if_stale():
                continue
            now = time.monotonic()
            if started is None:
                started, pause = now, _FIRST_PAUSE
            elif now - started >= self.wait_for_lock:
                log.warning("gave up on %s after %.1f s: held by other writers all along", self.lock, now - started)
                raise BranchLocked(now - started)
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _take_lock(self) -> tuple[int, int] | None:
        """Create the lock, as a link to the spare after the current branch's (or as a new file
        when there are no spares): (its open descriptor, its inode). None when another writer
        holds it, or a spare went missing or was replaced (the spares are listed again).

        The spare is opened before it is linked, so the descriptor is this writer's file even if
        its link is removed as stale and the lock taken anew before it writes."""
        spare = self._next_spare()
        if spare is None:
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return None
            return fd, os.fstat(fd).st_ino
        try:
            fd = os.open(spare[0], os.O_WRONLY)
        except FileNotFoundError:
            self._spares = None  # a spare was removed by hand: look again
            return None
        try:
            os.link(spare[0], self.lock)
            inode = os.fstat(fd).st_ino
            if _inode_of(self.lock) != inode:  # the spare was replaced between its opening and linking
                os.unlink(self.lock)  # this writer's own link, made just now
                raise FileNotFoundError(spare[0])
            # A new modification time (readers tell the new branch by it), only once the lock is
            # this writer's: touched before the link, the spare that a dead writer left linked as
            # the lock would change at every attempt and never look stale.
            os.utime(fd)
            return fd, inode
        except (FileExistsError, FileNotFoundError) as error:
            os.close(fd)
            if isinstance(error, FileNotFoundError):
                self._spares = None
            return None
        except BaseException:
            os.close(fd)
            raise

    def _remove_if_stale(self) -> bool:
        """Remove the lock if it is stale (module docstring); True when it is gone (removed here
        or by its owner), so the caller tries to take it again at once."""
        identity = _identity_of(self.lock)
        if identity is None:
            return True
        now = time.monotonic()
        watched = self._watched
        if watched is None or watched[0] != identity:
            self._watched = watched = (identity, now)
        unchanged, age = now - watched[1], time.time() - identity[3] / 1e9
        if unchanged < self.stale_after and age < STALE_LOCK:
            return False
        folder = os.open(os.path.dirname(self.lock), os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # one remover at a time, across processes
            if _identity_of(self.lock) != identity:  # removed, or taken anew, meanwhile
                return False
            os.unlink(self.lock)
            self._replace_spare(identity[0])
        except FileNotFoundError:
            return True
        except OSError as error:  # a read-only store, no permission: the wait ends in BranchLocked
            log.warning("could not remove %s, which looks stale: %s", self.lock, error)
            return False
        finally:
            os.close(folder)  # releases the flock
        self._watched = None
        log.warning("removed %s: unchanged for %.1f s (changed %.0f s ago), left by a writer that stopped "
                    "midway", self.lock, unchanged, age)
        return True

    def _replace_spare(self, inode: int) -> None:
        """Put a new file in place of the spare with this inode (a stale lock was a link of it), so
        no writer links that file as the lock again while its dead or stalled owner may hold it."""
        try:
            names = os.listdir(self.spare_folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.spare_folder, name)
            try:
                if os.stat(path).st_ino != inode:
                    continue
                making = os.path.join(self.repo_path, f"branch-file.tmp_{os.getpid()}")
                fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    _write_at_start(fd, b"0" * 40 + b"\n")
                finally:
                    os.close(fd)
                os.rename(making, path)
            except FileNotFoundError:
                pass
            self._spares = None
            return

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


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """What changes whenever a file is written, linked or unlinked: a live writer's lock changes
    within microseconds of being taken, a dead one's never."""
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _identity_of(path: str) -> tuple[int, int, int, int] | None:
    try:
        return _identity(os.stat(path))
    except FileNotFoundError:
        return None


def _inode_of(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _write_at_start(fd: int, data: bytes) -> None:
    """Write `data` as the whole file, its block allocated first: ext4 flushes a file's
    not-yet-allocated data when it is renamed over another, waiting on the disk (a quarter of a
    tag push's time when libgit2 did the rename, bench/profiles/notes.md)."""
    if os.fstat(fd).st_size != len(data):
        os.ftruncate(fd, 0)
        try:
            os.posix_fallocate(fd, 0, len(data))
        except OSError:  # a file system without it: the rename may flush, nothing worse
            pass
    os.pwrite(fd, data, 0)
