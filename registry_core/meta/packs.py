"""A commit's new objects written as one small pack, and the small packs merged as they pile up.

Why not libgit2's loose objects: a tag push makes eight new objects (the document, the six trees on
its path, the commit). As loose objects they are eight files, each made under a temporary name,
linked and unlinked, with a rescan of objects/pack/ before each (libgit2 checks that the object is
not already stored): about 150 file system calls, eight new inodes, eight disk blocks. As a pack
they are two files (the pack and its index, each written whole and renamed into place): about 12
calls and two inodes. bench/profiles/notes.md has the measurements.

Readers need nothing new: libgit2 finds an object it does not know by rescanning objects/pack/,
as it does for packs written by git. Order of writes: the pack, then its index (libgit2 and git
only look at packs that have an index), then the branch moves (store.py). A writer killed midway
leaves a pack no commit names, which `registry garbage-collect` removes.

Small packs would slow every lookup that misses (libgit2 searches each index in turn), so after a
commit `MergePolicy` may merge small packs into one by size tiers (MERGE_FACTOR packs of a tier
make one of the next, copying their entries as stored): at most 31 packs a tier, three tiers
below MERGE_LIMIT for a commit's few objects. Each merge copies what it merges, and the copies
stay on disk until garbage-collect; fewer, larger steps copy each object fewer times: at 10,000
manifests in one repository a push grew meta.git by 21.9 KiB on average with 8 packs a tier, 17.7
with 16, 14.4 with 32, while a lookup that misses every cache searches more indexes (about 6 %
slower with 55 packs than with 17; bench/profiles/notes.md, "Merging in larger steps"). The merged
packs are moved out of objects/pack/ at once (retire_packs); a libgit2 reader that still lists
one treats the missing file as "not in this pack", goes on to the next and rescans the folder
(libgit2's odb_pack.c: pack_entry_find), and our readers look again when an object still seems
missing (read_again_if_missing). Readers reopen their repository after a merge (store.py), so
they do not keep searching the indexes of moved packs. `registry
garbage-collect` writes everything as one pack with deltas (packing.py).
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import itertools
import logging
import os
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, TypeVar

import pygit2

from registry_core.storage.filesystem import sync_folder

T = TypeVar("T")
COMMIT, TREE, BLOB = 1, 2, 3
TREE_MODE, BLOB_MODE = 0o40000, 0o100644
_KIND_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob"}
_IDX_MAGIC = b"\377tOc"
# The merges' bookkeeping, in meta.git/merges/ (objects/pack/ is git's: it counts anything else
# there as garbage):
MERGES_DIR = "merges"
MERGE_STAMP = "last-merge"      # merges/last-merge: rewritten by each merge, readers reopen on it
RETIRED_DIR = "retired"         # merges/retired/: merged packs moved out of libgit2's sight
MERGE_LOCK = "lock"             # merges/lock: flocked, one merge (or garbage-collect) at a time
# Files git writes beside a pack of its own: such a pack is git's (a garbage-collected, cruft or
# kept pack), never one of the small packs of whole objects that MergePolicy merges.
GIT_PACK_EXTRAS = (".keep", ".mtimes", ".bitmap", ".rev", ".promisor")
log = logging.getLogger("registry_core")
EXIT_WAIT = 10.0                # seconds a process exiting waits for a merge under way
MERGE_FACTOR = 32               # packs of a size tier merged into one of the next (see the top)
MERGE_LIMIT = 64 << 20          # bytes: packs bigger in all are merged by garbage-collect, not by commits
LOOKS_FOR_MISSING = 3           # a missing object is looked for this many times (read_again_if_missing)


def object_id(kind: int, data: bytes) -> bytes:
    digest = hashlib.sha1(b"%s %d\0" % (_KIND_NAMES[kind], len(data)))
    digest.update(data)
    return digest.digest()


def object_missing(error: Exception) -> bool:
    """libgit2 says "object not found": pygit2 raises NotFoundError, GitError from a path lookup
    that met a missing tree, or KeyError(oid) from `repo[oid]`; a path that is not in a tree is a
    KeyError of the path."""
    if isinstance(error, pygit2.GitError):
        return isinstance(error, KeyError) or "not found" in str(error)
    return isinstance(error, KeyError) and bool(error.args) and isinstance(error.args[0], pygit2.Oid)


def read_again_if_missing(read: Callable[[], T]) -> T:
    """`read()`, run again when libgit2 reports an object missing.

    libgit2 finds an object of a pack it does not know yet by listing objects/pack/ again. A merge
    in another process may move a pack it has just listed out of the folder before it opens it
    (retire_packs): the object then seems missing. The next look lists the folder again and finds
    the object in the merged pack, which was written before the pack it replaces was moved. An
    object that is really missing still raises, after LOOKS_FOR_MISSING looks."""
    for look in range(1, LOOKS_FOR_MISSING + 1):
        try:
            return read()
        except (pygit2.GitError, KeyError) as error:
            if look == LOOKS_FOR_MISSING or not object_missing(error):
                raise
    raise AssertionError("unreachable")


# --- trees ----------------------------------------------------------------------------------------


class TreeEntries:
    """A tree's entries, keyed by name: name -> (sort key, mode, raw id, encoded entry).

    git orders entries by name, a folder's name as if it ended in "/"; the encoded entries are kept
    so that writing a changed tree is a sort and a join."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict | None = None):
        self.entries = entries if entries is not None else {}

    @classmethod
    def parse(cls, data: bytes) -> "TreeEntries":
        entries = {}
        position, end = 0, len(data)
        while position < end:
            space = data.index(b" ", position)
            nul = data.index(b"\0", space)
            mode = int(data[position:space], 8)
            name = data[space + 1:nul]
            raw = data[nul + 1:nul + 21]
            entries[name] = (name + b"/" if mode == TREE_MODE else name, mode, raw, data[position:nul + 21])
            position = nul + 21
        return cls(entries)

    def get(self, name: bytes) -> tuple[int, bytes] | None:
        entry = self.entries.get(name)
        return (entry[1], entry[2]) if entry is not None else None

    def copy(self) -> "TreeEntries":
        return TreeEntries(dict(self.entries))

    def set(self, name: bytes, mode: int, raw: bytes) -> None:
        self.entries[name] = (name + b"/" if mode == TREE_MODE else name, mode, raw,
                              b"%o %s\0%s" % (mode, name, raw))

    def remove(self, name: bytes) -> None:
        self.entries.pop(name, None)

    def __len__(self) -> int:
        return len(self.entries)

    def items(self) -> list[tuple[bytes, int, bytes]]:
        """(name, mode, raw id) of each entry, in git's order."""
        return [(entry[0].rstrip(b"/") if entry[1] == TREE_MODE else entry[0], entry[1], entry[2])
                for entry in sorted(self.entries.values())]

    def encode(self) -> bytes:
        return b"".join(entry[3] for entry in sorted(self.entries.values()))


class TreeCache:
    """Parsed trees by id, shared by the threads of a process (values are never changed in place).

    A push rewrites the trees on one path, and the next push to the same repository starts from
    the trees it wrote: those are found here, not read back and parsed. Bounded by the entries it
    holds (about 250 bytes each), since every push leaves the trees it replaced behind."""

    def __init__(self, entry_limit: int = 20_000):
        self.entry_limit = entry_limit
        self._trees: dict[bytes, TreeEntries] = {}
        self._entries = 0

    def get(self, repo: pygit2.Repository, raw: bytes) -> TreeEntries:
        entries = self._trees.get(raw)
        if entries is None:
            kind, data = read_again_if_missing(lambda: repo.odb.read(pygit2.Oid(raw=raw)))
            if kind != TREE:
                raise ValueError(f"{raw.hex()} is not a tree")
            entries = self.put(raw, TreeEntries.parse(data))
        return entries

    def clear(self) -> None:
        self._trees.clear()
        self._entries = 0

    def put(self, raw: bytes, entries: TreeEntries) -> TreeEntries:
        if self._entries + len(entries) > self.entry_limit:
            self.clear()
        self._trees[raw] = entries
        self._entries += len(entries)
        return entries


# --- commits --------------------------------------------------------------------------------------


@dataclass
class CommitFields:
    tree: bytes
    parents: list[bytes]
    author: tuple[str, str, int, int]      # name, email, seconds since the epoch, UTC offset in minutes
    committer: tuple[str, str, int, int]
    message: str
    signature: str | None = None           # the gpgsig header's value (meta/signing.py), None if unsigned
    payload: bytes | None = None           # what the signature signs: the commit without its gpgsig


_IDENT_LINE_RE = re.compile(rb"(author|committer) ([^<>\n]+) <([^<>\n]*)> ([0-9]+) ([+-])([0-9]{2})([0-9]{2})")


def parse_commit(data: bytes) -> CommitFields:
    """The fields of a commit as encode_commit writes it (tree, parents, author, committer, message)."""
    header, _, message = data.partition(b"\n\n")
    tree, parents, people, signature, payload = None, [], {}, None, None
    lines = header.split(b"\n")
    if any(line.startswith(b"gpgsig ") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith(b"gpgsig "))
        end = start + 1
        while end < len(lines) and lines[end].startswith(b" "):
            end += 1
        signature = b"\n".join([lines[start][len(b"gpgsig "):]] + [line[1:] for line in lines[start + 1:end]])
        signature = signature.decode()
        lines = lines[:start] + lines[end:]
        payload = b"\n".join(lines) + b"\n\n" + message
    for line in lines:
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = bytes.fromhex(value.decode())
        elif key == b"parent":
            parents.append(bytes.fromhex(value.decode()))
        else:
            match = _IDENT_LINE_RE.fullmatch(line)
            if match is None:
                raise InvalidCommit(f"unexpected commit header line {line!r}")
            role, name, email, when, sign, hours, minutes = match.groups()
            offset = (int(hours) * 60 + int(minutes)) * (-1 if sign == b"-" else 1)
            people[role] = (name.decode(), email.decode(), int(when), offset)
    if tree is None or set(people) != {b"author", b"committer"}:
        raise InvalidCommit("a commit needs a tree, an author and a committer")
    return CommitFields(tree, parents, people[b"author"], people[b"committer"], message.decode(), signature, payload)


# What `git fsck` accepts in an author or committer line (fsck.c, fsck_ident): a name that is not
# empty and has no '<', '>' or line break, an email without them; we also refuse every control
# character and spaces around the name, which git would keep but a reader could not see.
_IDENT_NAME_RE = re.compile(r"[^\s<>\x00-\x1f\x7f](?:[^<>\x00-\x1f\x7f]*[^\s<>\x00-\x1f\x7f])?")
_IDENT_EMAIL_RE = re.compile(r"[^\s<>\x00-\x1f\x7f]+")


class InvalidCommit(ValueError):
    """A commit that git would reject (or that would say something other than what was meant)."""


def signature_line(role: bytes, name: str, email: str, when: float) -> bytes:
    if not _IDENT_NAME_RE.fullmatch(name) or not _IDENT_EMAIL_RE.fullmatch(email):
        raise InvalidCommit(f"refusing to write the {role.decode()} {name!r} <{email!r}>: a name and an email "
                            "without '<', '>', control characters or line breaks")
    offset = time.localtime(when).tm_gmtoff // 60
    sign = b"+" if offset >= 0 else b"-"
    return b"%s %s <%s> %d %s%02d%02d\n" % (role, name.encode(), email.encode(), int(when), sign,
                                           abs(offset) // 60, abs(offset) % 60)


def encode_commit(tree: bytes, parents: list[bytes], author: tuple[str, str], committer: tuple[str, str],
                  message: str, when: float | None = None, sign: Callable[[bytes], str] | None = None) -> bytes:
    """A commit object's data. With `sign` (meta/signing.py), it carries a `gpgsig` header after
    the committer: sign() of the commit without it, one line of the header per line of the text."""
    when = time.time() if when is None else when
    lines = [b"tree %s\n" % tree.hex().encode()]
    lines += [b"parent %s\n" % parent.hex().encode() for parent in parents]
    lines.append(signature_line(b"author", *author, when))
    lines.append(signature_line(b"committer", *committer, when))
    if "\0" in message:
        raise InvalidCommit("refusing to write a commit message with a NUL character")
    body = b"\n" + message.encode()
    if sign is not None:
        signature = sign(b"".join(lines) + body).encode()
        lines.append(b"gpgsig " + signature.replace(b"\n", b"\n ") + b"\n")
    lines.append(body)
    return b"".join(lines)


# --- packs ----------------------------------------------------------------------------------------


def _entry_header(kind: int, size: int) -> bytes:
    header = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        header.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    header.append(byte)
    return bytes(header)


def encode_entry(kind: int, data: bytes) -> bytes:
    """An object as a pack stores it whole: type and size, then the data as a zlib stream
    (compressed, `deflate`)."""
    return _entry_header(kind, len(data)) + deflate(data)


# zlib level 1 with a 4 KiB window and a small hash table. Why not zlib.compress: it sets up a
# deflate state of about 256 KiB (32 KiB window, memLevel 8), which with the fixed mmap threshold of
# a server worker (index/passwords.py) is fresh pages every time: 35-50 us for a 200-byte document. This state is
# about 24 KiB (heap memory): 5-11 us an object, and it saves what zlib.compress at level 1, 6 or 9
# saves on what a push writes (a 830-byte manifest document: 401 bytes; a tree of 16 folders: 410
# of 448, its ids do not compress). 1,000 pushes: 12.8 MiB of meta.git against 15.5 MiB stored
# uncompressed, 13.5 MiB with the trees left uncompressed; a tag push costs about 0.1 ms more
# (bench/profiles/notes.md, "meta.git growth"). `registry garbage-collect` packs further (deltas).
DEFLATE_LEVEL, DEFLATE_WINDOW_BITS, DEFLATE_MEMORY_LEVEL = 1, 12, 4


def deflate(data: bytes) -> bytes:
    """`data` as a zlib stream (what git and libgit2 read for an object in a pack)."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, DEFLATE_WINDOW_BITS, DEFLATE_MEMORY_LEVEL)
    return compressor.compress(data) + compressor.flush()


def pack_bytes(entries: dict[bytes, bytes]) -> tuple[bytes, bytes]:
    """(pack, index version 2) holding `entries`: raw id -> encoded entry (encode_entry)."""
    parts = [b"PACK", struct.pack(">II", 2, len(entries))]
    offset = 12
    located = []
    for raw, entry in entries.items():
        located.append((raw, zlib.crc32(entry), offset))
        parts.append(entry)
        offset += len(entry)
    if offset >= 1 << 31:
        raise ValueError("a pack of 2 GiB or more needs large offsets, which are not written here")
    pack = b"".join(parts)
    checksum = hashlib.sha1(pack).digest()
    return pack + checksum, _index_bytes(located, checksum)


def _index_bytes(located: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    """A version 2 pack index of (raw id, crc32, offset) entries (offsets under 2 GiB)."""
    located = sorted(located)
    counts = [0] * 256
    for raw, _, _ in located:
        counts[raw[0]] += 1
    index = b"".join([_IDX_MAGIC, struct.pack(">I", 2), struct.pack(">256I", *itertools.accumulate(counts)),
                      *(raw for raw, _, _ in located),
                      struct.pack(f">{len(located)}I", *(crc for _, crc, _ in located)),
                      struct.pack(f">{len(located)}I", *(where for _, _, where in located)),
                      pack_checksum])
    return index + hashlib.sha1(index).digest()


def _write_new(path: str, data: bytes, durable: bool = False) -> None:
    """Write `data` to a temporary file beside `path` (on disk first if `durable`), then rename
    it to `path`."""
    temporary = f"{os.path.dirname(path)}/tmp_{os.getpid()}_{os.urandom(4).hex()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, data)
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)


def write_pack(pack_dir: str, entries: dict[bytes, bytes], durable: bool = False) -> str:
    """Write `entries` (raw id -> encoded entry) as pack-<checksum>.pack and .idx in `pack_dir`;
    the pack's name. `durable`: both files and their names are on disk when this returns."""
    pack, index = pack_bytes(entries)
    name = "pack-" + pack[-20:].hex()
    try:
        _write_new(os.path.join(pack_dir, name + ".pack"), pack, durable)
    except FileNotFoundError:
        os.makedirs(pack_dir, exist_ok=True)
        _write_new(os.path.join(pack_dir, name + ".pack"), pack, durable)
    _write_new(os.path.join(pack_dir, name + ".idx"), index, durable)
    if durable:
        sync_folder(pack_dir)
    return name


# --- merging small packs --------------------------------------------------------------------------


class Deltified(Exception):
    """The pack stores objects as deltas (git's or libgit2's packs): its entries cannot be copied."""


def _object_count(head: bytes, index_path: str) -> int:
    """The number of objects a version 2 pack index starting with `head` lists."""
    if head[:8] != _IDX_MAGIC + b"\0\0\0\2" or len(head) < 1032:
        raise ValueError(f"{index_path} is not a version 2 pack index")
    return struct.unpack_from(">I", head, 1028)[0]


def read_index(index_path: str) -> tuple[list[bytes], list[int]]:
    """The raw ids and pack offsets (31-bit; with the large-offset flag) a pack index lists."""
    with open(index_path, "rb") as f:
        data = f.read()
    count = _object_count(data, index_path)
    ids_at = 1032
    ids = [data[ids_at + 20 * i:ids_at + 20 * i + 20] for i in range(count)]
    return ids, list(struct.unpack_from(f">{count}I", data, ids_at + 24 * count))


def index_object_count(index_path: str) -> int:
    with open(index_path, "rb") as f:
        return _object_count(f.read(1032), index_path)


def packs_to_merge(sizes: dict[str, int], factor: int) -> list[str]:
    """Size-tiered merging: packs are put in tiers by their number of objects (tier k holds
    factor**k to factor**(k+1) - 1); the lowest tier holding `factor` packs is merged. Each object
    is so copied about log_factor(objects) times, and at most factor - 1 packs stay in a tier."""
    tiers: dict[int, list[str]] = {}
    for name, size in sizes.items():
        tier = 0
        while size >= factor:
            size //= factor
            tier += 1
        tiers.setdefault(tier, []).append(name)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= factor:
            return sorted(tiers[tier])
    return []


def merges_dir(pack_dir: str) -> str:
    """meta.git/merges/ of the repository whose objects/pack/ is `pack_dir`."""
    return os.path.join(os.path.dirname(os.path.dirname(pack_dir)), MERGES_DIR)


def pack_sizes(pack_dir: str, known: dict[str, int] | None = None, ours_only: bool = False) -> dict[str, int]:
    """The packs in `pack_dir` (those with an index) and their numbers of objects. A pack's name
    is its checksum, so `known` sizes (from an earlier call) are not read again. `ours_only`:
    leave out the packs git made (GIT_PACK_EXTRAS beside them)."""
    sizes = {}
    listed = os.listdir(pack_dir)
    gits = {name.rsplit(".", 1)[0] for name in listed if name.endswith(GIT_PACK_EXTRAS)} if ours_only else ()
    for name in listed:
        if name.startswith("pack-") and name.endswith(".idx") and name[:-4] not in gits:
            name = name[:-4]
            size = known.get(name) if known is not None else None
            if size is None:
                try:
                    size = index_object_count(os.path.join(pack_dir, name + ".idx"))
                except (FileNotFoundError, ValueError):
                    continue
            sizes[name] = size
    return sizes


class MergePolicy:
    """After commits: merge this store's small packs of whole objects when a tier is full, in a
    thread of its own, so a commit never waits for a merge (`after_commit` only notes the pack and
    wakes the thread). A merge streams the entries from the old packs into the new one
    (merge_packs): its memory does not grow with the packs. Packs over MERGE_LIMIT bytes in all
    are left to `registry garbage-collect` (git's pack-objects), so no merge copies more than that.

    Packs with deltas (written by `registry garbage-collect`) are never merged here; the process
    remembers their names so as not to read them again."""

    def __init__(self, factor: int | None = None, every: int = 4, background: bool = True):
        self.factor = factor or MERGE_FACTOR
        self.every = every      # commits of this process between looks at objects/pack/
        self.background = background
        self.deltified: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._commits = 0
        self._work = threading.Condition()  # guards _requested and _busy
        self._requested = False  # commits asked for a look since the thread last took one
        self._busy = False       # the thread is looking or merging
        self._thread: threading.Thread | None = None
        self._thread_pid = None
        self._lock = threading.Lock()
        self._pending: tuple[str, bool] | None = None

    def after_commit(self, repo_path: str, written: str, objects: int, durable: bool = False) -> int:
        """Note the pack a commit wrote (`objects` objects); every `every` commits, have full tiers
        merged: by the merge thread, or here when not `background` (the number of packs merged)."""
        with self._lock:
            self._sizes[written] = objects
            self._commits += 1
            if self._commits % self.every:
                return 0
            self._pending = (repo_path, durable)
        if not self.background:
            return self._merge_pending()
        with self._work:
            self._start_thread()
            self._requested = True
            self._work.notify()
        return 0

    def settle(self, timeout: float = 60) -> bool:
        """Wait until the merge thread has nothing left to do (for tests and tools that exit)."""
        with self._work:
            return self._work.wait_for(lambda: not self._requested and not self._busy, timeout)

    def _start_thread(self) -> None:
        if self._thread is not None and self._thread_pid == os.getpid() and self._thread.is_alive():
            return  # (a forked worker has no thread: it starts its own)
        self._thread_pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="pack-merges", daemon=True)
        self._thread.start()
        # A daemon thread is stopped wherever it is when the process exits: let a merge under way
        # finish first (a process killed outright leaves what a killed writer leaves).
        atexit.register(self.settle, EXIT_WAIT)

    def _run(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._requested)
                self._requested, self._busy = False, True
            try:
                while self._merge_pending():
                    pass  # a merge may fill the next tier
            except Exception:  # noqa: BLE001
                log.exception("merging small packs failed; the commit stands, and a later commit tries again")
            finally:
                with self._work:
                    self._busy = False
                    self._work.notify_all()

    def _merge_pending(self) -> int:
        with self._lock:
            if self._pending is None:
                return 0
            repo_path, durable = self._pending
            known = dict(self._sizes)
        pack_dir = os.path.join(repo_path, "objects", "pack")
        sizes = pack_sizes(pack_dir, known, ours_only=True)
        with self._lock:
            self._sizes = sizes
        chosen = packs_to_merge({name: size for name, size in sizes.items() if name not in self.deltified},
                                self.factor)
        chosen = _within(pack_dir, chosen, MERGE_LIMIT)
        if len(chosen) < 2:
            with self._lock:
                self._pending = None
            return 0
        with merge_lock(pack_dir) as locked:
            if not locked:
                return 0
            try:
                _, copied = merge_packs(pack_dir, chosen, durable)
            except Deltified as error:
                self.deltified.add(error.args[1])
                return 0
            except (FileNotFoundError, NothingToMerge):  # packs merged by another process since the listing
                return 0
            retire_packs(pack_dir, copied)
            return len(copied)


def _within(pack_dir: str, names: list[str], limit: int) -> list[str]:
    """The packs of `names` whose sizes add up to at most `limit` bytes (smallest first)."""
    sized = []
    for name in names:
        try:
            sized.append((os.path.getsize(os.path.join(pack_dir, name + ".pack")), name))
        except FileNotFoundError:  # merged by another process since the listing
            pass
    chosen, total = [], 0
    for size, name in sorted(sized):
        if total + size > limit:
            break
        chosen.append(name)
        total += size
    return chosen


class NothingToMerge(Exception):
    """Fewer than two of the packs chosen are still there (another process merged them)."""


def merge_packs(pack_dir: str, names: list[str], durable: bool = False) -> tuple[str, list[str]]:
    """Copy the entries of the packs `names` (whole objects only) into one new pack, as stored and
    a chunk at a time; (the new pack's name, the packs copied, which the caller may retire: never
    the new pack itself). An object in several packs is copied once. Raises Deltified(message,
    name) at a pack with deltas, NothingToMerge when fewer than two of `names` are still there,
    and FileNotFoundError when one goes while it is copied; each leaves nothing behind.

    Why at least two: the copy of a single pack is that pack, byte for byte, under the same name
    (a pack is named by its checksum); retiring "the copied pack" would then move the only copy
    of its objects out of sight (a soak lost objects so, when another process had merged all but
    one of the packs chosen)."""
    plans, seen = [], set()
    for name in names:
        try:
            ids, offsets = read_index(os.path.join(pack_dir, name + ".idx"))
        except FileNotFoundError:  # merged by another process since the listing
            continue
        if any(offset & 0x80000000 for offset in offsets):
            raise Deltified(f"{name} is over 2 GiB (large offsets): written by garbage-collect", name)
        wanted = [(offset, raw) for raw, offset in zip(ids, offsets) if raw not in seen]
        seen.update(raw for _, raw in wanted)
        plans.append((name, sorted(offsets), sorted(wanted)))
    if len(plans) < 2:
        raise NothingToMerge(f"{len(plans)} of the {len(names)} packs chosen are still there")
    temporary = f"{pack_dir}/tmp_{os.getpid()}_{os.urandom(4).hex()}"
    located: list[tuple[bytes, int, int]] = []
    copied: list[str] = []
    checksum = hashlib.sha1()
    try:
        with open(temporary, "wb") as out:
            def emit(data: bytes) -> None:
                checksum.update(data)
                out.write(data)
            emit(b"PACK" + struct.pack(">II", 2, len(seen)))
            position = 12
            for name, all_offsets, wanted in plans:
                try:
                    source = open(os.path.join(pack_dir, name + ".pack"), "rb")
                except FileNotFoundError:  # merged by another process since: try again later
                    raise FileNotFoundError(f"{name} was merged elsewhere") from None
                with source:
                    end_of_data = os.fstat(source.fileno()).st_size - 20
                    ends = dict(zip(all_offsets, all_offsets[1:] + [end_of_data]))
                    for offset, raw in wanted:
                        source.seek(offset)
                        remaining = ends[offset] - offset
                        first = True
                        crc = 0
                        start = position
                        while remaining > 0:
                            chunk = source.read(min(remaining, 1 << 20))
                            if not chunk:
                                raise ValueError(f"{name} ends before its object at {offset}")
                            if first and (chunk[0] >> 4) & 7 in (6, 7):
                                raise Deltified(f"{name} stores deltas", name)
                            first = False
                            crc = zlib.crc32(chunk, crc)
                            emit(chunk)
                            position += len(chunk)
                            remaining -= len(chunk)
                        located.append((raw, crc, start))
                copied.append(name)
            if position >= 1 << 31:
                raise ValueError("a pack of 2 GiB or more needs large offsets, which are not written here")
            digest = checksum.digest()
            out.write(digest)
            if durable:
                out.flush()
                os.fdatasync(out.fileno())
        name = "pack-" + digest.hex()
        os.rename(temporary, os.path.join(pack_dir, name + ".pack"))
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _write_new(os.path.join(pack_dir, name + ".idx"), _index_bytes(located, digest), durable)
    if durable:
        sync_folder(pack_dir)
    return name, [source for source in copied if source != name]


def retire_packs(pack_dir: str, names: list[str]) -> None:
    """Move packs whose objects are all in a newer pack into meta.git/merges/retired/, where libgit2
    does not look and `registry garbage-collect` deletes them; then rewrite the merge stamp that
    tells readers to reopen their repository. Under the merge lock.

    At once, not after a grace period: a libgit2 reader that has just listed objects/pack/ and is
    about to open one of these finds it gone and reports its object missing, and looks again
    (Snapshot.read). Holding merged packs back for a second instead would leave about as many
    packs in the folder as commits a second, each searched on every lookup that misses: 2.6 ms
    a push at 400 pushes a second against 1.3 ms (bench/profiles/notes.md).
    Why moved and not deleted: on ext4 without a journal every deleted inode slows each file
    created after it in its group for 60-300 s (notes.md); a push retires two files (its pack
    and index, once merged), and deleting them made sustained pushes slow down from 264 to 159
    a second over 5,000 pushes. The stamp is written in place (no new file either)."""
    retired = os.path.join(merges_dir(pack_dir), RETIRED_DIR)
    if names:
        os.makedirs(retired, exist_ok=True)
    for name in names:
        for suffix in (".idx", ".pack"):  # the index first: from then on nobody looks in it
            try:
                os.replace(os.path.join(pack_dir, name + suffix), os.path.join(retired, name + suffix))
            except FileNotFoundError:
                pass
    fd = os.open(os.path.join(merges_dir(pack_dir), MERGE_STAMP), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, "".join(f"{time.time():.6f} {name}\n" for name in names).encode())
    finally:
        os.close(fd)


def delete_retired(pack_dir: str) -> int:
    """Delete the packs moved to meta.git/merges/retired/ (their objects are in newer packs); how many
    files were deleted. For `registry garbage-collect`, not the request path (see retire_packs)."""
    folder = os.path.join(merges_dir(pack_dir), RETIRED_DIR)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    return len(names)


class merge_lock:
    """An flock on meta.git/merges/lock, taken without waiting: `with merge_lock(pack_dir) as locked`.
    The file stays (no file made and deleted per merge); the kernel releases the lock of a process
    that dies."""

    def __init__(self, pack_dir: str):
        self.path = os.path.join(merges_dir(pack_dir), MERGE_LOCK)
        self.fd: int | None = None

    def __enter__(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None
