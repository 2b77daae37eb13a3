"""Profile a hot path of ours under load with py-spy on the gunicorn workers.

    .venv/bin/python bench/profile_load.py [--load manifest-get|tag-push] [--label baseline]
                                           [--auth auto|on|off] [--gil] [--seconds 20]
                                           [--connections 64] [--rate 250]

Starts `registry serve` on a fresh store (auth as deployed when its token service works), pushes
the benchmark image, then runs the load and, meanwhile, `py-spy record --format raw --nonblocking`
on every worker:
  manifest-get  wrk at --connections against GET /v2/bench/app/manifests/latest (the hottest path)
  tag-push      PUT of the manifest under new tags, one connection, one after the other
Writes bench/profiles/<load>-<label>.md: the functions with the most samples, inclusive (on the
stack) and self (on top of the stack), and the hottest lines. bench/compare.py copies every
profile in bench/profiles/ into RESULTS.md, so profiles before and after an optimisation sit side
by side. The raw collapsed stacks are kept next to it (.txt.gz, for flame graphs: flamegraph.pl or
speedscope read them). `--gil` samples only the thread holding the GIL: where the CPU goes; without
it, every thread that is not idle, including those waiting on sockets.
Needs py-spy in the venv (`.venv/bin/pip install py-spy`) and ptrace rights (root here).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import loads  # noqa: E402
from compare import APP, DEMO_PASSWORD, DEMO_USER, auth_available, machine  # noqa: E402
from servers import VENV_BIN, ForeignLoad, OurRegistry, export_source, wait_for_quiet  # noqa: E402

PY_SPY = str(VENV_BIN / "py-spy")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_path(path: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def parse_frame(frame: str) -> tuple[str, str]:
    """(function key "name (file)", line key "file:line") of one py-spy frame."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame, frame
    file = short_path(match["file"])
    return f"{match['function']} ({file})", f"{file}:{match['line'] or '?'} {match['function']}"


def summarise(raw_files: list[Path], top: int) -> dict:
    inclusive, own, lines = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for raw in raw_files:
        for row in raw.read_text(errors="replace").splitlines():
            stack, _, count = row.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            count = int(count)
            total += count
            frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
            if not frames:
                continue
            keys = [parse_frame(f) for f in frames]
            for function in {k[0] for k in keys}:
                inclusive[function] += count
            own[keys[-1][0]] += count
            lines[keys[-1][1]] += count
    return {"total": total, "inclusive": inclusive.most_common(top), "self": own.most_common(top),
            "lines": lines.most_common(top)}


def breakdown(raw_files: list[Path], anchor: str) -> collections.Counter:
    """Samples under the first frame whose function starts with `anchor`, by the frame just below it."""
    below = collections.Counter()
    for raw in raw_files:
        for row in raw.read_text(errors="replace").splitlines():
            stack, _, count = row.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [parse_frame(f)[0] for f in stack.split(";")]
            for i, function in enumerate(frames):
                if function.startswith(anchor):
                    below[frames[i + 1] if i + 1 < len(frames) else "(self)"] += int(count)
                    break
    return below


ANCHORS = {
    "manifest-get": ("ThreadWorker.handle (", "ThreadWorker.handle_request", "Bottle._handle",
                     "Api.get_manifest", "RequestAccess.authorize", "RequestAccess.actor", "Accounts.actor_for",
                     "ManifestService.resolve", "MetaStore.snapshot"),
    "tag-push": ("ThreadWorker.handle_request", "Api.put_manifest", "ManifestService.put", "MetaStore.transact",
                 "Transaction.write_tree", "RequestAccess.authorize"),
}


def breakdowns(raw_files: list[Path], load: str, total: int) -> str:
    parts = []
    for anchor in ANCHORS[load]:
        below = breakdown(raw_files, anchor)
        if not below:
            continue
        under = sum(below.values())
        name = anchor.rstrip(" (")
        rows = ", ".join(f"`{key.split(' (')[0]}` {count / total * 100:.1f} %" for key, count in below.most_common(6))
        parts.append(f"- **{name}** {under / total * 100:.1f} %: {rows}")
    return "\n".join(parts)


def table(rows, total: int, header: str) -> str:
    out = [f"| {header} | samples | % |", "|---|---:|---:|"]
    for key, count in rows:
        out.append(f"| `{key}` | {count} | {count / total * 100:.1f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", choices=("manifest-get", "tag-push"), default="manifest-get")
    parser.add_argument("--label", default="baseline", help="names the output file [baseline]")
    parser.add_argument("--auth", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--seconds", type=float, default=20, help="sampling time [20]")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections [64]")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second [250]")
    parser.add_argument("--gil", action="store_true", help="only sample threads holding the GIL")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rev", help="profile the code of this commit (git archive) instead of the working tree")
    args = parser.parse_args()
    if not Path(PY_SPY).exists():
        sys.exit(f"{PY_SPY} is missing: .venv/bin/pip install py-spy")

    out_dir = BENCH / "profiles"
    out_dir.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="registry-profile-"))
    (workdir / "logs").mkdir()
    try:
        auth, why = (False, "--auth off") if args.auth == "off" else auth_available(workdir)
        if args.auth == "on" and not auth:
            sys.exit(f"--auth on, but auth does not work: {why}")
        source, code_label = None, "working tree"
        if args.rev:
            source = export_source(args.rev, workdir / "source", ROOT)
            code_label = "commit " + subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=ROOT,
                                                    capture_output=True, text=True).stdout.strip()
        server = OurRegistry(workdir / "store", workdir / "logs" / "server.log", auth=auth, config_dir=workdir,
                             source=source)
        with server.start():
            headers = {}
            if auth:
                token = loads.fetch_token(server.url, [f"repository:{APP}:pull,push"], DEMO_USER, DEMO_PASSWORD)
                headers["Authorization"] = f"Bearer {token}"
            image = loads.Image.make()
            loads.push_image(server.url, headers, APP, image)
            url = f"{server.url}/v2/{APP}/manifests/latest"
            get_headers = {**headers, "Accept": loads.OCI_MANIFEST}
            loads.wrk(url, get_headers, args.connections, 3, workdir)  # warm up (and start the workers)
            workers = server.workers()
            wait_for_quiet(limit=0.10, patience=90)  # a shared machine: let other people's bursts pass
            foreign = ForeignLoad()
            # the load in the background for the sampling time plus a margin on each side
            if args.load == "manifest-get":
                code = ("import sys, json; sys.path.insert(0, %r); import loads; from pathlib import Path; "
                        "print(json.dumps(loads.wrk(%r, %r, %d, %g, Path(%r))))") % (
                    str(BENCH), url, get_headers, args.connections, args.seconds + 3, str(workdir))
            else:
                code = ("import sys, json, time; sys.path.insert(0, %r); import loads; "
                        "image = loads.Image.make(); started = time.time(); "
                        "rate = loads.push_tags(%r, %r, %r, image, %d, prefix='p'); "
                        "print(json.dumps({'rate': rate}))") % (
                    str(BENCH), server.url, headers, APP, int(args.seconds + 3) * 60)
            load = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            raws, spies = [], []
            for pid in workers:
                raw = workdir / f"worker-{pid}.txt"
                argv = [PY_SPY, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
                        "--rate", str(args.rate), "--format", "raw", "--output", str(raw), "--nonblocking"]
                if args.gil:
                    argv.append("--gil")
                spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
                raws.append(raw)
            for spy in spies:
                _, err = spy.communicate()
                if spy.returncode != 0:
                    print(f"py-spy failed: {err}", file=sys.stderr)
            foreign_share = foreign.share()
            if args.load == "manifest-get":
                out, _ = load.communicate()
                figures = json.loads(out.strip().splitlines()[-1])
                during = (f"wrk meanwhile: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.2f} ms, "
                          f"p99 {figures['p99_ms']:.2f} ms (py-spy slows it a little)")
                what = f"manifest GET by tag, {args.connections} connections"
            else:
                load.terminate()  # the tag pushes run until stopped
                load.wait()
                during = "tag pushes ran on one connection meanwhile"
                what = "tag pushes (PUT manifest under a new tag), 1 connection"
        summary = summarise([r for r in raws if r.exists()], args.top)
        info = machine()
        label = f"ours ({'auth on, Bearer token' if auth else 'open'})"
        kept = out_dir / f"{args.load}-{args.label}.txt.gz"
        with gzip.open(kept, "wt") as f:
            for raw in raws:
                if raw.exists():
                    f.write(raw.read_text())
        command = "bench/profile_load.py " + " ".join(sys.argv[1:])
        text = f"""### Profile `{args.load}-{args.label}`: {what}, {label}

{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; code: {code_label if args.rev else "commit " + info['commit']}; `.venv/bin/python {command.strip()}`.
py-spy {args.rate} Hz{' (--gil)' if args.gil else ''}, {args.seconds:g} s, both gunicorn workers
({len(workers)}), idle threads not sampled; {summary['total']} samples; {during}; other processes
used {foreign_share:.0%} of the machine meanwhile.
Collapsed stacks: bench/profiles/{kept.name}.

Where the samples go (share of all samples under each function, split by what it calls):

{breakdowns([r for r in raws if r.exists()], args.load, summary['total'])}

Inclusive (the function is on the stack):

{table(summary['inclusive'], summary['total'], 'function')}

Self (the function is on top of the stack):

{table(summary['self'], summary['total'], 'function')}

Hottest lines (self):

{table(summary['lines'][:15], summary['total'], 'line')}
"""
        path = out_dir / f"{args.load}-{args.label}.md"
        path.write_text(text)
        print(text)
        print(f"wrote {path}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
