"""Docker archives (`docker save` tarballs): `manifest.json` naming each image's config file,
RepoTags and layer tars, read as a transfer source and written as a destination that
`docker load`, `podman load` and skopeo's `docker-archive:` read.

Reading pushes the layer tars as they are (uncompressed OCI layers, whose digests are the
config's diff_ids) under a synthesized OCI manifest; layers are read in place with pread, so
several upload at once. Writing decompresses each layer while it downloads (the archive holds
uncompressed tars, as `docker save` writes them), checks it against the config's diff_ids, and
renames the finished tarball into place only when everything matched.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import threading
import zlib
from pathlib import Path

from registry_core.client import manifests as mf
from registry_core.client.downloads import download
from registry_core.client.errors import ClientError, NotFound, UsageError, VerificationError
from registry_core.client.references import ArchiveLocation
from registry_core.client.streams import Opener, file_opener

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COPY_BUFFER = 1 << 20


class DockerArchive:
    """An uncompressed tar of a `docker save`, indexed once: member name → (data offset, size)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._temporary: str | None = None
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
        except FileNotFoundError:
            raise NotFound(f"{self.path}: no such docker archive", code="ARCHIVE_UNKNOWN") from None
        if magic.startswith(GZIP_MAGIC):  # `docker save | gzip`: layers must be readable in place
            fd, self._temporary = tempfile.mkstemp(prefix=".docker-archive-", suffix=".tar")
            with os.fdopen(fd, "wb") as out, gzip.open(self.path, "rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER)
            self.path = self._temporary
        try:
            with tarfile.open(self.path, "r:") as tar:
                self.members = {posixpath.normpath(m.name): m for m in tar.getmembers()}
        except tarfile.TarError as e:
            self.close()
            raise ClientError(f"{path} is not a tar archive: {e}", code="ARCHIVE_INVALID") from None
        try:
            self.images = json.loads(self.read("manifest.json"))
        except (KeyError, json.JSONDecodeError) as e:
            self.close()
            raise ClientError(f"{path} is not a docker archive (manifest.json: {e})", code="ARCHIVE_INVALID") from None

    def member(self, name: str) -> tarfile.TarInfo:
        name = posixpath.normpath(name)
        for _ in range(16):  # follow the symlinks and hard links docker save uses for repeated layers
            member = self.members.get(name)
            if member is None:
                raise KeyError(name)
            if member.issym():
                name = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                name = posixpath.normpath(member.linkname)
            else:
                return member
        raise KeyError(name)

    def read(self, name: str) -> bytes:
        member = self.member(name)
        with open(self.path, "rb") as f:
            f.seek(member.offset_data)
            return f.read(member.size)

    def opener(self, name: str) -> Opener:
        member = self.member(name)
        return file_opener(self.path, member.offset_data, member.size)

    def head(self, name: str, length: int = 4) -> bytes:
        member = self.member(name)
        with open(self.path, "rb") as f:
            f.seek(member.offset_data)
            return f.read(min(length, member.size))

    def image(self, name: str | None) -> dict:
        if not isinstance(self.images, list) or not self.images:
            raise ClientError(f"{self.path}: manifest.json lists no image", code="ARCHIVE_INVALID")
        if name:
            for image in self.images:
                if name in (image.get("RepoTags") or []) or f"{name}:latest" in (image.get("RepoTags") or []):
                    return image
            tags = [t for image in self.images for t in image.get("RepoTags") or []]
            raise NotFound(f"{self.path} has no image {name!r} (it has: {', '.join(tags) or 'untagged images'})",
                           code="MANIFEST_UNKNOWN")
        if len(self.images) > 1:
            tags = [t for image in self.images for t in image.get("RepoTags") or []]
            raise UsageError(f"{self.path} holds {len(self.images)} images; name one as "
                             f"docker-archive:{self.path}:NAME:TAG (it has: {', '.join(tags)})")
        return self.images[0]

    def close(self) -> None:
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)
            self._temporary = None


class ArchiveSource:
    def __init__(self, location: ArchiveLocation):
        self.location = location
        self.archive = DockerArchive(location.path)
        self.files: dict[str, str] = {}  # digest → member name
        self.repo_tags: list[str] = []

    def __str__(self) -> str:
        return str(self.location)

    def root(self) -> tuple[mf.Descriptor, bytes]:
        image = self.archive.image(self.location.name)
        self.repo_tags = image.get("RepoTags") or []
        try:
            config = self.archive.read(image["Config"])
        except KeyError as e:
            raise ClientError(f"{self.location}: the config file {e} is missing", code="ARCHIVE_INVALID") from None
        config_descriptor = mf.Descriptor(mf.OCI_CONFIG, mf.digest_of(config), len(config))
        self.files[config_descriptor.digest] = image["Config"]
        diff_ids = (json.loads(config).get("rootfs") or {}).get("diff_ids") or []
        layers = []
        for position, name in enumerate(image.get("Layers") or []):
            try:
                member = self.archive.member(name)
            except KeyError:
                raise ClientError(f"{self.location}: layer {name} is missing", code="ARCHIVE_INVALID") from None
            head = self.archive.head(name)
            if head.startswith(ZSTD_MAGIC) or head.startswith(GZIP_MAGIC) or position >= len(diff_ids):
                digest = self._hash(name)
                media_type = mf.OCI_LAYER_GZIP if head.startswith(GZIP_MAGIC) else \
                    "application/vnd.oci.image.layer.v1.tar+zstd" if head.startswith(ZSTD_MAGIC) else mf.OCI_LAYER
            else:
                # An uncompressed layer's digest is its diff_id; the registry checks it on upload.
                digest, media_type = diff_ids[position], mf.OCI_LAYER
            layers.append(mf.Descriptor(media_type, digest, member.size))
            self.files[digest] = name
        manifest = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": config_descriptor.to_json(),
                    "layers": [layer.to_json() for layer in layers]}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        return mf.Descriptor(mf.OCI_MANIFEST, mf.digest_of(body), len(body)), body

    def _hash(self, name: str) -> str:
        hasher = hashlib.sha256()
        reader = self.archive.opener(name)(0)
        try:
            while data := reader.read(COPY_BUFFER):
                hasher.update(data)
        finally:
            reader.close()
        return f"sha256:{hasher.hexdigest()}"

    def manifest(self, descriptor: mf.Descriptor) -> bytes:
        raise NotFound(f"{self.location} holds one image manifest, not {descriptor.digest}")

    def blob_bytes(self, descriptor: mf.Descriptor) -> bytes:
        return mf.verify(self.archive.read(self.files[descriptor.digest]), descriptor, f"{self.location} blob")

    def opener(self, descriptor: mf.Descriptor) -> Opener:
        return self.archive.opener(self.files[descriptor.digest])

    def close(self) -> None:
        self.archive.close()


class LayerSink:
    """Writes a layer blob's uncompressed tar while it arrives; computes its diff_id."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")
        self.diff = hashlib.sha256()
        self.head = b""
        self.decompressor = None
        self.mode: str | None = None
        self.size = 0
        self.broken: str | None = None

    def write(self, data: bytes) -> None:
        if self.mode is None:
            self.head += data
            if len(self.head) < 4:
                return
            data, self.head = self.head, b""
            if data.startswith(GZIP_MAGIC):
                self.mode, self.decompressor = "gzip", zlib.decompressobj(wbits=31)
            elif data.startswith(ZSTD_MAGIC):
                raise ClientError("a zstd-compressed layer cannot go into a docker archive "
                                  "(docker load reads only tar and gzip layers)", code="UNSUPPORTED_LAYER")
            else:
                self.mode = "tar"
        if self.broken:
            return
        if self.mode == "gzip":
            try:
                out = self.decompressor.decompress(data)
                while self.decompressor.eof and self.decompressor.unused_data:  # a multi-member gzip
                    rest = self.decompressor.unused_data
                    self.decompressor = zlib.decompressobj(wbits=31)
                    out += self.decompressor.decompress(rest)
            except zlib.error as e:
                # Keep receiving: the download's digest check decides what to report, since a
                # corrupted blob is a digest mismatch first and a broken gzip stream second.
                self.broken = str(e)
                return
            data = out
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self.diff.update(data)
            self.file.write(data)
            self.size += len(data)

    def close(self) -> str:
        """Finish; returns the diff_id."""
        if self.mode is None:  # a blob under four bytes
            self.mode = "tar"
            self._emit(self.head)
        if self.broken:
            self.file.close()
            raise VerificationError(f"the layer is not a valid gzip stream: {self.broken}", code="LAYER_INVALID")
        if self.mode == "gzip":
            self._emit(self.decompressor.flush())
            if not self.decompressor.eof:
                self.file.close()
                raise VerificationError("a gzip layer ended before its end-of-stream marker",
                                        code="LAYER_TRUNCATED")
        self.file.close()
        return f"sha256:{self.diff.hexdigest()}"

    def discard(self) -> None:
        self.file.close()


class ArchiveDestination:
    def __init__(self, location: ArchiveLocation, repo_tag: str | None):
        self.location = location
        self.path = Path(location.path)
        self.repo_tag = location.name or repo_tag
        if self.repo_tag and ":" not in self.repo_tag.rsplit("/", 1)[-1]:
            self.repo_tag += ":latest"
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a directory; docker-archive: needs a file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        self.layers: dict[str, tuple[Path, str]] = {}  # blob digest → (uncompressed tar, diff_id)
        self.config: bytes | None = None
        self.manifest: mf.Manifest | None = None
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return str(self.location)

    def prepare(self, plan) -> None:
        if plan.root.is_index or len(plan.manifests) != 1:
            raise UsageError("a docker archive holds one platform's image: choose one with --platform")
        self.manifest = mf.parse(plan.manifests[0][1], plan.root.media_type)
        if not self.manifest.config or self.manifest.config.media_type not in mf.IMAGE_CONFIGS:
            raise UsageError(f"{plan.root.digest} is not a container image (config type "
                             f"{self.manifest.config.media_type if self.manifest.config else 'none'}); "
                             "a docker archive holds images only: pull it into oci:DIR instead")

    def put_blob(self, descriptor: mf.Descriptor, source, progress, cancel: threading.Event) -> str:
        if descriptor.digest == self.manifest.config.digest:
            parts: list[bytes] = []
            download(source.opener(descriptor), descriptor, lambda data: parts.append(bytes(data)),
                     progress=progress, cancel=cancel,
                     what="config")
            self.config = b"".join(parts)
            return "downloaded"
        sink = LayerSink(self.staging / (descriptor.digest.replace(":", "-") + ".tar"))
        try:
            download(source.opener(descriptor), descriptor, sink.write, progress=progress, cancel=cancel,
                     what="layer")
            diff_id = sink.close()
        except BaseException:
            sink.discard()
            raise
        with self._lock:
            self.layers[descriptor.digest] = (sink.path, diff_id)
        return "downloaded"

    def put_manifest(self, descriptor: mf.Descriptor, body: bytes, tag: str | None) -> None:
        pass

    def commit(self) -> None:
        config_json = json.loads(self.config)
        diff_ids = (config_json.get("rootfs") or {}).get("diff_ids") or []
        layer_digests = [layer.digest for layer in self.manifest.layers]
        if len(diff_ids) != len(layer_digests):
            raise VerificationError(f"the image config lists {len(diff_ids)} layers, the manifest "
                                    f"{len(layer_digests)}", code="DIFF_ID_MISMATCH")
        for digest, expected in zip(layer_digests, diff_ids):
            actual = self.layers[digest][1]
            if actual != expected:
                raise VerificationError(f"layer {digest} uncompresses to {actual}, but the config's "
                                        f"diff_id is {expected}", code="DIFF_ID_MISMATCH",
                                        detail={"expected": expected, "actual": actual})
        config_name = mf.digest_of(self.config).split(":", 1)[1] + ".json"
        layer_names = [f"{diff_id.split(':', 1)[1]}/layer.tar" for diff_id in diff_ids]
        entry = {"Config": config_name, "RepoTags": [self.repo_tag] if self.repo_tag else [],
                 "Layers": layer_names}
        partial = self.staging / "archive.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = COPY_BUFFER
            written = set()
            for digest, name in zip(layer_digests, layer_names):
                if name in written:
                    continue
                written.add(name)
                directory = tarfile.TarInfo(name.split("/")[0])
                directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(directory)
                path = self.layers[digest][0]
                _add(tar, name, path.stat().st_size, open(path, "rb"))
            _add_bytes(tar, config_name, self.config)
            _add_bytes(tar, "manifest.json", json.dumps([entry]).encode())
            if self.repo_tag:
                repository, _, tag = self.repo_tag.rpartition(":")
                top = layer_names[-1].split("/")[0] if layer_names else ""
                _add_bytes(tar, "repositories", json.dumps({repository: {tag: top}}).encode())
        os.replace(partial, self.path)
        self.abort()

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.staging)


def _add(tar: tarfile.TarFile, name: str, size: int, stream) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    with stream:
        tar.addfile(info, stream)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add(tar, name, len(data), io.BytesIO(data))
