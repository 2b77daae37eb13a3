"""skopeo (Debian's package) isolated from the machine: its own policy, registries.conf, auth file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SKOPEO = shutil.which("skopeo") or "skopeo"


class Skopeo:
    """`authfile=None` with `runtime_dir`: no --authfile, so skopeo uses its default,
    $XDG_RUNTIME_DIR/containers/auth.json, as podman does."""

    def __init__(self, home: Path, authfile: Path | None = None, runtime_dir: Path | None = None):
        home.mkdir(parents=True, exist_ok=True)
        self.policy = home / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_d = home / "registries.d"
        self.registries_d.mkdir(exist_ok=True)
        conf = home / "registries.conf"
        conf.write_text('unqualified-search-registries = []\nshort-name-mode = "permissive"\n')
        self.authfile = None if runtime_dir else authfile or home / "auth.json"
        if self.authfile and not self.authfile.exists():
            self.authfile.write_text('{"auths": {}}\n')
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
                    "CONTAINERS_REGISTRIES_CONF": str(conf), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        if runtime_dir:
            self.env["XDG_RUNTIME_DIR"] = str(runtime_dir)

    def run(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        tls = {"copy": ["--src-tls-verify=false", "--dest-tls-verify=false"]}.get(command, ["--tls-verify=false"])
        if command == "login":
            tls = ["--tls-verify=false"]
        authfile = ["--authfile", str(self.authfile)] if self.authfile else []
        argv = [SKOPEO, "--policy", str(self.policy), "--registries.d", str(self.registries_d), command,
                *authfile, *tls, *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120,
                                stdin=subprocess.DEVNULL if command != "login" else None)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def raw(self, reference: str) -> bytes:
        """The manifest as the registry serves it (`skopeo inspect --raw`)."""
        return self.run("inspect", "--raw", reference).stdout.encode()
