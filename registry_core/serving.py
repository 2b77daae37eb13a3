"""Serving the WSGI app: gunicorn in production, bottle's own server for `--dev`.

gunicorn (gthread workers) because, measured on this machine, it streams request bodies (chunked
uploads included), sends blobs with sendfile through `wsgi.file_wrapper`, and reloads cleanly on
HUP; kept behind this module so the server can change without touching the app.

The processes. `registry serve` reads and checks the configuration and prepares the store in the
process the user started, with all of the command line imported (schemas, plugins, pygit2, the
token keys; argon2 and the sample images when it seeds a new store). Then `serve` replaces that
process (execv: the same pid, so whoever started it still holds the server and its signals) by
`python -m registry_core.serving master`: gunicorn's master, which imports gunicorn and nothing
of the registry, since all it does is bind, fork, watch and restart workers (and, with
`--config`, watch registry.yaml: each change is checked in a short-lived process of its own,
`python -m registry_core.serving check`, before the workers reload). Each worker imports and
builds the app after the fork (`worker_app`, from registry.yaml's text as last checked:
CHECKED_CONFIG_ENV) and warms it up (`registry_core.app.warm_up`) before it accepts a connection.

Why: the anonymous memory a master holds when it forks is mapped, and counted as resident, in
every worker too. A master that had imported the registry and built and seeded a store (67 MiB
resident here, 37 of it anonymous) was counted three times in the summed resident memory of a
2-worker server (in itself and in each worker), what seeding left behind included. The master that runs now holds 26 MiB (Python and
gunicorn): VmRSS summed over master and workers went from 170 to 139 MiB idle and from 184 to
146 MiB while 1 GiB is pushed and pulled (bench/compare.py). The price: the workers no longer
share the registry's modules with the master, so PSS (what the processes use between them) rose
by about 10 MiB, and start-up takes about 0.3 s more (the imports happen twice: once to check,
once in the workers). Per-process figures in bench/README.md ("Memory").

What the master is told travels in the environment variable REGISTRY_SERVE_SPEC (JSON: the
command line's options, the address, the banner to print when ready, demo logins included),
which it takes out of its environment before it starts anything; never in its arguments, which
every user of the machine can read (a process's initial environment is readable only by its
user and root). No configuration value is in it; registry.yaml's checked text travels the same
way, in CHECKED_CONFIG_ENV, which the workers inherit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Callable

CONFIG_ENV = "REGISTRY_CONFIG"
PLUGINS_DIR_ENV = "REGISTRY_PLUGINS_DIR"
SPEC_ENV = "REGISTRY_SERVE_SPEC"
# registry.yaml's text as `serve` or the last reload checked it: what a worker (started, restarted
# after a crash, or reloaded) builds its app from, never the file as it is at that moment, which
# may be half-written or wrong (an invalid file is ignored until it is corrected).
CHECKED_CONFIG_ENV = "REGISTRY_CHECKED_CONFIG"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # observability/multiproc.py: set by the master for its workers
CHECK_TIMEOUT = 120  # seconds for `serving check` (it imports the config and plugin modules)


def read_config(config_path: str | None, store: str | None = None, plugins_dir: str | None = None,
                text: str | None = None):
    """registry.yaml (`config_path`, else $REGISTRY_CONFIG, else the defaults; its `text` when
    given) with the store and plugins dir of the command line; the store made absolute. Raises
    DocumentInvalid."""
    from registry_core import config as config_module

    config = config_module.load(config_path or os.environ.get(CONFIG_ENV), text)
    if store:
        config.store = store
    config.store = os.path.abspath(config.store)
    config.plugins_dir = plugins_dir or config.plugins_dir or os.environ.get(PLUGINS_DIR_ENV)
    return config


@dataclass
class ServeOptions:
    """What `registry serve` was given: enough for any process (each worker, the reload check)
    to make the same configuration again from registry.yaml. Paths are absolute, so that it
    means the same in every process."""

    config_path: str | None = None
    store: str | None = None
    plugins_dir: str | None = None
    role: str | None = None
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    threads: int | None = None

    def __post_init__(self):
        self.config_path = self.config_path or os.environ.get(CONFIG_ENV) or None
        for name in ("config_path", "store", "plugins_dir"):
            if getattr(self, name):
                setattr(self, name, os.path.abspath(getattr(self, name)))

    def config_text(self) -> str | None:
        """registry.yaml's text as it is now (None without a file). Raises DocumentInvalid."""
        from registry_core.config import read_text

        return read_text(self.config_path) if self.config_path else None

    def config(self, text: str | None = None):
        """The configuration, with the command line's overrides: from `text` (registry.yaml's, as
        read by `config_text`), else from the text last checked (CHECKED_CONFIG_ENV: a worker),
        else from the file as it is now. Raises DocumentInvalid; the plugins' sections are checked
        by `Registry`, or by `check_config`."""
        if text is None and self.config_path:
            text = os.environ.get(CHECKED_CONFIG_ENV)
        config = read_config(self.config_path, self.store, self.plugins_dir, text)
        config.role = self.role or config.role
        config.host = self.host or config.host
        config.port = self.port if self.port is not None else config.port
        config.workers = self.workers or config.workers
        config.threads = self.threads or config.threads
        return config


def check_config(config) -> None:
    """Raise DocumentInvalid (or PluginError) unless the plugins load and their config sections
    match their schemas (what `Registry` checks when it is built)."""
    from registry_core.plugins import make_plugin_manager, validate_plugin_config

    plugins = make_plugin_manager(config.plugins, config.plugins_dir, config.auth.enabled)
    validate_plugin_config(plugins, config.plugin_config, config.source or "registry.yaml")


def worker_app(options: ServeOptions, reported_tls=None):
    """The WSGI app of one worker, built after the fork, and warmed up before it is served.
    `reported_tls`: the master's table of the addresses whose TLS attempts were logged
    (registry_core/tls_probes.py), shared by the workers."""
    from registry_core.app import Registry, warm_up
    from registry_core.index.passwords import return_large_allocations_to_the_system
    from registry_core.web_app import build_app

    return_large_allocations_to_the_system()
    if reported_tls is not None:
        from registry_core import tls_probes
        tls_probes.install(reported_tls)
    registry = Registry(options.config())
    app = build_app(registry)
    warm_up(registry)
    _receive_bodies_in_heap_sized_pieces()
    _answer_server_errors_in_json()
    _send_relayed_bodies()
    return app


BODY_RECV = 120 * 1024  # bytes: under the workers' mmap threshold (index/passwords.py)


def _receive_bodies_in_heap_sized_pieces() -> None:
    """gunicorn receives a request body of known length in pieces of up to 1 MiB
    (`SocketUnreader.max_body_chunk`), and the app read it 1 MiB at a time. Every such buffer (the
    received piece, gunicorn's BytesIO, its slices) was an allocation over the mmap threshold that
    each worker fixes at 128 KiB (passwords.py): a fresh mmap per MiB, page-faulted in and unmapped again
    (py-spy: most of a worker's time during blob pushes; 499 minor faults per MiB received). With
    both sizes under the threshold (this and web.CHUNK) the buffers come from the heap and are
    reused: 3 faults per MiB, and blob pushes went from 180-280 to 500-570 MiB/s here (quick
    bench, Distribution 250-260 alongside); one of the two alone did not help."""
    from gunicorn.http.unreader import SocketUnreader

    SocketUnreader.max_body_chunk = BODY_RECV


def _answer_server_errors_in_json() -> None:
    """What gunicorn refuses before the app sees a request (a malformed request line or header, a
    bad Content-Length, a URI or headers over its limits: 400, 414, 431…), and an exception the app
    lets out before its response starts (500: none should, see web.ErrorsAsJson), it answers with
    an HTML page of its own: every worker class's `handle_error` picks the status and message,
    then calls `util.write_error`, the one function that renders them. In each worker that
    function is replaced by `write_json_error`, so these answers take the spec's JSON shape too."""
    from gunicorn import util

    util.write_error = write_json_error


def _send_relayed_bodies() -> None:
    """gunicorn sends a `wsgi.file_wrapper` body with `Response.sendfile` (os.sendfile from a
    file); extended here to send a RelayedBody (registry_core/socket_bodies.py: the rest of an S3
    object, received from S3's socket into one buffer) on the client's socket in the same place:
    after gunicorn sent the headers, counting what went out in `Response.sent` (its access log's
    bytes), its keep-alive decision unchanged. Only an HTTP/1 response (`Response` itself: HTTP/2
    frames its body) with a Content-Length, on a plain TCP socket; any other goes to gunicorn's
    own sendfile, which reads the body as a file. A body that ends early raises, and gunicorn
    closes the connection (headers sent: it cannot answer an error)."""
    import socket

    from gunicorn.http.wsgi import Response

    from registry_core import socket_bodies

    if not getattr(Response.sendfile, "sends_relayed_bodies", False):
        files_only = Response.sendfile

        def sendfile(self, respiter):
            body = respiter.filelike
            if not (isinstance(body, socket_bodies.RelayedBody) and type(self) is Response
                    and type(self.sock) is socket.socket and not self.cfg.is_ssl and not self.chunked
                    and not self._omits_body and self.response_length == body.length):
                return files_only(self, respiter)
            self.send_headers()
            try:
                body.send_to(self.sock)
            finally:
                self.sent += body.sent
            return True

        sendfile.sends_relayed_bodies = True
        Response.sendfile = sendfile
    socket_bodies.install()


def write_json_error(sock, status: int, reason: str, message: str) -> None:
    """gunicorn's `util.write_error`, in the distribution spec's error shape. The code is the
    reason phrase in capitals (BAD_REQUEST, URI_TOO_LONG), UNKNOWN for a 500, whose message is
    empty in gunicorn (it logged the traceback). It carries a new X-Request-Id, as every answer does
    (a request refused here has none the registry could take)."""
    from gunicorn import util

    from registry_core.web import new_request_id

    code = "UNKNOWN" if status == 500 else reason.upper().replace(" ", "_")
    text = message or (f"{reason}: see the server's log" if status == 500 else reason)
    body = json.dumps({"errors": [{"code": code, "message": text}]}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {new_request_id()}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


# --- serving ---------------------------------------------------------------------------------------


def serve(options: ServeOptions, host: str, port: int, workers: int = 2, threads: int = 8,
          dev: bool = False, access_log: bool = False, banner: str = "", watch: bool = False,
          config_text: str | None = None) -> None:
    """Serve until stopped. Production (gunicorn): this process becomes the master (execv) and
    never returns. `banner` is printed once the server listens; with `watch`, a change of the
    options' registry.yaml reloads the workers once the new file passes `check_config`.
    `config_text`: registry.yaml's text as the caller checked it (what the workers start from)."""
    if config_text is not None:
        os.environ[CHECKED_CONFIG_ENV] = config_text
    if dev:
        import bottle
        app = worker_app(options)
        if banner:
            print(banner, flush=True)
        bottle.run(app, host=host, port=port, quiet=not access_log)
        return
    spec = {"options": asdict(options), "host": host, "port": port, "workers": workers, "threads": threads,
            "access_log": access_log, "banner": banner, "watch": bool(watch and options.config_path)}
    if not sys.executable:  # an embedded interpreter, no Python to run: this process is the master
        run_master(spec)
        return
    os.environ[SPEC_ENV] = json.dumps(spec)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, _python("master"))


def _python(command: str) -> list[str]:
    # -P: the working directory is not put first on sys.path (a `registry_core` or `gunicorn`
    # folder there must not be imported instead); PYTHONPATH is still honoured.
    return [sys.executable, "-P", "-m", "registry_core.serving", command]


def gunicorn_application(app_factory: Callable, options: dict):
    """gunicorn's application with our options and app factory (gunicorn is imported here, not
    with this module: the command line imports this module for `ServeOptions`)."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            # Each worker builds its own app after the fork: git repositories and file handles
            # are not shared between processes.
            return app_factory()

    return Application()


def gunicorn_options(host: str, port: int, workers: int, threads: int, access_log: bool) -> dict:
    return {
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
        "worker_tmp_dir": _heartbeat_dir(),
    }


def _heartbeat_dir() -> str | None:
    """Where workers keep the file whose time they touch to tell the master they live: a RAM file
    system when there is one. gunicorn's gthread worker touches it on every turn of its loop, so
    every request waits for it; on /tmp here (ext4) that took 11 % of the request threads' wall
    time in a tag-push profile (bench/profiles/tag-push-before-s2.md, `WorkerTmp.notify`)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def run_master(spec: dict) -> None:
    """gunicorn's master, as `serve` handed it over."""
    from registry_core.observability import multiproc
    from registry_core.tls_probes import ReportedAddresses

    options = ServeOptions(**spec["options"])
    settings = gunicorn_options(spec["host"], spec["port"], spec["workers"], spec["threads"], spec["access_log"])
    _title_processes(f"{spec['host']}:{spec['port']}")
    reported_tls = ReportedAddresses()  # made before the fork: the workers share it
    metrics_folder = multiproc.prepare_folder()  # before the fork: the workers' metric files
    settings["child_exit"] = lambda server, worker: multiproc.worker_exited(worker.pid)

    def when_ready(server):
        if spec["banner"]:
            print(spec["banner"], flush=True)
        if spec["watch"]:
            from registry_core.reload import watch_config
            watch_config(options.config_path, lambda: check_for_reload(options))

    settings["when_ready"] = when_ready
    master = os.getpid()
    try:
        gunicorn_application(lambda: worker_app(options, reported_tls), settings).run()
    finally:
        if os.getpid() == master:  # a worker leaves through here too (gunicorn forks inside run)
            multiproc.remove_folder(metrics_folder)


def _title_processes(address: str) -> None:
    """Title the master `registry: master ADDRESS` and each worker `registry: worker ADDRESS` in
    `ps` and /proc/PID/cmdline. gunicorn titles its processes only through the setproctitle
    package (without it every worker shows the master's command line), as "gunicorn: worker
    [proc_name]"; its titling function, which it calls in the master and in each new worker
    (`util._setproctitle("worker [registry]")`), is replaced by one that keeps the role and names
    the registry and its address instead."""
    from gunicorn import util
    try:
        from setproctitle import setproctitle
    except ImportError:  # a dependency; without it the processes keep the master's command line
        return

    def title(gunicorn_title: str) -> None:
        role = gunicorn_title.split(" ", 1)[0]  # "master" or "worker"
        setproctitle(f"registry: {role} {address}")

    util._setproctitle = title


def check_for_reload(options: ServeOptions) -> None:
    """Before a reload: read registry.yaml once, check that text, and make it what the workers
    start from from now on. Raises (OSError, RuntimeError) when it cannot be used. (Read here
    with open(), not `config_text`: the master imports nothing of the registry.)"""
    with open(options.config_path) as f:
        text = f.read()
    check_in_a_process(options, text)
    os.environ[CHECKED_CONFIG_ENV] = text


def check_in_a_process(options: ServeOptions, text: str) -> None:
    """`check_config` of the options' configuration, registry.yaml's `text`, in a process of its
    own (the master imports none of the registry); raises RuntimeError with what it said when it
    fails."""
    # Not the workers' metrics folder: the check is no worker, its numbers are not to be summed.
    environment = {key: value for key, value in os.environ.items() if key not in (SPEC_ENV, METRICS_ENV)}
    environment[SPEC_ENV] = json.dumps({"options": asdict(options)})
    environment[CHECKED_CONFIG_ENV] = text
    result = subprocess.run(_python("check"), env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=CHECK_TIMEOUT)
    if result.returncode != 0:
        said = " ".join(line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip())
        raise RuntimeError(said or f"the configuration check exited with {result.returncode}")


def main(argv: list[str] | None = None) -> int:
    command = (sys.argv[1:] if argv is None else argv)[:1]
    spec = json.loads(os.environ.pop(SPEC_ENV, "null") or "null")
    if spec is None or command not in (["master"], ["check"]):
        print("usage: REGISTRY_SERVE_SPEC=… python -m registry_core.serving master|check "
              "(run by `registry serve`)", file=sys.stderr)
        return 2
    if command == ["check"]:
        try:
            options = ServeOptions(**spec["options"])
            check_config(options.config())
        except Exception as e:  # DocumentInvalid, PluginError, OSError: say it on one line
            print(f"invalid configuration: {e}", file=sys.stderr)
            return 1
        return 0
    run_master(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
