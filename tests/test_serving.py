"""`registry serve`'s processes (registry_core/serving.py): a gunicorn master that holds none of
the registry, workers that warm up before they accept a connection, and the saved views a worker
starts from prepared before any worker starts (registry_core.app.prepare_views and warm_up)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import ssl
import time
from importlib import resources
from pathlib import Path

import pygit2
import pytest
import requests

from registry_core.app import Registry, prepare_views, warm_up
from registry_core.config import AuthConfig, Config
from registry_core.meta import documents
from registry_core.meta import paths as meta_paths
from registry_core.meta.diffs import SavedViews
from registry_core.meta.store import BRANCH
from registry_core.registry.repositories import CatalogIndex
from registry_core.seed import seed
from registry_core.tls_probes import ReportedAddresses, TlsProbeFilter
from tests.support.server import RunningRegistry, open_config

# Native libraries of what the workers import; the master maps none of them.
REGISTRY_LIBRARIES = ("pygit2", "cryptography", "_argon2_cffi_bindings", "yaml/_yaml")


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def repositories_tree(store: Path) -> pygit2.Oid:
    repo = pygit2.Repository(str(store / "meta.git"))
    return repo.get(repo.lookup_reference(BRANCH).target).tree[meta_paths.REPOSITORIES].id


@pytest.fixture
def seeded_store(tmp_path) -> Path:
    store = tmp_path / "store"
    seed(Registry(Config(store=str(store))))
    return store


# --- the processes ----------------------------------------------------------------------------------


def test_the_master_holds_none_of_the_registry_and_the_workers_hold_it_all(secured_registry):
    master, *workers = secured_registry.pids()
    assert len(workers) == 2
    with open(f"/proc/{master}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[0].startswith(b"registry: master ")  # the process `serve` became (execv), titled
    assert not any(b"{" in argument for argument in argv), "the master's spec must not be in its arguments"
    deadline = time.monotonic() + 30  # a worker may still be starting: one answered already
    for worker in workers:
        while not all(library in mapped_files(worker) for library in REGISTRY_LIBRARIES):
            assert time.monotonic() < deadline, f"worker {worker} did not load {REGISTRY_LIBRARIES}"
            time.sleep(0.1)
    for library in REGISTRY_LIBRARIES:
        assert library not in mapped_files(master), f"the gunicorn master loaded {library}"


def test_serve_writes_the_missing_saved_views_before_its_workers_start(seeded_store):
    """A store whose views were never saved (written by a bulk import that did not save them):
    `registry serve` builds them once, before any worker starts, so no request walks the store."""
    shutil.rmtree(seeded_store / "state", ignore_errors=True)
    tree = repositories_tree(seeded_store)
    server = RunningRegistry(seeded_store)
    try:
        for kind in ("catalog", "search", "stars"):
            assert (seeded_store / "state" / kind / str(tree)).is_file(), kind
    finally:
        server.stop()


def test_prepare_views_saves_the_views_of_what_the_configuration_serves(seeded_store):
    shutil.rmtree(seeded_store / "state", ignore_errors=True)
    tree = str(repositories_tree(seeded_store))
    config = Config(store=str(seeded_store), role="registry")
    assert set(prepare_views(config)) == {"catalog"}
    assert [p.name for p in (seeded_store / "state").iterdir() if p.name != "login-failures"] == ["catalog"]
    config = Config(store=str(seeded_store), auth=AuthConfig(enabled=False))
    assert set(prepare_views(config)) == {"catalog"}
    assert set(prepare_views(Config(store=str(seeded_store)))) == {"catalog", "search", "stars"}
    for kind in ("catalog", "search", "stars"):
        assert [p.name for p in (seeded_store / "state" / kind).iterdir()] == [tree]


def process_title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def test_the_master_and_the_workers_are_titled_with_their_role_and_address(secured_registry):
    master, *workers = secured_registry.pids()
    assert process_title(master) == f"registry: master {secured_registry.host}"
    assert len(workers) == 2
    for worker in workers:
        assert process_title(worker) == f"registry: worker {secured_registry.host}"


def speak_tls(server: RunningRegistry, source: str = "127.0.0.1") -> None:
    """Open a connection from `source` and start a TLS handshake, as a client that tries
    https:// first does; the plain-HTTP server answers in HTTP, so the handshake fails."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0)) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_spoken_to_the_plain_port_is_logged_once_per_client_address_by_all_the_workers(tmp_path):
    server = RunningRegistry(tmp_path / "store", "--config", open_config(tmp_path))
    try:
        for _ in range(8):  # new connections: both workers get some
            speak_tls(server, "127.0.0.1")
        for _ in range(3):
            speak_tls(server, "127.0.0.2")
        assert requests.get(server.url + "/v2/", timeout=10).status_code == 200  # plain HTTP still served
        log = server.log()
    finally:
        server.stop()
    assert "Invalid HTTP method" not in log
    assert len(re.findall(r"127\.0\.0\.1 spoke TLS to this plain-HTTP port", log)) == 1, log
    assert len(re.findall(r"127\.0\.0\.2 spoke TLS to this plain-HTTP port", log)) == 1, log


def gunicorn_warning(text: str) -> logging.LogRecord:
    return logging.LogRecord("gunicorn.error", logging.WARNING, __file__, 1, text, None, None)


# gunicorn's warning for a TLS ClientHello, from its C parser (gunicorn_h1c) and its Python parser
TLS_WARNINGS = ["Invalid request from ip=10.0.0.7: Invalid HTTP method: \"Invalid character '\\\\x16' in HTTP method\"",
                "Invalid request from ip=10.0.0.7: Invalid HTTP method: '\\x16\\x03\\x01\\x02'"]


@pytest.mark.parametrize("warning", TLS_WARNINGS, ids=["c-parser", "python-parser"])
def test_the_tls_filter_says_it_once_and_drops_the_repeats(warning):
    log_filter = TlsProbeFilter(ReportedAddresses())
    first = gunicorn_warning(warning)
    assert log_filter.filter(first)
    assert first.getMessage().startswith("10.0.0.7 spoke TLS to this plain-HTTP port")
    assert not log_filter.filter(gunicorn_warning(warning))


def test_the_tls_filter_lets_every_other_warning_through_unchanged():
    log_filter = TlsProbeFilter(ReportedAddresses())
    for text in ["Invalid request from ip=10.0.0.7: Invalid HTTP method: 'GE T'",
                 "Invalid request from ip=10.0.0.7: Invalid HTTP Version: 'HTTP/9'", "Worker timeout"] * 2:
        record = gunicorn_warning(text)
        assert log_filter.filter(record) and record.getMessage() == text


def test_the_reported_addresses_are_shared_with_processes_forked_after_them():
    reported = ReportedAddresses()
    pid = os.fork()
    if pid == 0:  # the child reports the address, as a worker would
        os._exit(0 if reported.first_report("192.0.2.1") else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not reported.first_report("192.0.2.1")
    assert reported.first_report("192.0.2.2")


def test_a_full_table_takes_over_the_oldest_slot_so_a_new_address_is_still_reported():
    reported = ReportedAddresses(slots=1)
    assert reported.first_report("192.0.2.1")
    assert reported.first_report("192.0.2.2")  # took the only slot
    assert not reported.first_report("192.0.2.2")
    assert reported.first_report("192.0.2.1")  # forgotten, so reported again


# --- warming up --------------------------------------------------------------------------------------


def refuse(*args, **kwargs):
    raise AssertionError("the catalog was not ready after warming up")


def document_kinds() -> list[str]:
    return [entry.name[:-len(".yaml")] for entry in resources.files("registry_core.schemas").iterdir()
            if entry.name.endswith(".yaml") and entry.name not in ("config.yaml", "seed.yaml")]


def test_a_warmed_up_worker_has_its_catalog_and_its_schemas_compiled(seeded_store, monkeypatch):
    prepare_views(Config(store=str(seeded_store)))
    registry = Registry(Config(store=str(seeded_store)))  # what a new worker builds
    documents.validator.cache_clear()
    warm_up(registry)
    assert documents.validator.cache_info().currsize == len(document_kinds())
    # the catalog was read then: its first request neither reads a saved copy nor walks the store
    monkeypatch.setattr(SavedViews, "newest", refuse)
    monkeypatch.setattr(CatalogIndex, "rebuild", refuse)
    assert {"library/hello", "library/busybox-lite", "alice/notes"} <= set(registry.repositories.names())


def test_a_failing_step_of_the_warm_up_is_logged_and_the_others_are_done(seeded_store, monkeypatch, caplog):
    registry = Registry(Config(store=str(seeded_store)))

    def broken(kind):
        raise RuntimeError(f"no schema today ({kind})")
    monkeypatch.setattr(documents, "validator", broken)
    with caplog.at_level(logging.WARNING, logger="registry_core"):
        warm_up(registry)
    assert any("warming up: schema" in record.getMessage() for record in caplog.records)
    monkeypatch.setattr(SavedViews, "newest", refuse)
    monkeypatch.setattr(CatalogIndex, "rebuild", refuse)
    assert "library/hello" in registry.repositories.names()
