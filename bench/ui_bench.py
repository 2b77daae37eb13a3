"""The web UI's pages on a large store: p99 latency of home, search, a repository and a history.

    .venv/bin/python bench/ui_bench.py [--store DIR] [--requests N] [--small]

The store (built once, then reused from DIR; bench/bigstore.py writes it straight into git): 10,000
public repositories and 100,000 tags (ns000/app000 holds 10,009 of them), the demo accounts;
then, through the services as a server would make them, 300 stars (admin, alice and bob star 100
repositories each, so the most-starred list has ties to break) and 10,000 pushes of new tags to
ns000/app001, one commit each: the store's history is then over 10,000 commits of that repository
(its history page) and the home page's recent list reads pushes.

It serves the store with `registry serve --workers 2` on 127.0.0.1 and asks each page
sequentially from one client (the latency of a page, not the server's throughput): 20 requests
to warm up, then `--requests` (default 300) timed, anonymous and as a logged-in user; prints
p50/p90/p99/max in ms and the targets (100 ms p99 for home, search and a repository; 200 ms for
the history page of the repository with 10,000 commits). Not part of `make test`; about 5
minutes here, most of it building the store the first time. Figures: bench/profiles/notes.md,
"Web UI pages".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bigstore  # noqa: E402
from loads import OCI_MANIFEST, Image  # noqa: E402

HISTORY_REPOSITORY = "ns000/app001"
STARS_PER_USER = 100
WARM_UP = 20
TARGETS_MS = {"home": 100, "search": 100, "repository": 100, "history": 200}


def build(store: Path, shape: bigstore.Shape, pushes: int) -> dict:
    """The store, unless DIR/.ui-bench-done says it was built with this shape."""
    marker = store / ".ui-bench-done"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("repositories") == shape.repositories and info.get("pushes") == pushes:
            return info
        raise SystemExit(f"{store} holds another shape ({info}): give another --store")
    image = Image.make()
    info = bigstore.build_ours(store, shape, image, auth=True, visibility="public")

    from registry_core.app import Registry
    from registry_core.config import Config
    from registry_core.context import Context

    started = time.perf_counter()
    registry = Registry(Config(store=str(store)))
    stars = registry.community.stars
    for offset, user in enumerate(("admin", "alice", "bob")):
        for index in range(STARS_PER_USER):
            stars.star(Context(actor=user), shape.name((index * 7 + offset * 50) % shape.repositories))
    info["stars_seconds"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    body = bigstore.repository_manifest(image, HISTORY_REPOSITORY)
    for k in range(pushes):
        registry.manifests.put(HISTORY_REPOSITORY, f"h{k:05d}", body, OCI_MANIFEST, Context(actor="alice"))
    info["pushes_seconds"] = round(time.perf_counter() - started, 1)
    info["pushes"] = pushes
    info["views_after_seconds"] = bigstore.write_views(store, auth=True)
    marker.write_text(json.dumps(info))
    return info


def serve(store: Path, port: int, log: Path) -> subprocess.Popen:
    registry = Path(sys.executable).with_name("registry")
    process = subprocess.Popen([str(registry), "serve", "--store", str(store), "--port", str(port), "--workers", "2"],
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: see {log}")
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the server did not get ready in 120 s: see {log}")


def logged_in(base: str, user: str, password: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    r = session.post(f"{base}/login", data={"csrf": csrf, "username": user, "password": password},
                     allow_redirects=False)
    assert r.status_code == 303, r.text
    return session


def measure(session: requests.Session, url: str, count: int) -> dict:
    for _ in range(WARM_UP):
        assert session.get(url).status_code == 200, url
    times = []
    for _ in range(count):
        started = time.perf_counter()
        r = session.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    times.sort()

    def at(share: float) -> float:
        return round(times[min(len(times) - 1, int(share * len(times)))], 1)
    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(times[-1], 1),
            "mean": round(statistics.fmean(times), 1), "bytes": len(r.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "registry-ui-bench")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--small", action="store_true", help="100 repositories, 1,000 tags, 1,000 pushes (a try)")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    shape, pushes = (bigstore.SMALL, 1_000) if arguments.small else (bigstore.LARGE, 10_000)
    store = arguments.store / ("small" if arguments.small else "large")
    store.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = build(store, shape, pushes)
    print(f"store: {store} ({json.dumps(info)}); ready in {time.perf_counter() - started:.0f} s", flush=True)

    port = arguments.port or bigstore_free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(store, port, store.with_name(store.name + ".log"))
    try:
        # search: one repository's word, a word every repository matches (page 1 of 400), none
        pages = [("home", "/"), ("search", "/search?q=app042"), ("search", "/search?q=app"),
                 ("search", "/search?q=zzz-nothing"), ("repository", f"/r/{shape.name(42)}"),
                 ("repository", f"/r/{shape.big}"), ("history", f"/r/{HISTORY_REPOSITORY}/history")]
        visitors = {"anonymous": requests.Session(), "alice": logged_in(base, "alice", "alice-demo")}
        print(f"\n{arguments.requests} sequential requests a row after {WARM_UP} to warm up; ms\n")
        print("| page | visitor | p50 | p90 | p99 | max | target (p99) | bytes |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, path in pages:
            for visitor, session in visitors.items():
                figures = measure(session, base + path, arguments.requests)
                verdict = "ok" if figures["p99"] < TARGETS_MS[kind] else "MISSED"
                print(f"| `{path}` | {visitor} | {figures['p50']} | {figures['p90']} | {figures['p99']} | "
                      f"{figures['max']} | {TARGETS_MS[kind]} {verdict} | {figures['bytes']} |", flush=True)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)


def bigstore_free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
