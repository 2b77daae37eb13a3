"""Benchmark: `registry push` / `registry pull` against skopeo, same image, same registry.

    .venv/bin/python bench/client_push_pull.py [--size 512] [--layers 4] [--repeat 3] [--jobs 4]
                                               [--target ours|distribution]

Builds one OCI image layout of SIZE MiB (LAYERS gzip layers of random data, so nothing
compresses), then for each round: starts a fresh registry (so no blob is already there and
skopeo's blob-info cache cannot turn a push into cross-repository mounts), pushes the layout
with `registry push` into one repository and with `skopeo copy` into another, then pulls each
back into a new OCI layout with `registry pull` and `skopeo copy`. Prints the median time and
throughput of each, and whether `registry` is at least as fast as skopeo. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.engines import distribution_registry  # noqa: E402
from tests.support.server import RunningRegistry  # noqa: E402

REGISTRY = str(Path(sys.executable).with_name("registry"))


def write_image(path: Path, size_mib: int, layers: int) -> None:
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    per_layer = (size_mib << 20) // layers
    descriptors, diff_ids = [], []
    for n in range(layers):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(f"data-{n}.bin")
            info.size = per_layer
            tar.addfile(info, io.BytesIO(os.urandom(per_layer)))
        layer_tar = buffer.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(layer_tar).hexdigest())
        descriptors.append(put(gzip.compress(layer_tar, compresslevel=1, mtime=0),
                               "application/vnd.oci.image.layer.v1.tar+gzip"))
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
                "layers": descriptors}
    top = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))


class Skopeo:
    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        (home / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        (home / "registries.d").mkdir(exist_ok=True)
        (home / "auth.json").write_text('{"auths": {}}')
        self.prefix = ["skopeo", "--policy", str(home / "policy.json"), "--registries.d", str(home / "registries.d")]
        self.auth = ["--authfile", str(home / "auth.json")]

    def copy(self, source: str, destination: str) -> None:
        run(self.prefix + ["copy", "--quiet", *self.auth, "--src-tls-verify=false", "--dest-tls-verify=false",
                           source, destination])


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


@contextmanager
def fresh_registry(target: str, work: Path):
    directory = Path(tempfile.mkdtemp(prefix="registry-", dir=work))
    try:
        if target == "distribution":
            with distribution_registry(directory) as host:
                yield host
        else:
            server = RunningRegistry(directory / "store", "--empty")
            try:
                yield server.host
            finally:
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image size in MiB [512]")
    parser.add_argument("--layers", type=int, default=4, help="number of layers [4]")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported [3]")
    parser.add_argument("--jobs", type=int, default=4, help="registry push/pull --jobs [4]")
    parser.add_argument("--target", choices=("ours", "distribution"), default="ours",
                        help="the registry both tools talk to [ours]")
    parser.add_argument("--workdir", help="where the image and registries go [a temporary directory]")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-client-"))
    work.mkdir(parents=True, exist_ok=True)
    skopeo = Skopeo(work / "skopeo-home")
    image = work / "image"
    if not image.exists():
        print(f"building a {args.size} MiB image with {args.layers} layers in {image} …", flush=True)
        write_image(image, args.size, args.layers)
    size = sum(p.stat().st_size for p in (image / "blobs" / "sha256").iterdir())
    env_jobs = ["-j", str(args.jobs)]
    times: dict[str, list[float]] = {"registry push": [], "skopeo push": [], "registry pull": [], "skopeo pull": []}
    for round_number in range(args.repeat):
        with fresh_registry(args.target, work) as host:
            ours, theirs = f"{host}/bench/registry:1", f"{host}/bench/skopeo:1"
            order = [("registry push", lambda: run([REGISTRY, "push", "-q", *env_jobs, f"oci:{image}:1", ours])),
                     ("skopeo push", lambda: skopeo.copy(f"oci:{image}:1", f"docker://{theirs}"))]
            for name, action in order if round_number % 2 == 0 else reversed(order):
                times[name].append(timed(action))
            pulls = work / f"pulls-{round_number}"
            pulls.mkdir()
            order = [("registry pull", lambda: run([REGISTRY, "pull", "-q", *env_jobs, ours, f"oci:{pulls / 'registry'}"])),
                     ("skopeo pull", lambda: skopeo.copy(f"docker://{ours}", f"oci:{pulls / 'skopeo'}:1"))]
            for name, action in order if round_number % 2 == 0 else reversed(order):
                times[name].append(timed(action))
            shutil.rmtree(pulls, ignore_errors=True)
        print(f"round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)

    print(f"\n{args.size} MiB image ({size / (1 << 20):.0f} MiB of blobs, {args.layers} layers), registry: "
          f"{args.target}, {args.repeat} rounds, median:")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"  {name:<14} {seconds:7.2f} s   {size / seconds / (1 << 20):8.1f} MiB/s")
    for verb in ("push", "pull"):
        ratio = medians[f"skopeo {verb}"] / medians[f"registry {verb}"]
        verdict = "meets the target" if ratio >= 1 else "slower than skopeo"
        print(f"  {verb}: registry is {ratio:.2f}x skopeo's speed ({verdict})")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
