"""`registry audit`: meta.git's history as a timeline of what people did, newest first.

Every change to the metadata is one commit authored by the acting user, with the trailers
Actor, Client-Addr and Request-Id (meta/store.py `trailers`). A commit's events are read from the
documents it changed (meta/paths.py draws where each kind lives) and, where the path alone does
not say what happened, from the document before and after (a tag's old and new digest, a
repository's old and new visibility):

    push             a tag set to a manifest, or a manifest pushed by digest
    tag-move         a tag pointed from one manifest to another
    tag-delete       a tag removed (by a DELETE of the tag, or with its manifest)
    tag-restore      a tag pointed back by `registry tag restore` (told by its commit's subject)
    delete           a manifest removed
    repository-create, visibility, description, repository-change, repository-delete
    collaborator-add, collaborator-change, collaborator-remove
    token-create, token-change, token-revoke
    user-add, user-disable, user-enable, user-change, user-remove
    org-add, org-change, org-remove
    star, unstar, comment, comment-change, comment-delete
    webhook-add, webhook-change, webhook-remove       (the webhooks plugin's documents)
    referrer-add, referrer-remove                     (shown only when no push in the commit explains them)
    change           any other document (its path), e.g. one written by hand
    commit           a commit that changed no document

The walk (history.py) reads one commit at a time and diffs it against its parent with
meta/diffs.py `diff_trees`, which only opens the trees on changed paths; given a repository, it
compares that repository's folder id in the commit and its parent first, and diffs only commits
that changed it. Entries are yielded as they are found, so output streams.

`registry audit --verify` (`unverified`) checks each commit's SSH signature (meta/signing.py)
against the keys of the store's allowed signers file, and names every commit that is not signed
by one of them: a commit written around the registry, or one edited after it was signed.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Iterator

import pygit2
import yaml

from registry_core.maintenance.history import RESTORE_SUBJECT, CommitInfo, iso, walk
from registry_core.meta import paths as meta_paths, signing
from registry_core.meta.diffs import Change, File, added, deleted, diff_trees
from registry_core.meta.store import MetaStore, Snapshot

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Entry:
    """One event of the timeline, with the commit it is part of."""

    commit: CommitInfo
    action: str
    target: str                      # what it is about, as a person reads it: NAME:TAG, NAME, a user, a path
    details: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        commit = self.commit
        return {"time": iso(commit.time), "commit": commit.id, "actor": commit.actor, "author": commit.author,
                "clientAddr": commit.trailers.get("Client-Addr"), "requestId": commit.trailers.get("Request-Id"),
                "action": self.action, "target": self.target, **self.details, "message": commit.subject}

    def line(self) -> str:
        commit = self.commit
        who = commit.actor if commit.actor == commit.author else f"{commit.actor} (author {commit.author})"
        text = f"{iso(commit.time)}  {commit.id[:10]}  {who:<12} {self.action:<19} {self.target}"
        summary = describe(self.action, self.details)
        if summary:
            text += f"  {summary}"
        origin = [f"from {commit.trailers['Client-Addr']}"] if "Client-Addr" in commit.trailers else []
        if "Request-Id" in commit.trailers:
            origin.append(f"request {commit.trailers['Request-Id']}")
        if origin:
            text += f"  [{', '.join(origin)}]"
        return text


def describe(action: str, details: dict) -> str:
    """The details of an event as a few words for the text timeline."""
    if action == "tag-move" or action == "tag-restore" and details.get("previousDigest"):
        return f"{short(details['previousDigest'])} → {short(details['digest'])}"
    if action == "tag-restore":
        return short(details.get("digest") or "")
    if action in ("push", "tag-delete") and "tag" in details or action in ("referrer-add", "referrer-remove"):
        return short(details.get("digest") or "")
    if action == "visibility":
        return f"{details.get('previous')} → {details.get('visibility')}"
    if action in ("collaborator-add", "collaborator-change"):
        return f"role {details.get('role')}"
    if action in ("token-create", "token-revoke", "token-change"):
        return f"token {details.get('token')}" + (f" ({details['purpose']})" if details.get("purpose") else "")
    if action in ("comment", "comment-change", "comment-delete"):
        return f"comment {details.get('comment')}"
    if action in ("user-change", "org-change", "repository-change"):
        return "changed " + ", ".join(details.get("changed", []))
    if action in ("change", "commit"):
        return details.get("status", "")
    return ""


def short(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}…" if encoded else digest


# --- the walk ---------------------------------------------------------------------------------------

def timeline(meta: MetaStore, name: str | None = None, since: datetime.datetime | None = None,
             author: str | None = None) -> Iterator[Entry]:
    """The events of main's history, newest first: of repository `name` only, of commits made at
    or after `since`, by the acting user `author` (the Actor trailer, else the commit's author)."""
    repo = meta.repo
    for commit in walk(repo, since):
        info = CommitInfo.of(commit)
        if author is not None and info.actor != author:
            continue
        entries = Snapshot.read(lambda: _events(repo, commit, info, name))
        if not entries and name is None:
            entries = [Entry(info, "commit", info.subject, {"status": "no document changed"})]
        yield from entries


def commit_events(repo: pygit2.Repository, commit: pygit2.Commit, name: str) -> list[Entry]:
    """What one commit did to repository `name` ([] when it did not touch its folder): for a
    walk of its own, such as the web UI's paged history (index/repository_history.py)."""
    info = CommitInfo.of(commit)
    return Snapshot.read(lambda: _events(repo, commit, info, name))


def _events(repo: pygit2.Repository, commit: pygit2.Commit, info: CommitInfo, name: str | None) -> list[Entry]:
    """What one commit did (to repository `name`, or to anything)."""
    folder = meta_paths.repository_dir(name) if name is not None else ""
    parent = repo[commit.parent_ids[0]] if commit.parent_ids else None
    old, new = _folder_tree(parent, folder), _folder_tree(commit, folder)
    if (old.id if old is not None else None) == (new.id if new is not None else None):
        return []
    prefix = folder + "/" if folder else ""
    descend = _only_repository(prefix) if name is not None else lambda path: True
    return list(classify(repo, info, list(_changes(repo, old, new, descend, prefix))))


def _folder_tree(commit: pygit2.Commit | None, folder: str) -> pygit2.Tree | None:
    if commit is None:
        return None
    if not folder:
        return commit.tree
    try:
        found = commit.tree[folder]
    except KeyError:
        return None
    return found if isinstance(found, pygit2.Tree) else None


def _changes(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None, descend,
             prefix: str) -> Iterator[Change]:
    """The changed files between two versions of a folder, either of which may be missing."""
    if old is not None and new is not None:
        yield from diff_trees(repo, old, new, descend, prefix)
    elif old is not None or new is not None:
        yield from _every_file(old if old is not None else new, descend, prefix, present=new is not None)


def _every_file(tree: pygit2.Tree, descend, prefix: str, present: bool) -> Iterator[Change]:
    for entry in tree:
        path = prefix + entry.name
        if isinstance(entry, pygit2.Tree):
            if descend(path):
                yield from _every_file(entry, descend, path + "/", present)
        elif present:
            yield Change(pygit2.GIT_DELTA_ADDED, File(path, None), File(path, entry.id))
        else:
            yield Change(pygit2.GIT_DELTA_DELETED, File(path, entry.id), File(path, None))


def _only_repository(prefix: str):
    """`descend` for one repository's folder: its own `_…` folders, not the repositories nested in
    it (`a/b/c` lives in the folder of `a/b`)."""
    def descend(path: str) -> bool:
        first = path[len(prefix):].split("/", 1)[0]
        return first.startswith("_")
    return descend


# --- what a commit did --------------------------------------------------------------------------------

def classify(repo: pygit2.Repository, info: CommitInfo, changes: list[Change]) -> Iterator[Entry]:
    """The events of one commit from the documents it changed: tags first (a push by tag is one
    event with the manifest it brought), then the rest in path order."""
    pushed_manifests = set()
    tag_entries, other = [], []
    for change in changes:
        where = locate(change.new_file.path)
        if where.kind == "tag":
            tag_entries.append((change, where))
        else:
            other.append((change, where))
    for change, where in tag_entries:
        entry = tag_event(repo, info, change, where)
        if entry.action != "tag-delete":
            pushed_manifests.add(entry.details.get("digest"))
        yield entry
    added_manifests = {where.digest for change, where in other if where.kind == "manifest" and added(change)}
    for change, where in sorted(other, key=lambda item: item[0].new_file.path):
        if where.kind == "manifest" and added(change) and where.digest in pushed_manifests:
            continue
        if where.kind == "referrer" and added(change) and where.digest in added_manifests | pushed_manifests:
            continue
        yield document_event(repo, info, change, where)


@dataclass
class Where:
    """What a path of the metadata tree is (meta/paths.py), and of which repository, user, …"""

    kind: str
    repository: str | None = None
    key: str | None = None           # the tag, user, token id, comment id, org, webhook id
    owner: str | None = None         # a token's user
    digest: str | None = None        # a manifest's or referrer's digest


def locate(path: str) -> Where:
    parts = path.split("/")
    leaf = parts[-1].removesuffix(".yaml")
    if parts[0] == "users":
        if len(parts) == 2:
            return Where("user", key=leaf)
        if len(parts) == 4 and parts[2] == "tokens":
            return Where("token", key=leaf, owner=parts[1])
    elif parts[0] == "orgs" and len(parts) == 2:
        return Where("org", key=leaf)
    elif parts[0] == meta_paths.REPOSITORIES:
        for position, part in enumerate(parts[1:], start=1):
            if part.startswith("_"):
                break
        else:
            return Where("other")
        repository = "/".join(parts[1:position])
        folder = parts[position]
        if folder == meta_paths.REPOSITORY_DOC:
            return Where("repository", repository)
        if folder == "_tags":
            return Where("tag", repository, key=leaf)
        if folder == "_manifests" and len(parts) > position + 2:
            return Where("manifest", repository, digest=f"{parts[position + 1]}:{leaf}")
        if folder == "_referrers":
            algorithm, _, encoded = leaf.partition("-")
            return Where("referrer", repository, digest=f"{algorithm}:{encoded}")
        kinds = {"_collaborators": "collaborator", "_stars": "star", "_comments": "comment", "_webhooks": "webhook"}
        if folder in kinds:
            return Where(kinds[folder], repository, key=leaf)
        return Where("other", repository)
    return Where("other")


def read(repo: pygit2.Repository, oid: pygit2.Oid | None) -> dict:
    """A document of the history, leniently: {} when absent or not a YAML mapping (a document
    written by hand may be anything; the audit still lists its change)."""
    if oid is None:
        return {}
    try:
        document = yaml.load(repo[oid].data, Loader=_Loader)
    except (yaml.YAMLError, ValueError):  # a missing object is not caught: Snapshot.read looks again
        return {}
    return document if isinstance(document, dict) else {}


def tag_event(repo: pygit2.Repository, info: CommitInfo, change: Change, where: Where) -> Entry:
    before, after = read(repo, change.old_file.id), read(repo, change.new_file.id)
    target = f"{where.repository}:{after.get('name') or before.get('name') or where.key}"
    details = {"repository": where.repository, "tag": after.get("name") or before.get("name") or where.key}
    if info.subject.startswith(RESTORE_SUBJECT) and not deleted(change):
        return Entry(info, "tag-restore", target, {**details, "digest": after.get("digest"),
                                                   "previousDigest": before.get("digest")})
    if added(change):
        return Entry(info, "push", target, {**details, "digest": after.get("digest")})
    if deleted(change):
        return Entry(info, "tag-delete", target, {**details, "digest": before.get("digest")})
    return Entry(info, "tag-move", target, {**details, "digest": after.get("digest"),
                                            "previousDigest": before.get("digest")})


def document_event(repo: pygit2.Repository, info: CommitInfo, change: Change, where: Where) -> Entry:
    path = change.new_file.path
    verb = "add" if added(change) else "remove" if deleted(change) else "change"
    before, after = read(repo, change.old_file.id), read(repo, change.new_file.id)
    repository = {"repository": where.repository} if where.repository else {}
    if where.kind == "manifest":
        action = "push" if added(change) else "delete" if deleted(change) else "change"
        return Entry(info, action, f"{where.repository}@{short(where.digest)}", {**repository, "digest": where.digest})
    if where.kind == "referrer":
        return Entry(info, f"referrer-{verb}" if verb != "change" else "change", where.repository,
                     {**repository, "digest": where.digest, "path": path})
    if where.kind == "repository":
        if added(change):
            return Entry(info, "repository-create", where.repository,
                         {**repository, "visibility": after.get("visibility"), "owner": after.get("owner")})
        if deleted(change):
            return Entry(info, "repository-delete", where.repository, repository)
        changed = changed_fields(before, after)
        if changed == ["visibility"]:
            return Entry(info, "visibility", where.repository, {**repository, "visibility": after.get("visibility"),
                                                                "previous": before.get("visibility")})
        if changed == ["description"]:
            return Entry(info, "description", where.repository, {**repository, "description": after.get("description")})
        return Entry(info, "repository-change", where.repository, {**repository, "changed": changed})
    if where.kind == "collaborator":
        document = after or before
        return Entry(info, f"collaborator-{verb}", f"{where.repository} {where.key}",
                     {**repository, "user": where.key, "role": document.get("role")})
    if where.kind == "star":
        return Entry(info, "star" if verb == "add" else "unstar" if verb == "remove" else "change",
                     where.repository, {**repository, "user": where.key})
    if where.kind == "comment":
        action = "comment" if verb == "add" else f"comment-{'delete' if verb == 'remove' else 'change'}"
        return Entry(info, action, where.repository, {**repository, "comment": where.key})
    if where.kind == "webhook":
        return Entry(info, f"webhook-{verb}", where.repository, {**repository, "webhook": where.key})
    if where.kind == "token":
        document = after or before
        action = {"add": "token-create", "remove": "token-revoke", "change": "token-change"}[verb]
        return Entry(info, action, where.owner, {"user": where.owner, "token": where.key,
                                                 "purpose": document.get("purpose")})
    if where.kind == "user":
        if verb != "change":
            return Entry(info, f"user-{verb}", where.key, {"user": where.key, "admin": (after or before).get("admin")})
        changed = changed_fields(before, after)
        if changed == ["disabled"]:
            return Entry(info, "user-disable" if after.get("disabled") else "user-enable", where.key,
                         {"user": where.key})
        return Entry(info, "user-change", where.key, {"user": where.key, "changed": changed})
    if where.kind == "org":
        if verb != "change":
            return Entry(info, f"org-{verb}", where.key, {"org": where.key})
        return Entry(info, "org-change", where.key, {"org": where.key, "changed": changed_fields(before, after),
                                                     "members": after.get("members")})
    return Entry(info, "change", path, {**repository, "path": path, "status": verb})


def changed_fields(before: dict, after: dict) -> list[str]:
    """The keys whose values differ (a password's new hash shows as `passwordHash`, never its value)."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


# --- signatures ----------------------------------------------------------------------------------------

@dataclass
class Unverified:
    """A commit that is not signed by a trusted node key (meta/signing.py), and why."""

    commit: CommitInfo
    reason: str

    def as_json(self) -> dict:
        commit = self.commit
        return {"time": iso(commit.time), "commit": commit.id, "actor": commit.actor, "author": commit.author,
                "reason": self.reason, "message": commit.subject}

    def line(self) -> str:
        commit = self.commit
        return f"{iso(commit.time)}  {commit.id}  {commit.author:<12} {self.reason}: {commit.subject}"


def unverified(meta: MetaStore, since: datetime.datetime | None = None,
               author: str | None = None) -> Iterator[Unverified | CommitInfo]:
    """Every commit of main's history (newest first, as `timeline` filters them): an Unverified for
    each that is not signed by a key of the store's allowed signers file, the CommitInfo of the
    others (so a caller can count them)."""
    repo = meta.repo
    trusted = signing.trusted_keys(signing.allowed_signers_path(meta.path))
    for commit in walk(repo, since):
        info = CommitInfo.of(commit)
        if author is not None and info.actor != author:
            continue
        signature, payload = commit.gpg_signature
        reason = signing.verify(signature, payload or b"", trusted)
        yield Unverified(info, reason) if reason is not None else info


def json_line(entry: Entry | Unverified) -> str:
    return json.dumps(entry.as_json(), separators=(",", ":"), ensure_ascii=False)
