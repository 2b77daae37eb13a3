"""The README's quick start works as written: its blocks run in order, in one bash, against a
registry started the way `make run` starts one (the default configuration: accounts and access
control, a new store seeded from sample_store/), with the real skopeo and podman and the
project's own `registry` client; each block must succeed and print what it says it prints.

How README.md's blocks are read and run:

- A quick-start block is fenced as ```` ```sh quickstart ````, optionally followed by
  `needs=COMMAND` (run when COMMAND is installed, else only its syntax is checked, `bash -n`) or
  `syntax-only` (a block that needs what cannot run here, a dockerd or the oras CLI: `bash -n`).
- `127.0.0.1:5000`, the address of `make run`, is rewritten to the test server's address, and
  `. .venv/bin/activate` to the activate script of the venv running the tests.
- HOME is a folder of the test's own (the logins go to its ~/.docker/config.json), TMPDIR too (the
  scratch folder of `cd "$(mktemp -d)"`), and podman gets its storage and configuration from
  CONTAINERS_STORAGE_CONF and CONTAINERS_CONF: the blocks touch nothing of the machine's.
- A `# prints: TEXT` comment is checked against what its block printed (standard output and error
  together): TEXT must appear, runs of white space counting as one space and `…` standing for any
  text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import RunningRegistry

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAKE_RUN_ADDRESS = "127.0.0.1:5000"
ACTIVATE = ". .venv/bin/activate"
SCRIPT_TIMEOUT = 300  # seconds for all the blocks together (they take a few seconds here)

FENCE = re.compile(r"^```sh quickstart(?P<mode>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
MODE = re.compile(r"( needs=(?P<needs>[\w.-]+)| syntax-only)?\Z")
PRINTS = re.compile(r"#\s*prints:\s*(?P<text>.*?)[ \t]*$", re.M)
MARK = "@@quickstart-block {}@@"


@dataclass
class Block:
    number: int
    body: str
    needs: str | None  # a command that must be installed for the block to run
    syntax_only: bool

    @property
    def runs_here(self) -> bool:
        return not self.syntax_only and (self.needs is None or shutil.which(self.needs) is not None)

    def prints(self) -> list[str]:
        return [found["text"] for found in PRINTS.finditer(self.body)]


def quick_start_blocks(text: str) -> list[Block]:
    blocks = []
    for number, found in enumerate(FENCE.finditer(text), 1):
        mode = MODE.fullmatch(found["mode"])
        if mode is None:
            raise ValueError(f"quick-start block {number}: unknown marks {found['mode']!r} "
                             "(known: needs=COMMAND, syntax-only)")
        blocks.append(Block(number, found["body"], mode["needs"], found["mode"] == " syntax-only"))
    return blocks


def collapse(text: str) -> str:
    return " ".join(text.split())


def missing_prints(expected: list[str], output: str) -> list[str]:
    """The `# prints:` texts of `expected` that `output` does not show."""
    shown = collapse(output)
    missing = []
    for text in expected:
        pattern = r".*?".join(re.escape(collapse(part)) for part in text.split("…"))
        if not re.search(pattern, shown, re.S):
            missing.append(text)
    return missing


def as_run_here(body: str, address: str) -> str:
    """A block as the test runs it: against its own server, with its own venv."""
    activate = f". {Path(sys.prefix) / 'bin' / 'activate'}"
    return body.replace(MAKE_RUN_ADDRESS, address).replace(ACTIVATE, activate)


BLOCKS = quick_start_blocks(README.read_text())


def podman_configuration(base: Path, short: Path) -> dict[str, str]:
    """Environment variables giving podman storage and run-time folders of its own (vfs: no
    mounts; no systemd or journald needed). podman refuses a runroot over 50 characters, so the
    run-time folders are in `short`."""
    storage = base / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{base / "root"}"\nrunroot = "{short / "run"}"\n')
    containers = base / "containers.conf"
    containers.write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                          f'events_logfile_path = "{base / "events.log"}"\ntmp_dir = "{short / "tmp"}"\n'
                          f'[network]\nnetwork_config_dir = "{base / "net"}"\n')
    return {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(containers)}


@dataclass
class Run:
    outputs: dict[int, str]  # what each block that was reached printed
    failed: int | None  # the block that failed, if one did
    status: int
    server_log: str
    address: str  # the server's, for 127.0.0.1:5000


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> Run:
    """All the blocks that can run here, run in order in one bash (`set -e`) against a new store."""
    base = tmp_path_factory.mktemp("quickstart")
    for folder in ("home", "scratch", "podman"):
        (base / folder).mkdir()
    short = Path(tempfile.mkdtemp(prefix="qs-pdm-", dir="/tmp"))
    server = RunningRegistry(base / "store")
    try:
        runnable = [block for block in BLOCKS if block.runs_here]
        script = ["set -e -o pipefail"]
        for block in runnable:
            script += [f"printf '\\n%s\\n' '{MARK.format(block.number)}'", as_run_here(block.body, server.host)]
        script.append(f"printf '\\n%s\\n' '{MARK.format('end')}'")
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "VIRTUAL_ENV",
                                      "REGISTRY_CONFIG", "REGISTRY_PLUGINS_DIR")}
        environment.update(HOME=str(base / "home"), TMPDIR=str(base / "scratch"),
                           **podman_configuration(base / "podman", short))
        result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=environment,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=SCRIPT_TIMEOUT)
    finally:
        server.stop()
        shutil.rmtree(short, ignore_errors=True)
    parts = re.split(r"^@@quickstart-block (\w+)@@$", result.stdout, flags=re.M)
    outputs = {int(mark): text for mark, text in zip(parts[1::2], parts[2::2]) if mark != "end"}
    finished = "end" in parts[1::2]
    failed = None if finished and result.returncode == 0 else (max(outputs) if outputs else 0)
    return Run(outputs, failed, result.returncode, server.log(), server.host)


def test_the_readme_has_a_quick_start_that_logs_in_before_it_pushes():
    assert len(BLOCKS) >= 6
    text = "\n".join(block.body for block in BLOCKS if block.runs_here)
    assert text.index("registry login") < text.index("registry push")
    assert ACTIVATE in BLOCKS[0].body  # `registry` is reached before its first use


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: f"block{block.number}")
def test_every_quick_start_block_is_valid_bash(block):
    checked = subprocess.run(["bash", "-n"], input=block.body, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"README quick-start block {block.number}:\n{block.body}\n{checked.stderr}"


@pytest.mark.parametrize("block", [block for block in BLOCKS if block.runs_here],
                         ids=lambda block: f"block{block.number}")
def test_every_quick_start_block_runs_as_written_and_prints_what_it_says(quick_start, block):
    assert block.number in quick_start.outputs, (
        f"block {block.number} was not reached: block {quick_start.failed} failed\n"
        f"{quick_start.outputs.get(quick_start.failed, '')}")
    output = quick_start.outputs[block.number]
    assert quick_start.failed != block.number, (
        f"README quick-start block {block.number} failed (exit status {quick_start.status}):\n{block.body}\n"
        f"--- it printed ---\n{output}\n--- the server's log ---\n{quick_start.server_log[-3000:]}")
    missing = missing_prints([as_run_here(text, quick_start.address) for text in block.prints()], output)
    assert not missing, f"block {block.number} did not print {missing}:\n--- it printed ---\n{output}"


def test_a_block_that_does_not_print_what_it_says_is_caught():
    output = "Pulled 127.0.0.1:5000/library/hello:latest → oci:hello\n  digest     sha256:ab\n"
    assert missing_prints(["Pulled … → oci:hello", "digest sha256:…"], output) == []
    assert missing_prints(["Pushed … → oci:hello"], output) == ["Pushed … → oci:hello"]
    assert missing_prints(["oci:hello … Pulled"], output) == ["oci:hello … Pulled"]  # in that order


def test_unknown_marks_on_a_quick_start_block_are_refused():
    with pytest.raises(ValueError, match="unknown marks"):
        quick_start_blocks("```sh quickstart syntax_only\ntrue\n```\n")
    (block,) = quick_start_blocks("```sh quickstart needs=podman\npodman version   # prints: Version\n```\n")
    assert block.needs == "podman" and not block.syntax_only and block.prints() == ["Version"]
