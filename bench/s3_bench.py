"""Blob push and pull on S3 (issue 19): ours with `storage: {driver: s3}` against CNCF
Distribution 2.8's s3 storage driver, both on the same moto server.

    .venv/bin/python bench/s3_bench.py [--quick] [--runs N] [--blobs 4] [--blob-mib 64]
                                       [--chunk-mib 8] [--patience SECONDS] [--keep] [--no-redirect]

A `moto_server` (from the venv, as the test suite starts it: tests/support/s3.py MotoServer) runs
on a free port of 127.0.0.1; each run makes two new buckets, one a registry, and empties the last
run's. On it, both open (no auth), both on 127.0.0.1:

  ours          `registry serve`, `auth: {enabled: false}`, `storage: {driver: s3, options:
                {bucket, endpoint, region: us-east-1}}` (credentials: the AWS_* variables moto
                accepts); blob GETs stream through the registry (`redirect` is off by default)
  Distribution  Debian's docker-registry, `storage.s3` with regionendpoint, bucket, region,
                accesskey/secretkey (dummies), secure: false, v4auth: true (2.8 addresses the
                bucket by path once regionendpoint is set; its `forcepathstyle` key is written
                but 2.8 does not read it); `storage.redirect.disable: true`, so its blob GETs
                stream through it as ours do (its default is a 307 to a presigned URL)

The loads are compare.py's (bench/loads.py), blob by blob, the two servers taking turns (who goes
first alternates blob by blob, and from one run to the next): `--blobs` blobs of `--blob-mib` MiB of incompressible bytes pushed monolithic
(POST + PUT ?digest=), as many pushed chunked (PATCHes of `--chunk-mib` MiB, then PUT ?digest=),
then the monolithic ones pulled (curl into /dev/null).

Pulls by redirect, reported apart (unless --no-redirect): a second server of each kind on the same
bucket, configured to answer a blob GET with a 307 to a presigned URL of the object (ours
`redirect: true`; Distribution's default, its `redirect` section left out), pulls the same blobs
with `curl -L`. That is a different path, not the stream-through one above: the registry sends a
few hundred bytes and moto sends the blob to curl itself, so the figure is mostly moto's, plus the
registry's time to sign the URL (and to check the link). It is there because Distribution
redirects by default: users who compare both servers as shipped see this path for Distribution
and the stream-through one for ours (whose `redirect` is off by default, for clients that cannot
reach the bucket). Its ratio has no target. Rates are all bytes over all seconds of a
kind, per run; the figures are medians over the runs. Also: the requests each server sends to S3
per blob and load (counted by method in moto's log; the last run's), the RSS of each server's
process tree after start-up and its peak while it pushes and pulls (sampled every 50 ms), and
moto's peak (JSON only).

Target (issue 19): ours/Distribution ≥ 1 for push (monolithic and chunked) and pull. Prints a JSON
summary, then a Markdown table.

`--quick`: one run. The machine may be shared (2 cores; moto, the registry and the client all
compete for them): before each kind of load the script waits (at most --patience seconds) for a
quiet disk and CPU; figures from a busy machine are provisional. After that wait, and before the
load's first timed request, the script GETs an object of the blobs' size straight from moto (not
timed): moto's first answer after a pause is slow (a 64 MiB GET 128-149 ms against 40-60 once
warm), and without it the server that goes first in a load paid for that, whichever it was.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import loads  # noqa: E402
from compare import fmt, render_table  # noqa: E402
from loads import MiB  # noqa: E402
from servers import (Distribution, MemorySampler, OurRegistry, distribution_config, distribution_version,  # noqa: E402
                     tree_memory, wait_for_quiet_machine)
from tests.support.s3 import CREDENTIALS, MotoServer, moto_executable  # noqa: E402

REPOSITORY = "bench/s3"
SERVERS = ("ours", "reference")
LABELS = {"ours": "ours (s3 driver)", "reference": "Distribution 2.8 (s3 driver)"}
KINDS = ("push_mono", "push_chunked", "pull")
REDIRECT = "pull_redirect"   # reported apart from KINDS: another path (see the module's docstring)
KIND_LABELS = {"push_mono": "blob push, monolithic POST+PUT", "push_chunked": "blob push, chunked PATCHes",
               "pull": "blob pull, GET streamed through the registry (curl)",
               REDIRECT: "blob pull, GET answered by a 307 to a presigned URL, bytes from moto (curl -L)"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class MotoLog:
    """The request lines moto_server (werkzeug) writes to its log, one per request once answered."""

    LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|HEAD|PUT|POST|DELETE) ')

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> collections.Counter:
        time.sleep(0.2)   # werkzeug writes the line after the response
        with open(self.path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return collections.Counter(m.group(1) for m in map(self.LINE.search, text.splitlines()) if m)


def our_server(workdir: Path, name: str, endpoint: str, bucket: str, redirect: bool = False) -> OurRegistry:
    server = OurRegistry(workdir / name, workdir / "logs" / f"{name}.log", auth=False, config_dir=workdir)
    server.config = workdir / f"{name}.yaml"
    server.config.write_text("auth:\n  enabled: false\nstorage:\n  driver: s3\n  options:\n"
                             f"    bucket: {bucket}\n    endpoint: {endpoint}\n    region: us-east-1\n"
                             + ("    redirect: true\n" if redirect else ""))
    server.label = LABELS["ours"]
    return server


def distribution_s3_config(port: int, endpoint: str, bucket: str, redirect: bool = False) -> str:
    return distribution_config(None, port, storage=(
        "  s3:\n"
        f"    accesskey: {CREDENTIALS['AWS_ACCESS_KEY_ID']}\n"
        f"    secretkey: {CREDENTIALS['AWS_SECRET_ACCESS_KEY']}\n"
        "    region: us-east-1\n"
        f"    regionendpoint: {endpoint}\n"
        f"    bucket: {bucket}\n"
        "    forcepathstyle: true\n"
        "    secure: false\n"
        "    v4auth: true\n"
        + ("" if redirect else "  redirect:\n    disable: true\n")))


class DistributionOnS3(Distribution):
    label = LABELS["reference"]

    def env(self) -> dict:
        # 2.8's AWS SDK will not start with AWS_CA_BUNDLE set ("unable to load custom CA bundle,
        # HTTPClient's transport unsupported type"); moto is plain http on 127.0.0.1 anyway
        env = super().env()
        env.pop("AWS_CA_BUNDLE", None)
        return env


def distribution_server(workdir: Path, name: str, endpoint: str, bucket: str, redirect: bool = False) -> Distribution:
    server = DistributionOnS3(workdir / name, workdir / "logs" / f"{name}.log", workdir)
    server.config.write_text(distribution_s3_config(server.port, endpoint, bucket, redirect))
    return server


class Bench:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.runs: list[dict] = []

    def quiet(self) -> None:
        """Wait for a quiet machine, then wake moto with one untimed GET of the blobs' size."""
        wait_for_quiet_machine(self.args.patience, log=log)
        client = self.moto.client()
        client.get_object(Bucket=self.warm_bucket, Key="warm")["Body"].read()

    def empty(self, bucket: str) -> None:
        client = self.moto.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def run(self, number: int) -> None:
        args = self.args
        servers, redirecting = {}, {}
        buckets = {kind: self.moto.new_bucket() for kind in SERVERS}
        loads_run = KINDS + (() if args.no_redirect else (REDIRECT,))
        try:
            for kind in SERVERS:
                make = our_server if kind == "ours" else distribution_server
                servers[kind] = make(self.workdir, f"run{number}-{kind}", self.moto.endpoint, buckets[kind])
                servers[kind].start()
                if not args.no_redirect:  # the same bucket, blob GETs answered by a redirect
                    redirecting[kind] = make(self.workdir, f"run{number}-{kind}-redirect", self.moto.endpoint,
                                             buckets[kind], redirect=True)
                    redirecting[kind].start()
            seconds = {(kind, load): 0.0 for kind in SERVERS for load in loads_run}
            requests = {(kind, load): collections.Counter() for kind in SERVERS for load in loads_run}
            idle = {kind: tree_memory(servers[kind].process.pid)[0] for kind in SERVERS}
            blobs = {kind: {load: [self.payload.blob(f"{number}-{kind}-{load}-{i}") for i in range(args.blobs)]
                            for load in ("push_mono", "push_chunked")} for kind in SERVERS}
            for load in loads_run:
                self.quiet()
                for i in range(args.blobs):
                    first = (i + number) % 2
                    for kind in SERVERS[first:] + SERVERS[:first]:
                        server = redirecting[kind] if load == REDIRECT else servers[kind]
                        mark = self.moto_log.mark()
                        with server.sampler.section(load), self.moto_memory.section(load):
                            if load in ("pull", REDIRECT):
                                tail, digest = blobs[kind]["push_mono"][i]
                                taken = loads.pull_curl(server.url, {}, REPOSITORY, digest, self.payload.size,
                                                        redirected=load == REDIRECT)
                            else:
                                tail, digest = blobs[kind][load][i]
                                taken = (loads.push_monolithic(server.url, {}, REPOSITORY, self.payload, tail, digest)
                                         if load == "push_mono" else
                                         loads.push_chunked(server.url, {}, REPOSITORY, self.payload, tail, digest,
                                                            args.chunk_mib * MiB))
                        seconds[kind, load] += taken
                        requests[kind, load] += self.moto_log.since(mark)
                rates = {kind: args.blobs * self.payload.size / MiB / seconds[kind, load] for kind in SERVERS}
                log(f"  run {number + 1}: {KIND_LABELS[load]}: " + ", ".join(
                    f"{LABELS[kind]} {rates[kind]:.1f} MiB/s" for kind in SERVERS))
            figures = {kind: {load: args.blobs * self.payload.size / MiB / seconds[kind, load] for load in loads_run}
                       for kind in SERVERS}
            for kind in SERVERS:
                figures[kind]["peak_rss_mib"] = max(servers[kind].sampler.sections[load][0] for load in KINDS) / MiB
                figures[kind]["rss_after_start_mib"] = idle[kind] / MiB
                figures[kind]["s3_requests_per_blob"] = {
                    load: {method: round(n / args.blobs, 2) for method, n in sorted(requests[kind, load].items())}
                    for load in loads_run}
                figures[kind]["keys_in_bucket"] = len(self.moto.keys(buckets[kind]))
            figures["moto_peak_rss_mib"] = self.moto_memory.peak_rss / MiB
            self.runs.append(figures)
        finally:
            for server in (*servers.values(), *redirecting.values()):
                server.stop()
            for bucket in buckets.values():
                self.empty(bucket)

    def main(self) -> dict:
        (self.workdir / "logs").mkdir(exist_ok=True)
        os.environ.update(CREDENTIALS)   # ours (and moto) read the AWS_* variables
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            os.environ.pop(name, None)
        self.moto = MotoServer(self.workdir / "logs" / "moto.log")
        self.moto_log = MotoLog(self.workdir / "logs" / "moto.log")
        self.moto_memory = MemorySampler(self.moto.process.pid)
        self.moto_memory.start()
        try:
            log(f"moto_server at {self.moto.endpoint}; generating {self.args.blob_mib} MiB of random bytes")
            self.payload = loads.Payload(self.args.blob_mib * MiB)
            self.warm_bucket = self.moto.new_bucket()
            self.moto.client().put_object(Bucket=self.warm_bucket, Key="warm", Body=os.urandom(self.payload.size))
            for number in range(self.args.runs):
                self.run(number)
        finally:
            self.moto_memory.stop()
            self.moto.stop()
        return summarize(self.runs, self.args)


def summarize(runs: list[dict], args) -> dict:
    measured = KINDS + ((REDIRECT,) if REDIRECT in runs[0]["ours"] else ())
    out = {"blobs": args.blobs, "blob_mib": args.blob_mib, "chunk_mib": args.chunk_mib, "runs": len(runs),
           "distribution": distribution_version()}
    for kind in SERVERS:
        out[kind] = {"label": LABELS[kind]}
        for key in (*measured, "peak_rss_mib", "rss_after_start_mib"):
            out[kind][key] = statistics.median(r[kind][key] for r in runs)
        out[kind]["s3_requests_per_blob"] = runs[-1][kind]["s3_requests_per_blob"]
        out[kind]["per_run"] = {load: [round(r[kind][load], 1) for r in runs] for load in measured}
    out["ratio"] = {load: statistics.median(r["ours"][load] / r["reference"][load] for r in runs) for load in measured}
    if REDIRECT in measured:
        out["redirect_note"] = ("pull_redirect is another path than pull: both registries answer a 307 to a "
                                "presigned URL (ours with redirect: true, Distribution by default) and moto "
                                "sends the bytes; no target")
    out["moto_peak_rss_mib"] = max(r["moto_peak_rss_mib"] for r in runs)
    out["targets"] = {f"{load}_ours_at_least_reference": out["ratio"][load] >= 1.0 for load in KINDS}
    return out


def table(out: dict) -> str:
    rows = []
    size = f"{out['blobs']} × {out['blob_mib']} MiB"
    for load in KINDS:
        label = KIND_LABELS[load] + (f" ({out['chunk_mib']} MiB)" if load == "push_chunked" else "")
        met = out["targets"][f"{load}_ours_at_least_reference"]
        rows.append([f"{label}, {size} [MiB/s]", fmt(out["ours"][load], 1), fmt(out["reference"][load], 1),
                     f"{out['ratio'][load]:.3f}", "≥ 1", "yes" if met else "NO"])
    if REDIRECT in out["ratio"]:
        rows.append([f"{KIND_LABELS[REDIRECT]}, {size} [MiB/s] (another path: see below)",
                     fmt(out["ours"][REDIRECT], 1), fmt(out["reference"][REDIRECT], 1),
                     f"{out['ratio'][REDIRECT]:.3f}", "none", ""])
    for load in out["ratio"]:
        per_blob = [", ".join(f"{n:g} {method}" for method, n in out[kind]["s3_requests_per_blob"][load].items())
                    for kind in SERVERS]
        rows.append([f"requests to S3 per blob, {KIND_LABELS[load]} (last run)", *per_blob, "", "", ""])
    rows.append(["RSS of the server's process tree after start-up [MiB]",
                 fmt(out["ours"]["rss_after_start_mib"], 0), fmt(out["reference"]["rss_after_start_mib"], 0),
                 "", "", ""])
    rows.append(["peak RSS of the server's process tree, pushing and pulling [MiB]",
                 fmt(out["ours"]["peak_rss_mib"], 0), fmt(out["reference"]["peak_rss_mib"], 0), "", "", ""])
    text = render_table(rows, ["figure", LABELS["ours"], LABELS["reference"], "ours/reference", "target", "met?"],
                        markdown=True)
    if REDIRECT in out["ratio"]:
        text += ("\n\nThe redirect row is not the stream-through pull: a second server of each kind on the same "
                 "bucket answers the GET with a 307 to a presigned URL (ours `redirect: true`, off by default; "
                 "Distribution's default) and curl fetches the blob from moto itself.")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--blobs", type=int, default=4)
    parser.add_argument("--blob-mib", type=int, default=64)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--patience", type=float, default=30, help="seconds to wait for a quiet machine")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    parser.add_argument("--no-redirect", action="store_true",
                        help="skip the pulls by redirect to presigned URLs (reported apart)")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    if moto_executable() is None:
        sys.exit("moto_server is not installed: .venv/bin/pip install -e '.[test]'")
    workdir = Path(tempfile.mkdtemp(prefix="s3-bench-", dir=args.workdir))
    log(f"working in {workdir}")
    try:
        out = Bench(args, workdir).main()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(out, indent=2))
    print()
    print(table(out))


if __name__ == "__main__":
    main()
