#!/usr/bin/env python3
"""Build the demo images a new registry store is seeded with, as OCI image layouts.

    python sample_store/generate.py            # (re)write sample_store/layouts/
    python sample_store/generate.py --out DIR  # write DIR/layouts/ instead (e.g. to diff)
    python sample_store/generate.py --check    # verify sample_store/layouts/ without writing

Standard library only. The output is deterministic: tar entries are sorted and have mtime 0,
uid/gid 0 and fixed modes; gzip streams have mtime 0 and no file name; JSON blobs are written
with sorted keys and compact separators; nothing depends on the clock, the user or the host.
(Compressed layer bytes depend on the zlib implementation: stock zlib 1.2.x/1.3.x produce the
committed bytes; a Python linked against zlib-ng would produce different, equally valid, layers.)

Layouts (image-spec v1.1 "OCI image layout"):

    layouts/hello         library/hello: image index (linux/amd64 + linux/arm64, 2 layers each)
                          tagged "latest" and "1.0", plus an untagged SBOM artifact whose
                          subject is the linux/amd64 manifest (listed in index.json without a
                          ref.name annotation, so it is pushed but not tagged).
    layouts/busybox-lite  library/busybox-lite: single OCI image manifest, 1 layer, "latest".
    layouts/alice-notes   alice/notes: single Docker schema 2 manifest, 1 layer, "v1".

The images contain only small text files and shell scripts; they are not meant to be run.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# Media types -----------------------------------------------------------------------------------
OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SBOM_ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"
SPDX_JSON = "application/spdx+json"

MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_MANIFEST_LIST}

REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"

# Fixed "creation" time: the Unix epoch, the same instant as the tar entries' mtime 0.
CREATED = "1970-01-01T00:00:00Z"

EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


# Serialisation helpers --------------------------------------------------------------------------
def canonical_json(obj) -> bytes:
    """Bytes of a content-addressed JSON document: sorted keys, compact, no trailing newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A deterministic uncompressed tar (ustar) of ``{path: (mode, content)}``.

    Parent directories are added as entries (mode 0755); all entries are sorted by path and
    have mtime 0, uid/gid 0, owner root:root.
    """
    entries: dict[str, tuple[int, bytes | None]] = {}
    for path, (mode, content) in files.items():
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]) + "/", (0o755, None))
        entries[path] = (mode, content)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(entries):
            mode, content = entries[name]
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: mtime 0, no file name, level 9."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    d = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    d.update(extra)
    return d


# Layout writer ----------------------------------------------------------------------------------
class Layout:
    """Collects blobs and index.json entries for one OCI image layout."""

    def __init__(self, name: str):
        self.name = name
        self.blobs: dict[str, bytes] = {}
        self.refs: list[dict] = []

    def add_blob(self, media_type: str, data: bytes, **extra) -> dict:
        desc = descriptor(media_type, data, **extra)
        self.blobs[desc["digest"]] = data
        return desc

    def add_json(self, media_type: str, obj, **extra) -> dict:
        return self.add_blob(media_type, canonical_json(obj), **extra)

    def add_layer(self, media_type: str, files: dict[str, tuple[int, bytes]]) -> tuple[dict, str]:
        tar = make_tar(files)
        desc = self.add_blob(media_type, gzip_bytes(tar))
        return desc, sha256_digest(tar)  # (layer descriptor, diff_id)

    def add_ref(self, desc: dict, tag: str | None = None) -> None:
        entry = dict(desc)
        if tag is not None:
            entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: tag}
        self.refs.append(entry)

    def write(self, root: str) -> None:
        path = os.path.join(root, self.name)
        blob_dir = os.path.join(path, "blobs", "sha256")
        os.makedirs(blob_dir)
        with open(os.path.join(path, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        with open(os.path.join(path, "index.json"), "wb") as f:
            # index.json is not content-addressed: keep it readable (still sorted, stable).
            f.write(json.dumps(index, sort_keys=True, indent=2).encode("utf-8") + b"\n")
        for digest in sorted(self.blobs):
            with open(os.path.join(blob_dir, digest.split(":", 1)[1]), "wb") as f:
                f.write(self.blobs[digest])


# Image content ----------------------------------------------------------------------------------
def text(s: str) -> bytes:
    return s.encode("utf-8")


def os_release(name: str, version: str, arch: str) -> bytes:
    return text(
        f'NAME="{name}"\n'
        f"ID={name.lower().replace(' ', '-')}\n"
        f'VERSION_ID="{version}"\n'
        f'PRETTY_NAME="{name} {version} ({arch})"\n'
        'HOME_URL="https://example.test/"\n'
    )


def image_config(arch: str, cmd: list[str], diff_ids: list[str], history: list[dict],
                 variant: str | None = None, labels: dict | None = None,
                 workdir: str = "/", env: list[str] | None = None) -> dict:
    """An image config (valid for both the OCI and the Docker v1 config media types)."""
    cfg: dict = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": cmd, "Env": env or DEFAULT_ENV, "WorkingDir": workdir},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if labels:
        cfg["config"]["Labels"] = labels
    if variant:
        cfg["variant"] = variant
    return cfg


HELLO_SCRIPT = text(
    "#!/bin/sh\n"
    "# hello: print the greeting shipped in /hello.txt\n"
    'cat /hello.txt\n'
    'echo "running on $(cat /etc/arch 2>/dev/null || uname -m)"\n'
)
HELLO_TXT = text("Hello from the sample registry store!\n")


def build_hello(layout: Layout) -> dict:
    """library/hello: a two-platform OCI image index; returns the amd64 manifest descriptor."""
    # Layer 2 is the same for every platform (shared, deduplicated blob).
    app_layer, app_diff = layout.add_layer(OCI_LAYER_GZIP, {
        "hello.txt": (0o644, HELLO_TXT),
        "usr/local/bin/hello": (0o755, HELLO_SCRIPT),
    })
    children = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        base_layer, base_diff = layout.add_layer(OCI_LAYER_GZIP, {
            "etc/os-release": (0o644, os_release("Sample Linux", "1.0", arch)),
            "etc/arch": (0o644, text(arch + "\n")),
            "etc/hostname": (0o644, text("hello\n")),
        })
        config = image_config(
            arch, ["/usr/local/bin/hello"], [base_diff, app_diff],
            history=[
                {"created": CREATED, "created_by": f"ADD rootfs-{arch}.tar / # buildkit"},
                {"created": CREATED, "created_by": "COPY hello.txt hello /"},
                {"created": CREATED, "created_by": 'CMD ["/usr/local/bin/hello"]',
                 "empty_layer": True},
            ],
            variant=variant,
            labels={"org.opencontainers.image.title": "hello",
                    "org.opencontainers.image.version": "1.0"},
        )
        config_desc = layout.add_json(OCI_CONFIG, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [base_layer, app_layer],
        }
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        children.append(layout.add_json(OCI_MANIFEST, manifest, platform=platform))

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children,
        "annotations": {"org.opencontainers.image.title": "hello",
                        "org.opencontainers.image.version": "1.0"},
    }
    index_desc = layout.add_json(OCI_INDEX, index)
    layout.add_ref(index_desc, "1.0")
    layout.add_ref(index_desc, "latest")
    amd64 = dict(children[0])
    amd64.pop("platform")
    return amd64


def build_hello_sbom(layout: Layout, subject: dict) -> None:
    """An untagged SBOM artifact in library/hello that refers to the amd64 manifest."""
    sbom = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "library/hello linux/amd64",
        "documentNamespace": "https://example.test/spdx/library/hello/" + subject["digest"],
        "creationInfo": {"created": CREATED, "creators": ["Tool: sample_store/generate.py"]},
        "packages": [
            {"SPDXID": "SPDXRef-Package-hello", "name": "hello", "versionInfo": "1.0",
             "downloadLocation": "NOASSERTION", "licenseConcluded": "Apache-2.0",
             "filesAnalyzed": False},
            {"SPDXID": "SPDXRef-Package-sample-linux", "name": "sample-linux",
             "versionInfo": "1.0", "downloadLocation": "NOASSERTION",
             "licenseConcluded": "NOASSERTION", "filesAnalyzed": False},
        ],
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
             "relatedSpdxElement": "SPDXRef-Package-hello"},
            {"spdxElementId": "SPDXRef-Package-hello", "relationshipType": "DEPENDS_ON",
             "relatedSpdxElement": "SPDXRef-Package-sample-linux"},
        ],
    }
    empty = layout.add_blob(OCI_EMPTY, EMPTY_JSON)
    assert empty["digest"] == EMPTY_DIGEST
    sbom_desc = layout.add_json(SPDX_JSON, sbom, annotations={TITLE: "sbom.spdx.json"})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_ARTIFACT_TYPE,
        "config": empty,
        "layers": [sbom_desc],
        "subject": subject,
        "annotations": {"org.opencontainers.image.description": "SPDX SBOM of library/hello (linux/amd64)"},
    }
    desc = layout.add_json(OCI_MANIFEST, manifest, artifactType=SBOM_ARTIFACT_TYPE)
    layout.add_ref(desc)  # no ref.name: pushed by digest, reachable through the referrers API


def build_busybox_lite(layout: Layout) -> None:
    layer, diff = layout.add_layer(OCI_LAYER_GZIP, {
        "etc/os-release": (0o644, os_release("Busybox Lite", "0.1", "amd64")),
        "etc/motd": (0o644, text("busybox-lite: a tiny demo image (text files only).\n")),
        "bin/busybox-lite": (0o755, text(
            "#!/bin/sh\n"
            "# busybox-lite: list the applets this demo image pretends to have\n"
            'for applet in cat echo ls sh; do echo "$applet"; done\n')),
    })
    config = image_config(
        "amd64", ["/bin/busybox-lite"], [diff],
        history=[
            {"created": CREATED, "created_by": "ADD busybox-lite.tar / # buildkit"},
            {"created": CREATED, "created_by": 'CMD ["/bin/busybox-lite"]', "empty_layer": True},
        ],
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": layout.add_json(OCI_CONFIG, config),
        "layers": [layer],
    }
    layout.add_ref(layout.add_json(OCI_MANIFEST, manifest), "latest")


def build_alice_notes(layout: Layout) -> None:
    layer, diff = layout.add_layer(DOCKER_LAYER_GZIP, {
        "notes/README.md": (0o644, text("# Alice's notes\n\nA private demo repository.\n")),
        "notes/todo.txt": (0o644, text("- try the registry\n- share with bob (read-only)\n")),
        "usr/local/bin/show-notes": (0o755, text("#!/bin/sh\ncat /notes/*\n")),
    })
    config = image_config(
        "amd64", ["/usr/local/bin/show-notes"], [diff],
        history=[
            {"created": CREATED, "created_by": "/bin/sh -c #(nop) COPY dir:notes in /"},
            {"created": CREATED, "created_by": "/bin/sh -c #(nop) WORKDIR /notes",
             "empty_layer": True},
            {"created": CREATED, "created_by": '/bin/sh -c #(nop)  CMD ["/usr/local/bin/show-notes"]',
             "empty_layer": True},
        ],
        workdir="/notes",
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": layout.add_json(DOCKER_CONFIG, config),
        "layers": [layer],
    }
    layout.add_ref(layout.add_json(DOCKER_MANIFEST, manifest), "v1")


def build_all() -> list[Layout]:
    hello = Layout("hello")
    amd64 = build_hello(hello)
    build_hello_sbom(hello, amd64)
    busybox = Layout("busybox-lite")
    build_busybox_lite(busybox)
    notes = Layout("alice-notes")
    build_alice_notes(notes)
    return [hello, busybox, notes]


def generate(out_dir: str) -> None:
    layouts_dir = os.path.join(out_dir, "layouts")
    if os.path.exists(layouts_dir):
        shutil.rmtree(layouts_dir)
    for layout in build_all():
        layout.write(layouts_dir)


# Check ------------------------------------------------------------------------------------------
class CheckError(Exception):
    pass


def check_layout(path: str) -> list[str]:
    """Verify one layout; returns a list of problems (empty if it is sound)."""
    problems: list[str] = []
    blob_dir = os.path.join(path, "blobs", "sha256")
    seen: set[str] = set()

    def fail(msg: str) -> None:
        problems.append(f"{os.path.basename(path)}: {msg}")

    def read_blob(desc: dict, where: str) -> bytes | None:
        digest = desc.get("digest", "")
        m = re.fullmatch(r"sha256:([0-9a-f]{64})", digest)
        if not m:
            fail(f"{where}: bad digest {digest!r}")
            return None
        file = os.path.join(blob_dir, m.group(1))
        if not os.path.isfile(file):
            fail(f"{where}: blob {digest} missing")
            return None
        with open(file, "rb") as f:
            data = f.read()
        seen.add(m.group(1))
        if sha256_digest(data) != digest:
            fail(f"{where}: blob {digest} has digest {sha256_digest(data)}")
        if desc.get("size") != len(data):
            fail(f"{where}: {digest} size {desc.get('size')} != {len(data)} bytes")
        return data

    def check_manifest(desc: dict, where: str) -> None:
        data = read_blob(desc, where)
        if data is None:
            return
        try:
            doc = json.loads(data)
        except ValueError as e:
            fail(f"{where}: {desc.get('digest')} is not JSON: {e}")
            return
        mt = desc.get("mediaType")
        if doc.get("mediaType") != mt:
            fail(f"{where}: descriptor says {mt}, document says {doc.get('mediaType')}")
        if doc.get("schemaVersion") != 2:
            fail(f"{where}: schemaVersion {doc.get('schemaVersion')}")
        if mt in INDEX_TYPES:
            for i, child in enumerate(doc.get("manifests", [])):
                cw = f"{where} > manifests[{i}]"
                if child.get("mediaType") not in MANIFEST_TYPES | INDEX_TYPES:
                    fail(f"{cw}: unexpected media type {child.get('mediaType')}")
                    continue
                check_manifest(child, cw)
                plat = child.get("platform")
                child_data = read_blob(child, cw)
                if plat and child["mediaType"] in MANIFEST_TYPES and child_data is not None:
                    cfg_data = read_blob(json.loads(child_data)["config"], f"{cw} > config")
                    cfg = json.loads(cfg_data) if cfg_data is not None else {}
                    for key in ("architecture", "os", "variant"):
                        if plat.get(key) != cfg.get(key):
                            fail(f"{cw}: platform {key} {plat.get(key)!r} != config {cfg.get(key)!r}")
        elif mt in MANIFEST_TYPES:
            config = read_blob(doc["config"], f"{where} > config")
            layers = doc.get("layers", [])
            layer_data = [read_blob(l, f"{where} > layers[{i}]") for i, l in enumerate(layers)]
            if doc["config"]["mediaType"] in (OCI_CONFIG, DOCKER_CONFIG) and config is not None:
                cfg = json.loads(config)
                diff_ids = cfg.get("rootfs", {}).get("diff_ids", [])
                if len(diff_ids) != len(layers):
                    fail(f"{where}: {len(layers)} layers but {len(diff_ids)} diff_ids")
                for i, (blob, diff_id) in enumerate(zip(layer_data, diff_ids)):
                    if blob is None:
                        continue
                    tar = zlib.decompress(blob, 16 + zlib.MAX_WBITS)
                    if sha256_digest(tar) != diff_id:
                        fail(f"{where} > layers[{i}]: diff_id {diff_id} != {sha256_digest(tar)}")
                    tarfile.open(fileobj=io.BytesIO(tar)).getmembers()  # is a readable tar
                non_empty = [h for h in cfg.get("history", []) if not h.get("empty_layer")]
                if len(non_empty) != len(layers):
                    fail(f"{where}: {len(non_empty)} non-empty history entries, {len(layers)} layers")
            elif doc["config"]["mediaType"] == OCI_EMPTY and config != EMPTY_JSON:
                fail(f"{where}: empty config is not '{{}}'")
            if "subject" in doc:
                check_manifest(doc["subject"], f"{where} > subject")
            if desc.get("artifactType") != doc.get("artifactType"):
                fail(f"{where}: artifactType {desc.get('artifactType')} != {doc.get('artifactType')}")
        else:
            fail(f"{where}: not a manifest media type: {mt}")

    try:
        with open(os.path.join(path, "oci-layout"), "rb") as f:
            if json.loads(f.read()).get("imageLayoutVersion") != OCI_LAYOUT_VERSION:
                fail("oci-layout: unexpected imageLayoutVersion")
        with open(os.path.join(path, "index.json"), "rb") as f:
            index = json.loads(f.read())
    except (OSError, ValueError) as e:
        fail(str(e))
        return problems
    if index.get("schemaVersion") != 2 or index.get("mediaType") != OCI_INDEX:
        fail("index.json: not an OCI image index")
    tags = set()
    for i, desc in enumerate(index.get("manifests", [])):
        tag = desc.get("annotations", {}).get(REF_NAME)
        if tag is not None:
            if tag in tags:
                fail(f"index.json: tag {tag!r} appears twice")
            tags.add(tag)
        check_manifest(desc, f"index.json[{i}]" + (f" ({tag})" if tag else ""))
    for name in sorted(os.listdir(blob_dir)):
        if name not in seen:
            fail(f"blobs/sha256/{name} is not referenced")
    return list(dict.fromkeys(problems))  # a blob read twice reports its problem once


def check(base_dir: str) -> list[str]:
    problems: list[str] = []
    layouts_dir = os.path.join(base_dir, "layouts")
    names = sorted(os.listdir(layouts_dir))
    for name in names:
        problems += check_layout(os.path.join(layouts_dir, name))
    store = os.path.join(base_dir, "store.yaml")
    if os.path.exists(store):
        with open(store, encoding="utf-8") as f:
            referenced = re.findall(r"^\s*layout:\s*(\S+)", f.read(), re.M)
        for ref in referenced:
            if not os.path.isfile(os.path.join(base_dir, ref, "index.json")):
                problems.append(f"store.yaml: layout {ref} does not exist")
        for name in names:
            if f"layouts/{name}" not in referenced:
                problems.append(f"store.yaml: layouts/{name} is not used by any repository")
    return problems


def summary(base_dir: str) -> None:
    layouts_dir = os.path.join(base_dir, "layouts")
    total = 0
    for root, _, files in os.walk(layouts_dir):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    for name in sorted(os.listdir(layouts_dir)):
        with open(os.path.join(layouts_dir, name, "index.json"), "rb") as f:
            for desc in json.loads(f.read())["manifests"]:
                tag = desc.get("annotations", {}).get(REF_NAME, "(untagged)")
                print(f"layouts/{name:<13} {tag:<11} {desc['digest']}  {desc['mediaType']}")
    print(f"total {total} bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=HERE,
                        help="directory to write layouts/ into (default: next to this script)")
    parser.add_argument("--check", action="store_true",
                        help="only verify the layouts (digests, sizes, diff_ids, references)")
    args = parser.parse_args(argv)
    if not args.check:
        generate(args.out)
    problems = check(args.out)
    for p in problems:
        print("ERROR:", p, file=sys.stderr)
    if problems:
        return 1
    summary(args.out)
    print("check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
