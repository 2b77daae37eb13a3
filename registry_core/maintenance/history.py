"""Reading meta.git's history: the commits of `main` newest first, what each commit says about who
made it (author and trailers, meta/store.py `trailers`), and finding a commit by id or by date.

What `registry audit` and `registry tag restore` share. The history is walked along first parents
from the tip, one commit at a time, so a walk holds one commit and its parent, never the list of
all commits (the registry writes a straight line; a merge made by hand is followed along its first
parent, as `git log --first-parent` would).

Dates on the command line are ISO 8601 and checked whole: `2025-03-01`, `2025-03-01T14:30`,
`2025-03-01T14:30:15Z`, `2025-03-01 14:30:15+02:00`. A time without a zone is UTC (the audit
prints UTC); a date alone is the start of that day.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Iterator

import pygit2

from registry_core.errors import RegistryError
from registry_core.meta.store import BRANCH, Snapshot

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?")
COMMIT_ID_RE = re.compile(r"[0-9a-f]{4,64}")
TRAILER_RE = re.compile(r"([A-Za-z][A-Za-z0-9-]*): (\S.*)")
RESTORE_SUBJECT = "Restore "  # how the subject of a `registry tag restore` commit starts (restore.py)
DATE_FORMS = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], optionally ending in Z or ±HH:MM"
# Commits older than --since seen in a row before a walk stops: commits of nodes whose clocks
# differ a little are not in strict time order (git log --since allows the same slop).
SINCE_SLOP = 5


class HistoryError(RegistryError):
    """A date, commit id or reference into the history that cannot be used (one line, for the CLI)."""

    def __init__(self, message: str):
        super().__init__("UNSUPPORTED", message, status=400)


def parse_date(text: str) -> datetime.datetime:
    """`text` as an aware datetime (UTC when no zone is given); HistoryError unless the whole
    string is one of the accepted forms and a real date and time."""
    if not DATE_RE.fullmatch(text):
        raise HistoryError(f"{text!r} is not a date: use {DATE_FORMS}")
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError as e:
        raise HistoryError(f"{text!r} is not a date ({e}): use {DATE_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


def iso(seconds: int) -> str:
    """A commit time as ISO 8601 in UTC (`2025-03-01T14:30:15Z`)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CommitInfo:
    """Who made a commit and when, from its author line and message."""

    id: str
    time: int              # the author's time, seconds since the epoch
    author: str            # the author's name (the acting account, for the registry's commits)
    subject: str           # the first line of the message
    trailers: dict         # Actor, Client-Addr, Request-Id, … as the message's last paragraph has them

    @property
    def actor(self) -> str:
        """The Actor trailer; the author's name for a commit without one (made around the registry)."""
        return self.trailers.get("Actor", self.author)

    @classmethod
    def of(cls, commit: pygit2.Commit) -> "CommitInfo":
        message = commit.message
        return cls(id=str(commit.id), time=commit.author.time, author=commit.author.name,
                   subject=message.split("\n", 1)[0].strip(), trailers=parse_trailers(message))


def parse_trailers(message: str) -> dict[str, str]:
    """The `Key: value` lines of the message's last paragraph, when every line of it is one and the
    message has more than one paragraph (a subject alone has no trailers)."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found = {}
    for line in paragraphs[-1].splitlines():
        match = TRAILER_RE.fullmatch(line.strip())
        if match is None:
            return {}
        found.setdefault(match.group(1), match.group(2))
    return found


def tip(repo: pygit2.Repository) -> pygit2.Commit | None:
    try:
        return repo[repo.lookup_reference(BRANCH).target]
    except (KeyError, pygit2.GitError):
        return None


def first_parent(repo: pygit2.Repository, commit: pygit2.Commit) -> pygit2.Commit | None:
    """Looked for again if a merge of packs in a serving process moved it meanwhile (store.py `Snapshot.read`)."""
    return Snapshot.read(lambda: repo[commit.parent_ids[0]]) if commit.parent_ids else None


def walk(repo: pygit2.Repository, since: datetime.datetime | None = None) -> Iterator[pygit2.Commit]:
    """The commits of main from its tip, newest first, along first parents. With `since`, the walk
    shows none older than it and ends once SINCE_SLOP older ones came in a row."""
    commit = tip(repo)
    limit = since.timestamp() if since is not None else None
    older = 0
    while commit is not None:
        if limit is not None and commit.author.time < limit:
            older += 1
            if older >= SINCE_SLOP:
                return
        else:
            older = 0
            yield commit
        commit = first_parent(repo, commit)


def find_commit(repo: pygit2.Repository, prefix: str) -> pygit2.Commit:
    """The commit of main's history whose id starts with `prefix` (4 to 64 hex digits); HistoryError
    when no commit of the history has such an id, or more than one has (naming them)."""
    if not COMMIT_ID_RE.fullmatch(prefix):
        raise HistoryError(f"{prefix!r} is not a commit id: 4 to 64 hexadecimal digits (lowercase)")
    found = []
    for commit in walk(repo):
        if str(commit.id).startswith(prefix):
            found.append(commit)
            if len(found) > 1 or len(prefix) >= len(str(commit.id)):
                break
    if not found:
        raise HistoryError(f"no commit {prefix} in the history of meta.git's main (see `registry audit` "
                           "or `git log` in the store's meta.git)")
    if len(found) > 1:
        ids = ", ".join(str(c.id)[:12] for c in found)
        raise HistoryError(f"the commit id {prefix} is ambiguous (it starts {ids}, …): give more digits")
    return found[0]


def commit_at(repo: pygit2.Repository, when: datetime.datetime) -> pygit2.Commit:
    """The newest commit of main made at or before `when`: the state the metadata had then."""
    limit = when.timestamp()
    oldest = None
    for commit in walk(repo):
        if commit.author.time <= limit:
            return commit
        oldest = commit
    start = f": its history starts at {iso(oldest.author.time)}" if oldest is not None else ""
    raise HistoryError(f"meta.git has no commit at or before {when.isoformat()}{start}")
