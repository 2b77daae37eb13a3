"""Where everything lives under the store root. One function per kind of path.

    <root>/
      blobs/<alg>/<hh>/<hex>                    immutable content, written once by atomic rename
      uploads/<uuid>/data                       bytes received so far for an upload session
      uploads/<uuid>/repository                 the repository the session belongs to
      uploads/<uuid>/started_at                 ISO time, for garbage collection of stale sessions
      links/<ns…>/<name>/_blobs/<alg>/<hex>     empty marker: this repository may read this blob
      meta.git/                                 the metadata store (registry_core.meta), not a driver path

Paths are driver paths: '/'-separated, relative to the root. Callers pass names and digests that
registry_core.names has already checked, so no component can be '..' or empty. The `_blobs`
folder cannot collide with a repository name component (those never start with '_').
The whole store (state/, keys/, meta.git's own files, locks) is drawn in docs/architecture.md.
"""

from registry_core.names import split_digest

BLOBS = "blobs"
UPLOADS = "uploads"
LINKS = "links"
LINK_FOLDER = "_blobs"  # in links/<repository>/: a name no repository component can have


def blob_path(digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"{BLOBS}/{algorithm}/{encoded[:2]}/{encoded}"


def link_path(repository: str, digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"{LINKS}/{repository}/{LINK_FOLDER}/{algorithm}/{encoded}"


def upload_dir(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


def upload_data_path(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}/data"


def upload_repository_path(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}/repository"


def upload_started_path(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}/started_at"
