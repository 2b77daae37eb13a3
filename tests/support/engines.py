"""Private Docker and podman engines for registry interoperability tests.

The helpers here let a test push images to, and pull images from, a registry
listening on ``http://127.0.0.1:<port>`` with the real clients people use:

* :func:`docker_engine` starts a throw-away ``dockerd`` (with its own
  ``containerd``) whose every file lives in a temporary directory.  It never
  uses the system service, ``/var/lib/docker`` or ``/var/run/docker.sock``.
* :func:`podman_engine` points podman at temporary storage and temporary
  configuration files.  Podman has no daemon, so nothing is started.
* :func:`make_docker_archive` and :func:`make_oci_layout` build tiny images
  with nothing but the standard library, because tests have no network and
  cannot ``docker pull`` a base image from anywhere.
* :func:`distribution_registry` runs the reference registry (CNCF
  Distribution, Debian package ``docker-registry``); it is useful to check
  the helpers themselves and to compare our registry's behaviour with it.

Only ``pull``, ``push``, ``tag``, ``load``, ``rmi`` and ``image inspect`` are
meant to be used: no container is ever run, so no networking, cgroup or
overlay set-up is needed.  Both engines need root (dockerd always does;
rootless podman would need ``uidmap`` and a user namespace set-up that these
helpers do not attempt).

Typical use::

    def test_docker_push_pull(tmp_path, registry_addr):
        archive = make_docker_archive(tmp_path / "img.tar", "test/img:1")
        with docker_engine(tmp_path / "docker") as docker:
            docker.run("load", "-i", str(archive))
            docker.run("tag", "test/img:1", f"{registry_addr}/test/img:1")
            docker.run("push", f"{registry_addr}/test/img:1")

Stdlib only; every external program is called through :mod:`subprocess`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Debian packages these helpers need.  ``docker.io`` brings ``dockerd``, the
#: ``docker`` client, ``containerd``, ``runc`` and ``tini``; ``podman`` brings
#: ``conmon``, ``netavark`` and ``containers-common``; ``skopeo`` is used by
#: :func:`push_oci_layout` to upload a multi-platform index.  ``uidmap`` and
#: ``fuse-overlayfs`` are NOT needed: we run as root with the ``vfs`` driver.
#: Installing ``docker.io`` in a container without systemd does not start the
#: system daemon (``policy-rc.d`` refuses), which is what we want.
APT_PACKAGES: tuple[str, ...] = ("docker.io", "podman", "skopeo")

#: The reference registry used by :func:`distribution_registry`.
REFERENCE_REGISTRY_APT_PACKAGES: tuple[str, ...] = ("docker-registry",)

#: Directories that a daemon may put on PATH lookups: ``dockerd`` execs
#: ``containerd``, ``runc`` and ``docker-init`` found through PATH, and they
#: live in /usr/sbin and /usr/bin, which a CI environment may not list.
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# A Unix socket path must fit in 108 bytes; containerd's socket lives several
# levels below dockerd's --exec-root, so the exec root goes in a short
# directory under /tmp rather than under pytest's (long) tmp_path.
_SHORT_TMP = "/tmp"


class EngineUnavailable(RuntimeError):
    """The engine's programs are not installed, or we are not root."""


class EngineCommandError(subprocess.CalledProcessError):
    """A failed engine command; ``str()`` shows stdout, stderr and the tail
    of the daemon log, so a failing test explains itself."""

    def __init__(self, returncode, cmd, output, stderr, log_tail: str = ""):
        super().__init__(returncode, cmd, output, stderr)
        self.log_tail = log_tail

    def __str__(self) -> str:
        text = (
            f"{' '.join(map(str, self.cmd))} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )
        if self.log_tail:
            text += f"\n--- daemon log tail ---\n{self.log_tail}"
        return text


@dataclass
class Engine:
    """A container-engine command line bound to private state.

    ``run("pull", ref)`` runs ``<argv...> pull ref`` with ``env`` and returns
    the :class:`subprocess.CompletedProcess` (text mode, output captured).
    With ``check=True`` (the default) a non-zero exit raises
    :class:`EngineCommandError` (a ``CalledProcessError``) whose message
    includes stdout, stderr and the daemon log tail.
    """

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    state_dir: Path
    log_path: Path | None = None
    _per_command_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        """The full argv for ``args`` (inserting per-subcommand flags)."""
        args = tuple(str(a) for a in args)
        extra = self._per_command_args.get(args[0], ()) if args else ()
        return [*self.argv, *args[:1], *extra, *args[1:]]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*args)
        proc = subprocess.run(
            cmd,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise EngineCommandError(
                proc.returncode, cmd, proc.stdout, proc.stderr, log_tail=self.log_tail()
            )
        return proc

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines) if self.log_path else ""


# --------------------------------------------------------------------------
# small utilities


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def _tail(path: Path | None, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _engine_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for engine processes.

    PATH gains the system directories (dockerd looks up containerd/runc
    there).  NO_PROXY keeps a proxy configured on the host from intercepting
    traffic to the registry under test on loopback.
    """
    env = dict(os.environ)
    path = env.get("PATH", "")
    env["PATH"] = f"{path}:{_SYSTEM_PATH}" if path else _SYSTEM_PATH
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key, ""), "127.0.0.1", "localhost", "::1"]))
    env.update(extra or {})
    return env


def _which(name: str, *preferred: str) -> str | None:
    for candidate in preferred:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name, path=_engine_env()["PATH"])


def _our_mounts(*roots: Path) -> list[str]:
    """Mount points at or below any of ``roots`` (deepest first)."""
    prefixes = [str(Path(r).resolve()) for r in roots]
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4].replace("\\040", " ")
                if any(mnt == p or mnt.startswith(p + "/") for p in prefixes):
                    found.append(mnt)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def _unmount_and_remove(*roots: Path) -> None:
    """Undo mounts a killed daemon left behind, then delete ``roots``.

    dockerd bind-mounts its --data-root onto itself (a private mount) and
    unmounts it on a clean shutdown; after a SIGKILL the mount stays and
    ``rmtree`` would fail with EBUSY.
    """
    for mnt in _our_mounts(*roots):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------
# Docker


def docker_missing() -> str | None:
    """Why :func:`docker_engine` cannot work here, or ``None`` if it can.

    Meant for ``pytest.mark.skipif``/``pytest.skip``.
    """
    if os.geteuid() != 0:
        return "dockerd needs root"
    for prog in ("dockerd", "containerd", "runc"):
        if not _which(prog):
            return f"{prog} not installed (apt-get install -y {' '.join(APT_PACKAGES)})"
    if not _docker_client():
        return "docker client not installed"
    return None


def _docker_client() -> str | None:
    # Prefer the client packaged with dockerd (same API version); any other
    # `docker` on PATH (e.g. a newer static client) negotiates down and works.
    return _which("docker", "/usr/bin/docker")


def dockerd_args(
    run_dir: Path,
    data_root: Path,
    *,
    insecure_registries: Iterable[str] = (),
) -> list[str]:
    """The dockerd command line, one reason per flag.

    --config-file      an empty daemon.json of our own: a host's
                       /etc/docker/daemon.json repeating one of these flags
                       would make dockerd refuse to start.
    --data-root        images and layers: private, never /var/lib/docker.
    --exec-root        sockets, containerd state and pid files: private,
                       never /var/run/docker.  dockerd starts its own
                       containerd there (exec-root/containerd/containerd.sock)
                       because no system containerd socket is given.
    -H unix://...      private API socket, never /var/run/docker.sock.
    --pidfile          default is /var/run/docker.pid, shared with the system
                       daemon and with other private daemons.
    --storage-driver   vfs copies layers instead of mounting overlays: works
                       on any filesystem with no kernel module; we never run
                       containers, so its slowness does not matter.
    --iptables=false   do not touch the host's firewall rules.
    --ip-masq=false    (same; implied by --iptables=false, kept explicit).
    --bridge=none      do not create the docker0 bridge on the host; no
                       container networking is needed for push/pull.
    --userland-proxy=false  no docker-proxy processes (nothing is published).
    --insecure-registry  optional; 127.0.0.0/8 is already insecure (plain
                       HTTP allowed) by default, so only other hosts need it.

    Not settable in dockerd 20.10: its identity key is always written to
    /etc/docker/key.json, and it creates an empty /var/run/docker/plugins
    directory.  Both are harmless and shared with nobody's data.
    """
    # fmt: off
    args = [
        _which("dockerd") or "dockerd",
        "--config-file", str(run_dir / "daemon.json"),
        "--data-root", str(data_root),
        "--exec-root", str(run_dir / "exec"),
        "-H", f"unix://{run_dir / 'docker.sock'}",
        "--pidfile", str(run_dir / "docker.pid"),
        "--storage-driver", "vfs",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ]
    # fmt: on
    for reg in insecure_registries:
        args += ["--insecure-registry", reg]
    return args


@contextlib.contextmanager
def docker_engine(
    tmp_path: os.PathLike[str] | str,
    *,
    insecure_registries: Iterable[str] = (),
    start_timeout: float = 60.0,
    stop_timeout: float = 20.0,
) -> Iterator[Engine]:
    """Start a private dockerd; yield an :class:`Engine` for its client.

    ``tmp_path`` holds the image store (``data``), the client's config dir
    (``client-config``: ``docker login`` credentials stay private) and
    ``dockerd.log``.  Sockets go in a short directory under /tmp (Unix socket
    paths are limited to 108 bytes).  On exit dockerd gets SIGTERM (it stops
    its containerd too; about 1 s here), then SIGKILL to its process group
    after ``stop_timeout``; leftover mounts are undone and the image store
    and sockets are deleted.  The log is kept.

    Raises :class:`EngineUnavailable` if the programs are missing or we are
    not root, and :class:`RuntimeError` with the tail of the daemon log if it
    does not answer ``docker info`` within ``start_timeout`` seconds.
    """
    reason = docker_missing()
    if reason:
        raise EngineUnavailable(reason)
    base = Path(tmp_path)
    base.mkdir(parents=True, exist_ok=True)
    data_root = base / "data"
    client_config = base / "client-config"
    client_config.mkdir(exist_ok=True)
    log_path = base / "dockerd.log"
    run_dir = Path(tempfile.mkdtemp(prefix="dkr-", dir=_SHORT_TMP))
    (run_dir / "daemon.json").write_text("{}\n")
    sock = run_dir / "docker.sock"

    env = _engine_env(
        {
            "DOCKER_HOST": f"unix://{sock}",
            "DOCKER_CONFIG": str(client_config),
            "DOCKER_CLI_HINTS": "false",
        }
    )
    engine = Engine(
        name="docker",
        argv=(_docker_client() or "docker",),
        env=env,
        state_dir=base,
        log_path=log_path,
    )
    log = open(log_path, "ab")
    daemon = subprocess.Popen(
        dockerd_args(run_dir, data_root, insecure_registries=insecure_registries),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_engine_env(),
        # Own process group, so containerd (its child) can be killed with it
        # if a graceful stop fails, without touching anything else.
        start_new_session=True,
    )
    try:
        _wait_for_docker(engine, daemon, start_timeout)
        yield engine
    finally:
        _stop_daemon(daemon, stop_timeout)
        containerd_pid = run_dir / "exec" / "containerd" / "containerd.pid"
        _kill_leftover(containerd_pid, must_mention=str(run_dir))
        log.close()
        _unmount_and_remove(data_root, run_dir)


def _wait_for_docker(engine: Engine, daemon: subprocess.Popen, timeout: float) -> None:
    started = time.monotonic()
    while True:
        if daemon.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with status {daemon.returncode} while starting; "
                f"log tail ({engine.log_path}):\n{engine.log_tail()}"
            )
        try:
            probe = engine.run("info", "--format", "{{.ServerVersion}}", check=False, timeout=10)
            if probe.returncode == 0 and probe.stdout.strip():
                return
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(
                f"dockerd did not answer `docker info` within {timeout}s; "
                f"log tail ({engine.log_path}):\n{engine.log_tail()}"
            )
        time.sleep(0.1)


def _stop_daemon(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created for it
    proc.wait(10)


def _kill_leftover(pid_file: Path, must_mention: str) -> None:
    """SIGKILL the process in ``pid_file`` if its command line mentions
    ``must_mention`` (our private directory), so a recycled pid is safe."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if must_mention in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# podman


def podman_missing() -> str | None:
    """Why :func:`podman_engine` cannot work here, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "these podman helpers run podman as root"
    if not _which("podman"):
        return f"podman not installed (apt-get install -y {' '.join(APT_PACKAGES)})"
    return None


#: Subcommands that accept ``--signature-policy`` (podman 4.3 has no global
#: flag for it; other subcommands reject it).
_PODMAN_POLICY_SUBCOMMANDS = ("pull", "push", "load", "save")


@contextlib.contextmanager
def podman_engine(
    tmp_path: os.PathLike[str] | str,
    *,
    insecure_registries: Iterable[str] = (),
) -> Iterator[Engine]:
    """Yield an :class:`Engine` running podman on private storage and config.

    Global flags (all state under ``tmp_path``):

    --root / --runroot   image store and its run-time locks, never
                         /var/lib/containers or /run/containers/storage.
                         podman 4.3 rejects a runroot over 50 characters,
                         so runroot and tmpdir live in a short /tmp/pdm-*.
    --tmpdir             libpod's own run-time files (default /run/libpod).
    --storage-driver vfs no overlay mounts, no fuse-overlayfs needed.

    Environment:

    CONTAINERS_CONF      a containers.conf of our own: cgroup_manager =
                         cgroupfs (no systemd here), events_logger = file
                         (no journald) with the log under tmp_path, and
                         network_config_dir under tmp_path.
    CONTAINERS_REGISTRIES_CONF  a registries.conf with no search registries
                         (a short name never goes to the network) and the
                         ``insecure_registries`` marked insecure.  Plain
                         HTTP also works per command with --tls-verify=false.
    --signature-policy   (added to pull/push/load/save) an accept-anything
                         policy.json, so a host policy cannot block tests.

    XDG_RUNTIME_DIR is not needed as root.  Nothing needs stopping; on exit
    the state directories are deleted (containers.conf, registries.conf and
    events.log are kept).
    """
    reason = podman_missing()
    if reason:
        raise EngineUnavailable(reason)
    base = Path(tmp_path)
    base.mkdir(parents=True, exist_ok=True)
    # podman 4.3 refuses a --runroot longer than 50 characters ("the
    # specified runroot is longer than 50 characters"), which pytest's
    # tmp_path usually is: run-time dirs go in a short directory under /tmp.
    short = Path(tempfile.mkdtemp(prefix="pdm-", dir=_SHORT_TMP))
    dirs = {
        "root": base / "root",
        "net": base / "net",
        "runroot": short / "runroot",
        "tmp": short / "tmp",
    }
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    conf = base / "containers.conf"
    conf.write_text(
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{base / "events.log"}"\n'
        "[network]\n"
        f'network_config_dir = "{dirs["net"]}"\n'
    )
    registries = base / "registries.conf"
    lines = ["unqualified-search-registries = []", 'short-name-mode = "permissive"']
    for reg in insecure_registries:
        lines += ["", "[[registry]]", f'location = "{reg}"', "insecure = true"]
    registries.write_text("\n".join(lines) + "\n")
    # Credentials from `podman login` stay here, not in /run/containers/0.
    # podman refuses to push if REGISTRY_AUTH_FILE names a missing file.
    auth = base / "auth.json"
    if not auth.exists():
        auth.write_text('{"auths": {}}\n')
    policy = base / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    # fmt: off
    engine = Engine(
        name="podman",
        argv=(
            _which("podman") or "podman",
            "--root", str(dirs["root"]),
            "--runroot", str(dirs["runroot"]),
            "--tmpdir", str(dirs["tmp"]),
            "--storage-driver", "vfs",
        ),
        env=_engine_env(
            {
                "CONTAINERS_CONF": str(conf),
                "CONTAINERS_REGISTRIES_CONF": str(registries),
                "REGISTRY_AUTH_FILE": str(auth),
            }
        ),
        state_dir=base,
        _per_command_args={
            c: ("--signature-policy", str(policy)) for c in _PODMAN_POLICY_SUBCOMMANDS
        },
    )
    # fmt: on
    try:
        yield engine
    finally:
        _unmount_and_remove(dirs["root"], dirs["net"], short)


# --------------------------------------------------------------------------
# test images without a network


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def reproducible_tar(entries: Mapping[str, bytes]) -> bytes:
    """A reproducible tar (fixed mtime/owner) of regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image_config(arch: str, os_name: str, diff_ids: Sequence[str]) -> bytes:
    return json.dumps(
        {
            "architecture": arch,
            "os": os_name,
            "created": "1970-01-01T00:00:00Z",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests.support.engines"}],
        },
        sort_keys=True,
    ).encode()


def make_docker_archive(
    path: os.PathLike[str] | str,
    repo_tag: str = "test/img:1",
    *,
    files: Mapping[str, bytes] | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
) -> Path:
    """Write a one-layer image as a ``docker save`` tarball at ``path``.

    ``docker load -i`` and ``podman load -i`` both accept it.  The layer
    holds ``files`` (default: ``hello.txt``); no base image and no network
    are needed.  The image id (``sha256:`` of the config) is deterministic
    for the same inputs.  Returns ``path``.
    """
    files = files or {"hello.txt": b"hello from tests.support.engines\n"}
    layer = reproducible_tar(files)
    config = _image_config(architecture, os_name, [sha256_digest(layer)])
    config_name = sha256_digest(config).split(":", 1)[1] + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [repo_tag], "Layers": ["layer0/layer.tar"]}]
    ).encode()
    out = Path(path)
    out.write_bytes(
        reproducible_tar({config_name: config, "layer0/layer.tar": layer, "manifest.json": manifest})
    )
    return out


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def make_oci_layout(
    path: os.PathLike[str] | str,
    tag: str = "1",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
) -> str:
    """Write an OCI image layout whose ``tag`` is a multi-platform index.

    Each platform (``os/arch`` or ``os/arch/variant``) gets its own config
    and a one-file gzip layer (``platform.txt`` naming it), so every
    platform has distinct blobs.  Returns the index digest.
    """
    root = Path(path)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict:
        digest = sha256_digest(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    manifests = []
    for plat in platforms:
        os_name, arch, *variant = plat.split("/")
        layer = reproducible_tar({"platform.txt": plat.encode() + b"\n"})
        layer_desc = put(gzip.compress(layer, mtime=0))
        config_desc = put(_image_config(arch, os_name, [sha256_digest(layer)]))
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config_desc},
                "layers": [{"mediaType": OCI_LAYER_GZIP, **layer_desc}],
            }
        ).encode()
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant[0]
        manifests.append({"mediaType": OCI_MANIFEST, **put(manifest), "platform": platform})
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    ).encode()
    index_desc = put(index)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_INDEX,
                        **index_desc,
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return index_desc["digest"]


def push_oci_layout(
    layout: os.PathLike[str] | str, tag: str, dest: str, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Copy ``layout:tag`` with all its platforms to ``dest`` (``host:port/repo:tag``)
    over plain HTTP with ``skopeo copy --all``.  Neither Docker 20.10 nor a
    plain ``podman push`` can push an index from a layout; skopeo can.

    Note: skopeo (as root) keeps a blob-info cache in /var/lib/containers/cache.
    """
    skopeo = _which("skopeo")
    if not skopeo:
        raise EngineUnavailable("skopeo not installed")
    # fmt: off
    cmd = [
        skopeo, "copy", "--all", "--dest-tls-verify=false",
        f"oci:{layout}:{tag}", f"docker://{dest}",
    ]
    # fmt: on
    return subprocess.run(
        cmd, env=_engine_env(), capture_output=True, text=True, timeout=timeout, check=True
    )


# --------------------------------------------------------------------------
# reference registry (CNCF Distribution), for checking the helpers


@contextlib.contextmanager
def distribution_registry(
    tmp_path: os.PathLike[str] | str,
    *,
    start_timeout: float = 20.0,
    auth: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[str]:
    """Run ``docker-registry`` (Distribution 2.8) on 127.0.0.1:<free port>
    with filesystem storage under ``tmp_path``; yield ``"127.0.0.1:<port>"``.

    ``auth`` is the registry's ``auth:`` section, one access controller and
    its options, e.g. ``{"token": {"realm": ..., "service": ..., "issuer":
    ..., "rootcertbundle": ...}}``; without it the registry is open.
    """
    binary = _which("docker-registry", "/usr/bin/docker-registry")
    if not binary:
        pkgs = " ".join(REFERENCE_REGISTRY_APT_PACKAGES)
        raise EngineUnavailable(f"docker-registry not installed (apt-get install -y {pkgs})")
    base = Path(tmp_path)
    (base / "storage").mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = base / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {base / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: tests-support-engines\n"
        + _auth_section(auth)
    )
    log_path = base / "registry.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port("127.0.0.1", port, start_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; registry log:\n{_tail(log_path)}") from None
        yield f"127.0.0.1:{port}"
    finally:
        _stop_daemon(proc, 10)


def _auth_section(auth: Mapping[str, Mapping[str, str]] | None) -> str:
    if not auth:
        return ""
    lines = ["auth:"]
    for controller, options in auth.items():
        lines.append(f"  {controller}:")
        lines += [f"    {key}: {json.dumps(str(value))}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# self-check: python -m tests.support.engines  (or python path/to/engines.py)


def _self_check() -> None:  # pragma: no cover - manual tool
    """Push/pull round trips with both engines against the reference registry."""
    with tempfile.TemporaryDirectory(prefix="engines-check-") as tmp:
        tmp_path = Path(tmp)
        archive = make_docker_archive(tmp_path / "img.tar", "test/img:1")
        make_oci_layout(tmp_path / "oci", "1")
        with distribution_registry(tmp_path / "registry") as reg:
            push_oci_layout(tmp_path / "oci", "1", f"{reg}/test/multi:1")
            if docker_missing():
                print("docker: skipped:", docker_missing())
            else:
                t0 = time.monotonic()
                with docker_engine(tmp_path / "docker") as docker:
                    print(f"docker: dockerd up in {time.monotonic() - t0:.2f}s")
                    _round_trip(docker, archive, reg)
                    t0 = time.monotonic()
                print(f"docker: stopped and cleaned in {time.monotonic() - t0:.2f}s")
            if podman_missing():
                print("podman: skipped:", podman_missing())
            else:
                with podman_engine(tmp_path / "podman", insecure_registries=[reg]) as podman:
                    _round_trip(podman, archive, reg)


def _round_trip(engine: Engine, archive: Path, reg: str) -> None:  # pragma: no cover
    ref = f"{reg}/test/{engine.name}:1"
    tls = ["--tls-verify=false"] if engine.name == "podman" else []
    engine.run("load", "-i", str(archive))
    engine.run("tag", "test/img:1", ref)
    engine.run("push", *tls, ref)
    engine.run("rmi", "-f", ref, "test/img:1")
    engine.run("pull", *tls, ref)
    multi = f"{reg}/test/multi:1"
    engine.run("pull", *tls, "--platform", "linux/arm64", multi)
    arch = engine.run("image", "inspect", "--format", "{{.Architecture}}", multi).stdout.strip()
    assert arch == "arm64", arch
    print(f"{engine.name}: push, pull and --platform linux/arm64 pull OK")


if __name__ == "__main__":  # pragma: no cover
    _self_check()
