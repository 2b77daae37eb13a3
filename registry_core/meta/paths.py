"""Where each metadata document lives in the git tree. One function per document kind.

    users/<user>.yaml
    users/<user>/tokens/<id>.yaml                      personal access and refresh tokens (hashes)
    orgs/<org>.yaml
    repositories/<ns…>/<name>/_repository.yaml
      …/_collaborators/<user>.yaml
      …/_tags/<x>/<y>/<z>/<tag>.yaml                   x/y/z: tag_bucket(tag)
      …/_manifests/<alg>/<x>/<y>/<z>/<hex>.yaml        the image graph node; x/y/z: fan_out(hex)
      …/_referrers/<alg>/<x>/<y>/<z>/<subject-hex>/<alg>-<hex>.yaml   the referrers index
      …/_stars/<user>.yaml                             one user's star
      …/_comments/<id>.yaml                            one comment (ids sort by time)

Folders that grow with a repository's pushes (tags, manifests, referrer subjects) are fanned out
into FANOUT_LEVELS levels of 16 folders, each named by one hex digit (`fan_out`).
Why: a commit rewrites every git tree on the paths it changes, and meta.git keeps each version of
each tree. In one flat folder of 10,000 manifests a push would write a tree of 10,000 entries
(about 1 MB), and meta.git grew with the square of the pushes (1,000 manifests: 176 MiB). With
three levels of 16 a push writes, per folder, three trees of 16 entries and a bucket of N / 4096
entries: about 1.5 KB at 10,000 manifests, 24 KB at a million. Chosen by measurement over 256
buckets of two hex digits (a 256-entry tree, 7.4 KB, per folder per push: 62 KiB a push at 10,000
against 16) and two levels of 16 (25 KiB): bench/meta_growth.py, bench/profiles/notes.md
("meta.git growth"). Stores written before this layout are moved into it
by `registry fsck --repair` (maintenance/fsck.py): until then the registry does not see their
tags, manifests and referrers at the old places (garbage collection still keeps what they need).
`_stars/` and `_comments/` stay flat: each entry is a person's action, rare next to a pipeline's
pushes; a repository's star count is the size of its `_stars` tree, and comments are listed in
the order of their ids (time), which buckets by hash would scatter.
The store around meta.git, and how a commit reaches it: docs/architecture.md.
"""

import hashlib

from registry_core.names import split_digest

META_DIR = "meta.git"  # the folder of a store (its root) that holds this repository
REPOSITORIES = "repositories"
REPOSITORY_DOC = "_repository.yaml"


def user(name: str) -> str:
    return f"users/{name}.yaml"


def tokens_dir(user_name: str) -> str:
    return f"users/{user_name}/tokens"


def token(user_name: str, token_id: str) -> str:
    return f"users/{user_name}/tokens/{token_id}.yaml"


def org(name: str) -> str:
    return f"orgs/{name}.yaml"


def repository_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{REPOSITORY_DOC}"


def collaborator(name: str, user_name: str) -> str:
    return f"{REPOSITORIES}/{name}/_collaborators/{user_name}.yaml"


def tags_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_tags"


FANOUT_LEVELS = 3


def fan_out(hex_key: str) -> str:
    """The bucket of a key (hex digits spread evenly, as digests are): its first FANOUT_LEVELS
    digits as nested folders, `3/f/a`."""
    return "/".join(hex_key[:FANOUT_LEVELS])


def tag_bucket(tag_name: str) -> str:
    """The bucket of `_tags/` that holds a tag: fan_out of the SHA-256 of its name, in hex."""
    return fan_out(hashlib.sha256(tag_name.encode()).hexdigest())


def tag(name: str, tag_name: str) -> str:
    return f"{REPOSITORIES}/{name}/_tags/{tag_bucket(tag_name)}/{tag_name}.yaml"


def manifests_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests"


def manifest(name: str, digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"{REPOSITORIES}/{name}/_manifests/{algorithm}/{fan_out(encoded)}/{encoded}.yaml"


def referrers_root(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_referrers"


def referrers_dir(name: str, subject: str) -> str:
    algorithm, encoded = split_digest(subject)
    return f"{REPOSITORIES}/{name}/_referrers/{algorithm}/{fan_out(encoded)}/{encoded}"


def referrer(name: str, subject: str, digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"{referrers_dir(name, subject)}/{algorithm}-{encoded}.yaml"


def stars_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_stars"


def star(name: str, user_name: str) -> str:
    return f"{REPOSITORIES}/{name}/_stars/{user_name}.yaml"


def comments_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_comments"


def comment(name: str, comment_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_comments/{comment_id}.yaml"
