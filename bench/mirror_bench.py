"""Pull-through mirrors side by side (issue 18): ours (`plugins: [mirror]`) against CNCF
Distribution 2.8 in proxy mode, both in front of the same upstream.

    .venv/bin/python bench/mirror_bench.py [--quick] [--runs N] [--layers 4] [--layer-mib 128]
                                           [--parallel 1] [--patience SECONDS] [--keep]

The upstream is our registry, open (`auth: {enabled: false}`), with `http.accessLog: json`, on
127.0.0.1; it holds one image, `bench/big:latest`: a small config and `--layers` layers of
`--layer-mib` MiB of random bytes (loads.push_payload_image). The mirrors, each on a fresh store
every run, on 127.0.0.1:

  ours          `registry serve`, open, `plugins: [mirror]`, `pluginConfig.mirror.upstreams:
                [{url: <upstream>}]`, `tagTtl: 300`
  Distribution  Debian's docker-registry, filesystem storage, `proxy: {remoteurl: <upstream>}`

A pull is what a client does (loads.pull_image): GET the manifest by tag, then the config and every
layer with curl into /dev/null (`--parallel` at a time; sizes checked). Measured each run, the
mirrors taking turns in who goes first:

  direct        a pull from the upstream itself (before each mirror's cold pull; the ratios use
                the median of the run's direct pulls)
  cold          the first pull through the mirror (nothing cached)
  warm          the same pull again, at once
  after TTL     ours only: the mirror restarted on its store with `tagTtl: 0`, so every tag is due
                for its check, and pulled again (Distribution's proxy asks the upstream about a tag
                on every pull; it has no TTL)

and for each, the requests and bytes the upstream served, read from its access log (method,
route, bytesOut of the lines written during that pull), and the peak RSS of the mirror's process
tree during the cold pull. Figures are medians over the runs (ratios: the median of each run's
ratio); request counts and bytes are the largest seen in any run.

Targets (ours, issue 18): cold pull within 1.3× of direct, each blob fetched from the upstream once
(bytes fetched = the image's size); warm pull within 1.1× of direct with no upstream request; after
the TTL at most one HEAD per tag. Prints a JSON summary, then a Markdown table.

`--quick`: one run, 64 MiB layers. The machine may be shared (2 cores): before each pull the
script waits (at most --patience seconds) for a quiet disk and CPU (servers.wait_for_quiet*);
figures from a busy machine are provisional.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loads  # noqa: E402
from compare import fmt, render_table  # noqa: E402
from loads import MiB  # noqa: E402
from servers import (Distribution, OurRegistry, distribution_config, distribution_version,  # noqa: E402
                     wait_for_quiet_machine)

REPOSITORY, TAG = "bench/big", "latest"
MIRRORS = ("ours", "reference")
LABELS = {"ours": "ours (mirror plugin)", "reference": "Distribution 2.8 (proxy)"}
WARM_TTL = 300


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the upstream's access log ---------------------------------------------------------------------


class AccessLog:
    """The JSON lines (`http.accessLog: json`) our upstream writes to its log file."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> list[dict]:
        time.sleep(0.3)   # a worker writes its line when the response starts or ends
        with open(self.path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        entries = []
        for line in text.splitlines():
            if line.startswith("{") and '"requestId"' in line:
                entries.append(json.loads(line))
        return entries


def kind_of(entry: dict) -> str:
    route = entry.get("route") or ""
    for kind in ("manifests", "blobs/uploads", "blobs", "tags", "referrers"):
        if f"/{kind}/" in route:
            return f"{entry['method']} {kind}"
    return f"{entry['method']} {route}"


def served(entries: list[dict]) -> dict:
    """What the upstream served: requests by method and kind, bytes sent, blob GETs."""
    kinds = collections.Counter(kind_of(e) for e in entries)
    return {"requests": len(entries), "by_kind": dict(sorted(kinds.items())),
            "bytes": sum(e.get("bytesOut") or 0 for e in entries),
            "blob_gets": kinds.get("GET blobs", 0),
            "heads": sum(n for k, n in kinds.items() if k.startswith("HEAD "))}


# --- servers ---------------------------------------------------------------------------------------


def start_upstream(workdir: Path) -> OurRegistry:
    server = OurRegistry(workdir / "upstream", workdir / "logs" / "upstream.log", auth=False, config_dir=workdir)
    server.config = workdir / "upstream.yaml"
    server.config.write_text("auth:\n  enabled: false\nhttp:\n  accessLog: json\n")
    server.label = "upstream (ours, open)"
    return server.start()


def our_mirror(workdir: Path, store: Path, upstream: str, ttl: int, name: str) -> OurRegistry:
    server = OurRegistry(store, workdir / "logs" / f"{name}.log", auth=False, config_dir=workdir)
    server.config = workdir / f"{name}.yaml"
    server.config.write_text("auth:\n  enabled: false\nplugins: [mirror]\npluginConfig:\n  mirror:\n"
                             f"    upstreams:\n      - url: {upstream}\n    tagTtl: {ttl}\n")
    server.label = LABELS["ours"]
    return server


def distribution_proxy(workdir: Path, root: Path, upstream: str, name: str) -> Distribution:
    server = Distribution(root, workdir / "logs" / f"{name}.log", workdir)
    server.config.write_text(distribution_config(server.root, server.port) + f"proxy:\n  remoteurl: {upstream}\n")
    server.label = LABELS["reference"]
    return server


# --- the measurement -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.runs: list[dict] = []

    def quiet(self) -> None:
        wait_for_quiet_machine(self.args.patience, log=log)

    def pull(self, url: str, what: str, sampler_section=None) -> dict:
        """One pull, timed, with what the upstream served during it."""
        self.quiet()
        mark = self.access.mark()
        if sampler_section is not None:
            with sampler_section:
                figures = loads.pull_image(url, {}, REPOSITORY, TAG, parallel=self.args.parallel)
        else:
            figures = loads.pull_image(url, {}, REPOSITORY, TAG, parallel=self.args.parallel)
        if figures["digest"] != self.image["digest"]:
            raise loads.LoadError(f"{what}: the manifest's digest is {figures['digest']}, not {self.image['digest']}")
        upstream = served(self.access.since(mark))
        log(f"  {what}: {figures['seconds']:.2f} s ({figures['bytes'] / MiB / figures['seconds']:.0f} MiB/s); "
            f"upstream served {upstream['requests']} requests {upstream['by_kind']}, "
            f"{upstream['bytes'] / MiB:.1f} MiB")
        return {"seconds": figures["seconds"], "upstream": upstream}

    def run(self, number: int) -> None:
        order = MIRRORS[number % 2:] + MIRRORS[:number % 2]
        figures: dict = {"direct": []}
        for kind in order:
            figures["direct"].append(self.pull(self.upstream.url, f"run {number + 1}: direct"))
            name = f"run{number}-{kind}"
            store = self.workdir / name
            server = (our_mirror(self.workdir, store, self.upstream.url, WARM_TTL, name) if kind == "ours"
                      else distribution_proxy(self.workdir, store, self.upstream.url, name))
            try:
                server.start()
                figures[kind] = {
                    "cold": self.pull(server.url, f"run {number + 1}: {server.label}: cold",
                                      server.sampler.section("cold")),
                    "warm": self.pull(server.url, f"run {number + 1}: {server.label}: warm"),
                }
                figures[kind]["cold_rss"] = server.sampler.sections["cold"][0]
                if kind == "ours":   # every tag due for its check: restart on the same store with tagTtl 0
                    server.stop()
                    server = our_mirror(self.workdir, store, self.upstream.url, 0, name + "-ttl0")
                    server.start()
                    figures[kind]["after_ttl"] = self.pull(server.url, f"run {number + 1}: {server.label}: "
                                                                       "warm, after the TTL")
            finally:
                server.stop()
                shutil.rmtree(store, ignore_errors=True)
        self.runs.append(figures)

    def main(self) -> dict:
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.upstream = start_upstream(self.workdir)
        try:
            self.access = AccessLog(self.upstream.log_path)
            log(f"pushing {self.args.layers} × {self.args.layer_mib} MiB to the upstream {self.upstream.url}")
            payload = loads.Payload(self.args.layer_mib * MiB)
            self.image = loads.push_payload_image(self.upstream.url, {}, REPOSITORY, payload, self.args.layers, TAG)
            del payload
            loads.pull_image(self.upstream.url, {}, REPOSITORY, TAG)   # the upstream's files into the page cache
            for number in range(self.args.runs):
                self.run(number)
        finally:
            self.upstream.stop()
        return summarize(self.runs, self.image, self.args)


# --- the report ------------------------------------------------------------------------------------


def summarize(runs: list[dict], image: dict, args) -> dict:
    blobs = len(image["blobs"])
    out = {"image": {"layers": args.layers, "layer_mib": args.layer_mib, "blobs": blobs, "bytes": image["size"]},
           "runs": len(runs), "parallel": args.parallel, "distribution": distribution_version(),
           "direct_s": statistics.median(d["seconds"] for r in runs for d in r["direct"])}
    for kind in MIRRORS:
        rows = [r[kind] for r in runs if kind in r]
        if not rows:
            continue
        direct = [statistics.median(d["seconds"] for d in r["direct"]) for r in runs if kind in r]
        mine = {"label": LABELS[kind]}
        for phase in ("cold", "warm", "after_ttl"):
            phases = [row[phase] for row in rows if phase in row]
            if not phases:
                continue
            mine[phase] = {
                "seconds": statistics.median(p["seconds"] for p in phases),
                "ratio_to_direct": statistics.median(p["seconds"] / d for p, d in zip(phases, direct)),
                "upstream_requests": max(p["upstream"]["requests"] for p in phases),
                "upstream_by_kind": max((p["upstream"]["by_kind"] for p in phases),
                                        key=lambda k: sum(k.values())),
                "upstream_bytes": max(p["upstream"]["bytes"] for p in phases),
                "upstream_bytes_to_image": max(p["upstream"]["bytes"] for p in phases) / image["size"],
                "upstream_blob_gets": max(p["upstream"]["blob_gets"] for p in phases),
                "upstream_heads": max(p["upstream"]["heads"] for p in phases),
            }
        mine["cold_peak_rss_mib"] = statistics.median(row["cold_rss"] for row in rows) / MiB
        out[kind] = mine
    out["targets"] = targets(out, blobs)
    return out


def targets(out: dict, blobs: int) -> dict:
    ours = out.get("ours")
    if not ours:
        return {}
    cold, warm, after = ours.get("cold", {}), ours.get("warm", {}), ours.get("after_ttl", {})
    met = {
        "cold_within_1.3x_direct": cold.get("ratio_to_direct", 99) <= 1.3,
        "cold_each_blob_fetched_once": cold.get("upstream_blob_gets") == blobs
                                       and cold.get("upstream_bytes_to_image", 99) <= 1.001,
        "warm_within_1.1x_direct": warm.get("ratio_to_direct", 99) <= 1.1,
        "warm_no_upstream_request": warm.get("upstream_requests") == 0,
    }
    if after:
        met["after_ttl_at_most_one_head_per_tag"] = (after["upstream_requests"] == after["upstream_heads"] <= 1)
    return met


def table(out: dict) -> str:
    ours, ref = out.get("ours", {}), out.get("reference", {})
    met = out.get("targets", {})
    yes = lambda key: "" if key not in met else ("yes" if met[key] else "NO")  # noqa: E731

    def cell(side: dict, phase: str, key: str, digits: int = 2) -> str:
        value = side.get(phase, {}).get(key)
        return fmt(value, digits) if isinstance(value, (int, float)) else "n/a"

    def kinds(side: dict, phase: str) -> str:
        found = side.get(phase, {}).get("upstream_by_kind")
        if found is None:
            return "n/a"
        return ", ".join(f"{n} {k}" for k, n in found.items()) or "none"

    blobs = out["image"]["blobs"]
    rows = [
        ["direct pull from the upstream [s]", fmt(out["direct_s"], 2), fmt(out["direct_s"], 2), "", ""],
        ["cold pull through the mirror [s]", cell(ours, "cold", "seconds"), cell(ref, "cold", "seconds"), "", ""],
        ["cold / direct [×]", cell(ours, "cold", "ratio_to_direct"), cell(ref, "cold", "ratio_to_direct"),
         "≤ 1.3", yes("cold_within_1.3x_direct")],
        ["cold: bytes from the upstream / image size [×]", cell(ours, "cold", "upstream_bytes_to_image", 3),
         cell(ref, "cold", "upstream_bytes_to_image", 3), "1.000", yes("cold_each_blob_fetched_once")],
        [f"cold: blob GETs at the upstream (the image has {blobs} blobs)", cell(ours, "cold", "upstream_blob_gets", 0),
         cell(ref, "cold", "upstream_blob_gets", 0), str(blobs), ""],
        ["cold: upstream requests", kinds(ours, "cold"), kinds(ref, "cold"), "", ""],
        ["warm pull through the mirror [s]", cell(ours, "warm", "seconds"), cell(ref, "warm", "seconds"), "", ""],
        ["warm / direct [×]", cell(ours, "warm", "ratio_to_direct"), cell(ref, "warm", "ratio_to_direct"),
         "≤ 1.1", yes("warm_within_1.1x_direct")],
        ["warm: upstream requests", kinds(ours, "warm"), kinds(ref, "warm"), "none", yes("warm_no_upstream_request")],
        ["warm after the TTL (ours: tagTtl 0) / direct [×]", cell(ours, "after_ttl", "ratio_to_direct"),
         "(no TTL: asks every pull)", "", ""],
        ["warm after the TTL: upstream requests", kinds(ours, "after_ttl"), kinds(ref, "warm"), "≤ 1 HEAD per tag",
         yes("after_ttl_at_most_one_head_per_tag")],
        ["peak RSS of the mirror during the cold pull [MiB]", fmt(ours.get("cold_peak_rss_mib"), 0),
         fmt(ref.get("cold_peak_rss_mib"), 0), "", ""],
    ]
    return render_table(rows, ["figure", LABELS["ours"], LABELS["reference"], "target (ours)", "met?"], markdown=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run, 64 MiB layers")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mib", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=1, help="blobs fetched at once by the client")
    parser.add_argument("--patience", type=float, default=30, help="seconds to wait for a quiet machine")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, stores)")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.layer_mib = args.layer_mib or (64 if args.quick else 128)
    workdir = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=args.workdir))
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
