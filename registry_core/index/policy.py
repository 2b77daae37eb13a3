"""The default access policy: who may pull, push, delete or administer a repository.

- Registry admins may do everything; `library/…` is theirs.
- A user owns the namespace of their name; an organisation's members get a role on all its
  repositories: owner → admin, maintainer → write, member → read (private ones included).
- Collaborators get read, write or admin on one repository; the user who created a repository by
  pushing to it first (its `owner`) is its admin for as long as they may write there.
- Public repositories may be pulled by anyone (anonymously too, unless `auth.anonymousPull` is off).
- A robot acts with write at most, in its owner's namespace only.
- A credential with scopes (a personal access token or a robot token) narrows all of this to its
  actions and repositories.
A repository that does not exist is judged like a private one of its namespace, so that an
outsider cannot tell "private" from "does not exist" — unless a mirror's upstream serves it
(`unheld_visibility`): then like a repository of the visibility its fills will have.
"""

from __future__ import annotations

from typing import Callable

from registry_core.context import Actor
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, Snapshot

ROLE_ACTIONS = {"read": frozenset({"pull"}), "write": frozenset({"pull", "push"}),
                "admin": frozenset({"pull", "push", "delete", "admin"})}
ORG_ROLE = {"member": "read", "maintainer": "write", "owner": "admin"}
ALL_ACTIONS = ROLE_ACTIONS["admin"]
_RANK = {None: 0, "read": 1, "write": 2, "admin": 3}


def namespace_of(repository: str) -> str | None:
    return repository.split("/", 1)[0] if "/" in repository else None


class AccessPolicy:
    def __init__(self, meta: MetaStore, anonymous_pull: bool = True,
                 unheld_visibility: Callable[[str], str | None] | None = None):
        self.meta = meta
        self.anonymous_pull = anonymous_pull
        self.unheld_visibility = unheld_visibility

    def namespace_role(self, actor: Actor | None, namespace: str | None, snapshot: Snapshot) -> str | None:
        if actor is None or namespace is None:
            return None
        if actor.kind == "robot":
            return "write" if namespace == actor.extra.get("owner") else None
        if namespace == actor.name:
            return "admin"
        org = snapshot.get(meta_paths.org(namespace))
        return ORG_ROLE.get(org["members"].get(actor.name)) if org else None

    def allowed_actions(self, actor: Actor | None, repository: str) -> set[str]:
        snapshot = self.meta.snapshot()
        if actor is not None and actor.admin:
            actions = set(ALL_ACTIONS)
        else:
            role = self.namespace_role(actor, namespace_of(repository), snapshot)
            if actor is not None and actor.kind != "robot":
                collaborator = snapshot.get(meta_paths.collaborator(repository, actor.name))
                if collaborator and _RANK[collaborator["role"]] > _RANK[role]:
                    role = collaborator["role"]
                document = snapshot.get(meta_paths.repository(repository))
                if document is not None and document.get("owner") == actor.name and _RANK[role] >= _RANK["write"]:
                    role = "admin"  # who created it by pushing first, while they may still write there
            actions = set(ROLE_ACTIONS.get(role, ()))
        actions = narrowed(actions, actor, repository)
        if self._is_public(snapshot, repository) and (actor is not None or self.anonymous_pull):
            actions.add("pull")  # what anyone may do, a narrowly scoped token may do too
        return actions

    def _is_public(self, snapshot: Snapshot, repository: str) -> bool:
        if self.unheld_visibility is not None and not snapshot.exists(meta_paths.repository(repository)):
            return self.unheld_visibility(repository) == "public"
        return document_is_public(snapshot, repository)

    def may_list_catalog(self, actor: Actor | None) -> bool:
        return actor is not None or self.anonymous_pull

    def permission(self, actor: Actor | None, action: str, repository: str | None) -> bool:
        if repository is None:
            if action == "catalog":
                return self.may_list_catalog(actor)
            if action == "login":
                return actor is not None
            return actor is not None and actor.admin and actor.scopes is None
        return action in self.allowed_actions(actor, repository)


def document_is_public(snapshot: Snapshot, repository: str) -> bool:
    document = snapshot.get(meta_paths.repository(repository))
    return document is not None and document["visibility"] == "public"


def narrowed(actions: set[str], actor: Actor | None, repository: str) -> set[str]:
    """`actions` limited by the scopes of the actor's credential, if it has any."""
    scopes = actor.scopes if actor is not None else None
    if not scopes:
        return actions
    if scopes.get("repositories") is not None and repository not in scopes["repositories"]:
        return set()
    if scopes.get("actions") is not None:
        return actions & set(scopes["actions"])
    return actions
