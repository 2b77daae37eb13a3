"""Webhooks (the built-in plugin plugins/webhooks) through real HTTP: the real registry process,
skopeo and the test client pushing, and a real receiver process on 127.0.0.1
(tests/support/webhook_receiver.py) that records every request it gets to a file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.oci import Client
from tests.support.server import RunningRegistry, free_port, wait_until
from tests.support.skopeo import Skopeo

ROOT = Path(__file__).resolve().parent.parent

RECEIVER = Path(__file__).resolve().parent / "support" / "webhook_receiver.py"
BUSYBOX = Path(__file__).resolve().parent.parent / "sample_store" / "layouts" / "busybox-lite"
ALICE, BOB = ("alice", "alice-demo"), ("bob", "bob-demo")
CONTENT_TYPES = {"distribution": "application/vnd.docker.distribution.events.v2+json",
                 "cloudevents": "application/cloudevents+json", "dockerhub": "application/json"}
WAIT = 30  # seconds any one awaited delivery may take at most (the retries here are 0.2 s to 1 s apart)


class Receiver:
    """The receiver process on 127.0.0.1:`port`, recording to `record`; start()/stop() at will."""

    def __init__(self, directory: Path, port: int | None = None, keep_alive: bool = False):
        self.keep_alive = keep_alive
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.record = directory / f"received-{self.port}.jsonl"
        self.process = None

    def start(self) -> Receiver:
        self.process = subprocess.Popen([sys.executable, str(RECEIVER), str(self.port), str(self.record)]
                                        + (["keep-alive"] if self.keep_alive else []),
                                        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.process.stdout.readline().strip() == b"ready"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process.stdout.close()
            self.process = None

    def received(self, where: str | None = None) -> list[dict]:
        if not self.record.exists():
            return []
        requests_ = [json.loads(line) for line in self.record.read_text().splitlines() if line]
        return [r for r in requests_ if where is None or where in r["body"]]

    def wait_for(self, count: int, where: str | None = None) -> list[dict]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got = self.received(where)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        pytest.fail(f"the receiver got {len(self.received(where))} of {count} requests in {WAIT}s")


def write_config(directory: Path, allow_private: bool = True, max_age: str = "60s", timeout: str = "2s",
                 endpoints=None, poll: str = "0.2s") -> str:
    section = {"allowPrivateTargets": allow_private, "timeout": timeout, "pollInterval": poll,
               "retry": {"initialInterval": "0.2s", "maxInterval": "1s", "maxAge": max_age}}
    if endpoints:
        section["endpoints"] = endpoints
    path = directory / "registry.yaml"
    path.write_text(json.dumps({"plugins": ["webhooks"], "pluginConfig": {"webhooks": section}}))  # JSON is YAML
    return str(path)


def api(server, auth=ALICE) -> requests.Session:
    session = requests.Session()
    session.auth = auth
    session.base = f"{server.url}/api/v1/repositories"
    return session


def add_hook(server, repository: str, auth=ALICE, **fields) -> requests.Response:
    session = api(server, auth)
    return session.post(f"{session.base}/{repository}/webhooks", json=fields)


def deliveries(server, repository: str, hook_id: str) -> list[dict]:
    session = api(server)
    r = session.get(f"{session.base}/{repository}/webhooks/{hook_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def verifies(received: dict, secret: str) -> bool:
    """The README's check of X-Registry-Signature."""
    expected = "sha256=" + hmac.new(secret.encode(), received["body"].encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received["headers"]["X-Registry-Signature"])


def alice_client(server) -> Client:
    session = requests.Session()
    session.auth = ALICE
    return Client(server.url, session)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    up = Receiver(tmp_path_factory.mktemp("receiver")).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A registry with accounts and the webhooks plugin; failed deliveries give up after 3 s, an
    attempt after 20 s without an answer."""
    root = tmp_path_factory.mktemp("webhooks")
    with RunningRegistry(root / "store", "--config", write_config(root, max_age="3s", timeout="20s")) as running:
        yield running


@pytest.fixture
def repository(server) -> str:
    """A new private repository of alice's (she pushed it first, so she is its admin)."""
    name = f"alice/hooked-{uuid.uuid4().hex[:8]}"
    alice_client(server).push_image(name, "v0")
    return name


@pytest.fixture
def skopeo(tmp_path) -> Skopeo:
    assert shutil.which("skopeo"), "skopeo is not installed (make system-deps installs it)"
    return Skopeo(tmp_path / "skopeo-home")


def test_a_skopeo_push_fires_one_signed_event_per_format(server, receiver, repository, skopeo):
    secrets = {fmt: f"{fmt}-secret-{uuid.uuid4().hex}" for fmt in CONTENT_TYPES}
    hook_ids = {}
    for fmt, secret in secrets.items():
        r = add_hook(server, repository, url=f"{receiver.url}/{fmt}", secret=secret, events=["push"], format=fmt)
        assert r.status_code == 201, r.text
        assert "secret" not in r.json() and "sealedSecret" not in r.json()
        hook_ids[fmt] = r.json()["id"]

    skopeo.run("copy", "--dest-creds", "alice:alice-demo", f"oci:{BUSYBOX}:latest",
               f"docker://{server.host}/{repository}:v2")
    digest = requests.head(f"{server.url}/v2/{repository}/manifests/v2", auth=ALICE,
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).headers["Docker-Content-Digest"]

    got = {r["path"].strip("/"): r for r in receiver.wait_for(3, where=repository)}
    assert sorted(got) == sorted(CONTENT_TYPES)
    for fmt, received in got.items():
        headers = received["headers"]
        assert verifies(received, secrets[fmt])
        assert not verifies(received, secrets["distribution" if fmt != "distribution" else "dockerhub"])
        assert headers["Content-Type"] == CONTENT_TYPES[fmt]
        assert headers["X-Registry-Event"] == "push"
    event_id = got["distribution"]["headers"]["X-Registry-Delivery"]
    assert {r["headers"]["X-Registry-Delivery"] for r in got.values()} == {event_id}  # one event, one id

    envelope = json.loads(got["distribution"]["body"])["events"][0]
    assert envelope["id"] == event_id and envelope["action"] == "push"
    assert envelope["target"]["digest"] == digest and envelope["target"]["tag"] == "v2"
    assert envelope["target"]["repository"] == repository
    assert envelope["target"]["mediaType"].startswith("application/vnd.oci.image")
    assert envelope["target"]["url"] == f"{server.url}/v2/{repository}/manifests/{digest}"
    assert envelope["actor"] == {"name": "alice"}
    assert envelope["request"]["method"] == "PUT" and "skopeo" in envelope["request"]["useragent"].lower()

    cloud = json.loads(got["cloudevents"]["body"])
    assert (cloud["specversion"], cloud["type"], cloud["id"]) == ("1.0", "io.registry.image.pushed", event_id)
    assert cloud["data"]["digest"] == digest and cloud["data"]["tag"] == "v2" and cloud["time"]

    hub = json.loads(got["dockerhub"]["body"])
    assert hub["push_data"]["tag"] == "v2" and hub["push_data"]["pusher"] == "alice"
    assert hub["repository"]["repo_name"] == repository and hub["repository"]["namespace"] == "alice"
    assert hub["callback_url"].startswith(server.url)

    for fmt, hook_id in hook_ids.items():  # exactly one delivery each: the blobs' pushes send nothing
        log = wait_until(lambda: (lambda log: log if log and log[0]["state"] != "pending" else None)(
            deliveries(server, repository, hook_id)), "the delivery is logged (after the receiver's answer)")
        assert [(d["id"], d["event"], d["state"]) for d in log] == [(event_id, "push", "delivered")]


def test_a_secret_is_shown_once_when_made_and_never_kept_in_git(server, receiver, repository):
    r = add_hook(server, repository, url=receiver.url + "/made", events=["push", "tag"], tags="v*")
    assert r.status_code == 201, r.text
    secret, hook_id = r.json()["secret"], r.json()["id"]
    given = f"given-secret-{uuid.uuid4().hex}"
    session = api(server)
    r = session.patch(f"{session.base}/{repository}/webhooks/{hook_id}", json={"secret": given})
    assert r.status_code == 200 and "secret" not in r.json()
    shown = session.get(f"{session.base}/{repository}/webhooks/{hook_id}").json()
    assert shown["events"] == ["push", "tag"] and shown["tags"] == "v*" and "secret" not in shown

    history = subprocess.run(["git", "-C", str(server.store / "meta.git"), "log", "-p", "--all"],
                             capture_output=True, text=True, check=True).stdout
    assert f"Add webhook {hook_id} to {repository}" in history
    assert secret not in history and given not in history
    key = server.store / "keys" / "webhook-secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    alice_client(server).push_image(repository, "v9")  # a new tag: a push and a tag event, signed anew
    received = receiver.wait_for(2, where=f'"{repository}"')
    assert sorted(r["headers"]["X-Registry-Event"] for r in received) == ["push", "tag"]
    assert all(r["path"] == "/made" and verifies(r, given) for r in received)


def test_hooks_record_only_the_events_and_tags_they_want(server, receiver, repository):
    def hook(**fields) -> str:
        r = add_hook(server, repository, url=receiver.url + "/filtered", **fields)
        assert r.status_code == 201, r.text
        return r.json()["id"]
    every_push, inactive, releases, pulls = hook(), hook(active=False), hook(tags="release-*"), hook(events=["pull"])
    client = alice_client(server)
    client.push_image(repository, "dev")
    client.push_image(repository, "release-1")
    assert client.get(f"/v2/{repository}/manifests/release-1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200

    def recorded(hook_id):  # written before each request was answered: no waiting needed
        return sorted(body["events"][0]["target"]["tag"] for body in outbox_bodies(server, hook_id))
    assert recorded(every_push) == ["dev", "release-1"]
    assert recorded(inactive) == []
    assert recorded(releases) == ["release-1"]
    assert recorded(pulls) == ["release-1"] and deliveries(server, repository, pulls)[0]["event"] == "pull"


def outbox_bodies(server, hook_id: str) -> list[dict]:
    """The payloads the store's outbox holds for a hook: in events not yet split into deliveries,
    pending, delivered or failed."""
    from registry_core.builtin_plugins.webhooks import payloads
    outbox = server.store / "state" / "webhooks"
    folder = outbox / "hooks" / hook_id
    bodies = {}
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    for name, event in Outbox(str(outbox)).unsplit_events():
        for delivery in event["deliveries"]:
            if delivery["hook"] == hook_id:
                bodies[name] = json.loads(payloads.body(delivery["format"], event["occurrence"], hook_id))
    for path in folder.glob("queue/*.json"):  # (the queue first: a record leaves it for the log)
        try:
            bodies[path.name] = json.loads(json.loads(path.read_text())["body"])
        except FileNotFoundError:
            pass  # logged meanwhile
    bodies.update((name, json.loads(record["body"]))
                  for name, record in Outbox(str(outbox)).delivery_log.records(hook_id, 10_000))
    return [bodies[name] for name in sorted(bodies)]


def test_a_failed_delivery_is_kept_as_a_dead_letter_that_redeliver_sends(server, repository, tmp_path):
    down = Receiver(tmp_path)
    hook_id = add_hook(server, repository, url=down.url, secret="dead-letter-secret-0123").json()["id"]
    alice_client(server).push_image(repository, "lost")

    (failed,) = wait_until(lambda: [d for d in deliveries(server, repository, hook_id) if d["state"] == "failed"],
                           "the delivery fails after maxAge")
    assert failed["attempts"] >= 2 and len(failed["history"]) == failed["attempts"]
    assert "ConnectionRefused" in failed["lastError"] and failed["nextAttemptAt"] is None

    down.start()
    try:
        session = api(server)
        base = f"{session.base}/{repository}/webhooks/{hook_id}"
        r = session.post(f"{base}/deliveries/{failed['id']}/redeliver")
        assert r.status_code == 202 and r.json()["state"] == "pending"
        (received,) = down.wait_for(1)
        assert received["headers"]["X-Registry-Delivery"] == failed["id"]
        assert verifies(received, "dead-letter-secret-0123")
        (done,) = wait_until(lambda: [d for d in deliveries(server, repository, hook_id) if d["state"] == "delivered"],
                             "the redelivery is logged")
        assert done["id"] == failed["id"] and done["attempts"] == failed["attempts"] + 1 and done["lastStatus"] == 200

        assert session.post(f"{base}/ping").status_code == 202
        pings = down.wait_for(2)
        assert pings[1]["headers"]["X-Registry-Event"] == "ping"
        assert session.post(f"{base}/deliveries/{'0' * 32}/redeliver").status_code == 404
    finally:
        down.stop()


def test_a_receiver_that_never_answers_holds_up_only_its_own_hook(server, receiver, repository):
    silent = socket.socket()  # listening, so connections are made, but nothing ever answers them
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        healthy = add_hook(server, repository, url=receiver.url + "/healthy").json()["id"]
        while True:  # the silent hook sorts first, so a worker that sends hook after hook tries it first
            stuck = add_hook(server, repository, url=f"http://127.0.0.1:{silent.getsockname()[1]}/").json()["id"]
            if stuck < healthy:
                break
            api(server).delete(f"{api(server).base}/{repository}/webhooks/{stuck}")
        alice_client(server).push_image(repository, "side-by-side")
        (received,) = receiver.wait_for(1, where=f'"{repository}"')
        assert received["path"] == "/healthy"
        (waiting,) = deliveries(server, repository, stuck)
        assert waiting["state"] == "pending" and waiting["attempts"] == 0  # its first attempt is still waiting
    finally:
        silent.close()
        for hook_id in (healthy, stuck):
            api(server).delete(f"{api(server).base}/{repository}/webhooks/{hook_id}")


def test_a_receiver_down_across_a_registry_kill_still_gets_every_push_once_per_id(tmp_path):
    receiver = Receiver(tmp_path)  # not started: the receiver is down
    config = write_config(tmp_path, max_age="60s")
    store = tmp_path / "store"
    server = RunningRegistry(store, "--config", config)
    try:
        repository = f"alice/outage-{uuid.uuid4().hex[:6]}"
        client = alice_client(server)
        client.push_image(repository, "t0")
        hook_id = add_hook(server, repository, url=receiver.url, secret="outage-secret-0123456").json()["id"]
        tags = ["t1", "t2", "t3"]
        digests = {tag: client.push_image(repository, tag, layers=1)[0] for tag in tags}
        wait_until(lambda: any(d["attempts"] >= 2 for d in deliveries(server, repository, hook_id)),
                   "the first delivery is retried")
        os.killpg(server.process.pid, signal.SIGKILL)
    finally:
        server.stop()

    server = RunningRegistry(store, "--config", config)
    receiver.start()
    try:
        received = receiver.wait_for(3)
        log = wait_until(lambda: (lambda log: log if all(d["state"] == "delivered" for d in log) else None)(
            deliveries(server, repository, hook_id)), "every delivery is logged as delivered")
    finally:
        receiver.stop()
        server.stop()

    ids_by_tag: dict[str, set] = {}
    order = []
    for r in received:
        target = json.loads(r["body"])["events"][0]["target"]
        assert verifies(r, "outage-secret-0123456") and target["digest"] == digests[target["tag"]]
        ids_by_tag.setdefault(target["tag"], set()).add(r["headers"]["X-Registry-Delivery"])
        if target["tag"] not in order:
            order.append(target["tag"])
    assert order == tags  # in order per hook
    assert all(len(ids) == 1 for ids in ids_by_tag.values())  # a repeat carries the same id
    assert sorted(d["id"] for d in log) == sorted(i for ids in ids_by_tag.values() for i in ids)
    assert max(d["attempts"] for d in log) >= 2


def test_a_private_repositorys_hooks_answer_others_as_a_missing_repository_does(server, receiver, repository):
    hook_id = add_hook(server, repository, url=receiver.url).json()["id"]
    missing = f"alice/missing-{uuid.uuid4().hex[:6]}"
    for auth, status, code in ((BOB, 403, "DENIED"), (None, 401, "UNAUTHORIZED")):
        for method, path, body in (("GET", "webhooks", None), ("POST", "webhooks", {"url": receiver.url}),
                                   ("GET", f"webhooks/{hook_id}", None), ("DELETE", f"webhooks/{hook_id}", None),
                                   ("GET", f"webhooks/{hook_id}/deliveries", None)):
            answers = []
            for name in (repository, missing):
                r = requests.request(method, f"{server.url}/api/v1/repositories/{name}/{path}", json=body, auth=auth)
                answers.append((r.status_code, r.json()["errors"][0]["code"],
                                r.json()["errors"][0]["message"].replace(name, "NAME")))
            assert answers[0] == answers[1] and answers[0][:2] == (status, code), (method, path, answers)
    session = api(server)
    assert session.get(f"{session.base}/{missing}/webhooks").status_code == 404
    assert [h["id"] for h in session.get(f"{session.base}/{repository}/webhooks").json()["webhooks"]] == [hook_id]
    assert session.delete(f"{session.base}/{repository}/webhooks/{hook_id}").status_code == 204
    assert session.get(f"{session.base}/{repository}/webhooks/{hook_id}").status_code == 404


@pytest.mark.parametrize("body, problem", [
    ({"url": "ftp://example.test/"}, "http:// or https://"),
    ({"url": "http://user:pw@example.test/"}, "credentials"),
    ({"url": "http://example.test/", "format": "xml"}, "format"),
    ({"url": "http://example.test/", "events": ["push", "push"]}, "events"),
    ({"url": "http://example.test/", "secret": "short"}, "secret"),
    ({"url": "http://example.test/", "colour": "red"}, "unknown field colour"),
])
def test_a_hook_with_bad_fields_is_refused_with_what_to_fix(server, repository, body, problem):
    r = add_hook(server, repository, **body)
    assert r.status_code == 400 and problem in r.json()["errors"][0]["message"]


def test_private_targets_are_refused_at_creation_and_again_at_delivery(tmp_path):
    receiver = Receiver(tmp_path).start()
    config = write_config(tmp_path, allow_private=False, endpoints=[
        {"name": "internal", "url": receiver.url + "/internal", "secret": "registry-wide-secret-01"}])
    try:
        with RunningRegistry(tmp_path / "store", "--config", config) as server:
            repository = f"alice/ssrf-{uuid.uuid4().hex[:6]}"
            alice_client(server).push_image(repository, "v1")
            for url in (receiver.url, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
                        f"http://[::1]:{receiver.port}/", f"http://2130706433:{receiver.port}/"):
                r = add_hook(server, repository, url=url)
                assert r.status_code == 400 and "private" in r.json()["errors"][0]["message"], (url, r.text)
            session = api(server)
            assert session.get(f"{session.base}/{repository}/webhooks").json()["webhooks"] == []

            alice_client(server).push_image(repository, "v2")  # the registry-wide endpoint wants it
            from registry_core.builtin_plugins.webhooks.outbox import Outbox
            outbox = Outbox(str(server.store / "state" / "webhooks"))
            def refused_v2():
                records = [record for _, record in outbox.delivery_log.records("registry-internal", 10_000)]
                return records if any('"v2"' in record["body"] for record in records) else None
            records = wait_until(refused_v2, "the registry-wide delivery of v2 is refused")
            assert all(record["state"] == "failed" and "refused" in record["attempts"][-1]["error"]
                       for record in records)  # (the seeded images' pushes too)
        assert receiver.received() == []
    finally:
        receiver.stop()


@pytest.mark.parametrize("address, private", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("169.254.169.254", True), ("192.168.1.1", True),
    ("100.64.0.1", True), ("0.0.0.0", True), ("::1", True), ("::ffff:127.0.0.1", True), ("fd00::1", True),
    ("fe80::1%1", True), ("224.0.0.1", True), ("93.184.216.34", False), ("2606:4700::1111", False),
])
def test_addresses_are_judged_private_unless_globally_routable(address, private):
    from registry_core.builtin_plugins.webhooks.targets import is_private
    assert is_private(address) is private


def test_a_record_that_cannot_be_read_is_moved_aside_and_holds_up_nothing(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path))
    first = outbox.enqueue("0123456789ab", {"id": "a" * 32})
    second = outbox.enqueue("0123456789ab", {"id": "b" * 32})
    queue = tmp_path / "hooks" / "0123456789ab" / "queue"
    (queue / first).write_text("{not json")
    assert outbox.read("0123456789ab", "queue", first) is None
    assert outbox.names("0123456789ab", "queue") == [second]
    assert (queue / f"{first}.unreadable").exists()


def test_the_webhook_commands_manage_a_store_that_a_running_server_delivers_for(
        server, receiver, repository, tmp_path, monkeypatch, cli_isolation):
    from click.testing import CliRunner

    from registry_core import cli

    monkeypatch.setenv("REGISTRY_CONFIG", write_config(tmp_path))  # enables the plugin, so its commands
    store = ["--store", str(server.store)]

    def registry(*args, input=None):
        result = CliRunner().invoke(cli.main, ["webhook", *args], input=input)
        assert result.exit_code == 0, result.output
        return result.output

    added = json.loads(registry("add", repository, receiver.url + "/cli", "--event", "push", "--format", "cloudevents",
                                "--secret-stdin", "--json", *store, input="cli-secret-0123456789\n"))
    assert "secret" not in added
    history = subprocess.run(["git", "-C", str(server.store / "meta.git"), "log", "-1", "--format=%an%n%B"],
                             capture_output=True, text=True, check=True).stdout
    assert history.startswith(f"operator\nAdd webhook {added['id']} to {repository}")
    assert added["id"] in registry("list", repository, *store)

    digest = alice_client(server).push_image(repository, "from-cli")[0]
    (received,) = receiver.wait_for(1, where=f'"{repository}"')
    assert verifies(received, "cli-secret-0123456789") and json.loads(received["body"])["data"]["digest"] == digest
    event_id = received["headers"]["X-Registry-Delivery"]
    wait_until(lambda: f"{event_id}  push  delivered" in registry("deliveries", repository, added["id"], *store),
               "the delivery is logged as delivered")

    assert "Queued" in registry("redeliver", repository, added["id"], event_id, *store)
    again = receiver.wait_for(2, where=f'"{repository}"')
    assert again[1]["headers"]["X-Registry-Delivery"] == event_id

    registry("remove", repository, added["id"], *store)
    assert added["id"] not in registry("list", repository, *store)
    failed = CliRunner().invoke(cli.main, ["webhook", "remove", repository, added["id"], *store])
    assert failed.exit_code == 1 and "has no webhook" in failed.output


def test_the_delivery_log_keeps_the_newest_records_of_a_hook(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path), log_kept=2)
    ids = [f"{n:032x}" for n in range(3)]
    for event_id in ids:
        name = outbox.enqueue("0123456789ab", {"id": event_id, "state": "pending"})
        outbox.finish("0123456789ab", name, {"id": event_id, "state": "delivered"})
    assert [record["id"] for record in outbox.deliveries("0123456789ab")] == ids[:0:-1]  # the two newest


def test_logging_a_delivery_appends_one_line_and_the_log_is_two_files_at_most(tmp_path):
    """A delivery's log record is a line appended to its hook's log (no file of its own, and
    no read of the log to write it); the log turns over into log.old.jsonl every `log_kept`
    lines, and the newest `log_kept` deliveries are shown, newest first."""
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path), log_kept=100)
    ids = [f"{n:032x}" for n in range(450)]
    for number, event_id in enumerate(ids):
        name = f"{number:020d}-{event_id}.json"
        outbox._write(os.path.join(outbox._folder("0123456789ab", "queue"), name), {"id": event_id})
        outbox.finish("0123456789ab", name, {"id": event_id, "state": "delivered"})
    folder = tmp_path / "hooks" / "0123456789ab"
    assert sorted(os.listdir(folder)) == ["log.jsonl", "log.old.jsonl", "queue"] and os.listdir(folder / "queue") == []
    assert len((folder / "log.jsonl").read_bytes().splitlines()) == 50
    assert len((folder / "log.old.jsonl").read_bytes().splitlines()) == 100
    kept = [record["id"] for record in Outbox(str(tmp_path), log_kept=100).deliveries("0123456789ab", limit=1000)]
    assert kept == ids[::-1][:100]  # the newest, newest first


def test_a_redelivered_delivery_is_pending_until_it_is_logged_again_then_its_newest_record_is_shown(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path))
    name = f"{1:020d}-{'a' * 32}.json"
    outbox.finish("0123456789ab", name, {"id": "a" * 32, "state": "failed", "attempts": [{"status": 500}]})
    where, found, record = outbox.find("0123456789ab", "a" * 32)
    assert (where, found, record["state"]) == ("log", name, "failed")
    outbox.requeue("0123456789ab", name, dict(record, state="pending"))
    assert [d["state"] for d in outbox.deliveries("0123456789ab")] == ["pending"]
    assert outbox.find("0123456789ab", "a" * 32)[0] == "queue"
    outbox.finish("0123456789ab", name, {"id": "a" * 32, "state": "delivered",
                                         "attempts": [{"status": 500}, {"status": 200}]})
    assert [d["state"] for d in Outbox(str(tmp_path)).deliveries("0123456789ab")] == ["delivered"]
    assert Outbox(str(tmp_path)).logged("0123456789ab", name) and not Outbox(str(tmp_path)).logged("0123456789ab", "x")
    logged = (tmp_path / "hooks" / "0123456789ab" / "log.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["record"]["state"] for line in logged] == ["failed", "delivered"]  # appended, not rewritten


def test_a_log_line_torn_by_a_crash_is_skipped_and_the_next_delivery_is_logged_whole(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    first = Outbox(str(tmp_path))
    first.finish("0123456789ab", f"{1:020d}-{'a' * 32}.json", {"id": "a" * 32, "state": "delivered"})
    with open(tmp_path / "hooks" / "0123456789ab" / "log.jsonl", "ab") as f:
        f.write(b'{"name":"' + f"{2:020d}-{'b' * 32}.json".encode() + b'","record":{"id":"bb')  # killed mid-write
    after = Outbox(str(tmp_path))  # the next delivering process
    after.finish("0123456789ab", f"{3:020d}-{'c' * 32}.json", {"id": "c" * 32, "state": "delivered"})
    assert [d["id"] for d in Outbox(str(tmp_path)).deliveries("0123456789ab")] == ["c" * 32, "a" * 32]
    lines = (tmp_path / "hooks" / "0123456789ab" / "log.jsonl").read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["record"]["id"] == "c" * 32  # whole, on a line of its own


def test_a_registry_wide_endpoint_that_is_not_an_http_url_stops_start_up_naming_the_key(tmp_path):
    from registry_core import config as config_module
    from registry_core.meta.documents import DocumentInvalid
    from registry_core.plugins import make_plugin_manager, validate_plugin_config

    path = write_config(tmp_path, endpoints=[{"name": "audit", "url": "file:///etc/passwd",
                                              "secret": "registry-wide-secret-01"}])
    config = config_module.load(path)
    with pytest.raises(DocumentInvalid, match="pluginConfig/webhooks/endpoints/0/url"):
        validate_plugin_config(make_plugin_manager(config.plugins), config.plugin_config, path)


def test_an_event_is_one_journal_line_until_the_delivering_process_splits_it_into_each_hooks_queue(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path))
    hooks = [{"hook": "0123456789ab", "format": "distribution", "repository": "alice/app"},
             {"hook": "registry-audit", "format": "cloudevents", "repository": None}]
    first = outbox.record_event({"id": "a" * 32}, hooks)
    second = outbox.record_event({"id": "b" * 32}, hooks[:1])
    journals = [name for name in os.listdir(tmp_path / "events") if name.endswith(".journal")]
    assert len(journals) == 1 and not (tmp_path / "hooks").exists()  # one journal for this process
    assert [json.loads(line)["name"] for line in (tmp_path / "events" / journals[0]).read_bytes().splitlines()] == \
        [first, second]
    assert [(name, occurrence["id"]) for name, _, occurrence in outbox.unsplit("0123456789ab")] == \
        [(first, "a" * 32), (second, "b" * 32)]
    assert [name for name, _, _ in outbox.unsplit("registry-audit")] == [first]
    assert outbox.pending() == 2  # an event not split yet counts once

    queued = []
    assert outbox.split_events(lambda name, delivery, occurrence: queued.append(name) or outbox.enqueue(
        delivery["hook"], {"id": occurrence["id"], "format": delivery["format"]}, name)) == 2
    assert queued == [first, first, second]
    assert outbox.names("0123456789ab", "queue") == [first, second]  # the events' names: in their order
    assert outbox.names("registry-audit", "queue") == [first]
    assert outbox.unsplit_events() == [] and Outbox(str(tmp_path)).unsplit("0123456789ab") == []
    assert outbox.pending() == 3 and outbox.split_events(lambda *args: queued.append(args)) == 0


def test_stars_comments_and_mirror_fills_are_events_a_hook_may_ask_for(server, receiver, repository):
    hook = requests.post(f"{server.url}/api/v1/repositories/{repository}/webhooks", auth=ALICE, json={
        "url": receiver.url + "/community", "secret": "community-secret-1234", "format": "cloudevents",
        "events": ["star", "comment"]}).json()["id"]
    assert requests.put(f"{server.url}/api/v1/repositories/{repository}/star", auth=ALICE).status_code in (200, 201, 204)
    r = requests.post(f"{server.url}/api/v1/repositories/{repository}/comments", auth=ALICE, json={"body": "*nice*"})
    assert r.status_code == 201, r.text
    bodies = outbox_bodies(server, hook)
    assert [body["type"] for body in bodies] == ["io.registry.repository.starred", "io.registry.repository.commented"]
    assert bodies[1]["data"]["commentId"] == r.json()["id"] and bodies[0]["data"]["actor"] == "alice"
    from registry_core.builtin_plugins.webhooks.service import webhook_event
    from registry_core.events import Event
    assert webhook_event(Event("mirror-fill", repository="library/alpine", media_type="application/vnd.oci.image.index.v1+json")) == "mirror-fill"
    assert webhook_event(Event("mirror-fill", repository="library/alpine", digest="sha256:" + "a" * 64)) is None  # a blob


# --- the delivery process ------------------------------------------------------------------------

def delivery_processes(server) -> list[int]:
    """The processes the server's workers started (the delivery process: plugins/webhooks/delivery.py),
    found through every thread of each worker (a process started by a thread is listed under it)."""
    found = []
    for worker in server.pids()[1:]:
        for thread in os.listdir(f"/proc/{worker}/task") if os.path.exists(f"/proc/{worker}/task") else []:
            try:
                found += [int(pid) for pid in Path(f"/proc/{worker}/task/{thread}/children").read_text().split()]
            except OSError:
                pass  # the thread ended meanwhile
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_deliveries_are_sent_by_one_process_of_their_own_started_again_when_it_or_its_worker_is_killed(tmp_path):
    receiver = Receiver(tmp_path).start()
    server = RunningRegistry(tmp_path / "store", "--config", write_config(tmp_path), "--workers", "2")
    try:
        repository = f"alice/apart-{uuid.uuid4().hex[:6]}"
        client = alice_client(server)
        client.push_image(repository, "t0")
        add_hook(server, repository, url=receiver.url, secret="apart-secret-0123456")
        (first,) = wait_until(lambda: delivery_processes(server), "one worker starts the delivery process")
        assert "webhooks" in Path(f"/proc/{first}/cmdline").read_text()  # its module, or its title once set

        os.kill(first, signal.SIGKILL)  # its worker, which still holds the outbox's lock, starts another
        client.push_image(repository, "t1")
        receiver.wait_for(1, where='"t1"')
        (second,) = delivery_processes(server)
        assert second != first

        (parent,) = [w for w in server.pids()[1:] if str(second) in " ".join(
            Path(f"/proc/{w}/task/{t}/children").read_text() for t in os.listdir(f"/proc/{w}/task"))]
        os.kill(parent, signal.SIGKILL)  # its delivery process stops with it; a worker starts a new one
        wait_until(lambda: not alive(second), "the delivery process stops when its worker is gone")
        client.push_image(repository, "t2")
        receiver.wait_for(1, where='"t2"')
        (third,) = wait_until(lambda: delivery_processes(server), "a worker starts another delivery process")
        assert third not in (first, second)
    finally:
        server.stop()
        receiver.stop()


def test_a_redelivery_queued_by_the_command_line_wakes_the_delivery_process_at_once(tmp_path, monkeypatch,
                                                                                     cli_isolation):
    """With an hour between looks at the outbox, only the doorbell gets the redelivery sent."""
    from click.testing import CliRunner

    from registry_core import cli

    receiver = Receiver(tmp_path).start()
    config = write_config(tmp_path, poll="1h")
    server = RunningRegistry(tmp_path / "store", "--config", config, "--workers", "2")
    try:
        repository = f"alice/rung-{uuid.uuid4().hex[:6]}"
        alice_client(server).push_image(repository, "t0")
        hook_id = add_hook(server, repository, url=receiver.url).json()["id"]
        alice_client(server).push_image(repository, "t1")
        (received,) = receiver.wait_for(1)
        event_id = received["headers"]["X-Registry-Delivery"]
        wait_until(lambda: deliveries(server, repository, hook_id)[0]["state"] == "delivered", "the delivery is logged")

        monkeypatch.setenv("REGISTRY_CONFIG", config)
        result = CliRunner().invoke(cli.main, ["webhook", "redeliver", repository, hook_id, event_id,
                                               "--store", str(server.store)])
        assert result.exit_code == 0, result.output
        again = receiver.wait_for(2)
        assert again[1]["headers"]["X-Registry-Delivery"] == event_id
    finally:
        server.stop()
        receiver.stop()


def test_a_doorbell_rung_with_no_one_listening_does_nothing(tmp_path):
    from registry_core.builtin_plugins.webhooks.doorbell import Doorbell
    bell = Doorbell(str(tmp_path))
    bell.ring()  # no FIFO yet
    (tmp_path / "doorbell").write_text("")
    bell.ring()  # not a FIFO: never written to
    assert (tmp_path / "doorbell").read_text() == ""
    (tmp_path / "doorbell").unlink()
    os.mkfifo(tmp_path / "doorbell")
    bell.ring()  # a FIFO nobody reads
    assert bell._fd is None


def test_a_delivery_sent_straight_from_its_event_is_written_only_to_the_log_in_order_per_hook(tmp_path):
    """A hook with nothing queued is sent its deliveries from memory: no queue file is written,
    each is logged, and the event is settled once every hook that wants it has it."""
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    from registry_core.builtin_plugins.webhooks.settings import Settings
    from registry_core.builtin_plugins.webhooks.worker import Worker

    receiver = Receiver(tmp_path).start()
    try:
        outbox = Outbox(str(tmp_path / "outbox"))
        hooks = {"0123456789ab": receiver.url + "/first", "ba9876543210": receiver.url + "/second"}

        def prepare(name, delivery, occurrence):
            return delivery["hook"], {"id": occurrence["id"], "hook": delivery["hook"], "event": "push",
                                      "contentType": "application/json", "body": json.dumps(occurrence),
                                      "attempts": [], "nextAttemptAt": 0, "deadline": time.time() + 60}

        worker = Worker(outbox, Settings.from_config({"allowPrivateTargets": True}),
                        hook_for=lambda record: (hooks[record["hook"]], "straight-secret-0123"),
                        queue_delivery=None, prepare=prepare)
        ids = [f"{n:032x}" for n in range(1, 4)]
        for event_id in ids:
            outbox.record_event({"id": event_id}, [{"hook": key} for key in hooks])
        worker.deliver_due()
        received = receiver.wait_for(6)
        wait_until(lambda: not outbox.unsplit_events(), "every event is settled")
    finally:
        receiver.stop()
    for key, url in hooks.items():
        path = url.removeprefix(receiver.url)
        assert [json.loads(r["body"])["id"] for r in received if r["path"] == path] == ids  # in order
        assert [record["state"] for record in outbox.deliveries(key)] == ["delivered"] * 3
        assert not (tmp_path / "outbox" / "hooks" / key / "queue").exists()  # never written


def test_events_are_appended_to_one_journal_per_process_and_read_back_by_another(tmp_path):
    """A request records its event with one write to its process's journal; the delivering
    process reads every journal, and a settled event is not read again, by it or by a new one."""
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    delivering, recording, other = Outbox(str(tmp_path)), Outbox(str(tmp_path)), Outbox(str(tmp_path))
    first = recording.record_event({"id": "a" * 32}, [{"hook": "0123456789ab"}])
    second = other.record_event({"id": "b" * 32}, [{"hook": "0123456789ab"}])
    third = recording.record_event({"id": "c" * 32}, [{"hook": "0123456789ab"}])
    assert len([name for name in os.listdir(tmp_path / "events") if name.endswith(".journal")]) == 2
    assert delivering.recorded() == [first, second, third]
    assert delivering.read_event(second) == {"occurrence": {"id": "b" * 32}, "deliveries": [{"hook": "0123456789ab"}]}
    delivering.remove_event(third)  # settled out of order: its journal's offset waits for the first
    assert delivering.recorded() == [first, second]
    assert [name for name, _ in Outbox(str(tmp_path)).unsplit_events()] == [first, second, third]
    delivering.remove_event(first)
    delivering.remove_event(second)
    assert delivering.recorded() == [] and Outbox(str(tmp_path)).recorded() == []  # (a new delivering process)
    assert Outbox(str(tmp_path)).pending() == 0


def test_a_journal_whose_writer_was_killed_mid_write_ignores_the_torn_record_and_loses_none_before(tmp_path):
    """A writer SIGKILLed in the middle of an event's line leaves it without its newline: the
    events before it are all read, the torn one is never taken for an event, and the journal is
    removed once they are settled (its writer is gone)."""
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    script = textwrap.dedent(f"""
        import os, signal
        from registry_core.builtin_plugins.webhooks.outbox import Outbox
        outbox = Outbox({str(tmp_path)!r})
        for n in range(1, 6):
            outbox.record_event({{"id": f"{{n:032x}}"}}, [{{"hook": "0123456789ab"}}])
        os.write(outbox.journal._fd, b'{{"name":"00000000000000000009-' + b"9" * 32 + b'.json","occ')
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    delivering = Outbox(str(tmp_path))
    names = delivering.recorded()
    assert [delivering.read_event(name)["occurrence"]["id"] for name in names] == [f"{n:032x}" for n in range(1, 6)]
    assert delivering.recorded() == names  # read once: not twice, and the torn tail is still no event
    for name in names:
        delivering.remove_event(name)
    assert delivering.recorded() == []
    assert [name for name in os.listdir(tmp_path / "events") if name.endswith(".journal")] == []
    assert delivering.recorded() == [] and Outbox(str(tmp_path)).pending() == 0


def test_a_live_writers_journal_stays_and_a_line_being_written_is_read_once_it_is_whole(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    delivering, recording = Outbox(str(tmp_path)), Outbox(str(tmp_path))
    first = recording.record_event({"id": "a" * 32}, [{"hook": "0123456789ab"}])
    delivering.remove_event(delivering.recorded()[0])
    assert delivering.recorded() == [] and len(os.listdir(tmp_path / "events")) == 2  # its journal, read.json
    line = json.dumps({"name": f"{9:020d}-{'b' * 32}.json", "occurrence": {"id": "b" * 32},
                       "deliveries": [{"hook": "0123456789ab"}]}).encode() + b"\n"
    os.write(recording.journal._fd, line[:20])  # a write another thread of the writer has not finished
    assert delivering.recorded() == []
    os.write(recording.journal._fd, line[20:])
    assert delivering.recorded() == [f"{9:020d}-{'b' * 32}.json"] and first not in delivering.recorded()


def test_a_forked_process_records_its_events_in_a_journal_of_its_own(tmp_path):
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    outbox = Outbox(str(tmp_path))
    outbox.record_event({"id": "a" * 32}, [{"hook": "0123456789ab"}])
    child = os.fork()
    if child == 0:
        try:
            outbox.record_event({"id": "b" * 32}, [{"hook": "0123456789ab"}])
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    journals = sorted(name for name in os.listdir(tmp_path / "events") if name.endswith(".journal"))
    assert len(journals) == 2 and len({name.split("-")[1] for name in journals}) == 2  # two writers' pids
    delivering = Outbox(str(tmp_path))
    for name in delivering.recorded():
        delivering.remove_event(name)
    delivering.recorded()  # the child's journal goes (its writer is gone); the parent's stays
    assert len([name for name in os.listdir(tmp_path / "events") if name.endswith(".journal")]) == 1


def test_a_hooks_deliveries_go_out_on_one_kept_connection_to_a_keep_alive_receiver(server, repository, tmp_path):
    receiver = Receiver(tmp_path, keep_alive=True).start()
    try:
        assert add_hook(server, repository, url=f"{receiver.url}/kept", events=["push"]).status_code == 201
        client = alice_client(server)
        for n in range(3):  # one at a time: each a delivery of its own
            client.push_image(repository, f"kept-{n}")
            receiver.wait_for(n + 1, where=repository)
        got = receiver.received(where=repository)
    finally:
        receiver.stop()
    assert [json.loads(r["body"])["events"][0]["target"]["tag"] for r in got] == ["kept-0", "kept-1", "kept-2"]
    assert len({r["clientPort"] for r in got}) == 1
    assert {r["headers"]["Connection"] for r in got} == {"keep-alive"}


def test_a_delivery_looks_its_hook_up_without_reading_its_document_or_opening_its_secret_again(
        server, receiver, repository, monkeypatch):
    """The delivering process looks up every hook's URL and secret on every round: while the
    repository's hooks do not change (a push moves the tip, not them), that reads no document
    and decrypts no secret again; a changed secret is read and opened anew."""
    from cryptography.fernet import Fernet

    from registry_core.builtin_plugins.webhooks.definitions import Definitions
    from registry_core.builtin_plugins.webhooks.sealing import Sealer
    from registry_core.meta.store import MetaStore, Snapshot

    definitions = Definitions(MetaStore(str(server.store / "meta.git"), create=False),
                              Sealer(str(server.store / "keys")), allow_private=True)
    hook_id = add_hook(server, repository, url=f"{receiver.url}/one", secret="looked-up-secret-0123").json()["id"]
    reads, opened = [], []
    read, decrypt = Snapshot.get, Fernet.decrypt
    monkeypatch.setattr(Snapshot, "get", lambda self, path: reads.append(path) or read(self, path))
    monkeypatch.setattr(Fernet, "decrypt", lambda self, token: opened.append(token) or decrypt(self, token))

    def look_up():
        document = definitions.hook(repository, hook_id)
        return document["url"], definitions.secret(document)

    assert look_up() == (f"{receiver.url}/one", "looked-up-secret-0123")
    assert (len(reads), len(opened)) == (1, 1)
    alice_client(server).push_image(repository, "v1")  # moves the tip, not the hooks
    assert look_up() == (f"{receiver.url}/one", "looked-up-secret-0123")
    assert (len(reads), len(opened)) == (1, 1)  # nothing read or opened again
    session = api(server)
    assert session.patch(f"{session.base}/{repository}/webhooks/{hook_id}",
                         json={"secret": "another-secret-456789"}).status_code == 200
    assert look_up() == (f"{receiver.url}/one", "another-secret-456789")
    assert len(opened) == 2 and definitions.hook(repository, "0" * 12) is None


def test_the_hooks_of_a_repository_are_read_once_until_another_process_changes_them(
        server, receiver, repository, monkeypatch):
    from registry_core.builtin_plugins.webhooks.definitions import Definitions
    from registry_core.builtin_plugins.webhooks.sealing import Sealer
    from registry_core.meta.store import MetaStore, Snapshot

    definitions = Definitions(MetaStore(str(server.store / "meta.git"), create=False),
                              Sealer(str(server.store / "keys")), allow_private=True)
    reads = []
    read = Snapshot.get
    monkeypatch.setattr(Snapshot, "get", lambda self, path: reads.append(path) or read(self, path))
    assert definitions.list(repository) == []
    first = add_hook(server, repository, url=f"{receiver.url}/one", events=["push"]).json()["id"]
    assert [hook["id"] for hook in definitions.list(repository)] == [first]
    assert len(reads) == 1

    alice_client(server).push_image(repository, "v1")  # moves the tip, not the hooks
    assert [hook["id"] for hook in definitions.list(repository)] == [first]
    assert len(reads) == 1  # nothing read again

    second = add_hook(server, repository, url=f"{receiver.url}/two", events=["push"]).json()["id"]
    assert {hook["id"] for hook in definitions.list(repository)} == {first, second}  # created in one second: either order
    assert api(server).delete(f"{api(server).base}/{repository}/webhooks/{first}").status_code == 204
    assert [hook["id"] for hook in definitions.list(repository)] == [second]


def test_event_ids_are_32_hex_digits_and_a_forked_process_draws_its_own():
    from registry_core.builtin_plugins.webhooks.service import event_ids

    ours = [event_ids.next() for _ in range(3)]
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, event_ids.next().encode())
        os._exit(0)
    os.close(writer)
    theirs = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(child, 0)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ours + [theirs])
    assert len(set(ours)) == 3 and ours[0][:20] == ours[2][:20]
    assert theirs[:20] != ours[0][:20]  # not the parent's random part with its counter


def test_an_older_versions_delivery_log_is_adopted_by_the_delivering_process_in_order(tmp_path):
    """An older version logged each delivery as a file (hooks/<hook>/log/<seq>.json, pruned ones
    kept aside as .spare): after an upgrade they are read as the oldest part of the log at once,
    and the delivering process appends them to log.jsonl, oldest first, and removes the folder,
    so the deliveries API, redeliver and the recovery check see them before and after."""
    from registry_core.builtin_plugins.webhooks.outbox import Outbox
    from registry_core.builtin_plugins.webhooks.settings import Settings
    from registry_core.builtin_plugins.webhooks.worker import Worker

    key = "0123456789ab"
    old_log = tmp_path / "hooks" / key / "log"
    old_log.mkdir(parents=True)
    ids = [f"{n:032x}" for n in range(1, 5)]
    names = [f"{n:020d}-{event_id}.json" for n, event_id in enumerate(ids, start=1)]
    for name, event_id, state in zip(names, ids, ["delivered", "failed", "delivered", "delivered"]):
        (old_log / name).write_text(json.dumps({"id": event_id, "hook": key, "state": state}))
    (old_log / f"{0:020d}-{'e' * 32}.json.spare").write_text(json.dumps({"id": "e" * 32, "state": "delivered"}))
    (old_log / f"{9:020d}-{'f' * 32}.json").write_text('{"id": "ff')  # edited by hand: not a record

    before = Outbox(str(tmp_path))  # read before the delivering process moves them: already shown
    assert [d["id"] for d in before.deliveries(key)] == ids[::-1] and before.logged(key, names[2])
    assert before.find(key, ids[1]) == ("log", names[1], {"id": ids[1], "hook": key, "state": "failed"})

    outbox = Outbox(str(tmp_path))
    worker = Worker(outbox, Settings.from_config({"allowPrivateTargets": True}),
                    hook_for=lambda record: None, queue_delivery=lambda *a: None)
    try:
        assert worker._holds_lock()
    finally:
        worker._lock_file.close()

    assert not old_log.exists()
    reader = Outbox(str(tmp_path))
    assert [(d["id"], d["state"]) for d in reader.deliveries(key)] == \
        [(ids[3], "delivered"), (ids[2], "delivered"), (ids[1], "failed"), (ids[0], "delivered")]
    assert reader.find(key, ids[1]) == ("log", names[1], {"id": ids[1], "hook": key, "state": "failed"})
    assert reader.logged(key, names[0]) and not reader.logged(key, f"{0:020d}-{'e' * 32}.json")
    assert Outbox(str(tmp_path)).adopt_old_logs() == 0  # done once
