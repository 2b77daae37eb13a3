"""The two servers the comparison starts, and the memory of their process trees.

`OurRegistry` is `registry serve` (gunicorn, the production server, its default workers and
threads), with the default config (auth on, the store seeded from sample_store/ when new) or an
open config (`auth: {enabled: false}`, store created `--empty`). `Distribution` is Debian's
`docker-registry` (CNCF Distribution 2.8): filesystem storage in a directory of ours, delete
enabled, no auth, log level warn, access log off, the blob-descriptor cache Debian's shipped
config turns on. Both listen on 127.0.0.1 at a free port; nothing else is ever addressed.

`MemorySampler` sums VmRSS (and PSS, which does not count the pages a forked worker shares with
its master twice) over a server's whole process tree every 50 ms, and keeps the peak per section.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
REGISTRY = str(VENV_BIN / "registry")
DISTRIBUTION = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def answers(port: int, timeout: float = 1.0) -> int | None:
    """The status of GET /v2/, or None when nothing answers yet."""
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        conn.request("GET", "/v2/")
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


class Server:
    """A server process on 127.0.0.1:<port>; `startup` is the seconds from spawn to /v2/ answering."""

    kind = "server"
    label = "server"

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.startup: float | None = None
        self.sampler: MemorySampler | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 120) -> "Server":
        with open(self.log_path, "ab") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            env=self.env(), cwd=self.cwd())
        self.sampler = MemorySampler(self.process.pid)
        self.sampler.start()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                self.sampler.stop()
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}:\n{self.log_tail()}")
            if answers(self.port, timeout=2) in (200, 401):
                self.startup = time.perf_counter() - started
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.label} did not answer GET /v2/ within {timeout}s:\n{self.log_tail()}")

    def cwd(self) -> str | None:
        return None

    def env(self) -> dict:
        env = dict(os.environ)
        for key in ("NO_PROXY", "no_proxy"):
            env[key] = ",".join(filter(None, [env.get(key, ""), HOST]))
        return env

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.sampler is not None:
            self.sampler.stop()

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class OurRegistry(Server):
    """`registry serve`; with `source` (see export_source), the code of that tree instead of the
    installed one, for profiles and figures before and after a change."""

    kind = "ours"

    def __init__(self, store: Path, log_path: Path, auth: bool, config_dir: Path, source: Path | None = None,
                 durable: bool = False, meta_writer: str = "packs"):
        super().__init__(log_path)
        self.store = Path(store)
        self.auth = auth
        self.source = source
        self.label = (("ours (auth on)" if auth else "ours (open)") + (", durable" if durable else "")
                      + (f", {meta_writer} writer" if meta_writer != "packs" else ""))
        self.config = None
        storage = ("  durable: true\n" if durable else "") + (
            f"  metaWriter: {meta_writer}\n" if meta_writer != "packs" else "")
        if not auth or storage:  # else the default config, as deployed
            self.config = Path(config_dir) / (f"registry-{'auth' if auth else 'open'}{'-durable' if durable else ''}"
                                              f"-{meta_writer}.yaml")
            self.config.write_text(("" if auth else "auth:\n  enabled: false\n")
                                   + (f"storage:\n{storage}" if storage else ""))

    def argv(self) -> list[str]:
        command = [sys.executable, "-m", "registry_core.cli"] if self.source else [REGISTRY]
        argv = command + ["serve", "--store", str(self.store), "--host", HOST, "--port", str(self.port)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
            if not self.auth and not (self.store / "meta.git").exists():
                argv.append("--empty")  # an open registry needs no demo accounts
        return argv

    def env(self) -> dict:
        env = super().env()
        env.pop("REGISTRY_CONFIG", None)  # the default config, unless we pass --config
        env.pop("REGISTRY_PLUGINS_DIR", None)
        if self.source:
            env["PYTHONPATH"] = str(self.source)
        return env

    def cwd(self) -> str | None:
        # `python -m` puts the working directory first on sys.path: run in the exported tree, or the
        # checkout this script lives in would be imported instead
        return str(self.source) if self.source else None

    def workers(self) -> list[int]:
        return [pid for pid in self.pids() if pid != self.process.pid]


class Distribution(Server):
    kind = "reference"
    label = "Distribution 2.8"

    def __init__(self, root: Path, log_path: Path, config_dir: Path):
        super().__init__(log_path)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = Path(config_dir) / f"distribution-{self.port}.yml"
        self.config.write_text(distribution_config(self.root, self.port))

    def argv(self) -> list[str]:
        return [DISTRIBUTION, "serve", str(self.config)]


def export_source(rev: str, dest: Path, repository: Path) -> Path:
    """The tree of commit `rev` in `dest`, importable with PYTHONPATH=dest: `git archive`, plus the
    package-dir mapping of pyproject.toml (schemas/, plugins/, sample_store/ inside the package)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=repository, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for inside, outside in (("schemas", "schemas"), ("builtin_plugins", "plugins"), ("sample_store", "sample_store")):
        link = dest / "registry_core" / inside
        if not link.exists() and (dest / outside).exists():
            link.symlink_to(Path("..") / outside)
    return dest


def distribution_config(root: Path | None, port: int, storage: str | None = None) -> str:
    """Distribution 2.8's config.yml: its filesystem driver under `root`, or `storage` (the
    driver's lines, indented under `storage:`)."""
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: warn\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        + (storage or f"  filesystem:\n    rootdirectory: {root}\n") +
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: {HOST}:{port}\n"
        "  secret: registry-core-bench\n"
        "  headers:\n"
        "    X-Content-Type-Options: [nosniff]\n"
    )


def distribution_version() -> str:
    try:
        return subprocess.run([DISTRIBUTION, "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except OSError:
        return "docker-registry not installed"


# --- memory ---------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and its descendants: the children of every thread (the webhooks' delivery process
    is started by a thread of a worker, and listed under that thread only)."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{pid}/task/{thread}/children") as f:
                    queue.extend(int(child) for child in f.read().split())
            except OSError:
                pass
    return pids


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(root: int) -> tuple[int, int]:
    """(sum of VmRSS, sum of Pss) in bytes over the process tree under `root`."""
    rss = pss = 0
    for pid in process_tree(root):
        rss += _kib(f"/proc/{pid}/status", "VmRSS:")
        pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
    return rss * 1024, pss * 1024


class MemorySampler:
    """Samples a process tree every `interval` seconds; `section(name)` records that span's peak."""

    def __init__(self, root: int, interval: float = 0.05):
        self.root = root
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.sections: dict[str, tuple[int, int]] = {}
        self._open: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-sampler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def sample(self) -> None:
        rss, pss = tree_memory(self.root)
        if rss == 0:
            return
        with self._lock:
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            for peak in self._open.values():
                peak[0] = max(peak[0], rss)
                peak[1] = max(peak[1], pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    @contextlib.contextmanager
    def section(self, name: str):
        with self._lock:
            self._open[name] = [0, 0]
        self.sample()
        try:
            yield
        finally:
            self.sample()
            with self._lock:
                rss, pss = self._open.pop(name)
                old = self.sections.get(name, (0, 0))
                self.sections[name] = (max(old[0], rss), max(old[1], pss))


# --- the rest of the machine ---------------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, reaped: bool) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return used / os.sysconf("SC_CLK_TCK")


def our_cpu_seconds() -> float:
    """CPU seconds used by this process, everything it started (servers, wrk, curl), and what those
    reaped: exited children are counted in their parent's cutime/cstime."""
    return sum(_cpu_seconds(pid, reaped=True) for pid in process_tree(os.getpid()))


class ForeignLoad:
    """The share of the machine's CPU used by processes that are not ours, between start and stop."""

    def __init__(self):
        self.started = time.perf_counter()
        self.busy = _busy_seconds()
        self.ours = our_cpu_seconds()

    def share(self) -> float:
        elapsed = time.perf_counter() - self.started
        foreign = (_busy_seconds() - self.busy) - (our_cpu_seconds() - self.ours)
        return max(foreign, 0.0) / (elapsed * (os.cpu_count() or 1)) if elapsed > 0 else 0.0


def wait_for_quiet(limit: float = 0.10, patience: float = 90, log=print) -> float:
    """Wait (at most `patience` seconds) until other processes use under `limit` of the machine's
    CPU over one second; return the last share seen. The machine may be shared (other people's test
    runs), and a benchmark measured next to them measures them too."""
    deadline = time.perf_counter() + patience
    warned = False
    while True:
        probe = ForeignLoad()
        time.sleep(1.0)
        share = probe.share()
        if share < limit or time.perf_counter() > deadline:
            if share >= limit:
                log(f"  other processes still use {share:.0%} of the CPU; measuring anyway")
            return share
        if not warned:
            log(f"  other processes use {share:.0%} of the CPU: waiting for them (up to {patience:.0f} s)")
            warned = True


# --- the disk --------------------------------------------------------------------------------------


def _disk_activity() -> tuple[int, int]:
    """(sectors written, sectors discarded) by every whole disk, from /proc/diskstats."""
    written = discarded = 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            name = fields[2]
            if name.startswith(("loop", "ram", "dm-")) or name[-1].isdigit() and not name.startswith("nvme"):
                continue  # partitions are counted in their disk
            written += int(fields[9])
            discarded += int(fields[16]) if len(fields) > 16 else 0
    return written, discarded


def wait_for_quiet_machine(patience: float, log=print) -> None:
    """Wait until the disk is idle and other processes use under 10 % of the CPU (each at most
    `patience` seconds), as every bench does before a measurement."""
    wait_for_quiet_disk(patience=patience, log=log)
    wait_for_quiet(limit=0.10, patience=patience, log=log)


def wait_for_quiet_disk(patience: float = 60, log=print) -> None:
    """Wait (at most `patience` seconds) until the disks neither write nor discard for a second.

    Why: deleting a store (thousands of files) makes ext4 with `discard` send the freed blocks to
    the virtual disk at its next journal commit, seconds later; measured here, file creations and
    renames then wait behind them, and a registry that commits to git (eight files a tag push)
    ran at a fifth of its rate for the next ten seconds. Both servers get the same quiet disk."""
    os.sync()
    deadline = time.perf_counter() + patience
    before = _disk_activity()
    waited = False
    while True:
        time.sleep(1.0)
        now = _disk_activity()
        if now == before or time.perf_counter() > deadline:
            if now != before:
                log("  the disk is still busy; measuring anyway")
            return
        if not waited:
            log(f"  the disk is busy (write-back, discards): waiting (up to {patience:.0f} s)")
            waited = True
        before = now
