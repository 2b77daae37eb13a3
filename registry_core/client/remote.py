"""A repository in a registry as the source or the destination of a transfer.

As a destination it skips blobs the registry already has (HEAD), mounts blobs that live in
another repository of the same registry instead of sending them, and uploads the rest in
resumable chunks; manifests go up children first, so a registry never sees an index before the
manifests it lists.
"""

from __future__ import annotations

import threading

from registry_core.client import manifests as mf
from registry_core.client.downloads import download
from registry_core.client.errors import VerificationError
from registry_core.client.references import Reference
from registry_core.client.session import RegistrySession
from registry_core.client.streams import Opener, ResponseReader
from registry_core.client.uploads import DEFAULT_CHUNK_SIZE, upload


class RegistrySource:
    def __init__(self, session: RegistrySession, reference: Reference):
        self.session = session
        self.reference = reference
        self.repository = reference.repository

    def __str__(self) -> str:
        return str(self.reference)

    def root(self) -> tuple[mf.Descriptor, bytes]:
        response = self.session.get_manifest(self.repository, self.reference.reference)
        return response.descriptor, response.body

    def manifest(self, descriptor: mf.Descriptor) -> bytes:
        body = self.session.get_manifest(self.repository, descriptor.digest).body
        return mf.verify(body, descriptor, f"manifest {descriptor.digest}")

    def blob_bytes(self, descriptor: mf.Descriptor) -> bytes:
        parts: list[bytes] = []
        download(self.opener(descriptor), descriptor, lambda data: parts.append(bytes(data)), what="config")
        return b"".join(parts)

    def opener(self, descriptor: mf.Descriptor) -> Opener:
        def open_at(offset: int) -> ResponseReader:
            response = self.session.open_blob(self.repository, descriptor.digest, offset)
            skip = offset if response.status_code == 200 else 0
            length = response.headers.get("Content-Length")
            expected = descriptor.size - offset + skip
            if length and length.isdigit() and int(length) != expected and "Content-Encoding" not in response.headers:
                response.close()
                raise VerificationError(f"blob {descriptor.digest}: the registry is sending {int(length) + offset - skip} "
                                        f"bytes, the descriptor gives {descriptor.size}", code="SIZE_MISMATCH",
                                        detail={"digest": descriptor.digest})
            return ResponseReader(response, skip)
        return open_at

    def close(self) -> None:
        pass


class RegistryDestination:
    def __init__(self, session: RegistrySession, reference: Reference, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
        self.session = session
        self.reference = reference
        self.repository = reference.repository
        self.chunk_size = chunk_size
        self.resumes = 0
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return str(self.reference)

    def prepare(self, plan) -> None:
        pass

    def put_blob(self, descriptor: mf.Descriptor, source, progress, cancel: threading.Event) -> str:
        if not descriptor.distributable:
            return "skipped"
        if self.session.has_blob(self.repository, descriptor.digest):
            return "exists"
        remote = isinstance(source, RegistrySource)
        if remote and source.session.api_host == self.session.api_host and source.repository != self.repository:
            if self.session.mount(self.repository, descriptor.digest, source.repository):
                return "mounted"
        resumes = upload(self.session, self.repository, descriptor, source.opener(descriptor),
                         chunk_size=self.chunk_size, progress=progress, cancel=cancel, verify=remote)
        with self._lock:
            self.resumes += resumes
        return "uploaded"

    def put_manifest(self, descriptor: mf.Descriptor, body: bytes, tag: str | None) -> None:
        self.session.put_manifest(self.repository, tag or descriptor.digest, body, descriptor.media_type)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass
