"""A vendor's registry: the built-in plugin `vendor` (`plugins: [vendor]`), for a company that
distributes its images to the public.

- Vendor namespaces (`vendors: [acme]`): anyone may pull (anonymously too, private repositories
  included); pushes, deletes and repository settings only by the organisation's owners and
  maintainers, its robots, and registry admins, as far as the core's roles let them (an owner
  administers every repository, a maintainer those it created). A collaborator added to one of
  its repositories, or any other user, gets 403 DENIED.
- Immutable tags (`immutableTags`, default `v*`, every repository): a tag matching a pattern is
  never moved to another manifest nor deleted, nor is the manifest it points to (403 DENIED
  naming the pattern); pushing the same manifest to it again is fine.
- Required annotations (`requireAnnotations`, every repository): a manifest pushed by tag must
  carry each key in its `annotations` (400 MANIFEST_INVALID naming the missing ones). Manifests
  pushed by digest only (the platform manifests of a multi-arch index) and referrers (a manifest
  with a `subject`: signatures, SBOMs) are not asked: they belong to a tagged manifest.
- Signed pulls only (`signedPullsOnly: true`, every repository): an anonymous pull by tag (GET or
  HEAD) is refused (403 DENIED) until the tagged manifest has a referrer whose artifactType is a
  signature's (`signatureArtifactTypes`: cosign, Sigstore bundles, notation by default); logged-in
  users may pull it before then. Pulls by digest are not checked: a multi-arch image's platform
  manifests are pulled by digest and only its index is signed, and the registry tells the
  anonymous no digest of an unsigned tag.

settings.py reads `pluginConfig.vendor`; profile.py writes the registry.yaml of
`registry init DIR --profile vendor`. Written against docs/plugins.md only.
"""

from __future__ import annotations

import fnmatch

from registry_core.access import TOKEN_ACTOR
from registry_core.errors import RegistryError
from registry_core.hookspecs import hookimpl
from registry_core.plugins import per_registry

from .settings import FORMATS, SCHEMA, Settings

PUBLISHING_ACTIONS = ("push", "delete", "admin")
PUBLISHER_ROLES = ("owner", "maintainer")
@per_registry
def settings(registry) -> Settings:
    """The settings of `registry`, read from its config."""
    return Settings.from_config(registry.config.plugin_config.get("vendor"))


def vendor_of(repository: str, vendors) -> str | None:
    """The vendor organisation whose namespace holds `repository`, or None."""
    namespace, slash, _ = repository.partition("/")
    return namespace if slash and namespace in vendors else None


def immutable_pattern(tag: str, patterns) -> str | None:
    """The first pattern `tag` matches (the whole tag, case-sensitively), or None."""
    return next((pattern for pattern in patterns if fnmatch.fnmatchcase(tag, pattern)), None)


def immutable(repository: str, tag: str, pattern: str) -> str:
    return (f"{repository}:{tag} is immutable: its tag matches {pattern!r} of pluginConfig.vendor.immutableTags")


@hookimpl
def plugin_config_schema():
    return {"vendor": SCHEMA}


@hookimpl
def plugin_config_formats():
    return FORMATS


@hookimpl
def permission_allowed(actor, action, repository, registry):
    if repository is None:
        return None
    vendor = vendor_of(repository, settings(registry).vendors)
    if vendor is None:
        return None
    if action == "pull":
        return True
    if action in PUBLISHING_ACTIONS and not publishes_for(actor, vendor, registry):
        return False
    return None


def publishes_for(actor, vendor: str, registry) -> bool:
    """May `actor` publish in `vendor`'s namespace: an owner or maintainer of the organisation, one
    of its robots, or a registry admin? A registry token (kind TOKEN_ACTOR) grants what it was issued
    for, and the token service asked this same question when it issued it."""
    if actor is None:
        return False
    if actor.kind == TOKEN_ACTOR or actor.admin:
        return True
    if actor.kind == "robot":
        return actor.extra.get("owner") == vendor
    org = registry.accounts.org(vendor) if registry.accounts is not None else None
    return org is not None and org["members"].get(actor.name) in PUBLISHER_ROLES


@hookimpl
def before_event(event, registry):
    patterns = settings(registry).immutable_tags
    if not patterns or event.repository is None:
        return None
    if event.action == "push" and event.tag and event.previous_digest not in (None, event.digest):
        pattern = immutable_pattern(event.tag, patterns)
        if pattern:
            return RegistryError("DENIED", f"{immutable(event.repository, event.tag, pattern)}; it points "
                                 f"to {event.previous_digest} and is never moved: push under a new tag")
    if event.action == "delete":
        if event.tag:
            pattern = immutable_pattern(event.tag, patterns)
            if pattern:
                return RegistryError("DENIED", f"{immutable(event.repository, event.tag, pattern)}, so it is "
                                     "never deleted")
        elif event.digest:
            for tag, pattern in tags_pointing_at(registry, event.repository, event.digest, patterns):
                return RegistryError("DENIED", f"{event.digest} cannot be deleted: "
                                     f"{immutable(event.repository, tag, pattern)} and points to it")
    return None


def tags_pointing_at(registry, repository: str, digest: str, patterns):
    """(tag, pattern) for each immutable tag of `repository` that points to `digest`."""
    try:
        tags, _ = registry.repositories.tags(repository)
    except RegistryError:  # no such repository: nothing to protect
        return
    for tag in tags:
        pattern = immutable_pattern(tag, patterns)
        if pattern is None:
            continue
        try:
            if registry.manifests.resolve(repository, tag)["digest"] == digest:
                yield tag, pattern
        except RegistryError:
            continue  # deleted meanwhile


@hookimpl
def validate_manifest(repository, reference, manifest, registry):
    required = settings(registry).required_annotations
    if not required or ":" in reference or manifest.subject is not None:
        return None  # pushed by digest, or a referrer
    annotations = manifest.annotations or {}
    missing = [key for key in required if key not in annotations]
    if not missing:
        return None
    return [f"{repository}:{reference} lacks the annotation{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (pluginConfig.vendor.requireAnnotations): add "
            f"{'them' if len(missing) > 1 else 'it'} to the manifest's annotations "
            "(docker buildx build --annotation KEY=VALUE, oras push --annotation KEY=VALUE)"]


@hookimpl
def before_pull(event, registry):
    current = settings(registry)
    if not current.signed_pulls_only or event.tag is None or event.actor != "anonymous":
        return None
    found = registry.referrers.referrers(event.repository, event.digest)["manifests"]
    if any(descriptor.get("artifactType") in current.signature_types for descriptor in found):
        return None
    return RegistryError("DENIED", f"{event.repository}:{event.tag} ({event.digest}) is not signed yet: "
                         "anonymous pulls wait for its signature (pluginConfig.vendor.signedPullsOnly); "
                         "try again later, or log in to pull it now")
