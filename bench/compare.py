"""Our registry against CNCF Distribution 2.8, side by side, same loads, alternating (issue 6).

    .venv/bin/python bench/compare.py [--quick] [--runs N] [--only SECTION[,SECTION…]]
                                      [--auth auto|on|off] [--workdir DIR] [--stores DIR] [--no-write]
                                      [--patience SECONDS]
    .venv/bin/python bench/compare.py --render-only    (RESULTS.md again from bench/results.json)

Starts `registry serve` (gunicorn, default workers and threads) and Debian's docker-registry on
127.0.0.1, each on a fresh store per run, and measures for each:

  push          blob push, monolithic (POST + PUT) and chunked (8 MiB PATCHes), 4 × 128 MiB
  pull          blob GET of 128 MiB (curl), and 1 MiB Range reads at random offsets
  manifest-get  manifest GET by tag at 1, 16 and 64 connections (wrk: req/s, p50, p99); ours both
                with auth on (Bearer token) and open, for the cost of auth
  tag-push      1,000 new tags of one manifest pushed one after the other on one connection, then
                1,000 distinct manifests (a config blob and a manifest each, as CI makes them),
                into every server at once in 10 alternating blocks of 100; ours also with the
                libgit2 metadata writer (`storage: {metaWriter: libgit2}`)
  large-store   start-up time, catalog and tags list on stores of 1,000 and 100,000 tags
                (100 and 10,000 repositories), and their ratio 100k/1k (flatness)

plus the peak resident memory of each server's whole process tree in every section. Each figure
is the median over the runs. Prints a table (figure, ours, reference, ours/reference, target, met?)
and writes bench/RESULTS.md (machine, command, table, per-run figures, notes, profiles found in
bench/profiles/) and the raw figures to bench/results.json. `--quick`: one run, 3 s per wrk point,
200 tag pushes, 64 Range reads.

The machine may be shared: before each section the script waits (at most --patience seconds)
until the disk has neither written nor discarded anything for a second (servers.wait_for_quiet_disk)
and other processes use under 10 % of the CPU, and records what they used during the section.

Auth: `auto` (the default) runs ours as deployed, with auth on, when its token service answers
(GET /token with Basic admin:admin-demo), and falls back to an open registry otherwise, saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bigstore  # noqa: E402
import loads  # noqa: E402
from loads import MiB, Client  # noqa: E402
from servers import (DISTRIBUTION, Distribution, ForeignLoad, OurRegistry, distribution_version,  # noqa: E402
                     wait_for_quiet, wait_for_quiet_disk)

SECTIONS = ("push", "pull", "manifest-get", "tag-push", "large-store")
TAG_PUSH_BLOCKS = 10  # tag pushes alternate between the servers in this many blocks (interleaved_tag_pushes)
RANGE_BLOCKS = 4      # Range reads too (interleaved_blobs)
CONNECTIONS = (1, 16, 64)
DEMO_USER, DEMO_PASSWORD = "admin", "admin-demo"
APP, BLOBS = "bench/app", "bench/blobs"
SEARCH_PATHS = ("/api/v1/search?q=app", "/v1/search?q=app")


# --- figures ---------------------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    target: Callable | None = None  # (ours, reference) -> (text, met)
    digits: int = 1
    in_table: bool = True  # False: only in the per-run figures


def at_least(ratio: float):
    def target(ours, ref):
        met = None if ours is None or not ref else ours / ref >= ratio
        return f"≥ {ratio:g}× ref", met
    return target


def under(limit: float, unit: str):
    def target(ours, ref):
        return f"< {limit:g} {unit}", None if ours is None else ours < limit
    return target


FIGURES = [
    Figure("push_mono", "blob push, monolithic POST+PUT, 4 × 128 MiB", "MiB/s", target=at_least(1.0)),
    Figure("push_chunked", "blob push, chunked (8 MiB PATCHes), 4 × 128 MiB", "MiB/s", target=at_least(1.0)),
    Figure("pull", "blob pull, GET 128 MiB (curl), 4 blobs", "MiB/s", target=at_least(1.0)),
    Figure("range_rps", "blob Range reads, 1 MiB at random offsets", "reads/s", target=at_least(1.0)),
    Figure("range_p50", "blob Range read p50", "ms", higher_is_better=False, digits=2),
]
for c in CONNECTIONS:
    FIGURES += [
        Figure(f"mget_rps_c{c}", f"manifest GET by tag, {c} conn", "req/s",
               target=at_least(2.0) if c == 64 else None, digits=0),
        Figure(f"mget_p50_c{c}", f"manifest GET p50, {c} conn", "ms", higher_is_better=False, digits=2),
        Figure(f"mget_p99_c{c}", f"manifest GET p99, {c} conn", "ms", higher_is_better=False, digits=2),
    ]
FIGURES += [
    Figure("tags_per_s", "tag pushes (PUT manifest, new tag), 1 conn", "tags/s", target=at_least(1.0)),
    Figure("distinct_per_s", "distinct manifest pushes (config blob + manifest, new tag), 1 conn", "pushes/s",
           target=at_least(1.0)),
]
LARGE_FIGURES = [
    ("startup", "start-up until GET /v2/ answers", "s", 2),
    ("catalog_cold", "catalog n=100, first request after start", "ms", 1),
    ("catalog_warm", "catalog n=100, warm (median)", "ms", 2),
    ("catalog_walk", "catalog, all pages of n=1000", "ms", 1),
    ("tags_small", "tags list, 9-tag repository", "ms", 2),
    ("tags_big", "tags list, biggest repository, all tags", "ms", 1),
    ("tags_big_page", "tags list, biggest repository, n=100", "ms", 2),
    ("search", "search q=app (matches every repository)", "ms", 2),
    ("search_one", "search for one repository by name", "ms", 2),
]
for size in ("1k", "100k"):
    for key, label, unit, digits in LARGE_FIGURES:
        FIGURES.append(Figure(f"{key}_{size}", f"{label} ({size} tags)", unit, higher_is_better=False,
                              digits=digits))
MEMORY_SECTIONS = ("token", "push", "pull", "manifest-get", "tag-push", "large-store-1k", "large-store-100k")
MEMORY_LABELS = {"token": "one token request (Basic: a password check)"}
for section in MEMORY_SECTIONS:
    FIGURES.append(Figure(f"mem_{section}", f"peak RSS, {MEMORY_LABELS.get(section, section)}", "MiB",
                          higher_is_better=False, digits=0))
FIGURES.append(Figure("mem_push_pull", "peak RSS while pushing and pulling 1 GiB", "MiB",
                      higher_is_better=False, target=under(150, "MiB"), digits=0))
FIGURES.append(Figure("pss_push_pull", "peak PSS while pushing and pulling 1 GiB", "MiB",
                      higher_is_better=False, digits=0))
for section in MEMORY_SECTIONS:
    FIGURES.append(Figure(f"foreign_{section}", f"CPU used by other processes, {section}", "% of machine",
                          higher_is_better=False, digits=0, in_table=False))
BY_KEY = {f.key: f for f in FIGURES}


class Results:
    """figure key -> variant -> list of per-run values."""

    def __init__(self):
        self.values: dict[str, dict[str, list[float]]] = {}
        self.errors: list[str] = []

    def add(self, key: str, variant: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(key, {}).setdefault(variant, []).append(value)

    def median(self, key: str, variant: str) -> float | None:
        values = self.values.get(key, {}).get(variant)
        return statistics.median(values) if values else None


# --- the harness -----------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str          # "ours", "ours-alt", "reference"
    kind: str          # "ours" or "reference"
    auth: bool = False
    sections: tuple = SECTIONS
    durable: bool = False  # ours with `storage: {durable: true}`: fsync before answering, as Distribution
    meta_writer: str = "packs"  # ours with `storage: {metaWriter: libgit2}`: the reference metadata writer

    @property
    def label(self) -> str:
        if self.kind == "reference":
            return "Distribution 2.8"
        return (("ours (auth on)" if self.auth else "ours (open)") + (", durable" if self.durable else "")
                + (f", {self.meta_writer} writer" if self.meta_writer != "packs" else ""))


@dataclass
class Settings:
    runs: int
    wrk_seconds: float
    tag_pushes: int
    range_reads: int
    blob_mib: int = 128
    blob_count: int = 4
    chunk_mib: int = 8
    sections: tuple = SECTIONS
    workdir: Path = Path(".")
    stores: Path | None = None
    patience: float = 90


class Harness:
    def __init__(self, settings: Settings, variants: list[Variant]):
        self.s = settings
        self.variants = variants
        self.results = Results()
        self.payload = None
        self.image = loads.Image.make()

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    # --- servers ----------------------------------------------------------------------------------

    def server(self, variant: Variant, store: Path, log_name: str):
        logs = self.s.workdir / "logs"
        logs.mkdir(exist_ok=True)
        if variant.kind == "reference":
            return Distribution(store, logs / f"{log_name}.log", self.s.workdir)
        return OurRegistry(store, logs / f"{log_name}.log", variant.auth, self.s.workdir, durable=variant.durable,
                           meta_writer=variant.meta_writer)

    def headers(self, variant: Variant, server, scopes: list[str]) -> dict:
        if not variant.auth:
            return {}
        return {"Authorization": "Bearer " + loads.fetch_token(server.url, scopes, DEMO_USER, DEMO_PASSWORD)}

    # --- one run ----------------------------------------------------------------------------------

    def run(self, number: int) -> None:
        order = self.variants[number % len(self.variants):] + self.variants[:number % len(self.variants)]
        fresh_sections = [s for s in self.s.sections if s not in ("large-store", "tag-push", "push", "pull")]
        for variant in order:
            sections = [s for s in fresh_sections if s in variant.sections]
            if sections:
                self.fresh_store_run(number, variant, sections)
        blob_sections = [s for s in ("push", "pull") if s in self.s.sections]
        if blob_sections:
            self.guarded("push/pull", lambda: self.interleaved_blobs(
                number, [v for v in order if "push" in v.sections], blob_sections))
        if "tag-push" in self.s.sections:
            self.guarded("tag-push", lambda: self.interleaved_tag_pushes(
                number, [v for v in order if "tag-push" in v.sections]))
        if "large-store" in self.s.sections:
            for shape, size in ((bigstore.SMALL, "1k"), (bigstore.LARGE, "100k")):
                for variant in order:
                    if "large-store" in variant.sections:
                        self.guarded(f"large-store {size} {variant.label}",
                                     lambda v=variant: self.large_store(number, v, shape, size))

    def guarded(self, what: str, action: Callable) -> None:
        try:
            action()
        except Exception as e:  # one failed load must not lose the other figures
            message = f"run {self.run_number}: {what}: {type(e).__name__}: {e}"
            self.results.errors.append(message)
            self.log("FAILED " + message)
            traceback.print_exc()

    def fresh_store_run(self, number: int, variant: Variant, sections: list[str]) -> None:
        store = self.s.workdir / f"run{number}-{variant.name}"
        server = self.server(variant, store, f"run{number}-{variant.name}")
        self.log(f"run {number + 1}: {variant.label}: starting on a fresh store")
        try:
            server.start()
            scopes = [f"repository:{APP}:pull,push", f"repository:{BLOBS}:pull,push"]
            if variant.auth:  # what one token request costs (the password check), on its own
                self.quiet()
                with server.sampler.section("token"):
                    self.headers(variant, server, scopes)
            loads.push_image(server.url, self.headers(variant, server, scopes), APP, self.image)
            state = {}
            for section in sections:
                self.quiet()
                # a fresh token for each section, fetched outside the section's memory figure
                headers = self.headers(variant, server, scopes)
                load = ForeignLoad()
                with server.sampler.section(section):
                    self.guarded(f"{section} {variant.label}",
                                 lambda s=section: getattr(self, "load_" + s.replace("-", "_"))(
                                     number, variant, server, headers, state))
                self.results.add(f"foreign_{section}", variant.name, load.share() * 100)
            for section, (rss, pss) in server.sampler.sections.items():
                self.results.add(f"mem_{section}", variant.name, rss / MiB)
        except Exception as e:
            self.results.errors.append(f"run {number + 1}: {variant.label}: {type(e).__name__}: {e}")
            self.log(f"FAILED {variant.label}: {e}")
            traceback.print_exc()
        finally:
            server.stop()
            set_aside(store, self.s.workdir)
            os.sync()  # no write-back of this server's gigabyte while the next one is measured

    # --- loads ------------------------------------------------------------------------------------

    def blob_labels(self, number: int, variant: Variant, kind: str) -> list[tuple[bytes, str]]:
        return [self.payload.blob(f"{number}-{variant.name}-{kind}-{i}") for i in range(self.s.blob_count)]

    def load_manifest_get(self, number, variant, server, headers, state) -> None:
        headers = {**headers, "Accept": loads.OCI_MANIFEST}
        url = f"{server.url}/v2/{APP}/manifests/latest"
        for c in CONNECTIONS:
            figures = loads.wrk(url, headers, c, self.s.wrk_seconds, self.s.workdir)
            if figures["errors"]:
                raise loads.LoadError(f"wrk at {c} connections: {figures['errors']} errors of "
                                      f"{figures['requests']} requests")
            self.results.add(f"mget_rps_c{c}", variant.name, figures["rps"])
            self.results.add(f"mget_p50_c{c}", variant.name, figures["p50_ms"])
            self.results.add(f"mget_p99_c{c}", variant.name, figures["p99_ms"])
            self.log(f"  manifest GET, {c:>2} conn: {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:.2f} ms"
                     f"  p99 {figures['p99_ms']:.2f} ms")

    @contextlib.contextmanager
    def both_servers(self, number: int, variants: list[Variant], label: str, scopes: list[str]):
        """Every variant's server started on a fresh store at once, with its headers; stopped and
        its store removed afterwards. Sections that alternate between servers use it."""
        servers, headers = {}, {}
        try:
            for variant in variants:
                name = f"run{number}-{variant.name}-{label}"
                servers[variant.name] = server = self.server(variant, self.s.workdir / name, name)
                self.log(f"run {number + 1}: {variant.label}: starting on a fresh store ({label})")
                server.start()
                headers[variant.name] = self.headers(variant, server, scopes)
            yield servers, headers
        finally:
            for variant_name, server in servers.items():
                server.stop()
                set_aside(self.s.workdir / f"run{number}-{variant_name}-{label}", self.s.workdir)
            os.sync()

    @staticmethod
    def taking_turns(variants: list[Variant], turn: int) -> list[Variant]:
        return variants[turn % len(variants):] + variants[:turn % len(variants)]

    def sampled(self, servers: dict, section: str) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for server in servers.values():
            stack.enter_context(server.sampler.section(section))
        return stack

    def interleaved_blobs(self, number: int, variants: list[Variant], sections: list[str]) -> None:
        """Blob pushes and pulls into both servers at once, blob by blob, the servers taking turns
        (who goes first alternates): a blob of each server in every stretch of time, so the disk's
        write-back of the last blob slows both alike. Rates are all bytes over all seconds."""
        size_mib = self.payload.size / MiB
        with self.both_servers(number, variants, "blobs", [f"repository:{BLOBS}:pull,push"]) as (servers, headers):
            mono = {v.name: self.blob_labels(number, v, "mono") for v in variants}
            if "push" in sections:
                self.quiet()
                load, seconds = ForeignLoad(), {}
                with self.sampled(servers, "push"):
                    for kind in ("mono", "chunked"):
                        labels = mono if kind == "mono" else {v.name: self.blob_labels(number, v, kind)
                                                             for v in variants}
                        for i in range(self.s.blob_count):
                            for v in self.taking_turns(variants, i):
                                tail, digest = labels[v.name][i]
                                url, h = servers[v.name].url, headers[v.name]
                                taken = (loads.push_monolithic(url, h, BLOBS, self.payload, tail, digest) if kind == "mono"
                                         else loads.push_chunked(url, h, BLOBS, self.payload, tail, digest,
                                                                 self.s.chunk_mib * MiB))
                                seconds[v.name, kind] = seconds.get((v.name, kind), 0.0) + taken
                for v in variants:
                    mono_rate = self.s.blob_count * size_mib / seconds[v.name, "mono"]
                    chunked_rate = self.s.blob_count * size_mib / seconds[v.name, "chunked"]
                    self.results.add("push_mono", v.name, mono_rate)
                    self.results.add("push_chunked", v.name, chunked_rate)
                    self.results.add("foreign_push", v.name, load.share() * 100)
                    self.log(f"  {v.label}: push monolithic {mono_rate:.0f} MiB/s, chunked {chunked_rate:.0f} MiB/s")
            else:  # --only pull: push the blobs first, unmeasured
                for v in variants:
                    for tail, digest in mono[v.name]:
                        loads.push_monolithic(servers[v.name].url, headers[v.name], BLOBS, self.payload, tail, digest)
            if "pull" in sections:
                self.quiet()
                load, seconds, reads = ForeignLoad(), dict.fromkeys(servers, 0.0), {v.name: [] for v in variants}
                with self.sampled(servers, "pull"):
                    for i in range(self.s.blob_count):
                        for v in self.taking_turns(variants, i):
                            seconds[v.name] += loads.pull_curl(servers[v.name].url, headers[v.name], BLOBS,
                                                               mono[v.name][i][1], self.payload.size)
                    block = max(self.s.range_reads // RANGE_BLOCKS, 1)
                    for b in range(RANGE_BLOCKS):
                        for v in self.taking_turns(variants, b):
                            tail, digest = mono[v.name][0]
                            reads[v.name].append(loads.range_reads(servers[v.name].url, headers[v.name], BLOBS,
                                                                   digest, self.payload, tail, block,
                                                                   seed=number * RANGE_BLOCKS + b))
                for v in variants:
                    rate = self.s.blob_count * size_mib / seconds[v.name]
                    per_s = block * RANGE_BLOCKS / sum(block / r["per_s"] for r in reads[v.name])
                    p50 = statistics.median(r["p50_ms"] for r in reads[v.name])
                    self.results.add("pull", v.name, rate)
                    self.results.add("range_rps", v.name, per_s)
                    self.results.add("range_p50", v.name, p50)
                    self.results.add("foreign_pull", v.name, load.share() * 100)
                    self.log(f"  {v.label}: pull {rate:.0f} MiB/s; Range reads {per_s:.0f}/s, p50 {p50:.2f} ms")
            for v in variants:
                sampled = servers[v.name].sampler.sections
                for section in sections:
                    self.results.add(f"mem_{section}", v.name, sampled[section][0] / MiB)
                self.results.add("mem_push_pull", v.name, max(sampled[s][0] for s in sections) / MiB)
                self.results.add("pss_push_pull", v.name, max(sampled[s][1] for s in sections) / MiB)

    def interleaved_tag_pushes(self, number: int, variants: list[Variant]) -> None:
        """Tag pushes into both servers at once, in TAG_PUSH_BLOCKS blocks that alternate between
        them (who goes first alternates too): this machine's speed drifts over seconds (other
        people's load, write-back), and a block of each server in every stretch of time shares
        the drift out evenly. Each server ends with `tag_pushes` tags in one repository, its rate
        is all its tags over all its seconds, and its memory peak spans all its blocks."""
        block = self.s.tag_pushes // TAG_PUSH_BLOCKS
        with self.both_servers(number, variants, "tags", [f"repository:{APP}:pull,push"]) as (servers, headers):
            for v in variants:
                loads.push_image(servers[v.name].url, headers[v.name], APP, self.image)
            self.quiet()
            seconds = dict.fromkeys(servers, 0.0)
            load = ForeignLoad()
            with self.sampled(servers, "tag-push"):
                for b in range(TAG_PUSH_BLOCKS):
                    for v in self.taking_turns(variants, b):
                        rate = loads.push_tags(servers[v.name].url, headers[v.name], APP, self.image, block,
                                               prefix=f"t{b}-")
                        seconds[v.name] += block / rate
                distinct = dict.fromkeys(servers, 0.0)
                for b in range(TAG_PUSH_BLOCKS):
                    for v in self.taking_turns(variants, b):
                        rate = loads.push_distinct(servers[v.name].url, headers[v.name], APP, self.image, block,
                                                   prefix=f"d{b}-")
                        distinct[v.name] += block / rate
            for v in variants:
                self.results.add("distinct_per_s", v.name, block * TAG_PUSH_BLOCKS / distinct[v.name])
                rate = block * TAG_PUSH_BLOCKS / seconds[v.name]
                self.results.add("tags_per_s", v.name, rate)
                self.results.add("foreign_tag-push", v.name, load.share() * 100)
                self.results.add("mem_tag-push", v.name, servers[v.name].sampler.sections["tag-push"][0] / MiB)
                self.log(f"  {v.label}: {block * TAG_PUSH_BLOCKS} tag pushes in {TAG_PUSH_BLOCKS} "
                         f"alternating blocks: {rate:.0f} tags/s")

    # --- large stores -----------------------------------------------------------------------------

    def large_store(self, number: int, variant: Variant, shape: bigstore.Shape, size: str) -> None:
        store = self.large_store_path(variant, shape, size)
        server = self.server(variant, store, f"run{number}-{variant.name}-large-{size}")
        section = f"large-store-{size}"
        try:
            self.quiet()
            load = ForeignLoad()
            server.start()
            scopes = [f"repository:{shape.big}:pull", f"repository:{shape.small}:pull",
                      f"repository:{APP}:pull", "registry:catalog:*"]
            client = Client(server.url, self.headers(variant, server, scopes))
            with server.sampler.section(section):
                add = lambda key, value: self.results.add(f"{key}_{size}", variant.name, value)  # noqa: E731
                add("startup", server.startup)
                seconds, _, data = loads.timed_get(client, "/v2/_catalog?n=100")
                assert len(json.loads(data)["repositories"]) == 100
                add("catalog_cold", seconds * 1000)
                count = 10 if self.s.wrk_seconds < 10 else 30
                add("catalog_warm", loads.median_get_ms(client, "/v2/_catalog?n=100", count))
                seconds, seen = loads.walk_pages(client, "/v2/_catalog?n=1000", "repositories")
                if seen < shape.repositories:
                    raise loads.LoadError(f"the catalog listed {seen} of {shape.repositories} repositories")
                add("catalog_walk", seconds * 1000)

                def tags_of(count_expected):
                    def check(document):
                        if len(document["tags"]) != count_expected:
                            raise loads.LoadError(f"tags list: {len(document['tags'])} tags, "
                                                  f"expected {count_expected}")
                    return check
                add("tags_small", loads.median_get_ms(client, f"/v2/{shape.small}/tags/list", count,
                                                      tags_of(bigstore.TAGS_PER_REPOSITORY)))
                add("tags_big", loads.median_get_ms(client, f"/v2/{shape.big}/tags/list", count,
                                                    tags_of(shape.tag_count(0))))
                add("tags_big_page", loads.median_get_ms(client, f"/v2/{shape.big}/tags/list?n=100", count))
                search = self.search_path(client)
                if search:
                    add("search", loads.median_get_ms(client, search, count))
                    add("search_one", loads.median_get_ms(client, search.replace("q=app", "q=ns000%2Fapp042"), count))
                client.close()
            rss, _ = server.sampler.sections[section]
            self.results.add(f"mem_{section}", variant.name, rss / MiB)
            self.results.add(f"foreign_{section}", variant.name, load.share() * 100)
            self.log(f"  {variant.label}, {size} tags: start-up {server.startup:.2f} s, catalog cold "
                     f"{self.results.values[f'catalog_cold_{size}'][variant.name][-1]:.1f} ms")
        finally:
            server.stop()

    def quiet(self) -> None:
        """Let other people's processes (a shared machine) finish their burst before measuring."""
        wait_for_quiet_disk(patience=self.s.patience, log=self.log)
        wait_for_quiet(limit=0.10, patience=self.s.patience, log=self.log)

    def search_path(self, client: Client) -> str | None:
        for path in SEARCH_PATHS:
            try:
                client.request("GET", path)
                return path
            except (loads.LoadError, OSError):
                continue
        return None

    def large_store_path(self, variant: Variant, shape: bigstore.Shape, size: str) -> Path:
        base = self.s.stores or self.s.workdir
        name = f"{'distribution' if variant.kind == 'reference' else 'ours-auth' if variant.auth else 'ours-open'}-{size}"
        path = base / name
        marker = base / f"{name}.done"
        if marker.exists():
            info = json.loads(marker.read_text() or "{}")
            if variant.kind == "ours" and "views_seconds" not in info:
                # built before bigstore.py wrote the saved views, as a bulk import must: write them
                # now, outside every figure (else the first start-up would build them, once)
                info["views_seconds"] = bigstore.write_views(path, auth=variant.auth)
                self.log(f"  wrote the saved views of {path}: {info['views_seconds']} s")
                marker.write_text(json.dumps(info))
            return path
        shutil.rmtree(path, ignore_errors=True)
        self.log(f"building the {size}-tag store for {variant.label} in {path}")
        if variant.kind == "reference":
            info = bigstore.build_distribution(path, shape, self.image)
        else:
            info = bigstore.build_ours(path, shape, self.image, auth=variant.auth)
        self.log(f"  built in {info['seconds']:.1f} s")
        marker.write_text(json.dumps(info))
        return path

    def run_all(self) -> None:
        if any(s in self.s.sections for s in ("push", "pull")):
            self.log(f"generating {self.s.blob_mib} MiB of random bytes")
            self.payload = loads.Payload(self.s.blob_mib * MiB)
        for number in range(self.s.runs):
            self.run_number = number + 1
            self.run(number)


# --- auth probe ------------------------------------------------------------------------------------


DURABLE_FIGURES = ("push_mono", "push_chunked", "tags_per_s", "distinct_per_s", "mem_push_pull")
SET_ASIDE = "set-aside"  # stores done with, deleted at the end (set_aside)


def auth_available(workdir: Path) -> tuple[bool, str]:
    """Whether ours, started as deployed, issues a token that /v2/ accepts; and why not."""
    store = workdir / "auth-probe"
    server = OurRegistry(store, workdir / "logs" / "auth-probe.log", auth=True, config_dir=workdir)
    try:
        try:
            server.start(timeout=60)
        except RuntimeError as e:
            lines = [line for line in str(e).splitlines() if line.strip()]
            return False, f"`registry serve` with the default config did not start: {lines[-1] if lines else e}"
        try:
            token = loads.fetch_token(server.url, [f"repository:{APP}:pull,push"], DEMO_USER, DEMO_PASSWORD)
        except Exception as e:
            return False, f"GET /token?service=registry with Basic {DEMO_USER}: {e}"
        client = Client(server.url, {"Authorization": f"Bearer {token}"})
        try:
            client.request("GET", "/v2/")
        except Exception as e:
            return False, f"GET /v2/ with the Bearer token: {e}"
        finally:
            client.close()
        return True, "token service answers"
    finally:
        server.stop()
        set_aside(store, workdir)


def set_aside(store: Path, workdir: Path) -> None:
    """Move a store that is done with out of the way; all are deleted when the benchmark ends.

    Not deleted now: this machine's root file system is ext4 without a journal, where each new
    file's inode is found by skipping every inode deleted in the last 60 to 300 seconds (the
    kernel's recently_deleted(), seen with perf). Deleting a store of thousands of files made the
    next sections' file creations cost up to 1 ms each, for both servers, for minutes
    (bench/profiles/notes.md)."""
    if store.exists():
        aside = workdir / SET_ASIDE
        aside.mkdir(exist_ok=True)
        store.rename(aside / f"{store.name}-{time.monotonic_ns()}")


# --- report ----------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def table_rows(results: Results, main: str, alt: Variant | None, extras: list[Variant] = ()) -> list[list[str]]:
    """The table: each figure for ours (variant `main`) and the reference; then ours with
    `storage.durable` (the same fsyncs as Distribution) for pushes; then ours' other auth mode
    (`alt`) for manifest GET and the req/s lost to auth; then the flatness ratios."""
    rows = []
    for figure in FIGURES:
        ours, ref = results.median(figure.key, main), results.median(figure.key, "reference")
        if ours is None and ref is None or not figure.in_table:
            continue
        ratio = f"{ours / ref:.{3 if figure.target else 2}f}" if ours is not None and ref else "n/a"
        target, met = figure.target(ours, ref) if figure.target else ("", None)
        rows.append([f"{figure.label} [{figure.unit}]", fmt(ours, figure.digits), fmt(ref, figure.digits),
                     ratio, target, "" if not figure.target else ("yes" if met else "NO" if met is False else "?")])
    for extra in extras:  # ours durable, ours with the libgit2 writer: the push figures
        for figure in FIGURES:
            if figure.key not in DURABLE_FIGURES:
                continue
            ours, ref = results.median(figure.key, extra.name), results.median(figure.key, "reference")
            if ours is None:
                continue
            rows.append([f"{figure.label}, {extra.label} [{figure.unit}]", fmt(ours, figure.digits),
                         fmt(ref, figure.digits), f"{ours / ref:.3f}" if ref else "n/a", "", ""])
    if alt is not None:
        for c in CONNECTIONS:
            key = f"mget_rps_c{c}"
            other, ref = results.median(key, alt.name), results.median(key, "reference")
            if other is None:
                continue
            rows.append([f"manifest GET by tag, {c} conn, {alt.label} [req/s]", fmt(other, 0), fmt(ref, 0),
                         f"{other / ref:.2f}" if ref else "n/a", "", ""])
        with_auth, without = (alt.name, main) if alt.auth else (main, alt.name)
        for c in CONNECTIONS:
            # Paired within each run (the two are measured one after the other), then the median
            # of the runs' drops: a ratio of medians would pair one run's auth with another's open.
            runs = zip(results.values.get(f"mget_rps_c{c}", {}).get(with_auth, []),
                       results.values.get(f"mget_rps_c{c}", {}).get(without, []))
            drops = [(open_rps - auth_rps) / open_rps * 100 for auth_rps, open_rps in runs if open_rps]
            if not drops:
                continue
            drop = statistics.median(drops)
            target = "< 20 %" if c == 64 else ""
            met = ("yes" if drop < 20 else "NO") if c == 64 else ""
            rows.append([f"manifest GET req/s drop with auth on, {c} conn (median of the runs' drops) [%]",
                         f"{drop:.1f}", "", "", target, met])
    for key, label, unit, digits in LARGE_FIGURES:
        small_ours, large_ours = results.median(f"{key}_1k", main), results.median(f"{key}_100k", main)
        small_ref, large_ref = results.median(f"{key}_1k", "reference"), results.median(f"{key}_100k", "reference")
        flat_ours = large_ours / small_ours if small_ours and large_ours is not None else None
        flat_ref = large_ref / small_ref if small_ref and large_ref is not None else None
        if flat_ours is None and flat_ref is None:
            continue
        expected_to_grow = key in ("catalog_walk", "tags_big")  # the answer itself is 100× longer
        target = "(grows with the answer)" if expected_to_grow else "≤ 2 (flat)"
        met = "" if expected_to_grow or flat_ours is None else ("yes" if flat_ours <= 2 else "NO")
        rows.append([f"flatness 100k/1k: {label}", fmt(flat_ours, 2), fmt(flat_ref, 2), "", target, met])
    return rows


def render_table(rows: list[list[str]], headers: list[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
           "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join((cell.ljust(w) if i == 0 else cell.rjust(w)) if i < 4 else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=ROOT).stdout.strip()
    versions = {}
    for name in ("gunicorn", "pygit2", "bottle"):
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    wrk_version = subprocess.run([loads.WRK, "-v"], capture_output=True, text=True).stdout.splitlines()
    versions["write"] = write_speed(Path(tempfile.gettempdir()))
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": memory, "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "distribution": distribution_version(), "wrk": wrk_version[0] if wrk_version else "?",
            **versions}


def write_speed(directory: Path, size: int = 1024 * MiB) -> str:
    """How fast this machine writes a file (no fsync): what bounds the blob pushes of both servers."""
    data = os.urandom(MiB)
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        started = time.perf_counter()
        with os.fdopen(fd, "wb") as f:
            for _ in range(size // MiB):
                f.write(data)
        return f"a {size // MiB} MiB file (no fsync) at {size / MiB / (time.perf_counter() - started):.0f} MiB/s"
    finally:
        os.unlink(path)


def per_run_table(results: Results, variants: list[Variant]) -> str:
    lines = ["| figure | " + " | ".join(v.label for v in variants) + " |",
             "|---|" + "|".join("---" for _ in variants) + "|"]
    for figure in FIGURES:
        cells = []
        for v in variants:
            values = results.values.get(figure.key, {}).get(v.name)
            cells.append(", ".join(fmt(x, figure.digits) for x in values) if values else "")
        if any(cells):
            lines.append(f"| {figure.label} [{figure.unit}] | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profiles_section() -> str:
    directory = BENCH / "profiles"
    parts = sorted((p for p in directory.glob("*.md") if p.name != "notes.md"),
                   key=lambda p: p.stat().st_mtime) if directory.exists() else []
    if not parts:
        return ("No profile yet: run `.venv/bin/python bench/profile_load.py` (py-spy on the gunicorn "
                "workers under wrk) and re-run this script.")
    notes = directory / "notes.md"  # written by hand: what the profiles say, what was changed
    return "\n\n".join(p.read_text().strip() for p in ([notes] if notes.exists() else []) + parts)


def foreign_note(results: Results) -> str:
    shares = [(key[len("foreign_"):], variant, max(values)) for key, by_variant in results.values.items()
              if key.startswith("foreign_") for variant, values in by_variant.items()]
    if not shares:
        return ""
    worst = max(shares, key=lambda s: s[2])
    return (f"- Other processes on this (shared) machine: before each section the script waits until they use "
            f"under 10 % of the CPU (at most 90 s), then measures what they used during the section "
            f"(per-run figures, \"CPU used by other processes\"); the worst was {worst[2]:.0f} % of the machine "
            f"({worst[0]}, {worst[1]}).")


def write_results(path: Path, record: dict, rows, headers, results: Results, variants: list[Variant],
                  settings: Settings) -> None:
    info, command, auth_note = record["info"], record["command"], record["auth_note"]
    ours_label = next(v.label for v in variants if v.name == "ours")
    if results.values.get("search_1k"):
        search_note = f"- Search: ours only (the first of {', '.join(SEARCH_PATHS)} that answered 200)."
    else:
        search_note = f"- Search: not measured: none of {', '.join(SEARCH_PATHS)} answered 200 on ours."
    search_note += " Distribution has no search API."
    text = f"""# Benchmark: registry-core against CNCF Distribution 2.8

Written by `bench/compare.py` on {record['finished']}; {settings.runs} run(s), every figure the median
over the runs, the servers alternating within each run. Took {record['minutes']:.1f} min. The raw
figures are in bench/results.json (`compare.py --render-only` rewrites this page from it, e.g.
after a new profile).

## Machine

- CPU: {info['nproc']} × {info['cpu']}; memory {info['memory']}; Linux {info['kernel']}
- Python {info['python']}; gunicorn {info['gunicorn']}, pygit2 {info['pygit2']}, bottle {info['bottle']}
- commit {info['commit']}
- reference: `{info['distribution']}` (Debian package docker-registry)
- load: {info['wrk']}; curl; Python http.client (the client shares the 2 cores with the server)
- file writes: {info['write']}. A blob push is mostly the server's write() into the upload file
  (py-spy on our workers: 69 % of the upload threads' samples in `FilesystemDriver.append`, 17 %
  hashing): both servers' pushes are bound by this machine's file system (it throttles sustained
  writes to 200–300 MiB/s once dirty pages pile up; the first 128 MiB blob often goes at ~500)

## Command

```
{command}
```

## Figures

"ours" is `registry serve` (gunicorn gthread, default 2 workers × 8 threads): **{ours_label}**.
{auth_note}

{render_table(rows, headers, markdown=True)}

## Per-run figures

{per_run_table(results, variants)}

## Notes

- Distribution 2.8 is configured with filesystem storage in a temporary directory, delete enabled,
  **no auth**, log level warn, access log off, and the in-memory blob-descriptor cache that Debian's
  shipped config enables; it listens on 127.0.0.1 at a free port.
- Ours runs the production server (gunicorn) with its defaults; each run starts every server on a
  fresh store (the large stores are built once and reused by the runs).
- Blob bodies: os.urandom once ({settings.blob_mib} MiB), each blob with a unique 32-byte tail (no
  deduplication), sent from memory with http.client; pulls with curl to /dev/null. Range reads:
  {settings.range_reads} × 1 MiB at random offsets on one keep-alive connection, content checked.
- Manifest GET: wrk, {settings.wrk_seconds:g} s per point, 2 threads (1 at 1 connection), Accept
  the OCI manifest type; a point with any non-2xx answer or socket error is discarded.
- Tag pushes: {settings.tag_pushes} PUTs of the same manifest under new tags into one repository, one connection,
  into both servers at once in {TAG_PUSH_BLOCKS} blocks that alternate between them (the machine's speed drifts
  over seconds); a server's rate is all its tags over all its time.
- Memory: VmRSS summed over the server's whole process tree (gunicorn master + workers), sampled
  every 50 ms, peak per section. RSS counts the pages forked workers share with the master once per
  process; PSS (also shown) shares them out. Ours: the master imports gunicorn and nothing of the
  registry (`registry serve` checks and prepares, then execs it: registry_core/serving.py); each
  worker imports, builds and warms up the app itself.
- Large stores: 100 repositories / 1,000 tags and 10,000 repositories / 100,000 tags (the biggest
  repository holds 109 / 10,009 tags, the others 9), written directly on disk (bench/bigstore.py),
  ours then with the saved views of the tree it committed (the catalog and search, as a bulk import
  must write them: `bigstore.write_views`, i.e. registry_core.app.prepare_views, timed in the
  store's `.done` marker as `views_seconds`, in no figure). A store without them would have them
  built by `registry serve` before its workers start, once per store (that start-up would include it).
- Start-up: from spawning the server to its first answer to GET /v2/ (200 or 401). Ours: the
  command checks the configuration and reads the saved views (prepare_views), replaces itself by
  the gunicorn master (execv), whose workers import and build the app and warm it up before they
  accept (registry_core/serving.py, registry_core.app.warm_up: snapshot, catalog from its saved
  copy, schemas compiled, one token issued and verified); all of that is in the figure.
- "Catalog, first request after start": the first GET /v2/_catalog?n=100 after start-up, with a
  Bearer token fetched just before it (GET /token: a password check, served by one of the
  workers). It lands on a warmed-up worker; what it still pays on top of a warm request is what
  no warm-up can do without reading the store ahead of requests: the access decision for each of
  the 100 names reads and parses that repository's document for the first time in the process,
  and the token is verified for the first time. "Warm" is the median of the next requests.
  Distribution 2.8 does not paginate tag lists: `n=100` still returns every tag.
{search_note}
{foreign_note(results)}
"""
    if results.errors:
        text += "\n## Failures\n\n" + "\n".join(f"- {e}" for e in results.errors) + "\n"
    text += f"\n## Profiles\n\n{profiles_section()}\n"
    path.write_text(text)


def save_record(path: Path, record: dict, results: Results, variants: list[Variant], settings: Settings) -> None:
    record = {**record, "values": results.values, "errors": results.errors,
              "variants": [{"name": v.name, "kind": v.kind, "auth": v.auth, "sections": list(v.sections),
                            "durable": v.durable, "meta_writer": v.meta_writer} for v in variants],
              "settings": {"runs": settings.runs, "wrk_seconds": settings.wrk_seconds,
                           "tag_pushes": settings.tag_pushes, "range_reads": settings.range_reads,
                           "blob_mib": settings.blob_mib, "blob_count": settings.blob_count,
                           "chunk_mib": settings.chunk_mib, "sections": list(settings.sections)}}
    path.write_text(json.dumps(record, indent=1) + "\n")


def report(record: dict, results: Results, variants: list[Variant], settings: Settings,
           results_path: Path | None) -> None:
    alt = next((v for v in variants if v.name == "ours-alt"), None)
    extras = [v for v in variants if v.durable or v.meta_writer != "packs"]
    rows = table_rows(results, "ours", alt, extras)
    headers = ["figure", variants[0].label, "Distribution 2.8", "ours/ref", "target", "met?"]
    print()
    print(render_table(rows, headers, markdown=False))
    if results.errors:
        print("\nFailures:\n" + "\n".join("  " + e for e in results.errors))
    if results_path is not None:
        write_results(results_path, record, rows, headers, results, variants, settings)
        print(f"\nwrote {results_path}")


def render_only(record_path: Path, results_path: Path) -> None:
    record = json.loads(record_path.read_text())
    results = Results()
    results.values, results.errors = record["values"], record["errors"]
    variants = [Variant(v["name"], v["kind"], v["auth"], tuple(v["sections"]), v.get("durable", False),
                        v.get("meta_writer", "packs")) for v in record["variants"]]
    settings = Settings(**{**record["settings"], "sections": tuple(record["settings"]["sections"])})
    report(record, results, variants, settings, results_path)


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run, short loads")
    parser.add_argument("--runs", type=int, help="runs; figures are medians [3, --quick: 1]")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--auth", choices=("auto", "on", "off"), default="auto",
                        help="ours as deployed (on), open (off), or on if its token service works [auto]")
    parser.add_argument("--workdir", type=Path, help="stores and logs [a temporary directory, removed]")
    parser.add_argument("--stores", type=Path,
                        help="keep the large stores here and reuse them across invocations")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="[bench/RESULTS.md]")
    parser.add_argument("--record", type=Path, default=BENCH / "results.json",
                        help="the raw figures, written after a run, read by --render-only [bench/results.json]")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite RESULTS.md from --record (new profiles, notes)")
    parser.add_argument("--patience", type=float, default=90,
                        help="seconds to wait, before each section, for other processes to go quiet [90]")
    args = parser.parse_args()
    if args.render_only:
        render_only(args.record, args.results)
        return

    sections = SECTIONS
    if args.only:
        sections = tuple(s.strip() for s in args.only.split(","))
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for tool in (loads.WRK, loads.CURL, DISTRIBUTION):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: apt-get install -y wrk curl docker-registry")

    started = time.time()
    info = machine()  # the code as it is when the servers start, not after the run
    temporary = None
    workdir = args.workdir
    if workdir is None:
        temporary = workdir = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    if args.stores:
        args.stores.mkdir(parents=True, exist_ok=True)
    settings = Settings(runs=args.runs or (1 if args.quick else 3), wrk_seconds=3 if args.quick else 10,
                        tag_pushes=200 if args.quick else 1000, range_reads=64 if args.quick else 256,
                        sections=sections, workdir=workdir, stores=args.stores, patience=args.patience)

    print(f"working in {workdir}")
    auth_ok, why = (False, "not tried (--auth off)") if args.auth == "off" else auth_available(workdir)
    if args.auth == "on" and not auth_ok:
        sys.exit(f"--auth on, but auth does not work: {why}")
    main_auth = auth_ok and args.auth != "off"
    if main_auth:
        auth_note = ("Auth on: every request carries a Bearer token from GET /token (Basic admin:admin-demo), "
                     "fetched before each section (outside its memory figure). Manifest GET is also measured "
                     "on an open registry (`auth: {enabled: false}`), for the cost of auth.")
    elif args.auth == "off":
        auth_note = "Auth off (`auth: {enabled: false}`), as asked with --auth off."
        if auth_ok:
            auth_note += " Manifest GET is also measured with auth on (Bearer token)."
    else:
        auth_note = (f"**Auth off** (`auth: {{enabled: false}}`): the auth variant could not run: {why}. "
                     "Re-run with `--auth on` once the token service works.")
    print(auth_note)

    variants = [Variant("ours", "ours", auth=main_auth), Variant("reference", "reference")]
    if auth_ok and "manifest-get" in sections:
        variants.insert(1, Variant("ours-alt", "ours", auth=not main_auth, sections=("manifest-get",)))
    if {"push", "tag-push"} & set(sections):
        variants.insert(-1, Variant("ours-durable", "ours", auth=main_auth, sections=("push", "tag-push"),
                                    durable=True))
    if "tag-push" in sections:
        variants.insert(-1, Variant("ours-libgit2", "ours", auth=main_auth, sections=("tag-push",),
                                    meta_writer="libgit2"))

    harness = Harness(settings, variants)
    try:
        harness.run_all()
        command = ".venv/bin/python bench/compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        record = {"command": command.strip(), "info": info, "auth_note": auth_note,
                  "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                  "minutes": (time.time() - started) / 60}
        if not args.no_write:
            save_record(args.record, record, harness.results, variants, settings)
        report(record, harness.results, variants, settings, None if args.no_write else args.results)
    finally:
        shutil.rmtree(workdir / SET_ASIDE, ignore_errors=True)
        if temporary is not None:
            # the 100,000-tag Distribution store is ~600,000 files: minutes to delete on a slow disk
            print(f"removing {temporary}", flush=True)
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
