"""garbage-collect's mark: the digests every manifest document of every repository needs, and (with
`--delete-untagged`) the manifests no tag reaches, read from one commit of the metadata.

Reading the documents is the mark's whole cost: each is parsed and validated against its schema
(about 200 µs a manifest here, so 20 s of CPU for 100,000), and only manifests are needed unless
untagged ones are to be deleted (a tag changes what is reachable, never what a manifest needs). A
store with that much metadata is read by worker processes, one per CPU, each over a share of the
repositories: the mark takes a fraction of the time, and the process that goes on to sweep and
packs meta.git never holds the parsed documents (only the digests the workers send back).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import pygit2

from registry_core.maintenance import inventory
from registry_core.maintenance.inventory import RepositoryGraph
from registry_core.meta import packing
from registry_core.meta.store import Snapshot, limit_caches

# libgit2's object cache while the mark runs (meta/store.py limit_caches): 4 MiB as libgit2
# counts, about 38 MiB of parsed trees; the server's 32 MiB would hold ~180 MiB. Each tree is read once.
MARK_OBJECT_CACHE_BYTES = 4 << 20
# Pack bytes a worker keeps mapped (the server's 64 MiB would be resident in each worker).
WORKER_MAPPED_BYTES = 16 << 20
# meta.git's objects at which the mark is shared between worker processes: below it, starting
# them (about half a second each) costs more than they save.
PARALLEL_BYTES = 64 << 20


@dataclass
class Mark:
    """What one read of the metadata found, for some or all repositories."""

    referenced: dict[str, set[str]] = field(default_factory=dict)   # repository -> digests its manifests need
    untagged: dict[str, dict[str, dict]] = field(default_factory=dict)  # repository -> digest -> document
    problems: list[str] = field(default_factory=list)               # invalid documents, one line each
    reachable: int = 0                                               # manifests a tag reaches
    young: int = 0                                                   # untagged, pushed within the grace

    def as_json(self) -> dict:
        return {"referenced": {name: sorted(digests) for name, digests in self.referenced.items()},
                "untagged": self.untagged, "problems": self.problems, "reachable": self.reachable,
                "young": self.young}

    @classmethod
    def from_json(cls, data: dict) -> "Mark":
        return cls({name: set(digests) for name, digests in data["referenced"].items()}, data["untagged"],
                   data["problems"], data["reachable"], data["young"])

    def add(self, other: "Mark") -> None:
        self.referenced.update(other.referenced)
        self.untagged.update(other.untagged)
        self.problems.extend(other.problems)
        self.reachable += other.reachable
        self.young += other.young


@dataclass(frozen=True)
class Rules:
    """What the mark looks for: untagged manifests (pushed more than `grace` seconds before `now`)
    only with `delete_untagged`."""

    delete_untagged: bool
    grace: float
    now: float


def read(snapshot: Snapshot, names: list[str], rules: Rules) -> Mark:
    """The mark of the repositories `names` as of `snapshot`."""
    mark = Mark()
    for name in names:
        graph = RepositoryGraph.read(snapshot, name, tags=rules.delete_untagged)
        mark.problems.extend(str(e) for e in graph.invalid)
        untagged = _untagged(graph, rules, mark) if rules.delete_untagged and not graph.invalid else {}
        if untagged:
            mark.untagged[name] = untagged
        needed = mark.referenced.setdefault(name, set())
        for digest, document in graph.manifests.items():
            if digest not in untagged:
                needed.update(inventory.references(document))
    return mark


def _untagged(graph: RepositoryGraph, rules: Rules, mark: Mark) -> dict[str, dict]:
    reachable = graph.reachable()
    untagged = {}
    for digest, document in graph.manifests.items():
        if digest in reachable:
            mark.reachable += 1
            continue
        pushed = inventory.parse_time(document.get("pushedAt")) or 0.0
        if rules.now - pushed > rules.grace:
            untagged[digest] = document
        else:
            mark.young += 1
    return untagged


def read_all(meta_path: str, snapshot: Snapshot, rules: Rules, workers: int | None = None) -> Mark:
    """The mark of every repository as of `snapshot`, read by `workers` processes (by default one
    per CPU when meta.git holds PARALLEL_BYTES or more, else in this process)."""
    names = list(inventory.repositories(snapshot))
    if workers is None:
        workers = _cpus() if packing.objects_bytes(meta_path) >= PARALLEL_BYTES else 1
    workers = min(workers, len(names))
    if workers <= 1 or snapshot.tip is None:
        return read(snapshot, names, rules)
    # Each worker a fresh interpreter (none of this process's threads, libgit2 state or memory),
    # given its share on stdin and answering on stdout, as JSON.
    jobs = []
    try:
        for share in (names[i::workers] for i in range(workers)):
            jobs.append(_start_worker(meta_path, snapshot, share, rules))
        mark = Mark()
        for job, errors in jobs:
            mark.add(_answer(job, errors))
        return mark
    finally:  # one failed (or this process was interrupted): the others' work is of no use
        for job, errors in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
            job.stdout.close()
            errors.close()


def _start_worker(meta_path: str, snapshot: Snapshot, share: list[str], rules: Rules):
    """A worker process reading `share`, and the file that collects what it says on stderr (a
    file, so that a long traceback never blocks it)."""
    errors = tempfile.TemporaryFile()
    try:
        job = subprocess.Popen([sys.executable, "-m", __name__, meta_path, str(snapshot.tip)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
    except BaseException:
        errors.close()
        raise
    try:
        with job.stdin:
            job.stdin.write(json.dumps({"names": share, "rules": asdict(rules)}).encode())
    except BrokenPipeError:  # it ended before it read its share: its exit status says why
        pass
    return job, errors


def _answer(job: subprocess.Popen, errors) -> Mark:
    """The mark a worker sends once it is done; MarkFailed with its stderr's end if it failed."""
    answer = job.stdout.read()
    if job.wait() != 0:
        errors.seek(0)
        reason = errors.read().decode(errors="replace").strip()[-2000:]
        raise MarkFailed(f"a process reading the metadata for garbage-collect failed (exit status "
                         f"{job.returncode}): {reason}")
    return Mark.from_json(json.loads(answer))


class MarkFailed(Exception):
    """A worker process of the mark did not finish; nothing was removed."""


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _worker(meta_path: str, tip: str) -> None:
    """A worker process: the mark of the repositories named on stdin, as of commit `tip`, to stdout."""
    limit_caches(MARK_OBJECT_CACHE_BYTES, mapped_bytes=WORKER_MAPPED_BYTES, documents=0)
    share = json.load(sys.stdin)
    repo = pygit2.Repository(meta_path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    mark = read(Snapshot(repo, repo[tip]), share["names"], Rules(**share["rules"]))
    json.dump(mark.as_json(), sys.stdout)


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
