"""OCI image layouts (image-spec image-layout.md): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`,
read as a transfer source and written as a destination.

Writing is all-or-nothing: blobs are downloaded and verified into a staging directory beside
the layout, and only when every blob and manifest is in does the staging directory become the
layout (a new one, by one rename) or have its blobs moved into the existing layout, followed by
an atomic rewrite of index.json. A failed or interrupted pull leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from registry_core.client import manifests as mf
from registry_core.client.downloads import download
from registry_core.client.errors import ClientError, NotFound, UsageError
from registry_core.client.references import LayoutLocation
from registry_core.client.streams import Opener, file_opener

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class Layout:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / LAYOUT_FILE).is_file()

    def index(self) -> dict:
        try:
            return json.loads((self.path / "index.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"{self.path} is not an OCI image layout (no index.json)", code="LAYOUT_UNKNOWN") from None
        except json.JSONDecodeError as e:
            raise ClientError(f"{self.path}/index.json is not JSON: {e}", code="LAYOUT_INVALID") from None

    def blob_path(self, digest: str) -> Path:
        algorithm, encoded = mf.check_digest(digest).split(":", 1)
        return self.path / "blobs" / algorithm / encoded

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def tags(self) -> list[str]:
        return [d.get("annotations", {}).get(mf.REF_NAME) for d in self.index().get("manifests", [])
                if d.get("annotations", {}).get(mf.REF_NAME)]

    def resolve(self, tag: str | None) -> mf.Descriptor:
        """The index.json entry named `tag`; without a tag, the only entry there is."""
        if not self.exists():
            raise NotFound(f"{self.path} is not an OCI image layout (no oci-layout file)", code="LAYOUT_UNKNOWN")
        entries = self.index().get("manifests") or []
        if tag:
            for entry in entries:
                if (entry.get("annotations") or {}).get(mf.REF_NAME) == tag:
                    return mf.Descriptor.from_json(entry)
            raise NotFound(f"{self.path} has no image tagged {tag!r} (tags: {', '.join(self.tags()) or 'none'})",
                           code="MANIFEST_UNKNOWN")
        if len(entries) != 1:
            raise UsageError(f"{self.path} holds {len(entries)} images; name one as oci:{self.path}:TAG "
                             f"(tags: {', '.join(self.tags()) or 'none'})")
        return mf.Descriptor.from_json(entries[0])


class LayoutSource:
    def __init__(self, location: LayoutLocation):
        self.location = location
        self.layout = Layout(location.path)

    def __str__(self) -> str:
        return str(self.location)

    def root(self) -> tuple[mf.Descriptor, bytes]:
        descriptor = self.layout.resolve(self.location.tag)
        return descriptor, self.manifest(descriptor)

    def _read(self, descriptor: mf.Descriptor, what: str) -> bytes:
        try:
            data = self.layout.blob_path(descriptor.digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.location}: {what} {descriptor.digest} is missing from the layout",
                           code="BLOB_UNKNOWN") from None
        return mf.verify(data, descriptor, f"{self.location}: {what} {descriptor.digest}")

    def manifest(self, descriptor: mf.Descriptor) -> bytes:
        return self._read(descriptor, "manifest")

    def blob_bytes(self, descriptor: mf.Descriptor) -> bytes:
        return self._read(descriptor, "blob")

    def opener(self, descriptor: mf.Descriptor) -> Opener:
        path = self.layout.blob_path(descriptor.digest)
        if not path.is_file():
            raise NotFound(f"{self.location}: blob {descriptor.digest} is missing from the layout",
                           code="BLOB_UNKNOWN")
        return file_opener(str(path), 0, descriptor.size)

    def close(self) -> None:
        pass


class LayoutDestination:
    def __init__(self, location: LayoutLocation, default_tag: str | None = None):
        self.location = location
        self.layout = Layout(location.path)
        self.tag = location.tag or default_tag
        target = self.layout.path
        if target.exists() and not target.is_dir():
            raise UsageError(f"{target} exists and is not a directory")
        if target.is_dir() and any(target.iterdir()) and not self.layout.exists():
            raise UsageError(f"{target} is a directory that is not an OCI image layout; "
                             "choose an empty or new directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        self.root: mf.Descriptor | None = None
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return str(self.location)

    def _staged(self, digest: str) -> Path:
        algorithm, encoded = digest.split(":", 1)
        return self.staging / "blobs" / algorithm / encoded

    def prepare(self, plan) -> None:
        pass

    def put_blob(self, descriptor: mf.Descriptor, source, progress, cancel: threading.Event) -> str:
        if self.layout.exists() and self.layout.has_blob(descriptor.digest):
            return "exists"
        final = self._staged(descriptor.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + f".{threading.get_ident()}.part")
        with open(partial, "wb") as f:
            download(source.opener(descriptor), descriptor, f.write, progress=progress, cancel=cancel)
        os.replace(partial, final)
        return "downloaded"

    def put_manifest(self, descriptor: mf.Descriptor, body: bytes, tag: str | None) -> None:
        path = self._staged(descriptor.digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        self.root = descriptor

    def commit(self) -> None:
        entry = self.root.to_json()
        if self.tag:
            entry["annotations"] = {**(entry.get("annotations") or {}), mf.REF_NAME: self.tag}
        target = self.layout.path
        if not self.layout.exists():
            (self.staging / LAYOUT_FILE).write_text(json.dumps(LAYOUT_VERSION))
            index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [entry]}
            (self.staging / "index.json").write_text(json.dumps(index))
            if target.is_dir():  # an empty directory the user made for us
                target.rmdir()
            os.rename(self.staging, target)
            return
        for staged in sorted((self.staging / "blobs").glob("*/*")):
            destination = target / "blobs" / staged.parent.name / staged.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not destination.exists():
                os.replace(staged, destination)
        index = self.layout.index()
        manifests = [m for m in index.get("manifests") or []
                     if not (self.tag and (m.get("annotations") or {}).get(mf.REF_NAME) == self.tag)
                     and not (not self.tag and m.get("digest") == entry["digest"]
                              and not (m.get("annotations") or {}).get(mf.REF_NAME))]
        index["manifests"] = manifests + [entry]
        index.setdefault("schemaVersion", 2)
        fd, tmp = tempfile.mkstemp(prefix=".index-", dir=target)
        with os.fdopen(fd, "w") as f:
            json.dump(index, f)
        os.replace(tmp, target / "index.json")
        self.abort()

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.staging)
