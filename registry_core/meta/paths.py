"""Where each metadata document lives in the git tree. One function per document kind.

    users/<user>.yaml
    users/<user>/tokens/<id>.yaml                      personal access and refresh tokens (hashes)
    orgs/<org>.yaml
    repositories/<ns…>/<name>/_repository.yaml
      …/_collaborators/<user>.yaml
      …/_tags/<bucket>/<tag>.yaml                      bucket: tag_bucket(tag), 2 hex digits
      …/_manifests/<alg>/<hex>.yaml                    the image graph node
      …/_referrers/<alg>/<subject-hex>/<alg>-<hex>.yaml  the referrers index
      …/_stars/<user>.yaml                             one user's star
      …/_comments/<id>.yaml                            one comment (ids sort by time)
"""

import hashlib

from registry_core.names import split_digest

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


def tag_bucket(tag_name: str) -> str:
    """The folder of `_tags/` that holds a tag: the first byte of the SHA-256 of its name, in hex.

    Why: a push rewrites every git tree on the tag's path, so with one flat `_tags/` a tag push
    cost (and added to meta.git) a tree the size of all the repository's tags (10,000 tags: 10 ms
    and 400 KB a push, measured in bench/). 256 buckets keep both trees small at any tag count:
    at 100,000 tags a push writes trees of 256 and about 390 entries.
    """
    return hashlib.sha256(tag_name.encode()).hexdigest()[:2]


def tag(name: str, tag_name: str) -> str:
    return f"{REPOSITORIES}/{name}/_tags/{tag_bucket(tag_name)}/{tag_name}.yaml"


def manifest(name: str, digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"{REPOSITORIES}/{name}/_manifests/{algorithm}/{encoded}.yaml"


def referrers_dir(name: str, subject: str) -> str:
    algorithm, encoded = split_digest(subject)
    return f"{REPOSITORIES}/{name}/_referrers/{algorithm}/{encoded}"


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
