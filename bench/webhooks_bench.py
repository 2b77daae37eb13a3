"""Webhooks under tag pushes (issue 15): tags/s into a repository with three active webhooks
against one with none, in alternating blocks on the same server, and the time from a push's 201
to the receiver getting its event (p50, p99).

    .venv/bin/python bench/webhooks_bench.py [--blocks 6] [--block 100]

The server is ours with the default config (accounts on; pushes with Basic admin:admin-demo),
`plugins: [webhooks]` and `allowPrivateTargets: true` (the receiver is on 127.0.0.1). The three
hooks (distribution, cloudevents and dockerhub payloads) post to one receiver process, which
notes the arrival time of each event and keeps connections open between requests (HTTP/1.1
keep-alive, as real receivers do; `--receiver-http10` for one that closes each); only the distribution-format events count for the latency.
Also printed: the CPU time the server's delivery process (plugins/webhooks/delivery.py) and the
receiver used per event, from the first push to the last delivery: work done on the same cores as
the pushes, in whichever block it falls; and, per push, the CPU time each part used during the
blocks of either repository (`cpu_ms_per_push`: the server's other processes, the delivery
process, the receiver, this client), which shows what of it falls in the hooked blocks.
"""

from __future__ import annotations

import argparse
import json
import os
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
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers (nginx, web frameworks) do
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
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the processes `pids` (those still there)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def delivery_processes(server: OurRegistry) -> list[int]:
    """The server's webhooks delivery process (its module, or its title, names it)."""
    found = []
    for pid in server.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"webhooks" in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


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
    parser.add_argument("--receiver-http10", action="store_true",
                        help="the receiver answers HTTP/1.0 and closes each connection")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="webhooks-bench-"))
    record = workdir / "received.jsonl"
    port = free_port()
    receiver_code = RECEIVER.replace('"HTTP/1.1"', '"HTTP/1.0"') if args.receiver_http10 else RECEIVER
    receiver = subprocess.Popen([sys.executable, "-c", receiver_code, str(port), str(record)])
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
        deliverers = delivery_processes(server)
        parts = {"server": [pid for pid in server.pids() if pid not in deliverers], "delivery": deliverers,
                 "receiver": [receiver.pid], "client": [os.getpid()]}
        block_cpu = {repository: dict.fromkeys(parts, 0.0) for repository in seconds}
        cpu_before = cpu_seconds(delivery_processes(server)), cpu_seconds([receiver.pid])
        acknowledged: dict[str, float] = {}
        for block in range(args.blocks):
            order = ["admin/hooked", "admin/plain"] if block % 2 == 0 else ["admin/plain", "admin/hooked"]
            for repository in order:
                cpu = {part: cpu_seconds(pids) for part, pids in parts.items()}
                started = time.perf_counter()
                times = push_tags(server.url, headers, repository, image, args.block, f"b{block}-")
                seconds[repository] += time.perf_counter() - started
                for part, pids in parts.items():
                    block_cpu[repository][part] += cpu_seconds(pids) - cpu[part]
                if repository == "admin/hooked":
                    acknowledged.update(times)
        deadline = time.time() + 60
        while time.time() < deadline:
            lines = record.read_text().splitlines() if record.exists() else []
            if len(lines) >= 3 * len(acknowledged):  # every format's events, for the CPU figures
                break
            time.sleep(0.5)
        delivery_cpu = cpu_seconds(delivery_processes(server)) - cpu_before[0]
        receiver_cpu = cpu_seconds([receiver.pid]) - cpu_before[1]
        latencies = []
        for line in record.read_text().splitlines():
            event = json.loads(line)
            if event["format"] != "distribution":
                continue
            for item in json.loads(event["body"]).get("events", []):
                tag = item.get("target", {}).get("tag")
                if tag in acknowledged:
                    latencies.append((event["at"] - acknowledged[tag]) * 1000)
        total = args.blocks * args.block
        hooked, plain = total / seconds["admin/hooked"], total / seconds["admin/plain"]
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
        print(json.dumps({"tags_per_s_three_hooks": round(hooked, 1), "tags_per_s_none": round(plain, 1),
                          "ratio": round(hooked / plain, 3), "events": len(latencies), "pushes": total,
                          "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                          "latency_p99_ms": round(p99, 1),
                          "delivery_cpu_ms_per_event": round(delivery_cpu * 1000 / total, 2),
                          "receiver_cpu_ms_per_event": round(receiver_cpu * 1000 / total, 2),
                          "cpu_ms_per_push": {repository.split("/")[1]: {part: round(used * 1000 / total, 2)
                                                                          for part, used in cpu.items()}
                                              for repository, cpu in block_cpu.items()},
                          "load_average": os.getloadavg()[0]}))
        print(f"tag pushes: {hooked:.0f}/s with three webhooks, {plain:.0f}/s without ({hooked / plain:.2f}x); "
              f"201 -> receiver: p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms "
              f"({len(latencies)} of {total} events); CPU per event: delivery process "
              f"{delivery_cpu * 1000 / total:.2f} ms, receiver {receiver_cpu * 1000 / total:.2f} ms")
    finally:
        server.stop()
        receiver.kill()


if __name__ == "__main__":
    main()
