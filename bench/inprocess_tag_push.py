"""Tag pushes through the whole WSGI app in this process: no server, no sockets, no client.

    .venv/bin/python bench/inprocess_tag_push.py [--pushes 500] [--rounds 1] [--auth on|off] [--profile]
                                                 [--keep-in DIR] [--durable]

Seeds a store in a temporary folder (as `registry serve` does), builds the app a worker builds,
fetches a Bearer token (auth on), pushes a small image, then PUTs its manifest under new tags one
after the other and prints the wall and CPU time per push (per round). What the server and the
network add is left out, so this isolates the metadata commit path (meta/store.py) for A/B
comparisons and for `py-spy record --native -- python bench/inprocess_tag_push.py`, which sees
the libgit2 and file system calls a push makes. `--profile` prints cProfile's top functions.
On this shared 2-core machine the CPU time of the same code varied 1.5-9 ms a push between runs:
compare alternating runs, medians.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry_core.app import Registry  # noqa: E402
from registry_core.serving import read_config  # noqa: E402
from registry_core.seed import seed  # noqa: E402
from registry_core.web_app import build_app  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class InProcessApp:
    def __init__(self, app):
        self.app = app

    def call(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000", "wsgi.url_scheme": "http",
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                   "HTTP_HOST": "127.0.0.1:5000"}
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
        status = []
        data = b"".join(self.app(environ, lambda s, h, exc=None: status.append(s)))
        return int(status[0].split()[0]), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--auth", choices=["on", "off"], default="on")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--durable", action="store_true", help="storage.durable: fsync each commit")
    parser.add_argument("--keep-in", metavar="DIR",
                        help="make the store in DIR and keep it (deleting one frees thousands of inodes, "
                             "which slows the next run's file creations on this machine: notes.md)")
    args = parser.parse_args()

    store = tempfile.mkdtemp(prefix="inprocess-push-", dir=args.keep_in)
    try:
        run(args, store)
    finally:
        if not args.keep_in:
            shutil.rmtree(store, ignore_errors=True)


def run(args: argparse.Namespace, store: str) -> None:
    config = read_config(None, store)
    config.auth.enabled = args.auth == "on"
    config.durable = args.durable
    seed(Registry(config))
    client = InProcessApp(build_app(Registry(config)))
    headers = {}
    if config.auth.enabled:
        basic = base64.b64encode(b"admin:admin-demo").decode()
        status, data = client.call("GET", "/token?service=registry&scope=repository:bench/app:push,pull",
                                   headers={"Authorization": f"Basic {basic}"})
        assert status == 200, data
        headers["Authorization"] = "Bearer " + json.loads(data)["token"]

    def put_blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, answer = client.call("POST", f"/v2/bench/app/blobs/uploads/?digest={digest}", data,
                                     {**headers, "Content-Type": "application/octet-stream"})
        assert status == 201, answer
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": put_blob(b'{"architecture":"amd64","os":"linux"}',
                                              "application/vnd.oci.image.config.v1+json"),
                           "layers": [put_blob(os.urandom(100), "application/vnd.oci.image.layer.v1.tar")
                                      for _ in range(3)]}).encode()
    put = {**headers, "Content-Type": OCI_MANIFEST}
    profile = cProfile.Profile() if args.profile else None
    for round_number in range(args.rounds):
        started, cpu = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        for i in range(args.pushes):
            status, answer = client.call("PUT", f"/v2/bench/app/manifests/r{round_number}-t{i}", manifest, put)
            assert status == 201, answer
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"round {round_number + 1}: {args.pushes} tag pushes, {wall / args.pushes * 1000:.2f} ms wall and "
              f"{cpu / args.pushes * 1000:.2f} ms CPU a push ({args.pushes / wall:.0f} tags/s)", flush=True)
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
