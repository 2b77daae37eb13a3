"""docs/deploy.md's backup and restore, run word for word: a backup taken while pushes run restores
to a store that passes `registry fsck` and `git fsck`, and a server on it serves every tag whose
push was answered before the backup began, with the same digest."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.oci import OCI_MANIFEST, Client, digest
from tests.support.server import REGISTRY, RunningRegistry

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"
REPOSITORY = "library/backup"
PUSHED_BEFORE = 20


def guide_block(mark: str) -> str:
    """The one block of docs/deploy.md fenced as ```sh <mark>."""
    blocks = re.findall(rf"^```sh {mark}\n(.*?)^```$", GUIDE.read_text(), re.S | re.M)
    assert len(blocks) == 1, f"docs/deploy.md should have one ```sh {mark} block, has {len(blocks)}"
    return blocks[0]


def run_guide_block(mark: str, **variables: str) -> subprocess.CompletedProcess:
    """Run the block with bash (stopping at the first failing command), `registry` on the PATH."""
    if shutil.which("rsync") is None:
        pytest.fail("the guide's backup copies files with rsync, which is not installed (`make system-deps`)")
    path = f"{Path(REGISTRY).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", guide_block(mark)], capture_output=True, text=True,
                          env={**os.environ, "PATH": path, **variables}, timeout=120)
    assert done.returncode == 0, f"the {mark} block failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def bearer_session(server: RunningRegistry) -> requests.Session:
    """A session with the demo admin's token for REPOSITORY (one password check, not one per request)."""
    answer = requests.get(server.url + "/token", auth=("admin", "admin-demo"),
                          params={"service": "registry", "scope": f"repository:{REPOSITORY}:pull,push"})
    assert answer.status_code == 200, answer.text
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + answer.json()["token"]
    return session


class Pusher(threading.Thread):
    """Pushes new tags until stopped; `answered` holds {tag: digest} of every push answered 201."""

    def __init__(self, client: Client):
        super().__init__(daemon=True)
        self.client = client
        self.answered: dict[str, str] = {}
        self.failures: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        try:
            while not self.stopping.is_set():
                tag = f"during-{number:04d}"
                pushed, _, _ = self.client.push_image(REPOSITORY, tag)
                self.answered[tag] = pushed
                number += 1
        except BaseException as error:  # the test asserts there was none
            self.failures.append(error)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count and not self.failures and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A served store with PUSHED_BEFORE tags, backed up twice (a clone, then a fetch) by the
    guide's block while another client keeps pushing, then restored by the guide's block."""
    root = tmp_path_factory.mktemp("backup")
    store, backup, restored = root / "store", root / "backup", root / "restored"
    with RunningRegistry(store) as server:
        session = bearer_session(server)
        client = Client(server.url, session)
        before = {}
        for number in range(PUSHED_BEFORE):
            tag = f"before-{number:02d}"
            before[tag], _, _ = client.push_image(REPOSITORY, tag)
        pusher = Pusher(Client(server.url, bearer_session(server)))
        pusher.start()
        try:
            pusher.wait_for(2)
            answered_at_start = len(pusher.answered)
            for _ in range(2):
                run_guide_block("backup", STORE=str(store), BACKUP=str(backup))
            answered_while_backing_up = len(pusher.answered) - answered_at_start
        finally:
            pusher.stop()
    assert not pusher.failures, pusher.failures[0]
    assert answered_while_backing_up > 0, "no push was answered while the backup ran"
    restore = run_guide_block("restore", STORE=str(restored), BACKUP=str(backup))
    return {"before": before, "during": pusher.answered, "restored": restored, "session": session,
            "restore_output": restore.stdout}


def test_the_restored_store_passes_registry_fsck_and_git_fsck(backed_up):
    restored = backed_up["restored"]
    assert "no problems" in backed_up["restore_output"]
    fsck = subprocess.run([REGISTRY, "fsck", "--store", str(restored)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    git_fsck = subprocess.run(["git", "--git-dir", str(restored / "meta.git"), "fsck", "--strict", "--no-progress"],
                              capture_output=True, text=True)
    assert git_fsck.returncode == 0, git_fsck.stdout + git_fsck.stderr


def test_the_restored_store_keeps_its_keys_so_its_history_verifies(backed_up):
    audit = subprocess.run([REGISTRY, "audit", "--verify", "--store", str(backed_up["restored"])],
                           capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "all signed by a trusted node key" in audit.stdout


def test_a_server_on_the_restored_store_serves_every_tag_answered_before_the_backup(backed_up):
    """With the token the original server issued: the restored keys verify it."""
    with RunningRegistry(backed_up["restored"]) as server:
        client = Client(server.url, backed_up["session"])
        for tag, expected in backed_up["before"].items():
            answer = client.get(f"/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert answer.status_code == 200, (tag, answer.text)
            assert answer.headers["Docker-Content-Digest"] == expected == digest(answer.content)
            manifest = answer.json()
            for blob in [manifest["config"], *manifest["layers"]]:
                pulled = client.get(f"/v2/{REPOSITORY}/blobs/{blob['digest']}")
                assert pulled.status_code == 200 and digest(pulled.content) == blob["digest"], (tag, blob)

        during = backed_up["during"]
        listed = set(client.get(f"/v2/{REPOSITORY}/tags/list", params={"n": 10000}).json()["tags"])
        assert set(backed_up["before"]) <= listed <= set(backed_up["before"]) | set(during)
        for tag in listed & set(during):
            answer = client.head(f"/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert answer.headers.get("Docker-Content-Digest") == during[tag], tag
