"""Blob pulls A/B on S3 (issue 19): versions of ours side by side on one moto, taking turns.

    .venv/bin/python bench/s3_pull_ab.py NAME=REV [NAME=REV ...] [--rounds 10] [--blobs 4] [--mib 64]
                                         [--no-dist] [--fs] [--hold SECONDS]

Each NAME=REV is ours at git revision REV (exported with servers.export_source; `git stash create`
names the work tree's changes), all of them on ONE bucket, so they serve the very same blobs
(pushed once, through the first); Distribution 2.8 (s3_bench.py's config) on a bucket of its own,
unless --no-dist. Every round pulls each blob from every server, the order rotating blob by blob,
with curl into /dev/null. Prints per round MiB/s, then the medians, the time to the first byte
(curl's time_starttransfer), the CPU seconds each server's process tree used per pull (from
/proc: steadier than wall time on a shared machine), and per-round ratios to the first NAME and to
Distribution. `--fs`: filesystem stores instead (ours share one). `--hold`: first pull from the
last of ours for that many seconds, for a profiler (py-spy, perf) to attach to its workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(WT / "bench"))
sys.path.insert(0, str(WT))

import loads  # noqa: E402
from loads import MiB  # noqa: E402
from s3_bench import distribution_server, our_server  # noqa: E402
from servers import Distribution, OurRegistry, export_source  # noqa: E402
from tests.support.s3 import CREDENTIALS, MotoServer  # noqa: E402

REPOSITORY = "bench/s3"


def cpu_seconds(server) -> float:
    """User and system CPU of the server's process tree so far (/proc/<pid>/stat)."""
    total = 0
    for pid in server.pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def pull(url: str, digest: str, size: int) -> tuple[float, float]:
    """GET the blob with curl into /dev/null: (seconds to the first byte, seconds in all)."""
    out = subprocess.run(["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download} %{time_starttransfer} %{time_total}",
                          f"{url}/v2/{REPOSITORY}/blobs/{digest}"], capture_output=True, text=True, timeout=600)
    status, received, first, total = out.stdout.split()
    if status != "200" or int(received) != size:
        raise RuntimeError(f"GET blob: status {status}, {received} of {size} bytes; {out.stderr}")
    return float(first), float(total)


def start_servers(args, work: Path, moto: MotoServer) -> dict:
    servers = {}
    bucket = moto.new_bucket()
    for spec in args.variants:
        name, rev = spec.split("=", 1)
        source = export_source(rev, work / f"src-{name}", WT)
        if args.fs:
            server = OurRegistry(work / "shared-store", work / "logs" / f"{name}.log", auth=False,
                                 config_dir=work, source=source)
        else:
            server = our_server(work, name, moto.endpoint, bucket)
            server.source = source
        servers[name] = server
    if not args.no_dist:
        servers["dist"] = (Distribution(work / "dist", work / "logs" / "dist.log", work) if args.fs else
                           distribution_server(work, "dist", moto.endpoint, moto.new_bucket()))
    for server in servers.values():
        server.start()
    return servers


def measure(args, servers: dict) -> None:
    print("pids", {name: server.pids() for name, server in servers.items()}, flush=True)
    payload = loads.Payload(args.mib * MiB)
    names = list(servers)
    ours = [name for name in names if name != "dist"]
    digests = []
    for i in range(args.blobs):
        tail, digest = payload.blob(f"b{i}")
        loads.push_monolithic(servers[ours[0]].url, {}, REPOSITORY, payload, tail, digest)
        if "dist" in servers:
            loads.push_monolithic(servers["dist"].url, {}, REPOSITORY, payload, tail, digest)
        digests.append(digest)
    end = time.monotonic() + args.hold
    while time.monotonic() < end:
        for digest in digests:
            pull(servers[ours[-1]].url, digest, payload.size)
    rates = {name: [] for name in names}
    firsts = {name: [] for name in names}
    cpu_before = {name: cpu_seconds(servers[name]) for name in names}
    for r in range(args.rounds):
        seconds = dict.fromkeys(names, 0.0)
        for i, digest in enumerate(digests):
            turn = (r * args.blobs + i) % len(names)
            for name in names[turn:] + names[:turn]:
                first, total = pull(servers[name].url, digest, payload.size)
                seconds[name] += total
                firsts[name].append(first * 1000)
        for name in names:
            rates[name].append(args.blobs * args.mib / seconds[name])
        print(f"round {r}: " + "  ".join(f"{name} {rates[name][-1]:.0f}" for name in names), flush=True)
    pulls = args.rounds * args.blobs
    print("CPU ms per pull:", {name: round(1000 * (cpu_seconds(servers[name]) - cpu_before[name]) / pulls, 1)
                               for name in names})
    print("load average", open("/proc/loadavg").read().split()[:3])
    print("median MiB/s:", {name: round(statistics.median(v)) for name, v in rates.items()})
    print("median first byte ms:", {name: round(statistics.median(v), 1) for name, v in firsts.items()})
    for reference in (names[0], "dist"):
        if reference not in rates:
            continue
        for name in names:
            if name != reference:
                ratios = [x / y for x, y in zip(rates[name], rates[reference])]
                print(f"{name}/{reference} per round:", [round(x, 3) for x in ratios],
                      "median", round(statistics.median(ratios), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME=REV: ours at git revision REV")
    parser.add_argument("--blobs", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-dist", action="store_true", help="no Distribution")
    parser.add_argument("--fs", action="store_true", help="filesystem stores (ours share one)")
    parser.add_argument("--hold", type=float, default=0, help="seconds of pulls from the last of ours first")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    work = Path(tempfile.mkdtemp(prefix="s3-pull-ab-"))
    (work / "logs").mkdir()
    moto = MotoServer(work / "logs" / "moto.log")
    servers = {}
    try:
        servers = start_servers(args, work, moto)
        measure(args, servers)
    finally:
        for server in servers.values():
            server.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
