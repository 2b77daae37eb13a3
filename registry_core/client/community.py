"""The Index's community API, client side: search, stars and comments (`/api/v1/`).

Every call goes through `RegistrySession.api_request`, which sends the stored login for the host as
Basic credentials; errors become the same ClientErrors (and exit statuses) as the v2 calls.
"""

from __future__ import annotations

from urllib.parse import quote

from registry_core.client.session import RegistrySession

API = "/api/v1"


def _repository(name: str) -> str:
    return f"{API}/repositories/{quote(name)}"


def search(session: RegistrySession, term: str, limit: int) -> dict:
    """The first `limit` repositories matching `term` that the login may pull."""
    response = session.api_request("GET", f"{API}/search", params={"q": term, "n": limit},
                                   what=f"searching {session.host}")
    return response.json()


def star(session: RegistrySession, repository: str) -> dict:
    return session.api_request("PUT", f"{_repository(repository)}/star", what=f"starring {repository}").json()


def unstar(session: RegistrySession, repository: str) -> dict:
    return session.api_request("DELETE", f"{_repository(repository)}/star",
                               what=f"unstarring {repository}").json()


def comments(session: RegistrySession, repository: str) -> tuple[str, list[dict]]:
    """The repository's name as the registry writes it, and all its comments, oldest first
    (following the registry's pagination)."""
    found: list[dict] = []
    path, name = f"{_repository(repository)}/comments", repository
    while path:
        response = session.api_request("GET", path, what=f"comments on {repository}")
        answer = response.json()
        name = answer.get("name", name)
        found += answer.get("comments") or []
        link = response.links.get("next")
        path = link["url"] if link else None
    return name, found


def add_comment(session: RegistrySession, repository: str, body: str) -> dict:
    return session.api_request("POST", f"{_repository(repository)}/comments", document={"body": body},
                               expect=(201,), what=f"commenting on {repository}").json()


def delete_comment(session: RegistrySession, repository: str, comment_id: str) -> None:
    session.api_request("DELETE", f"{_repository(repository)}/comments/{quote(comment_id)}", expect=(204,),
                        what=f"deleting comment {comment_id} on {repository}").close()
