"""Where each metadata document lives in the git tree. One function per document kind.

    users/<user>.yaml
    users/<user>/tokens/<id>.yaml                      personal access and refresh tokens (hashes)
    orgs/<org>.yaml
    repositories/<ns…>/<name>/_repository.yaml
      …/_collaborators/<user>.yaml
      …/_tags/<tag>.yaml
      …/_manifests/<alg>/<hex>.yaml                    the image graph node
      …/_referrers/<alg>/<subject-hex>/<alg>-<hex>.yaml  the referrers index
      …/_stars/<user>.yaml                             one user's star
      …/_comments/<id>.yaml                            one comment (ids sort by time)
"""

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


def tag(name: str, tag_name: str) -> str:
    return f"{REPOSITORIES}/{name}/_tags/{tag_name}.yaml"


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
