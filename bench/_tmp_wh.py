"""Webhooks under tag pushes (issue 15): tags/s into a repository with three active webhooks
against one with none, in alternating blocks on the same server, and the time from a push's 201
to the receiver getting its event (p50, p99).

    .venv/bin/python bench/webhooks_bench.py [--blocks 6] [--block 100]

The server is ours with the default config (accounts on; pushes with Basic admin:admin-demo),
`plugins: [webhooks]` and `allowPrivateTargets: true` (the receiver is on 127.0.0.1). The three
hooks (distribution, cloudevents and dockerhub payloads) post to one receiver process, which
notes the arrival time of each event; only the distribution-format events count for the latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402

from loads import OCI_MANIFEST, Client, Image, basic, push_image  # noqa: E402
from servers import OurRegistry, free_port  # noqa: E402

RECEIVER = textwrap.dedent('''
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived = time.time()
            with open(sys.argv[2], "a") as f:
                f.write(json.dumps({"at": arrived, "format": self.path.strip("/"), "body": body.decode()}) + "\\n")
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
        def log_message(self, *args):
            pass
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Recorder).serve_forever()
''')
AUTH = ("admin", "admin-demo")


def push_tags(url: str, headers: dict, repository: str, image: Image, count: int, prefix: str) -> dict[str, float]:
    """PUT the image's manifest under `count` new tags; the time each 201 arrived, by tag."""
    client = Client(url, headers)
    acknowledged = {}
    try:
        for i in range(count):
            tag = f"{prefix}{i:05d}"
            client.request("PUT", f"/v2/{repository}/manifests/{tag}", body=image.manifest,
                           headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
            acknowledged[tag] = time.time()
    finally:
        client.close()
    return acknowledged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--block", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="webhooks-bench-"))
    record = workdir / "received.jsonl"
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), str(record)])
    config = workdir / "registry.yaml"
    config.write_text("plugins: [webhooks]\npluginConfig:\n  webhooks:\n    allowPrivateTargets: true\n")
    server = OurRegistry(workdir / "store", workdir / "server.log", auth=True, config_dir=workdir)
    server.config = config
    server.start()
    headers = {"Authorization": basic(*AUTH)}
    image = Image.make()
    try:
        for repository in ("admin/hooked", "admin/plain"):
            push_image(server.url, headers, repository, image, "seed")
        for kind in ("distribution", "cloudevents", "dockerhub"):
            r = requests.post(f"{server.url}/api/v1/repositories/admin/hooked/webhooks", auth=AUTH,
                              json={"url": f"http://127.0.0.1:{port}/{kind}", "format": kind, "events": ["push"]})
            r.raise_for_status()
        seconds = {"admin/hooked": 0.0, "admin/plain": 0.0}
        acknowledged: dict[str, float] = {}
        for block in range(args.blocks):
            order = ["admin/hooked", "admin/plain"] if block % 2 == 0 else ["admin/plain", "admin/hooked"]
            for repository in order:
                started = time.perf_counter()
                times = push_tags(server.url, headers, repository, image, args.block, f"b{block}-")
                seconds[repository] += time.perf_counter() - started
                if repository == "admin/hooked":
                    acknowledged.update(times)
        total = args.blocks * args.block
        print("hooked", total / seconds["admin/hooked"], "plain", total / seconds["admin/plain"], (total / seconds["admin/hooked"]) / (total / seconds["admin/plain"]))
    finally:
        server.stop()
        receiver.kill()


if __name__ == "__main__":
    main()
