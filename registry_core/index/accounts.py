"""Accounts: users, robots and organisations, and the credentials that prove who someone is.

Users and organisations share one namespace of names (`alice/…` is alice's, `acme/…` the
organisation acme's); `library/…` belongs to the registry admins. Credentials:
- a password (argon2id hash in users/<name>.yaml);
- a token secret `rct_<id>_<owner>_<secret>` (SHA-256 in users/<owner>/tokens/<id>.yaml): a
  personal access token or a robot's token, usable as the password of `docker login`, limited to
  its actions and repositories and its expiry; or a refresh token from the token service.
Verifying a password is slow by design, so a verified (user, password) is remembered per process
against the hash it matched: a changed password or a disabled user takes effect at once.
Password attempts are limited per login name and client address (ratelimit.py).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import secrets
import threading
from collections import OrderedDict

from registry_core.context import Actor, Context, now_iso
from registry_core.errors import RegistryError
from registry_core.index.passwords import (check_against_no_password, hash_password, password_matches, secret_hash,
                                           secret_matches)
from registry_core.index.ratelimit import LoginLimiter
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, Snapshot, Transaction, one_line
from registry_core.names import is_account_name

log = logging.getLogger("registry_core")

# "registry" authors the system's own commits and "anonymous" stands for no login: no account may
# take either name, so neither can be forged in the audit log.
RESERVED_NAMES = frozenset({"library", "v2", "token", "api", "static", "login", "logout", "registry", "anonymous"})
TOKEN_PREFIX = "rct"
ORG_ROLES = ("owner", "maintainer", "member")
_VERIFIED_KEPT = 4096


def conflict(message: str) -> RegistryError:
    return RegistryError("DENIED", message, status=409)


def not_found(message: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", message)


def check_account_name(name: str) -> str:
    if not is_account_name(name):
        raise RegistryError("NAME_INVALID", f"invalid account name {name!r}: use lowercase letters and digits, "
                            "with '.', '_' or '-' between them (at most 64 characters)")
    return name


def parse_token_secret(secret: str) -> tuple[str, str, str] | None:
    """(token id, owner, secret part) of a token secret, or None if it is not one."""
    if not secret.startswith(TOKEN_PREFIX + "_"):
        return None
    head, _, secret_part = secret.rpartition("_")
    parts = head.split("_", 2)
    if len(parts) != 3 or not re.fullmatch(r"[a-f0-9]{12}", parts[1]) or not secret_part:
        return None
    return parts[1], parts[2], secret_part


def _expired(document: dict) -> bool:
    expires = document.get("expiresAt")
    if not expires:
        return False
    moment = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    return moment <= datetime.datetime.now(datetime.timezone.utc)


class Accounts:
    def __init__(self, meta: MetaStore, limiter: LoginLimiter | None = None):
        self.meta = meta
        self.limiter = limiter
        self._verified: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    # --- reading --------------------------------------------------------------------------------

    def user(self, name: str, snapshot: Snapshot | None = None) -> dict | None:
        return (snapshot or self.meta.snapshot()).get(meta_paths.user(name)) if is_account_name(name) else None

    def org(self, name: str, snapshot: Snapshot | None = None) -> dict | None:
        return (snapshot or self.meta.snapshot()).get(meta_paths.org(name)) if is_account_name(name) else None

    def users(self) -> list[dict]:
        snapshot = self.meta.snapshot()
        return [snapshot.get(f"users/{entry}") for entry in snapshot.names("users") if entry.endswith(".yaml")]

    def orgs(self) -> list[dict]:
        snapshot = self.meta.snapshot()
        return [snapshot.get(f"orgs/{entry}") for entry in snapshot.names("orgs") if entry.endswith(".yaml")]

    def tokens(self, owner: str) -> list[dict]:
        snapshot = self.meta.snapshot()
        directory = meta_paths.tokens_dir(owner)
        return [snapshot.get(f"{directory}/{entry}") for entry in snapshot.names(directory)]

    @staticmethod
    def actor_of(user: dict, **extra) -> Actor:
        kind = "robot" if user.get("robot") else "user"
        actor = Actor(name=user["name"], admin=bool(user.get("admin")), kind=kind, **extra)
        if user.get("robot"):
            actor.extra["owner"] = user.get("owner")
        return actor

    def actor_for(self, name: str) -> Actor | None:
        """The actor of an active account named `name` (e.g. the subject of a token), or None."""
        user = self.user(name)
        return None if user is None or user.get("disabled") else self.actor_of(user)

    # --- authentication -------------------------------------------------------------------------

    def authenticate(self, name: str, secret: str, client_addr: str | None = None) -> Actor | None:
        """The actor whose password or token secret this is, or None when it is wrong.

        Passwords are guarded by the limiter (TOOMANYREQUESTS once the failed attempts of `name`
        from `client_addr` are used up; other addresses are not affected): each password check
        is counted before it runs, and a name with no password to check (unknown, disabled, a
        robot) gets the same check against a stand-in hash, so neither the time nor the limit
        tells which names exist. While the limit holds, even the right password is refused from
        that address: accepting it would tell a guesser when they had guessed right. Token
        secrets are random and checked with one SHA-256: they cannot be guessed, so they are
        not limited, and a client retrying a revoked token does not lock its owner out."""
        if parse_token_secret(secret) is not None:
            return self._token_actor(name, secret)
        failures_on_record = self.limiter.check(name, client_addr) if self.limiter else False
        user = self.user(name)
        stored = None if user is None or user.get("disabled") else user.get("passwordHash")
        key = (name, hashlib.sha256(secret.encode()).hexdigest())
        if stored is not None and self._remembered(key) == stored:
            if failures_on_record:
                self._record(self.limiter.clear, name, client_addr)
            return self.actor_of(user)
        if self.limiter:
            self._record(self.limiter.reserve, name, client_addr)
        if stored is None:
            check_against_no_password(secret)
            return None
        if not password_matches(stored, secret):
            return None
        self._remember(key, stored)
        if self.limiter:
            self._record(self.limiter.clear, name, client_addr)
        return self.actor_of(user)

    @staticmethod
    def _record(step, name: str, client_addr: str | None) -> None:
        """A write of the limiter's: on a full disk the answer (401, or the actor) does not
        depend on it, so the failure is logged and the login goes on (the attempt uncounted)."""
        try:
            step(name, client_addr)
        except OSError as e:
            log.warning("the login attempt of %r could not be recorded for the rate limit: %s", name, e)

    def _remembered(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            return self._verified.get(key)

    def _remember(self, key: tuple[str, str], stored: str) -> None:
        with self._lock:
            self._verified[key] = stored
            while len(self._verified) > _VERIFIED_KEPT:
                self._verified.popitem(last=False)

    def _token_actor(self, name: str, secret: str, purpose: str = "access") -> Actor | None:
        """The actor of a token secret of `name`'s with this purpose, or None."""
        parsed = parse_token_secret(secret)
        if parsed is None:
            return None
        snapshot = self.meta.snapshot()
        user = self.user(name, snapshot)
        if user is None or user.get("disabled"):
            return None
        return self._verify_token(user, *parsed, purpose, snapshot)

    def _verify_token(self, user: dict, token_id: str, owner: str, secret_part: str, purpose: str,
                      snapshot: Snapshot) -> Actor | None:
        if owner != user["name"]:
            return None
        document = snapshot.get(meta_paths.token(owner, token_id))
        if document is None or document["purpose"] != purpose or _expired(document):
            return None
        if not secret_matches(document["secretHash"], f"{TOKEN_PREFIX}_{token_id}_{owner}_{secret_part}"):
            return None
        scopes = None
        if "actions" in document or "repositories" in document:
            scopes = {"actions": document.get("actions"), "repositories": document.get("repositories")}
        return self.actor_of(user, scopes=scopes)

    # --- users ----------------------------------------------------------------------------------

    def add_user(self, txn: Transaction, name: str, password: str | None, email: str | None = None,
                 admin: bool = False, robot_owner: str | None = None) -> dict:
        check_account_name(name)
        if name in RESERVED_NAMES:
            raise conflict(f"{name} is a reserved name")
        if txn.exists(meta_paths.user(name)) or txn.exists(meta_paths.org(name)):
            raise conflict(f"the name {name} is taken by another user or organisation")
        document = {"kind": "user", "schemaVersion": 1, "name": name, "admin": admin, "createdAt": now_iso()}
        if password is not None:
            document["passwordHash"] = hash_password(password)
        if email:
            document["email"] = email
        if robot_owner:
            document.update(robot=True, owner=robot_owner)
        txn.put(meta_paths.user(name), document)
        return document

    def create_user(self, context: Context, name: str, password: str, email: str | None = None,
                    admin: bool = False) -> dict:
        return self.meta.transact(lambda txn: self.add_user(txn, name, password, email, admin), context,
                                  f"Add user {name}" + (" (admin)" if admin else ""))

    def create_robot(self, context: Context, owner: str, name: str) -> dict:
        def change(txn):
            if not (txn.exists(meta_paths.user(owner)) or txn.exists(meta_paths.org(owner))):
                raise not_found(f"no user or organisation {owner}")
            return self.add_user(txn, name, None, robot_owner=owner)
        return self.meta.transact(change, context, f"Add robot {name} for {owner}")

    def update_user(self, context: Context, name: str, message: str, *, password: str | None = None,
                    disabled: bool | None = None, admin: bool | None = None, email: str | None = None) -> dict:
        def change(txn):
            document = txn.get(meta_paths.user(name))
            if document is None:
                raise not_found(f"no user {name}")
            if password is not None:
                document["passwordHash"] = hash_password(password)
                # a new password ends the sessions of clients that logged in with the old one
                directory = meta_paths.tokens_dir(name)
                for entry in txn.names(directory):
                    token = txn.get(f"{directory}/{entry}")
                    if token is not None and token["purpose"] == "refresh":
                        txn.delete(f"{directory}/{entry}")
            if disabled is not None:
                document["disabled"] = disabled
            if admin is not None:
                document["admin"] = admin
            if email is not None:
                document["email"] = email
            txn.put(meta_paths.user(name), document)
            return document
        return self.meta.transact(change, context, message)

    # --- organisations --------------------------------------------------------------------------

    def create_org(self, context: Context, name: str, owner: str, description: str | None = None) -> dict:
        check_account_name(name)

        def change(txn):
            if name in RESERVED_NAMES:
                raise conflict(f"{name} is a reserved name")
            if txn.exists(meta_paths.user(name)) or txn.exists(meta_paths.org(name)):
                raise conflict(f"the name {name} is taken by another user or organisation")
            if not txn.exists(meta_paths.user(owner)):
                raise not_found(f"no user {owner}")
            document = {"kind": "org", "schemaVersion": 1, "name": name, "members": {owner: "owner"},
                        "createdBy": context.actor, "createdAt": now_iso()}
            if description:
                document["description"] = description
            txn.put(meta_paths.org(name), document)
            return document
        return self.meta.transact(change, context, f"Add organisation {name} (owner {owner})")

    def set_member(self, context: Context, org: str, user: str, role: str | None) -> dict:
        """Give `user` a role in `org`, or remove them (role None)."""
        if role is not None and role not in ORG_ROLES:
            raise RegistryError("UNSUPPORTED", f"unknown role {role!r}: use one of {', '.join(ORG_ROLES)}", status=400)

        def change(txn):
            document = txn.get(meta_paths.org(org))
            if document is None:
                raise not_found(f"no organisation {org}")
            if role is not None and not txn.exists(meta_paths.user(user)):
                raise not_found(f"no user {user}")
            if role is None:
                if user not in document["members"]:
                    raise not_found(f"{user} is not a member of {org}")
                del document["members"][user]
            else:
                document["members"][user] = role
            if "owner" not in document["members"].values():
                raise conflict(f"{org} must keep at least one owner")
            txn.put(meta_paths.org(org), document)
            return document
        verb = f"Set {user} as {role} of {org}" if role else f"Remove {user} from {org}"
        return self.meta.transact(change, context, verb)

    # --- tokens ---------------------------------------------------------------------------------

    def create_token(self, context: Context, owner: str, purpose: str = "access", description: str | None = None,
                     actions: list[str] | None = None, repositories: list[str] | None = None,
                     expires_in_days: int | None = None, client_id: str | None = None) -> tuple[str, dict]:
        """Create a token for `owner`; returns (secret, document). The secret is never stored."""
        token_id = secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}_{token_id}_{owner}_{secrets.token_hex(20)}"
        document = {"kind": "token", "schemaVersion": 1, "id": token_id, "purpose": purpose,
                    "secretHash": secret_hash(secret), "createdBy": context.actor, "createdAt": now_iso()}
        for key, value in (("description", description), ("actions", actions), ("repositories", repositories),
                           ("clientId", client_id)):
            if value:
                document[key] = value
        if expires_in_days:
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=expires_in_days)
            document["expiresAt"] = expires.isoformat(timespec="seconds").replace("+00:00", "Z")

        def change(txn):
            if not txn.exists(meta_paths.user(owner)):
                raise not_found(f"no user {owner}")
            txn.put(meta_paths.token(owner, token_id), document)
        self.meta.transact(change, context, f"Add {purpose} token {token_id} for {owner}"
                           + (f": {one_line(description)}" if description else ""))
        return secret, document

    def revoke_token(self, context: Context, owner: str, token_id: str) -> None:
        def change(txn):
            if not txn.exists(meta_paths.token(owner, token_id)):
                raise not_found(f"{owner} has no token {token_id}")
            txn.delete(meta_paths.token(owner, token_id))
        self.meta.transact(change, context, f"Revoke token {token_id} of {owner}")

    def issue_refresh_token(self, actor: Actor, client_id: str | None = None) -> str:
        secret, _ = self.create_token(Context(actor=actor.name), actor.name, purpose="refresh",
                                      description=f"refresh token for {client_id or 'a client'}",
                                      client_id=client_id, expires_in_days=90)
        return secret

    def actor_from_refresh_token(self, token: str) -> Actor | None:
        parsed = parse_token_secret(token)
        if parsed is None:
            return None
        return self._token_actor(parsed[1], token, purpose="refresh")
