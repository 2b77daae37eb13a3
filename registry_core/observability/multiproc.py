"""The gunicorn master's part in the workers' metrics (prometheus-client's multiprocess mode).

Each worker writes its counters and histograms to files of its own in the folder named by
PROMETHEUS_MULTIPROC_DIR, and /metrics, in whichever worker answers, sums the files of all of
them. The master makes that folder before it forks (new and private: mode 0700, so the numbers of
another server, or of an earlier run, are never summed in), tells every worker of it through the
environment, drops a worker's live gauges when it exits (`mark_process_dead`; its counters stay,
so totals never go back), and removes the folder when it stops. Nothing else of the registry is
imported here: the master holds none of it (serving.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_folder() -> str:
    """A new private folder for the workers' metric files, named in the environment they inherit."""
    folder = tempfile.mkdtemp(prefix="registry-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def remove_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == folder:
        del os.environ[MULTIPROC_ENV]


def worker_exited(pid: int) -> None:
    """gunicorn's `child_exit`: forget the live gauges of worker `pid` (prometheus-client is
    imported here, in the master, only once a worker has exited)."""
    if MULTIPROC_ENV not in os.environ:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
