"""garbage-collect's mark (maintenance/marking.py): worker processes read the same digests, untagged
manifests and invalid documents as one process does; tag documents are read only when untagged
manifests are to be deleted."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from registry_core.context import Context
from registry_core.maintenance import marking
from registry_core.maintenance.gc import GarbageCollectionRefused, GarbageCollector, Options
from registry_core.meta import paths as meta_paths
from tests.support.store import HOUR, age_tree, blob_path, commit_by_hand, files_below, push_blob, push_image, \
    push_index, subject_of
from tests.test_gc import collect, local, store  # noqa: F401 (local and store are test_gc's fixtures)

pytestmark = pytest.mark.usefixtures("cli_isolation")


def fill(local, store) -> None:
    """Five repositories: tagged images and an index, untagged images and a referrer, unused blobs."""
    for n in range(5):
        name = f"mark/app{n}"
        child, _ = push_image(local, name)
        push_index(local, name, [child], "multi")
        image, _ = push_image(local, name, "v1")
        push_image(local, name, subject=subject_of(local, name, image), artifactType="application/vnd.example.sig")
        push_image(local, name)  # untagged, no referrer
        push_blob(local, name, f"unused {n}".encode())
    age_tree(store, 2 * HOUR)


def surveyed(local, store, workers: int, delete_untagged: bool) -> tuple[GarbageCollector, dict]:
    """A dry-run collector after its mark by `workers` processes, and the untagged manifests it plans to delete."""
    gc = GarbageCollector(local.driver, local.meta, Context(actor="gc-bot"),
                          Options(dry_run=True, grace=0, delete_untagged=delete_untagged), store=str(store),
                          mark_workers=workers)
    return gc, gc.survey(local.meta.snapshot())


@pytest.mark.parametrize("delete_untagged", [False, True])
def test_worker_processes_mark_what_one_process_marks(local, store, delete_untagged):
    fill(local, store)

    (alone, alone_plan), (shared, shared_plan) = (surveyed(local, store, n, delete_untagged) for n in (1, 2))

    assert shared.marked == alone.marked and len(alone.marked) > 20
    assert shared.referenced == alone.referenced and len(alone.referenced) == 5
    assert shared_plan == alone_plan and shared.excluded == alone.excluded
    assert shared.report.kept == alone.report.kept
    if delete_untagged:
        assert sum(map(len, alone_plan.values())) == 5 and alone.report.kept["manifestsReachable"] == 20
    else:
        assert alone_plan == {} and alone.excluded == {}


def test_a_store_this_large_is_marked_by_worker_processes_and_collected_as_by_one(local, store, monkeypatch):
    fill(local, store)
    expected = collect(store, "--dry-run", "--delete-untagged", "--grace", "0")
    workers = []
    popen = subprocess.Popen

    def counted(command, **kwargs):
        workers.append(command)
        return popen(command, **kwargs)

    monkeypatch.setattr(marking.subprocess, "Popen", counted)
    monkeypatch.setattr(marking, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(marking, "_cpus", lambda: 2)
    shared = collect(store, "--dry-run", "--delete-untagged", "--grace", "0")

    assert sum(command[1:3] == ["-m", "registry_core.maintenance.marking"] for command in workers) == 2
    assert sorted(map(json.dumps, shared["removed"])) == sorted(map(json.dumps, expected["removed"]))
    assert shared["kept"] == expected["kept"] and shared["counts"]["manifest"] == 5


def test_an_invalid_manifest_read_by_a_worker_stops_garbage_collection(local, store):
    fill(local, store)
    digest, _ = push_image(local, "mark/app3", "broken")
    commit_by_hand(store, {meta_paths.manifest("mark/app3", digest): b"kind: manifest\n"})
    age_tree(store, 2 * HOUR)
    gc = GarbageCollector(local.driver, local.meta, Context(actor="gc-bot"), Options(grace=0), store=str(store),
                          mark_workers=2)
    before = files_below(store)

    with pytest.raises(GarbageCollectionRefused) as refused:
        gc.run()

    assert len(refused.value.problems) == 1 and digest[7:] in refused.value.problems[0]
    assert files_below(store) == before


def test_a_tag_document_is_read_only_when_untagged_manifests_are_to_be_deleted(local, store):
    image, blobs = push_image(local, "mark/tags", "v1")
    unused = push_blob(local, "mark/tags", b"unused")
    commit_by_hand(store, {meta_paths.tag("mark/tags", "broken"): b"kind: tag\nname: [not, a, name]\n"})
    age_tree(store, 2 * HOUR)

    refused = collect(store, "--delete-untagged", "--grace", "0", expect=1)
    assert meta_paths.tag("mark/tags", "broken") in refused, "which manifests a tag reaches is unknown: refused"

    report = collect(store, "--grace", "0")  # a tag changes what is reachable, never what a manifest needs
    assert {r["digest"] for r in report["removed"] if r["kind"] == "blob"} == {unused}
    assert all((store / blob_path(d)).exists() for d in [image, *blobs])


def test_a_worker_that_fails_stops_garbage_collection_with_its_reason(local, store, monkeypatch):
    fill(local, store)
    before = files_below(store)
    monkeypatch.setattr(marking, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(marking, "_cpus", lambda: 2)
    monkeypatch.setattr(marking.sys, "executable", shutil.which("false"))

    output = collect(store, "--grace", "0", expect=1)

    assert "a process reading the metadata for garbage-collect failed (exit status 1)" in output
    assert files_below(store) == before


def test_when_one_worker_fails_the_others_are_stopped_at_once(local, store, monkeypatch, tmp_path):
    fill(local, store)
    before = files_below(store)
    # A stand-in for the interpreter: the worker given the first share fails at once; the other
    # would read for a minute.
    worker = tmp_path / "worker"
    worker.write_text("#!/bin/sh\nshare=$(cat)\ncase \"$share\" in *mark/app0*) echo 'no luck' >&2; exit 3;; esac\n"
                      "exec sleep 60\n")
    worker.chmod(0o755)
    monkeypatch.setattr(marking, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(marking, "_cpus", lambda: 2)
    monkeypatch.setattr(marking.sys, "executable", str(worker))
    popen = subprocess.Popen
    started = []
    monkeypatch.setattr(marking.subprocess, "Popen", lambda *a, **k: started.append(popen(*a, **k)) or started[-1])

    output = collect(store, "--grace", "0", expect=1)

    assert "failed (exit status 3): no luck" in output
    assert len(started) == 2 and all(job.returncode is not None for job in started)
    assert started[1].returncode == -9, "the worker still reading was killed, not left running"
    assert files_below(store) == before
