"""Repository access settings: visibility and collaborators (documents inside the repository)."""

from __future__ import annotations

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore
from registry_core.registry.repositories import name_unknown

ROLES = ("read", "write", "admin")


def set_visibility(meta: MetaStore, context: Context, name: str, visibility: str | None,
                   description: str | None = None) -> dict:
    """Change the visibility and/or the description (None: keep it) of repository `name`."""
    if visibility is not None and visibility not in ("public", "private"):
        raise RegistryError("UNSUPPORTED", f"visibility must be public or private, not {visibility!r}", status=400)

    def change(txn):
        document = txn.get(meta_paths.repository(name))
        if document is None:
            raise name_unknown(name)
        if visibility is not None:
            document["visibility"] = visibility
        if description is not None:
            document["description"] = description
        txn.put(meta_paths.repository(name), document)
        return document
    message = f"Make {name} {visibility}" if visibility else f"Describe {name}"
    if visibility and description is not None:
        message += " and change its description"
    return meta.transact(change, context, message)


def set_collaborator(meta: MetaStore, context: Context, name: str, user: str, role: str | None) -> None:
    """Give `user` a role on repository `name`, or take it away (role None). Only users get
    roles: robots act in their owner's namespace only."""
    if role is not None and role not in ROLES:
        raise RegistryError("UNSUPPORTED", f"role must be one of {', '.join(ROLES)}, not {role!r}", status=400)

    def change(txn):
        if not txn.exists(meta_paths.repository(name)):
            raise name_unknown(name)
        path = meta_paths.collaborator(name, user)
        if role is None:
            if not txn.exists(path):
                raise RegistryError("NAME_UNKNOWN", f"{user} is not a collaborator on {name}")
            txn.delete(path)
            return
        account = txn.get(meta_paths.user(user))
        if account is None:
            raise RegistryError("NAME_UNKNOWN", f"no user {user}")
        if account.get("robot"):
            raise RegistryError("UNSUPPORTED", f"{user} is a robot: robots act in their owner's namespace only",
                                status=400)
        txn.put(path, {"kind": "collaborator", "schemaVersion": 1, "user": user, "role": role,
                       "addedBy": context.actor, "addedAt": now_iso()})
    message = f"Give {user} {role} access to {name}" if role else f"Remove {user} from the collaborators of {name}"
    meta.transact(change, context, message)


def collaborators(meta: MetaStore, name: str) -> list[dict]:
    snapshot = meta.snapshot()
    if snapshot.get(meta_paths.repository(name)) is None:
        raise name_unknown(name)
    directory = f"{meta_paths.repository_dir(name)}/_collaborators"
    return [snapshot.get(f"{directory}/{entry}") for entry in snapshot.names(directory)]
