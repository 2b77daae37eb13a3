"""Soak: one server under sustained mixed load, in rounds, to see whether throughput and memory
hold (issues 12 and 13). Not part of `make test`.

Each round: 64 keep-alive connections GET a manifest by tag (wrk) while 8 pusher processes push
a distinct image manifest each time (a new config blob, then the manifest under a new tag, as CI
pipelines do) into one repository. After each round: manifest GETs and pushes per second, errors,
the server's whole process tree's resident memory (VmRSS summed), its open descriptors and
memory mappings, and meta.git's size. With `--probe SECONDS`: GETs alone (no pushers) before
the first round and after each, to tell a GET that got slower as the store grew from pushers that
took a larger share of the two cores. `--push-rate` paces the pushers (CI pipelines push at
their own pace): unpaced, the 8 pushers and 64 readers split the two cores differently from
round to round (60-150 pushes a second). At the end every acknowledged push is read back by tag and
must answer its digest.

    .venv/bin/python bench/soak.py [--rounds 3] [--seconds 60] [--readers 64] [--pushers 8]
                                   [--writer packs|libgit2] [--probe 10] [--push-rate 60]
                                   [--out bench/SOAK.md]

Pass: zero errors, the last round's GET and push rates within 20 % of the first's, the process
tree under 300 MiB at the end, every acknowledged push readable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loads import OCI_LAYER, OCI_MANIFEST, Client, Image, digest_of, push_build, push_image, wrk  # noqa: E402
from servers import OurRegistry, process_tree, tree_memory  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPOSITORY = "soak/app"
READ_TAG = "read-me"


def layer_descriptors(image: Image) -> list[dict]:
    return [{"mediaType": OCI_LAYER, "digest": digest_of(blob), "size": len(blob)} for blob in image.blobs[1:]]


def pusher(base: str, number: int, deadline: float, layers: list[dict], results, rate: float = 0) -> None:
    """Push distinct manifests until `deadline` (at most `rate` a second when given); report
    (tag, digest) of each acknowledged push and the errors."""
    client = Client(base, {})
    pushed, errors, sequence = [], [], 0
    started = time.time()
    while time.time() < deadline:
        if rate and sequence >= rate * (time.time() - started):
            time.sleep(min(1 / rate, max(deadline - time.time(), 0)))
            continue
        sequence += 1
        tag = f"p{number}-{os.getpid()}-{sequence}"
        try:
            pushed.append((tag, push_build(client, REPOSITORY, tag, layers)))
        except Exception as error:  # noqa: BLE001 - every failure is a figure of the soak
            errors.append(f"{tag}: {error}")
            client.close()
            client = Client(base, {})
    client.close()
    results.put((pushed, errors))


def descriptors(pids: list[int]) -> tuple[int, int]:
    """(open file descriptors, memory mappings) summed over `pids`."""
    fds = maps = 0
    for pid in pids:
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            with open(f"/proc/{pid}/maps") as f:
                maps += sum(1 for _ in f)
        except OSError:
            pass
    return fds, maps


def breakdown(pids: list[int]) -> list[dict]:
    """Each process's resident memory split as smaps_rollup does: anonymous (heaps: Python objects,
    libgit2's caches, malloc arenas) and file-backed (mapped packs, shared libraries), in MiB."""
    processes = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[-1] == "kB"}
        except OSError:
            continue
        processes.append({"pid": pid, "rss": fields["Rss"] >> 10, "anon": fields["Anonymous"] >> 10,
                          "file": (fields["Rss"] - fields["Anonymous"]) >> 10})
    return processes


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    config = workdir / "registry.yaml"
    config.write_text(f"auth:\n  enabled: false\nstorage:\n  metaWriter: {args.writer}\n")
    server = OurRegistry(workdir / "store", workdir / "server.log", auth=False, config_dir=workdir)
    server.config = config
    server.start()
    rounds = []
    acknowledged: list[tuple[str, str]] = []
    try:
        image = Image.make()
        push_image(server.url, {}, REPOSITORY, image, READ_TAG)
        layers = layer_descriptors(image)
        url = f"{server.url}/v2/{REPOSITORY}/manifests/{READ_TAG}"
        before = wrk(url, {"Accept": OCI_MANIFEST}, args.readers, args.probe, workdir) if args.probe else None
        for number in range(1, args.rounds + 1):
            deadline = time.time() + args.seconds
            results = multiprocessing.Queue()
            pushers = [multiprocessing.Process(target=pusher, args=(server.url, i, deadline, layers, results,
                                                                    args.push_rate / args.pushers))
                       for i in range(args.pushers)]
            for process in pushers:
                process.start()
            reads = wrk(url, {"Accept": OCI_MANIFEST}, args.readers, args.seconds, workdir)
            outcomes = [results.get(timeout=args.seconds + 120) for _ in pushers]
            for process in pushers:
                process.join()
            pushed = [item for done, _ in outcomes for item in done]
            errors = [error for _, failed in outcomes for error in failed]
            acknowledged += pushed
            probe = wrk(url, {"Accept": OCI_MANIFEST}, args.readers, args.probe, workdir) if args.probe else None
            pids = process_tree(server.process.pid)
            rss, pss = tree_memory(server.process.pid)
            fds, maps = descriptors(pids)
            rounds.append({"round": number, "get_rps": reads["rps"], "get_p99_ms": reads["p99_ms"],
                           "get_alone_rps": probe["rps"] if probe else None,
                           "get_errors": reads["errors"], "pushes": len(pushed), "push_rps": len(pushed) / args.seconds,
                           "push_errors": len(errors), "first_errors": errors[:3], "rss_mib": rss / 2**20,
                           "pss_mib": pss / 2**20, "by_process": breakdown(pids), "processes": len(pids), "fds": fds, "maps": maps,
                           "meta_mib": du(workdir / "store" / "meta.git") / 2**20})
            print(json.dumps(rounds[-1]), flush=True)
        unreadable = []
        client = Client(server.url, {})
        for tag, digest in acknowledged:
            response, _ = client.request("HEAD", f"/v2/{REPOSITORY}/manifests/{tag}",
                                         headers={"Accept": OCI_MANIFEST}, expect=(200, 404))
            if response.status != 200 or response.getheader("Docker-Content-Digest") != digest:
                unreadable.append(tag)
        client.close()
    finally:
        server.stop()
    first, last = rounds[0], rounds[-1]
    summary = {"writer": args.writer, "rounds": rounds, "acknowledged": len(acknowledged),
               "unreadable": len(unreadable), "get_last_over_first": last["get_rps"] / first["get_rps"],
               "push_last_over_first": last["push_rps"] / first["push_rps"] if first["push_rps"] else None,
               "get_alone_before_rps": before["rps"] if before else None,
               "get_alone_last_over_first": last["get_alone_rps"] / first["get_alone_rps"] if before else None,
               "rss_end_mib": last["rss_mib"],
               "errors": sum(r["get_errors"] + r["push_errors"] for r in rounds)}
    summary["pass"] = (summary["errors"] == 0 and summary["unreadable"] == 0 and summary["rss_end_mib"] < 300
                       and summary["get_last_over_first"] >= 0.8 and (summary["push_last_over_first"] or 0) >= 0.8)
    return summary


def markdown(summary: dict, args) -> str:
    lines = [f"## Soak: {args.readers} readers, {args.pushers} pushers, {args.rounds} × {args.seconds:g} s "
             f"(writer: {summary['writer']})", "",
             "| round | manifest GET/s | GET p99 ms | pushes/s | GET/s alone after | errors | RSS MiB (tree) | processes | fds | maps | meta.git MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rounds"]:
        alone = f"{r['get_alone_rps']:,.0f}" if r.get("get_alone_rps") else "-"
        lines.append(f"| {r['round']} | {r['get_rps']:,.0f} | {r['get_p99_ms']:.1f} | {r['push_rps']:.1f} | {alone} | "
                     f"{r['get_errors'] + r['push_errors']} | {r['rss_mib']:.0f} | {r['processes']} | {r['fds']} | "
                     f"{r['maps']} | {r['meta_mib']:.1f} |")
    lines += ["", f"Last round over first: GETs {summary['get_last_over_first']:.2f}, pushes "
                  f"{summary['push_last_over_first']:.2f}. Acknowledged pushes {summary['acknowledged']:,}, "
                  f"unreadable {summary['unreadable']}. Errors {summary['errors']}. "
                  + (f"GETs alone: {summary['get_alone_before_rps']:,.0f}/s on the new store (a cold start), "
                     f"after the last round {summary['get_alone_last_over_first']:.2f} of after the first. "
                     if summary.get("get_alone_before_rps") else "")
                  + f"**{'PASS' if summary['pass'] else 'FAIL'}** (targets: no errors, ≥ 0.8, < 300 MiB, all readable).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--readers", type=int, default=64)
    parser.add_argument("--pushers", type=int, default=8)
    parser.add_argument("--writer", choices=("packs", "libgit2"), default="packs")
    parser.add_argument("--push-rate", type=float, default=0, metavar="PER_SECOND",
                        help="pace the pushers to this many pushes a second in all (default: as fast as they "
                             "can, when readers and pushers split the cores differently round to round)")
    parser.add_argument("--probe", type=float, default=0, metavar="SECONDS",
                        help="after each round, GETs alone for this long: whether a GET got slower as the store "
                             "grew, or the pushers took a larger share of the cores")
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    summary = run(args)
    text = markdown(summary, args)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
