"""Several `registry serve` processes on one store, as docs/deploy.md's "Several nodes" runs them:
pushes through all of them at once all land in meta.git's history, each node serves what the
others took, and the store stays consistent."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Client, descriptor, digest
from tests.support.server import REGISTRY, RunningRegistry, open_config

NODES = 3
CLIENTS = 3
PUSHES_PER_CLIENT = 100
REPOSITORY = "nodes/shared"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Three servers (two workers each) on one store; the first creates it."""
    root = tmp_path_factory.mktemp("nodes")
    config = open_config(root)
    store = root / "store"
    started = []
    try:
        for number in range(NODES):
            started.append(RunningRegistry(store, "--empty", "--config", config,
                                           log=root / f"node-{number}.log"))
        yield started
    finally:
        for node in started:
            node.stop()


def push_through_the_nodes(client_number: int, urls: list[str], pushed: dict, failures: list) -> None:
    """One client's pushes, round-robin over the nodes: each image's layer is uploaded through one
    node and its manifest put through the next, so every push needs what another node wrote."""
    session = requests.Session()
    nodes = [Client(url, session) for url in urls]
    config = json.dumps({"architecture": "amd64", "os": "linux", "client": client_number}).encode()
    nodes[0].push_blob(REPOSITORY, config)
    try:
        for number in range(PUSHES_PER_CLIENT):
            tag = f"c{client_number}-{number:03d}"
            first = (client_number + number) % len(nodes)
            layer = os.urandom(64)
            nodes[first].push_blob(REPOSITORY, layer)
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                        "layers": [descriptor(layer, OCI_LAYER)], "annotations": {"nonce": uuid.uuid4().hex}}
            body = json.dumps(manifest).encode()
            answer = nodes[(first + 1) % len(nodes)].push_manifest(REPOSITORY, tag, body)
            assert answer.status_code == 201, answer.text
            assert answer.headers["Docker-Content-Digest"] == digest(body)
            pushed[tag] = digest(body)
    except BaseException as error:  # reported by the test's thread
        failures.append(error)


@pytest.fixture(scope="module")
def pushed(nodes):
    """{tag: digest} of the 300 pushes made through the three nodes at once."""
    urls = [node.url for node in nodes]
    pushed, failures = {}, []
    clients = [threading.Thread(target=push_through_the_nodes, args=(number, urls, pushed, failures))
               for number in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert not failures, failures[0]
    return pushed


def test_every_push_through_any_node_is_one_commit_in_the_history(nodes, pushed):
    assert len(pushed) == CLIENTS * PUSHES_PER_CLIENT
    subjects = subprocess.run(["git", "--git-dir", str(nodes[0].store / "meta.git"), "log", "--format=%s", "main"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    pushes = [subject for subject in subjects if subject.startswith(f"Push {REPOSITORY}:")]
    assert sorted(pushes) == sorted(f"Push {REPOSITORY}:{tag}" for tag in pushed)


def test_every_tag_resolves_on_every_node_to_the_digest_pushed(nodes, pushed):
    for node in nodes:
        client = Client(node.url)
        listed = client.get(f"/v2/{REPOSITORY}/tags/list", params={"n": 1000}).json()["tags"]
        assert sorted(listed) == sorted(pushed), node.url
        wrong = {}
        for tag, expected in pushed.items():
            answer = client.head(f"/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            if answer.status_code != 200 or answer.headers.get("Docker-Content-Digest") != expected:
                wrong[tag] = (answer.status_code, answer.headers.get("Docker-Content-Digest"), expected)
        assert not wrong, f"{node.url}: {len(wrong)} tags wrong, e.g. {next(iter(wrong.items()))}"


def test_the_store_is_clean_after_the_pushes(nodes, pushed):
    store = nodes[0].store
    fsck = subprocess.run([REGISTRY, "fsck", "--store", str(store)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "no problems" in fsck.stdout
    git_fsck = subprocess.run(["git", "--git-dir", str(store / "meta.git"), "fsck", "--strict"],
                              capture_output=True, text=True)
    assert git_fsck.returncode == 0, git_fsck.stdout + git_fsck.stderr


@pytest.mark.parametrize("example", ["registry.yaml", "registry-nodes.yaml"])
def test_the_example_configurations_of_the_deployment_guide_are_valid(tmp_path, example):
    """deploy/*.yaml, as docs/deploy.md has them copied to /etc/registry/ beside a metrics token."""
    from registry_core import config as config_module

    path = tmp_path / "registry.yaml"
    path.write_text((Path(__file__).resolve().parent.parent / "deploy" / example).read_text())
    (tmp_path / "metrics-token").write_text("a-token-of-sixteen-characters\n")
    loaded = config_module.load(str(path))
    assert loaded.public_url == "https://registry.example.com"
    assert loaded.metrics.bearer_token == "a-token-of-sixteen-characters"
