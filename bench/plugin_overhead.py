"""How much the plugin hooks cost on the manifest GET path (issue: the plugin contract).

Calls the WSGI app in-process (no network, no server), so the figure is the application's own
cost per request: GET /v2/library/hello/manifests/latest on a store seeded from sample_store/.

    .venv/bin/python bench/plugin_overhead.py [--requests 20000] [--runs 5]

Variants:
  no-hooks    every hook call bypassed (the floor: what the core costs without pluggy at all)
  defaults    the shipped configuration: only the core's default plugins
  everything  tests/plugins/everything.py loaded too (implements every hook)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry_core.app import Registry  # noqa: E402
from registry_core.config import AuthConfig, Config  # noqa: E402
from registry_core.plugins import Hooks, make_plugin_manager  # noqa: E402
from registry_core.seed import seed  # noqa: E402
from registry_core.web_app import build_app  # noqa: E402

PATH = "/v2/library/hello/manifests/latest"


def environ() -> dict:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": PATH, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000", "HTTP_HOST": "127.0.0.1:5000", "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": None,
            "HTTP_ACCEPT": "application/vnd.oci.image.index.v1+json"}


def requests_per_second(app, count: int) -> float:
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    started = time.perf_counter()
    for _ in range(count):
        b"".join(app(environ(), start_response))
    elapsed = time.perf_counter() - started
    assert statuses[-1].startswith("200"), statuses[-1]
    return count / elapsed


def open_config(store: str) -> Config:
    """The hooks are measured on an open registry: with auth on, the access policy is real work."""
    config = Config(store=store)
    config.auth = AuthConfig(enabled=False)
    return config


def variant_app(store: str, variant: str):
    config = open_config(store)
    plugins_dir = str(ROOT / "tests" / "plugins") if variant == "everything" else None
    registry = Registry(config, make_plugin_manager(plugins_dir=plugins_dir, auth=False))
    if variant == "no-hooks":
        registry.hooks = Hooks(make_plugin_manager(auth=False, enabled=()))  # (the open registry: no hook)
        registry.access.open_registry = True  # every action allowed, no hook asked
    return build_app(registry)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        seed(Registry(open_config(store)))
        apps = {v: variant_app(store, v) for v in ("no-hooks", "defaults", "everything")}
        results = {v: [] for v in apps}
        for _ in range(args.runs):  # alternate variants so drift hits all alike
            for variant, app in apps.items():
                results[variant].append(requests_per_second(app, args.requests))
    floor = statistics.median(results["no-hooks"])
    print(f"manifest GET in-process, {args.requests} requests x {args.runs} runs (median req/s)")
    for variant, figures in results.items():
        median = statistics.median(figures)
        print(f"  {variant:<11} {median:9.0f} req/s   {median / floor:5.3f} x no-hooks")


if __name__ == "__main__":
    main()
