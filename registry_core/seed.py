"""Seeding a new store: demo users and images from sample_store/ (or any seed file and layouts).

Images are imported through the same services a push uses (blobs linked, manifests validated and
recorded, children before parents), so the demo store is exactly what clients would have made.
The plugins' content checks (`validate_manifest`, `before_event`) are not asked: the seed is the
system's own content, and a site's rule for what clients push (docs/plugins.md's example asks for
a source annotation the demo images do not have) must not leave a new store half seeded, which a
restart would not repair (only a missing store is seeded). `track_event` still hears of each push.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml

from registry_core.context import SYSTEM, Context
from registry_core.index.accounts import Accounts
from registry_core.meta import paths as meta_paths
from registry_core.meta.documents import validate
from registry_core.registry.manifests import ManifestService
from registry_core.registry.mediatypes import INDEXES

REF_NAME = "org.opencontainers.image.ref.name"


def sample_store_dir() -> Path:
    return Path(str(resources.files("registry_core.sample_store")))


def read_description(seed_file: Path | None = None) -> dict:
    """The seed description (sample_store/store.yaml unless another is given), checked."""
    seed_file = seed_file or sample_store_dir() / "store.yaml"
    return validate(yaml.safe_load(seed_file.read_text()), str(seed_file), kind="seed")


def seed(registry, seed_file: Path | None = None) -> dict:
    """Import the seed description; return it (for printing the demo logins)."""
    seed_file = seed_file or sample_store_dir() / "store.yaml"
    description = read_description(seed_file)
    users = description.get("users", [])
    if users:
        accounts = Accounts(registry.meta)

        def add_users(txn):
            for user in users:
                accounts.add_user(txn, user["name"], user["password"], user.get("email"), user.get("admin", False))
        registry.meta.transact(add_users, SYSTEM, "Add demo users\n\n" + ", ".join(u["name"] for u in users))
    for repository in description["repositories"]:
        import_layout(registry, repository, seed_file.parent / repository["layout"])
    return description


def import_layout(registry, repository: dict, layout: Path) -> None:
    name = repository["name"]
    manifests = ManifestService(registry.meta, registry.blobs, registry.repositories, notify=registry.notify,
                                max_bytes=registry.config.manifest_limit)  # no plugin checks: see above
    context = Context(actor=repository.get("owner", "registry"))
    index = json.loads((layout / "index.json").read_text())
    pushed: set[str] = set()

    def blob(digest: str) -> bytes:
        algorithm, encoded = digest.split(":")
        return (layout / "blobs" / algorithm / encoded).read_bytes()

    def push(descriptor: dict, tag: str | None) -> None:
        digest = descriptor["digest"]
        if digest not in pushed:
            body = blob(digest)
            manifest = json.loads(body)
            if descriptor["mediaType"] in INDEXES:
                for child in manifest["manifests"]:
                    push(child, None)
            else:
                for part in [manifest["config"]] + manifest.get("layers", []):
                    registry.blobs.put(blob(part["digest"]), part["digest"])
                    registry.blobs.link(name, part["digest"])
            manifests.put(name, digest, body, descriptor["mediaType"], context)
            pushed.add(digest)
        if tag:
            manifests.put(name, tag, blob(digest), descriptor["mediaType"], context)

    for descriptor in index["manifests"]:
        push(descriptor, descriptor.get("annotations", {}).get(REF_NAME))

    def settings(txn):
        document = txn.get(meta_paths.repository(name))
        document.update(visibility=repository.get("visibility", document["visibility"]),
                        owner=repository.get("owner", document.get("owner", "registry")))
        if repository.get("description"):
            document["description"] = repository["description"]
        txn.put(meta_paths.repository(name), document)
        for collaborator in repository.get("collaborators", []):
            txn.put(meta_paths.collaborator(name, collaborator["user"]), {
                "kind": "collaborator", "schemaVersion": 1, "user": collaborator["user"],
                "role": collaborator["role"], "addedBy": context.actor})
    registry.meta.transact(settings, context, f"Describe {name}")


# --- what of the demo a store still has ------------------------------------------------------------


def demo_logins(meta, description: dict | None = None) -> list[tuple[str, str]]:
    """The seed's demo logins (name, password) that still log in to this store: the account is
    there, enabled, and its password is still the demo one (checked against its hash). `registry
    serve` prints them at every start, never one that was changed or a store made without them."""
    from registry_core.index.passwords import password_matches

    description = description or read_description()
    accounts = Accounts(meta)
    working = []
    for user in description.get("users", []):
        account = accounts.user(user["name"])
        if account and not account.get("disabled") and account.get("passwordHash") \
                and password_matches(account["passwordHash"], user["password"]):
            working.append((user["name"], user["password"]))
    return working


def demo_images(meta, description: dict | None = None) -> list[str]:
    """The seed's repositories that this store still has."""
    description = description or read_description()
    snapshot = meta.snapshot()
    return [r["name"] for r in description["repositories"] if snapshot.exists(meta_paths.repository(r["name"]))]


def has_tag(meta, name: str, tag: str) -> bool:
    return meta.snapshot().exists(meta_paths.tag(name, tag))
