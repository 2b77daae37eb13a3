"""The delivery process: webhooks are sent by a process of their own beside the server's workers,
at a lower CPU priority (nice 10), never by a thread inside a worker, so that delivering (the
outbox's files, payloads, signatures, sends) takes neither a worker's interpreter lock nor, when
the CPU is short, the request threads' share of it: requests first, deliveries trail
(bench/profiles/notes.md, "Webhooks delivery off the request workers").

In every server process (gunicorn worker, or the `--dev` server) a thread, `DeliveryProcess`,
tries a non-blocking flock on the outbox's `worker.lock` every `pollInterval`. The one that gets it
starts `python -m registry_core.builtin_plugins.webhooks.delivery`, which inherits the locked
file (so the lock is held until both are gone) and reads what to deliver for (service.spec_of:
the store and the plugin's settings) as one JSON line on its standard input, a pipe whose other end
only its server process holds. Then:

- the delivery process runs the Worker (worker.py: split the recorded events into the hooks'
  queues, send each queue in order, retry with backoff, keep the log), woken by the doorbell
  (doorbell.py) when a request records an event, and otherwise every `pollInterval`;
- it stops when its standard input closes: its server process exited (stopped, reloaded, or
  killed, even by SIGKILL); the lock then goes, and another server process's thread starts a
  delivery process of its own. So one process at a time delivers for a store, across processes
  and nodes sharing it;
- when it dies while its server process lives (killed, crashed), that thread, which still holds
  the lock, starts another one after a pause (1 s, doubling up to a minute while they keep dying).

A delivery in flight when the process goes is sent again by the next one, under the same id (at
least once: worker.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("registry_core.webhooks")

MODULE = "registry_core.builtin_plugins.webhooks.delivery"
RESTART_PAUSE = 1.0        # seconds before a delivery process that died is started again,
RESTART_PAUSE_MAX = 60.0   # doubled each time one dies young, up to this
YOUNG = 60.0               # a process that lived less than this died young
NICENESS = 10              # below the workers: when the CPU is short, requests first, deliveries trail
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the workers' metrics folder: the delivery process is no worker


class DeliveryProcess:
    """The thread of one server process that starts the store's delivery process when the
    outbox's lock is free, and starts it again when it dies."""

    def __init__(self, outbox, settings, spec: dict):
        self.outbox = outbox
        self.settings = settings
        self.spec = spec
        self.process: subprocess.Popen | None = None  # the delivery process this one started, if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks-delivery-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the delivery process this one started (it stops when its standard input closes)."""
        self._stop.set()
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()

    def _run(self) -> None:
        lock_file = None
        pause = RESTART_PAUSE
        while not self._stop.is_set():
            try:
                if lock_file is None:
                    lock_file = self.outbox.try_lock()
                if lock_file is None:
                    self._stop.wait(self.settings.poll_interval)
                    continue
                started = time.monotonic()
                code = self._deliver(lock_file)
                if self._stop.is_set():
                    break
                if time.monotonic() - started >= YOUNG:
                    pause = RESTART_PAUSE
                log.error("webhooks: the delivery process exited (%s); starting another in %.0fs", code, pause)
                self._stop.wait(pause)
                pause = min(pause * 2, RESTART_PAUSE_MAX)
            except Exception:
                log.exception("webhooks: cannot start the delivery process; trying again in %.0fs", pause)
                self._stop.wait(pause)
                pause = min(pause * 2, RESTART_PAUSE_MAX)


    def _deliver(self, lock_file) -> int:
        """Run a delivery process holding `lock_file`'s flock until it exits; its exit status."""
        spec = json.dumps({**self.spec, "lockFd": lock_file.fileno()}).encode() + b"\n"
        environment = {key: value for key, value in os.environ.items() if key != METRICS_ENV}
        # -P: the working directory is not put first on sys.path (as registry_core/serving.py).
        self.process = subprocess.Popen([sys.executable, "-P", "-m", MODULE], stdin=subprocess.PIPE,
                                        pass_fds=(lock_file.fileno(),), env=environment)
        try:
            self.process.stdin.write(spec)
            self.process.stdin.flush()
        except OSError:
            pass  # it died at once: its status says why
        return self.process.wait()


def main() -> None:
    """The delivery process (started by DeliveryProcess, never by hand)."""
    from registry_core.meta.store import MetaStore

    from .service import Webhooks
    from .worker import Worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C stops the server, which stops this
    os.nice(NICENESS)
    parent = sys.stdin.fileno()
    spec = json.loads(_read_line(parent))
    lock_file = os.fdopen(spec["lockFd"], "a+")
    _title(spec["store"])
    meta = MetaStore(os.path.join(spec["store"], "meta.git"), create=False, durable=spec["durable"],
                     writer=spec["metaWriter"])
    webhooks = Webhooks(spec, meta)
    worker = Worker(webhooks.outbox, webhooks.settings, webhooks.hook_for, webhooks.queue_delivery,
                    lock_file=lock_file, prepare=webhooks.prepare)
    worker.start()
    webhooks.doorbell.listen(worker.wake, until=parent)
    worker.stop()
    os._exit(0)  # now: a send in flight is not waited for (it is sent again by the next process)


def _read_line(fd: int) -> bytes:
    """One line from `fd`, read without a buffer (the descriptor is watched for its end after)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            raise SystemExit("webhooks delivery: no spec on standard input (started by hand?)")
        line += chunk
    return line


def _title(store: str) -> None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"registry: webhooks {store}")


if __name__ == "__main__":
    main()
