"""Serving the WSGI app: gunicorn in production, bottle's own server for `--dev`.

gunicorn (gthread workers) because, measured on this machine, it streams request bodies (chunked
uploads included), sends blobs with sendfile through `wsgi.file_wrapper`, and reloads cleanly on
HUP; kept behind this one function so the server can change without touching the app.
"""

from __future__ import annotations

from typing import Callable

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, app_factory: Callable, options: dict):
        self.app_factory = app_factory
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Each worker builds its own app after the fork: git repositories and file handles are
        # not shared between processes.
        return self.app_factory()


def serve(app_factory: Callable, host: str, port: int, workers: int = 2, threads: int = 8,
          dev: bool = False, access_log: bool = False, on_ready: Callable | None = None) -> None:
    if dev:
        import bottle
        bottle.run(app_factory(), host=host, port=port, quiet=not access_log)
        return
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 600,          # a worker is only killed when it stops heart-beating, not per request
        "graceful_timeout": 30,
        "keepalive": 15,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "registry",
    }
    if on_ready is not None:
        options["when_ready"] = lambda server: on_ready()
    _Gunicorn(app_factory, options).run()
