"""A repository's history, a page at a time: who pushed, moved or deleted a tag, changed its
visibility, description, README or collaborators, starred or commented, and when.

The events are `registry audit`'s (maintenance/audit.py `commit_events`: each commit diffed against
its parent, only when the repository's folder changed). A page walks main's first parents from
the tip, or from the commit `before` names, and stops at the end of the first commit that fills
it: the next page starts at that commit's parent, so no page walks more than its own commits
(a quiet repository's page still walks the commits of others in between, one tree lookup each).
The walk also stops at the commit that created the repository: nothing older is about it (of a
name deleted and made again, the older life is `registry audit --repository`'s to show).

Readers see pushes, tags, visibility, descriptions, READMEs, stars and comments; collaborator and
webhook changes are shown to the repository's admins only. Client addresses and request ids
(the commits' trailers) are for operators (`registry audit`), never shown here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pygit2

from registry_core.errors import RegistryError
from registry_core.maintenance.audit import Entry, commit_events, describe
from registry_core.maintenance.history import first_parent, iso, tip
from registry_core.meta.store import MetaStore, Snapshot

PAGE_SIZE = 25
COMMIT_ID_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
ADMIN_ONLY = ("collaborator-", "webhook-")


@dataclass
class HistoryPage:
    entries: list[dict]
    next: str | None       # the commit the next (older) page starts at; None when this is the last


def history(meta: MetaStore, name: str, before: str | None = None, admin: bool = False,
            size: int = PAGE_SIZE) -> HistoryPage:
    repo = meta.repo
    commit = _start(repo, before)
    shown: list[dict] = []
    while commit is not None:
        entries = commit_events(repo, commit, name)
        created = False
        for entry in entries:
            created = created or entry.action == "repository-create"
            if admin or not entry.action.startswith(ADMIN_ONLY):
                shown.append(view(entry))
        if created:
            return HistoryPage(shown, None)
        if len(shown) >= size:
            parent = first_parent(repo, commit)
            return HistoryPage(shown, str(parent.id) if parent is not None else None)
        commit = first_parent(repo, commit)
    return HistoryPage(shown, None)


def _start(repo: pygit2.Repository, before: str | None) -> pygit2.Commit | None:
    if before is None:
        return tip(repo)
    if not COMMIT_ID_RE.fullmatch(before):
        raise RegistryError("UNSUPPORTED", f"before={before!r} is not a commit id (40 or 64 lowercase hex "
                            "digits, as the history's links give)", status=400)
    found = Snapshot.read(lambda: repo.get(before))
    if not isinstance(found, pygit2.Commit):
        raise RegistryError("UNSUPPORTED", f"before={before}: the metadata has no such commit", status=400)
    return found


def view(entry: Entry) -> dict:
    """An event as the page and the API show it: what, who, when, and the change in a few words."""
    action, details = entry.action, dict(entry.details)
    change = describe(action, details)
    if action == "change" and str(details.get("path", "")).endswith("/_readme.yaml"):
        action = "readme"
        change = {"add": "written", "change": "rewritten", "remove": "removed"}.get(details.get("status"), "")
    commit = entry.commit
    return {"time": iso(commit.time), "commit": commit.id, "actor": commit.actor, "action": action,
            "target": entry.target, "change": change,
            "previous": details.get("previousDigest") or details.get("previous"),
            "current": details.get("digest") if action != "visibility" else details.get("visibility"),
            "description": details.get("description"), "message": commit.subject}
