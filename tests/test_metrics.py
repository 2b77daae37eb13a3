"""/metrics through the real server: Prometheus text (read with prometheus-client's own parser),
the counts of every gunicorn worker summed whichever worker is scraped, requests labelled by
route pattern and status (never by the raw path), bytes in and out, open upload sessions, the
webhooks' outbox, commit retries; and the options that protect it."""

from __future__ import annotations

import os
import signal
import threading
import time
import wsgiref.util
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from registry_core.app import Registry
from registry_core.config import Config, MetricsConfig
from registry_core.context import Context
from registry_core.meta.store import MetaStore
from registry_core.observability.metrics import Metrics
from registry_core.observability.routes import is_loopback
from registry_core.web_app import build_app
from tests.support.oci import Client, digest, start_upload, unique_name
from tests.support.server import RunningRegistry, free_port

TAGS_ROUTE = "/v2/<name:path>/tags/list"
BLOB_ROUTE = "/v2/<name:path>/blobs/<digest>"
UPLOADS_ROUTE = "/v2/<name:path>/blobs/uploads/"
UPLOAD_ROUTE = "/v2/<name:path>/blobs/uploads/<upload_id>"
WORKERS = 2


def user(name: str) -> dict:
    return {"kind": "user", "schemaVersion": 1, "name": name}


def write_config(directory: Path, text: str) -> str:
    path = directory / "registry.yaml"
    path.write_text("auth:\n  enabled: false\n" + text)
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An open registry of two workers, with a registry-wide webhook whose receiver never answers
    (a closed port on 127.0.0.1, retried only after an hour): its deliveries stay in the outbox."""
    root = tmp_path_factory.mktemp("metrics")
    config = write_config(root, f"""plugins: [webhooks]
pluginConfig:
  webhooks:
    allowPrivateTargets: true
    timeout: 1s
    retry: {{initialInterval: 1h, maxInterval: 1h, maxAge: 7d}}
    endpoints:
      - {{name: nowhere, url: "http://127.0.0.1:{free_port()}/hook", secret: "a-secret-of-16-chars-or-more"}}
""")
    with RunningRegistry(root / "store", "--empty", "--config", config, "--workers", str(WORKERS)) as running:
        yield running


def worker_of(response: requests.Response) -> str:
    """The process that answered: a generated request id starts with its pid (web.new_request_id)."""
    return response.headers["X-Request-Id"].split("-", 1)[0]


def scrape(server, **kwargs) -> tuple[dict, requests.Response]:
    """{(sample name, frozenset of labels): value} of one scrape (on a connection of its own)."""
    r = requests.get(server.url + "/metrics", timeout=10, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, r


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrapes_from_every_worker(server) -> list[dict]:
    """One scrape answered by each worker (new connections until each has answered one)."""
    found = {}
    for _ in range(400):
        samples, r = scrape(server)
        found.setdefault(worker_of(r), samples)
        if len(found) == WORKERS:
            return list(found.values())
    raise AssertionError(f"only workers {sorted(found)} answered")


def test_requests_answered_by_both_workers_are_counted_once_each_in_every_scrape(server):
    name = unique_name("metrics")
    answered_by, sent = set(), 0
    while len(answered_by) < WORKERS or sent < 20:  # new connections: gunicorn's workers share them
        r = requests.get(f"{server.url}/v2/{name}/tags/list", timeout=10)
        assert r.status_code == 404
        answered_by.add(worker_of(r))
        sent += 1
        assert sent < 400, "one worker answered every request"
    for samples in scrapes_from_every_worker(server):
        assert value(samples, "registry_http_requests_total", method="GET", route=TAGS_ROUTE, status="404") == sent
        assert value(samples, "registry_http_request_duration_seconds_count", method="GET", route=TAGS_ROUTE) == sent
        assert value(samples, "registry_http_request_duration_seconds_bucket", method="GET", route=TAGS_ROUTE,
                     le="+Inf") == sent


def test_requests_are_labelled_by_route_pattern_never_by_path_or_unknown_method(server):
    names = [unique_name("pattern") for _ in range(3)]
    for name in names:
        requests.get(f"{server.url}/v2/{name}/manifests/latest", timeout=10)
    requests.request("BREW", f"{server.url}/v2/{names[0]}/coffee", timeout=10)
    samples, r = scrape(server)
    labels = [dict(key[1]) for key in samples]
    assert not [label for label in labels if any(name in text for name in names for text in label.values())]
    assert value(samples, "registry_http_requests_total", method="GET",
                 route="/v2/<name:path>/manifests/<reference>", status="404") >= 3
    assert value(samples, "registry_http_requests_total", method="other", route="(unmatched)", status="404") >= 1
    assert "BREW" not in r.text


def test_bytes_received_and_sent_are_counted_for_blob_pushes_and_pulls(server):
    client = Client(server.url)
    name = unique_name("bytes")
    before, _ = scrape(server)
    whole, chunked = os.urandom(70_000), os.urandom(50_000)
    client.push_blob(name, whole)  # POST ?digest=, with a Content-Length
    location = start_upload(client, name)
    r = requests.patch(location, data=iter([chunked[:20_000], chunked[20_000:]]),  # Transfer-Encoding: chunked
                       headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 202, r.text
    pulled = client.get(f"/v2/{name}/blobs/{digest(whole)}")
    assert pulled.content == whole
    after, _ = scrape(server)

    def grew(metric: str, method: str, route: str) -> float:
        return value(after, metric, method=method, route=route) - value(before, metric, method=method, route=route)

    assert grew("registry_http_received_bytes_total", "POST", UPLOADS_ROUTE) == len(whole)
    assert grew("registry_http_received_bytes_total", "PATCH", UPLOAD_ROUTE) == len(chunked)
    assert grew("registry_http_sent_bytes_total", "GET", BLOB_ROUTE) == len(whole)


def test_open_upload_sessions_are_counted_from_the_store(server):
    client = Client(server.url)
    name = unique_name("sessions")
    open_before = value(scrape(server)[0], "registry_upload_sessions_open")
    first, second = start_upload(client, name), start_upload(client, name)
    assert value(scrape(server)[0], "registry_upload_sessions_open") == open_before + 2
    assert requests.delete(first, timeout=10).status_code == 204
    assert requests.delete(second, timeout=10).status_code == 204
    assert value(scrape(server)[0], "registry_upload_sessions_open") == open_before


def test_the_webhook_outbox_depth_is_what_waits_in_its_queues(server):
    Client(server.url).push_image(unique_name("hooked"), "v1")
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(server.store / "state" / "webhooks"))
    deadline = time.monotonic() + 30
    while outbox.unsplit_events() and time.monotonic() < deadline:
        time.sleep(0.05)  # the delivering worker splits each recorded event into its hooks' queues
    queues = server.store / "state" / "webhooks" / "hooks"
    waiting = sum(len([f for f in (hook / "queue").iterdir() if f.name.endswith(".json")])
                  for hook in queues.iterdir())
    assert waiting >= 1
    assert value(scrape(server)[0], "registry_webhook_outbox_pending") == waiting


def test_metrics_can_require_a_bearer_token_and_a_loopback_client(tmp_path):
    token = "scrape-token-0123456789"
    config = write_config(tmp_path, f"metrics: {{loopbackOnly: true, bearerToken: {token}}}\n")
    with RunningRegistry(tmp_path / "store", "--empty", "--config", config) as running:
        refused = requests.get(running.url + "/metrics", timeout=10)
        assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        wrong = requests.get(running.url + "/metrics", headers={"Authorization": "Bearer " + token[:-1]}, timeout=10)
        assert wrong.status_code == 401
        samples, _ = scrape(running, headers={"Authorization": f"Bearer {token}"})
        assert value(samples, "registry_http_requests_total", method="GET", route="/metrics", status="401") == 2
        assert requests.get(running.url + "/healthz", timeout=10).status_code == 200  # the probes stay open


def test_only_loopback_addresses_count_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("::ffff:10.0.0.1") and not is_loopback("")
    assert not is_loopback(None) and not is_loopback("localhost")


def wsgi_get(app, path: str) -> str:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    wsgiref.util.setup_testing_defaults(environ)
    answered = []
    b"".join(app(environ, lambda status, headers, exc_info=None: answered.append(status)))
    return answered[0]


def test_metrics_turned_off_answer_404(tmp_path):
    config = Config(store=str(tmp_path / "store"), metrics=MetricsConfig(enabled=False))
    config.auth.enabled = False
    app = build_app(Registry(config))
    assert wsgi_get(app, "/metrics").startswith("404")
    assert wsgi_get(app, "/healthz").startswith("200")


def test_a_commit_run_again_after_another_writer_moved_the_branch_is_counted(tmp_path):
    config = Config(store=str(tmp_path / "store"))
    config.auth.enabled = False
    registry = Registry(config)
    metrics = Metrics(registry)
    other_writer = MetaStore(registry.meta.path)
    raced = threading.Event()

    def change(txn):
        if not raced.is_set():  # another writer commits between this read and this commit
            raced.set()
            other_writer.transact(lambda t: t.put("users/other.yaml", user("other")), Context(actor="other"),
                                  "Add other")
        txn.put("users/mine.yaml", user("mine"))

    def retries() -> float:
        text, _ = metrics.exposition()
        return next(sample.value for family in text_string_to_metric_families(text.decode())
                    for sample in family.samples if sample.name == "registry_meta_commit_retries_total")

    before = retries()
    registry.meta.transact(change, Context(actor="mine"), "Mine")
    assert retries() == before + 1


def multiproc_folder(worker: int) -> Path:
    """The folder of the worker's metric files (it maps its own file from there)."""
    with open(f"/proc/{worker}/maps") as f:
        [folder] = {Path(line.split()[-1]).parent for line in f if "/registry-metrics-" in line}
    return folder


def test_counts_outlive_a_worker_that_exits_and_the_folder_goes_with_the_server(tmp_path):
    running = RunningRegistry(tmp_path / "store", "--empty", "--config", write_config(tmp_path, ""))
    try:
        for _ in range(10):
            assert requests.get(running.url + "/v2/", timeout=10).status_code == 200
        counted = [value(samples, "registry_http_requests_total", method="GET", route="/v2/", status="200")
                   for samples in scrapes_from_every_worker(running)]  # both workers are up
        assert counted[0] == counted[1] >= 10
        _, *workers = running.pids()
        folder = multiproc_folder(workers[0])
        assert folder == multiproc_folder(workers[1]) and (folder.stat().st_mode & 0o777) == 0o700
        os.kill(workers[0], signal.SIGTERM)  # it exits gracefully; the master starts another
        deadline = time.monotonic() + 30
        while workers[0] in running.pids() or len(running.pids()) < 1 + WORKERS:
            assert time.monotonic() < deadline, "the master did not replace the worker"
            time.sleep(0.1)
        for samples in scrapes_from_every_worker(running):
            assert value(samples, "registry_http_requests_total", method="GET", route="/v2/", status="200") == counted[0]
        assert folder.is_dir()
    finally:
        running.stop()
    assert not folder.exists()
