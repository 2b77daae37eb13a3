"""User accounts: documents at users/<name>.yaml holding an argon2id hash, never a password."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from registry_core.context import Context, now_iso
from registry_core.errors import RegistryError
from registry_core.meta import paths as meta_paths
from registry_core.meta.store import MetaStore, Transaction

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def add_user(txn: Transaction, name: str, password: str, email: str | None = None,
             admin: bool = False) -> dict:
    path = meta_paths.user(name)
    if txn.exists(path):
        raise RegistryError("DENIED", f"user {name} already exists", status=409)
    document = {"kind": "user", "schemaVersion": 1, "name": name, "passwordHash": hash_password(password),
                "admin": admin, "createdAt": now_iso()}
    if email:
        document["email"] = email
    txn.put(path, document)
    return document


def create_user(meta: MetaStore, context: Context, name: str, password: str, email: str | None = None,
                admin: bool = False) -> dict:
    return meta.transact(lambda txn: add_user(txn, name, password, email, admin), context,
                         f"Add user {name}" + (" (admin)" if admin else ""))
