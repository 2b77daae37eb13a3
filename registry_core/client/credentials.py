"""Registry logins kept in a `~/.docker/config.json`-compatible file, shared with docker, podman and skopeo.

Reading looks where those tools write (containers-auth.json(5) order): `--authfile` or
$REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json (podman and skopeo login),
~/.config/containers/auth.json, then $DOCKER_CONFIG/config.json or ~/.docker/config.json (docker
login). Writing goes to `--authfile`/$REGISTRY_AUTH_FILE when given, else to docker's file, which
podman and skopeo also read, so one login serves all four tools.

An entry is `auths[<key>].auth = base64("user:password")`, keyed by the host (docker also writes
`https://host` and Docker Hub's `https://index.docker.io/v1/`); podman's `host/namespace` keys
are honoured, the longest match first. When the file names a credential helper for the host
(`credHelpers[host]` or `credsStore`), `docker-credential-<helper> get/store/erase` is used instead,
per docker's credential-helper protocol. The rest of the file (other keys, other hosts) is kept as
it was; the file is rewritten atomically with mode 0600.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from registry_core.client.errors import ClientError
from registry_core.client.references import DOCKER_HUB, DOCKER_HUB_AUTH_KEY

IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    source: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credential(username={self.username!r}, source={self.source!r})"


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def search_paths(authfile: str | None = None) -> list[Path]:
    explicit = authfile or os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return [Path(explicit)]
    paths = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    paths.append(Path(os.path.expanduser("~")) / ".config" / "containers" / "auth.json")
    paths.append(docker_config_path())
    return paths


def write_path(authfile: str | None = None) -> Path:
    explicit = authfile or os.environ.get("REGISTRY_AUTH_FILE")
    return Path(explicit) if explicit else docker_config_path()


def auth_keys(host: str) -> list[str]:
    """The keys under which docker-compatible tools may have stored `host`'s login."""
    if host == DOCKER_HUB:
        return [DOCKER_HUB_AUTH_KEY, "docker.io", "index.docker.io", "registry-1.docker.io",
                "https://index.docker.io/v1", "https://registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"http://{host}/v1/",
            f"https://{host}/v2/"]


def _storage_key(host: str) -> str:
    return DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB else host


class CredentialStore:
    def __init__(self, authfile: str | None = None):
        self.authfile = authfile

    # --- reading -----------------------------------------------------------------------------

    def get(self, host: str, repository: str | None = None) -> Credential | None:
        for path in search_paths(self.authfile):
            document = _load(path)
            if document is None:
                continue
            helper = _helper_for(document, host)
            if helper:
                credential = _helper_get(helper, _storage_key(host))
                if credential:
                    return credential
                continue
            credential = _from_auths(document.get("auths") or {}, host, repository, str(path))
            if credential:
                return credential
        return None

    # --- writing -----------------------------------------------------------------------------

    def store(self, host: str, credential: Credential) -> str:
        """Save a login; returns where it went (a file path or the helper's name)."""
        path = write_path(self.authfile)
        document = _load(path) or {}
        helper = _helper_for(document, host)
        if helper:
            _helper_run(helper, "store", json.dumps({"ServerURL": _storage_key(host),
                                                     "Username": credential.username,
                                                     "Secret": credential.password}))
            return f"docker-credential-{helper}"
        auths = document.setdefault("auths", {})
        for key in auth_keys(host):
            auths.pop(key, None)
        token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
        auths[_storage_key(host)] = {"auth": token}
        _save(path, document)
        return str(path)

    def erase(self, host: str) -> list[str]:
        """Remove `host`'s login from every file (and helper) where it is; returns where it was."""
        removed = []
        paths = search_paths(self.authfile)
        if not self.authfile and not os.environ.get("REGISTRY_AUTH_FILE"):
            paths = [write_path()] + [p for p in paths if p != write_path()]
        for path in paths:
            document = _load(path)
            if document is None:
                continue
            helper = _helper_for(document, host)
            if helper and _helper_get(helper, _storage_key(host)):
                _helper_run(helper, "erase", _storage_key(host))
                removed.append(f"docker-credential-{helper}")
            auths = document.get("auths") or {}
            keys = [key for key in auth_keys(host) if key in auths]
            keys += [key for key in auths if key.startswith(f"{host}/")]
            if keys:
                for key in keys:
                    del auths[key]
                _save(path, document)
                removed.append(str(path))
        return removed


def _load(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClientError(f"{path} is not valid JSON ({e}); fix or remove it", code="AUTHFILE_INVALID") from None
    if not isinstance(document, dict):
        raise ClientError(f"{path} does not hold a JSON object", code="AUTHFILE_INVALID")
    return document


def _save(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _from_auths(auths: dict, host: str, repository: str | None, source: str) -> Credential | None:
    candidates = []
    if repository:  # podman's per-namespace logins: host/ns/repo, host/ns — longest first
        parts = repository.split("/")
        candidates += [f"{host}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    candidates += auth_keys(host)
    for key in candidates:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"]).decode()
            except (ValueError, UnicodeDecodeError):
                raise ClientError(f"{source}: the login for {key} is not base64 of user:password",
                                  code="AUTHFILE_INVALID") from None
            username, _, password = decoded.partition(":")
            return Credential(username, password, source)
        if entry.get("username") and entry.get("password"):
            return Credential(entry["username"], entry["password"], source)
        if entry.get("identitytoken"):
            return Credential(IDENTITY_TOKEN_USER, entry["identitytoken"], source)
    return None


def _helper_for(document: dict, host: str) -> str | None:
    helpers = document.get("credHelpers") or {}
    for key in auth_keys(host):
        if helpers.get(key):
            return helpers[key]
    return document.get("credsStore") or None


def _helper_get(helper: str, server: str) -> Credential | None:
    result = _helper_run(helper, "get", server, check=False)
    if result.returncode != 0:
        if "not found" in (result.stdout + result.stderr).lower():
            return None
        raise ClientError(f"docker-credential-{helper} get failed: {(result.stderr or result.stdout).strip()}",
                          code="CREDENTIAL_HELPER")
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ClientError(f"docker-credential-{helper} get did not answer JSON", code="CREDENTIAL_HELPER") from None
    if not answer.get("Secret"):
        return None
    return Credential(answer.get("Username", ""), answer["Secret"], f"docker-credential-{helper}")


def _helper_run(helper: str, action: str, payload: str, check: bool = True) -> subprocess.CompletedProcess:
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run([program, action], input=payload, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ClientError(f"the credential helper {program} named in the auth file is not installed",
                          code="CREDENTIAL_HELPER") from None
    if check and result.returncode != 0:
        raise ClientError(f"{program} {action} failed: {(result.stderr or result.stdout).strip()}",
                          code="CREDENTIAL_HELPER")
    return result
