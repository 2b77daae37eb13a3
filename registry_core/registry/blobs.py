"""Blobs: global content-addressed storage, visible to a repository only through its link."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from registry_core.errors import RegistryError
from registry_core.names import check_digest, split_digest
from registry_core.storage import paths
from registry_core.storage.driver import PathNotFound, StorageDriver

HASH_READ_SIZE = 1 << 20


class BlobService:
    def __init__(self, driver: StorageDriver):
        self.driver = driver

    def size(self, repository: str, digest: str) -> int:
        """The blob's size if `repository` may read it; BLOB_UNKNOWN otherwise."""
        check_digest(digest)
        if self.driver.exists(paths.link_path(repository, digest)):
            try:
                return self.driver.size(paths.blob_path(digest))
            except PathNotFound:
                pass
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in repository {repository}",
                            detail={"digest": digest})

    def is_linked(self, repository: str, digest: str) -> bool:
        return (self.driver.exists(paths.link_path(repository, digest))
                and self.driver.exists(paths.blob_path(digest)))

    def reader(self, digest: str, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset`, for a caller that has just checked with `size` that the
        repository may read it (each check is two requests to S3)."""
        return self.driver.reader(paths.blob_path(digest), offset)

    def redirect_url(self, digest: str) -> str | None:
        """A URL the client can GET the blob from directly, when the driver offers one (S3 with
        `redirect: true`); None to serve it from here."""
        offer = getattr(self.driver, "redirect_url", None)
        return offer(paths.blob_path(digest)) if offer is not None else None

    def link(self, repository: str, digest: str) -> None:
        self.driver.put_content(paths.link_path(repository, digest), b"")

    def unlink(self, repository: str, digest: str) -> None:
        self.size(repository, digest)
        self.driver.delete(paths.link_path(repository, digest))

    def exists(self, digest: str) -> bool:
        return self.driver.exists(paths.blob_path(digest))

    def put(self, data: bytes, digest: str) -> None:
        """Store small content (manifests) whose digest the caller computed."""
        if not self.driver.exists(paths.blob_path(digest)):
            self.driver.put_content(paths.blob_path(digest), data)

    def read(self, digest: str) -> bytes:
        return self.driver.get_content(paths.blob_path(digest))


def hash_file(driver: StorageDriver, path: str, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    try:
        with driver.reader(path) as f:
            while chunk := f.read(HASH_READ_SIZE):
                hasher.update(chunk)
    except PathNotFound:
        pass  # an upload that received no bytes has no data file yet
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(digest: str) -> str:
    return split_digest(digest)[0]
