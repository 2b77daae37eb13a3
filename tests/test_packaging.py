"""A plain (non-editable) `pip install` of the project works: the wheel carries schemas/, plugins/
and sample_store/, and the installed `registry` command serves, empty or seeded.

The files git would check out (tracked plus new, not ignored) are copied to tmp_path and
installed from there into a fresh venv, so the build leaves nothing (build/, *.egg-info) in the
working tree and nothing can be imported from the source tree by accident. pip may download the
dependencies and the build backend from the package index.

Every step has a subprocess timeout: INSTALL_TIMEOUT for venv + pip, SERVE_TIMEOUT for a server
to answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.server import RunningRegistry

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 600
SERVE_TIMEOUT = 60


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(argv: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                            env=clean_env(), stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited with {result.returncode}\n--- stdout ---\n"
                    f"{result.stdout[-5000:]}\n--- stderr ---\n{result.stderr[-5000:]}")
    return result


def source_copy(destination: Path) -> Path:
    """The files of a fresh checkout of the working tree (tracked and new, not ignored)."""
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                 timeout=60).stdout
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():  # (a tracked file deleted in the working tree is not copied)
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project pip-installed (not editable) from a copy of the tree."""
    base = tmp_path_factory.mktemp("packaging")
    source = source_copy(base / "source")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=INSTALL_TIMEOUT)
    # --verbose: the build backend's output, warnings included, is shown (and kept for a test)
    result = run([venv / "bin" / "python", "-m", "pip", "install", "--verbose", source], timeout=INSTALL_TIMEOUT,
                 cwd=base)
    (base / "pip-install.log").write_text(result.stdout + result.stderr)
    shutil.rmtree(source)  # what is installed must not need the source tree
    return venv


def site_package(venv: Path) -> Path:
    found = run([venv / "bin" / "python", "-c", "import registry_core, os; "
                 "print(os.path.dirname(registry_core.__file__))"], timeout=60, cwd=venv).stdout.strip()
    return Path(found)


@contextlib.contextmanager
def served(venv: Path, store: Path, *args: str):
    """`registry serve` from the installed venv, on a free port, stopped on exit."""
    server = RunningRegistry(store, "--workers", "1", *args, executable=venv / "bin" / "registry", cwd=venv,
                             environment=clean_env(), timeout=SERVE_TIMEOUT)
    try:
        yield server
    finally:
        server.stop()


def test_the_installed_package_is_imported_from_the_venv_and_carries_its_data(installed):
    package = site_package(installed)
    assert package.is_relative_to(installed), package
    # Every module of the source tree is in the wheel (a subpackage missing from pyproject's
    # `packages` list would install without its modules).
    source_modules = {p.relative_to(ROOT / "registry_core") for p in (ROOT / "registry_core").rglob("*.py")
                      if "__pycache__" not in p.parts}
    installed_modules = {p.relative_to(package) for p in package.rglob("*.py")}
    assert source_modules <= installed_modules, sorted(map(str, source_modules - installed_modules))
    assert (package / "schemas" / "config.yaml").is_file()
    expected_schemas = {p.name for p in (ROOT / "schemas").glob("*.yaml")}
    assert {p.name for p in (package / "schemas").glob("*.yaml")} == expected_schemas
    expected_plugins = {p.name for p in (ROOT / "plugins").glob("*.py")}
    assert {p.name for p in (package / "builtin_plugins").glob("*.py")} == expected_plugins
    sample = package / "sample_store"
    assert (sample / "store.yaml").is_file()
    for layout in (ROOT / "sample_store" / "layouts").iterdir():
        shipped = sample / "layouts" / layout.name
        assert (shipped / "index.json").read_bytes() == (layout / "index.json").read_bytes()
        assert sorted(p.name for p in (shipped / "blobs" / "sha256").iterdir()) == \
            sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())


def test_building_the_package_warns_of_nothing(installed):
    """The build backend's warnings are about the project's own packaging (a deprecated
    `license` table, package data in folders missing from `packages`): none is left."""
    output = (installed.parent / "pip-install.log").read_text()
    warnings = re.findall(r"^\s*\S+\.py:\d+: \w*Warning: .*$", output, re.M)
    assert warnings == []


def test_the_console_script_runs(installed):
    result = run([installed / "bin" / "registry", "--help"], timeout=60, cwd=installed)
    assert "serve" in result.stdout
    result = run([installed / "bin" / "registry", "serve", "--help"], timeout=60, cwd=installed)
    assert "--empty" in result.stdout


def test_serve_empty_answers_the_base_endpoint(installed, tmp_path):
    with served(installed, tmp_path / "store", "--empty") as server:
        r = requests.get(server.url + "/v2/", timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert requests.get(server.url + "/v2/_catalog", timeout=10).json()["repositories"] == []
    assert (tmp_path / "store" / "keys").is_dir()  # the token signing key, outside meta.git
    assert (tmp_path / "store" / "meta.git").is_dir()


def test_serve_seeds_a_new_store_from_the_installed_sample_store(installed, tmp_path):
    with served(installed, tmp_path / "store") as server:
        catalog = requests.get(server.url + "/v2/_catalog", timeout=10).json()["repositories"]
        assert {"library/hello", "library/busybox-lite"} <= set(catalog) and "alice/notes" not in catalog
        as_alice = requests.get(server.url + "/v2/_catalog", timeout=10, auth=("alice", "alice-demo"))
        assert "alice/notes" in as_alice.json()["repositories"]
        tags = requests.get(server.url + "/v2/library/hello/tags/list", timeout=10).json()["tags"]
        assert tags == ["1.0", "latest"]
        r = requests.get(server.url + "/v2/library/busybox-lite/manifests/latest", timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
        layer = r.json()["layers"][0]
        blob = requests.get(server.url + f"/v2/library/busybox-lite/blobs/{layer['digest']}", timeout=10)
        assert blob.status_code == 200 and len(blob.content) == layer["size"]
    assert "Demo logins" in server.log()
