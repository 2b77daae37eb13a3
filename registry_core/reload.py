"""Reloading on a changed registry.yaml: watchdog watches the file, the master checks the new
configuration, and only a valid one makes gunicorn replace its workers (SIGHUP, graceful).

An invalid file is reported and ignored: the workers keep serving with the last good configuration.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("registry_core")
DEBOUNCE_SECONDS = 0.3   # editors write a file in several steps


class _ConfigChanged(FileSystemEventHandler):
    def __init__(self, path: str, on_change: Callable[[], None]):
        self.path = os.path.abspath(path)
        self.on_change = on_change
        self._timer: threading.Timer | None = None

    def on_any_event(self, event):
        paths = {os.path.abspath(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p}
        if self.path not in paths or event.event_type in ("opened", "closed_no_write"):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(DEBOUNCE_SECONDS, self.on_change)
        self._timer.daemon = True
        self._timer.start()


def watch_config(path: str, check: Callable[[], None]) -> Observer:
    """Send SIGHUP to this process (the gunicorn master) when `path` changes and `check()` passes."""
    def changed():
        try:
            check()
        except Exception as e:  # the file is being edited, or wrong: keep what runs
            log.error("not reloading: %s", e)
            return
        log.warning("%s changed: reloading the workers", path)
        os.kill(os.getpid(), signal.SIGHUP)

    observer = Observer()
    observer.daemon = True
    observer.schedule(_ConfigChanged(path, changed), os.path.dirname(os.path.abspath(path)))
    observer.start()
    return observer
