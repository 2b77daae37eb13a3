"""A vendor's registry (the built-in plugin plugins/vendor) through real HTTP: the real registry
process on 127.0.0.1, requests as the client.

The demo store's users: admin (a registry admin), alice, bob. Each server's organisation `acme`
is the vendor: admin owns it, alice is a maintainer, bob a plain member; carol has no role."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from registry_core.meta.documents import DocumentInvalid
from registry_core.plugins import make_plugin_manager, validate_plugin_config
from tests.support.oci import OCI_MANIFEST, Client, artifact_manifest, descriptor, digest, error_codes
from tests.support.server import REGISTRY, RunningRegistry

ADMIN, ALICE, BOB, CAROL = ("admin", "admin-demo"), ("alice", "alice-demo"), ("bob", "bob-demo"), \
    ("carol", "carol-password")
SOURCE = "org.opencontainers.image.source"
ANNOTATED = {"annotations": {SOURCE: "https://example.com/acme/app"}}
ACCEPT = {"Accept": OCI_MANIFEST}
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"


def start(root: Path, section: dict) -> RunningRegistry:
    """A registry with `plugins: [vendor]` and `section` as `pluginConfig.vendor`, on a new demo
    store, with the organisation acme set up as the module's docstring says."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "registry.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["vendor"], "pluginConfig": {"vendor": section}}))
    server = RunningRegistry(root / "store", "--config", str(config))
    api = f"{server.url}/api/v1"
    for request in ((f"{api}/users", {"name": "carol", "password": CAROL[1]}), (f"{api}/orgs", {"name": "acme"})):
        assert requests.post(request[0], json=request[1], auth=ADMIN).status_code == 201
    for user, role in (("alice", "maintainer"), ("bob", "member")):
        r = requests.put(f"{api}/orgs/acme/members/{user}", json={"role": role}, auth=ADMIN)
        assert r.status_code == 200, r.text
    return server


@pytest.fixture(scope="module")
def vendor(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("vendor"), {
        "vendors": ["acme"], "immutableTags": ["v*", "release-*"], "requireAnnotations": [SOURCE]})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signed_only(tmp_path_factory):
    server = start(tmp_path_factory.mktemp("signed"), {"vendors": ["acme"], "signedPullsOnly": True})
    yield server
    server.stop()


def as_user(server, auth=None) -> Client:
    session = requests.Session()
    session.auth = auth
    return Client(server.url, session)


def message(response: requests.Response) -> str:
    return response.json()["errors"][0]["message"]


def image(pusher: Client, name: str, **fields) -> bytes:
    """Push a small image's blobs to `name` and return the body of a manifest for them (not pushed)."""
    config, layer = json.dumps({"os": "linux", "nonce": repr(fields)}).encode(), b"layer " + name.encode()
    pusher.push_blob(name, config)
    pusher.push_blob(name, layer)
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
                       "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar")], **fields}).encode()


# --- vendor namespaces -----------------------------------------------------------------------------

def test_an_org_maintainer_pushes_to_the_vendor_namespace_and_anyone_pulls_it_anonymously(vendor):
    pushed, _, _ = as_user(vendor, ALICE).push_image("acme/app", "v1.0", **ANNOTATED)
    r = requests.get(f"{vendor.url}/v2/acme/app/manifests/v1.0", headers=ACCEPT)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == pushed
    # acme/app is private (the default visibility): the plugin makes vendor namespaces public to pull
    assert requests.get(f"{vendor.url}/v2/acme/app/tags/list").json()["tags"] == ["v1.0"]


@pytest.mark.parametrize("who", [BOB, CAROL], ids=["member", "no-role"])
def test_users_who_are_not_owners_or_maintainers_get_403_pushing_to_a_vendor_namespace(vendor, who):
    pusher = as_user(vendor, who)
    r = pusher.post("/v2/acme/app/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert message(r) == f"{who[0]} may not push on acme/app"
    r = pusher.push_manifest("acme/app", "latest", b"{}")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_a_collaborator_with_write_still_cannot_push_to_a_vendor_namespace(vendor):
    """The core would let a write collaborator push; in a vendor namespace only the organisation publishes."""
    as_user(vendor, ALICE).push_image("acme/tools", "v1", **ANNOTATED)
    r = requests.put(f"{vendor.url}/api/v1/repositories/acme/tools/collaborators/carol", json={"role": "write"},
                     auth=ADMIN)
    assert r.status_code in (200, 201), r.text
    r = as_user(vendor, CAROL).post("/v2/acme/tools/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


def test_namespaces_outside_the_vendors_keep_the_core_s_rules(vendor):
    as_user(vendor, BOB).push_image("bob/own", "latest", **ANNOTATED)
    assert requests.get(f"{vendor.url}/v2/bob/own/manifests/latest", headers=ACCEPT).status_code == 401  # private
    r = as_user(vendor, CAROL).post("/v2/bob/own/blobs/uploads/")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]


# --- immutable tags --------------------------------------------------------------------------------

def test_an_immutable_tag_cannot_be_moved_and_re_pushing_the_same_manifest_is_fine(vendor):
    pusher = as_user(vendor, ALICE)
    first = image(pusher, "acme/release", **ANNOTATED, nonce="1")
    assert pusher.push_manifest("acme/release", "v2.0", first).status_code == 201
    again = pusher.push_manifest("acme/release", "v2.0", first)
    assert again.status_code == 201 and again.headers["Docker-Content-Digest"] == digest(first)
    other = image(pusher, "acme/release", annotations={SOURCE: "https://example.com/other"})
    r = pusher.push_manifest("acme/release", "v2.0", other)
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert message(r) == (f"acme/release:v2.0 is immutable: its tag matches 'v*' of pluginConfig.vendor.immutableTags; "
                          f"it points to {digest(first)} and is never moved: push under a new tag")
    r = requests.get(f"{vendor.url}/v2/acme/release/manifests/v2.0", headers=ACCEPT)
    assert r.headers["Docker-Content-Digest"] == digest(first)
    # a tag no pattern matches moves freely
    assert pusher.push_manifest("acme/release", "latest", first).status_code == 201
    assert pusher.push_manifest("acme/release", "latest", other).status_code == 201


def test_an_immutable_tag_and_the_manifest_it_points_to_cannot_be_deleted(vendor):
    owner = as_user(vendor, ADMIN)
    body = image(owner, "acme/kept", **ANNOTATED)
    assert owner.push_manifest("acme/kept", "release-7", body).status_code == 201
    r = owner.delete("/v2/acme/kept/manifests/release-7")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert "acme/kept:release-7 is immutable: its tag matches 'release-*'" in message(r)
    r = owner.delete(f"/v2/acme/kept/manifests/{digest(body)}")
    assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    assert message(r).startswith(f"{digest(body)} cannot be deleted: acme/kept:release-7 is immutable")
    assert requests.get(f"{vendor.url}/v2/acme/kept/manifests/release-7", headers=ACCEPT).status_code == 200
    # a mutable tag is deleted as usual
    assert owner.push_manifest("acme/kept", "nightly", body).status_code == 201
    assert owner.delete("/v2/acme/kept/manifests/nightly").status_code == 202


# --- required annotations --------------------------------------------------------------------------

def test_a_manifest_pushed_by_tag_without_a_required_annotation_is_400_manifest_invalid(vendor):
    pusher = as_user(vendor, ALICE)
    body = image(pusher, "acme/bare")
    r = pusher.push_manifest("acme/bare", "v3", body)
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"]
    assert f"acme/bare:v3 lacks the annotation {SOURCE} (pluginConfig.vendor.requireAnnotations)" in message(r)
    assert requests.get(f"{vendor.url}/v2/acme/bare/manifests/v3", headers=ACCEPT).status_code == 404


def test_platform_manifests_pushed_by_digest_and_referrers_need_no_annotation(vendor):
    pusher = as_user(vendor, ALICE)
    body = image(pusher, "acme/multi")
    assert pusher.push_manifest("acme/multi", digest(body), body).status_code == 201
    signature = artifact_manifest(COSIGN, [(b"sig", "application/octet-stream")],
                                  subject={"mediaType": OCI_MANIFEST, "digest": digest(body), "size": len(body)})
    pusher.push_blob("acme/multi", b"{}")
    pusher.push_blob("acme/multi", b"sig")
    r = pusher.push_manifest("acme/multi", "sha256-" + digest(body)[7:], signature)  # the referrers tag schema
    assert r.status_code == 201, r.text


# --- signed pulls only ---------------------------------------------------------------------------------

def test_anonymous_pulls_by_tag_wait_for_a_signature_referrer(signed_only):
    pusher = as_user(signed_only, ALICE)
    body = image(pusher, "acme/signed")
    assert pusher.push_manifest("acme/signed", "v1", body).status_code == 201
    url = f"{signed_only.url}/v2/acme/signed/manifests/v1"
    for method in ("GET", "HEAD"):
        r = requests.request(method, url, headers=ACCEPT)
        assert r.status_code == 403, (method, r.status_code)
    r = requests.get(url, headers=ACCEPT)
    assert error_codes(r) == ["DENIED"]
    assert message(r).startswith(f"acme/signed:v1 ({digest(body)}) is not signed yet: anonymous pulls wait")
    assert pusher.get("/v2/acme/signed/manifests/v1", headers=ACCEPT).status_code == 200  # logged in
    # an SBOM is a referrer but not a signature
    subject = {"mediaType": OCI_MANIFEST, "digest": digest(body), "size": len(body)}
    pusher.push_blob("acme/signed", b"{}")
    pusher.push_blob("acme/signed", b"sbom")
    sbom = artifact_manifest("application/spdx+json", [(b"sbom", "application/spdx+json")], subject=subject)
    assert pusher.push_manifest("acme/signed", digest(json.dumps(sbom).encode()), sbom).status_code == 201
    assert requests.get(url, headers=ACCEPT).status_code == 403
    pusher.push_blob("acme/signed", b"signature")
    signature = artifact_manifest(COSIGN, [(b"signature", "application/octet-stream")], subject=subject)
    assert pusher.push_manifest("acme/signed", digest(json.dumps(signature).encode()), signature).status_code == 201
    r = requests.get(url, headers=ACCEPT)
    assert r.status_code == 200 and r.content == body


def test_without_signed_pulls_only_unsigned_images_pull_anonymously(vendor):
    as_user(vendor, ALICE).push_image("acme/unsigned", "v1", **ANNOTATED)
    assert requests.get(f"{vendor.url}/v2/acme/unsigned/manifests/v1", headers=ACCEPT).status_code == 200


# --- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("section, problem", [
    ({"vendors": ["Acme"]}, r"pluginConfig/vendor/vendors/0: 'Acme' is not a 'vendor-org'"),
    ({"immutableTags": ["v*\n"]}, r"pluginConfig/vendor/immutableTags/0: 'v\*\\n' is not a 'tag-glob'"),
    ({"requireAnnotations": ["has space"]}, r"pluginConfig/vendor/requireAnnotations/0: .* is not an annotation key"),
    ({"signatureArtifactTypes": []}, r"pluginConfig/vendor/signatureArtifactTypes: \[\] should be non-empty"),
    ({"vendor": ["acme"]}, r"Additional properties are not allowed \('vendor' was unexpected\)"),
])
def test_the_plugin_s_settings_are_checked_whole_at_start_up(section, problem):
    with pytest.raises(DocumentInvalid, match=problem):
        validate_plugin_config(make_plugin_manager(["vendor"]), {"vendor": section}, "registry.yaml")


def test_registry_init_profile_vendor_writes_the_config_and_the_organisation(tmp_path):
    directory = tmp_path / "vendor"
    result = subprocess.run([REGISTRY, "init", str(directory), "--profile", "vendor", "--vendor", "acme",
                             "--vendor", "acme-labs", "--immutable-tags", "v*", "--immutable-tags", "[0-9]*",
                             "--require-annotation", SOURCE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    password = re.search(r"Admin login: admin / (\S+)", result.stdout)[1]
    config = directory / "registry.yaml"
    written = yaml.safe_load(config.read_text())
    assert written["plugins"] == ["vendor"]
    assert written["pluginConfig"]["vendor"] == {"vendors": ["acme", "acme-labs"], "immutableTags": ["v*", "[0-9]*"],
                                                 "requireAnnotations": [SOURCE], "signedPullsOnly": False}
    with RunningRegistry(directory, "--config", str(config)) as server:
        admin = as_user(server, ("admin", password))
        assert admin.get("/api/v1/orgs/acme").json()["members"] == {"admin": "owner"}
        admin.push_image("acme/app", "1.0", **ANNOTATED)
        assert admin.push_manifest("acme/app", "1.0", image(admin, "acme/app", **ANNOTATED)).status_code == 403
        assert requests.get(f"{server.url}/v2/acme/app/manifests/1.0", headers=ACCEPT).status_code == 200


def test_registry_init_profile_vendor_defaults_to_v_star_and_refuses_a_bad_value(tmp_path):
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "bad"), "--profile", "vendor", "--vendor", "Acme Inc"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--vendor Acme Inc: 'Acme Inc' is not an organisation name" in result.stderr
    assert not (tmp_path / "bad").exists()
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "s"), "--vendor", "acme"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "add --profile vendor" in result.stderr
    result = subprocess.run([REGISTRY, "init", str(tmp_path / "ok"), "--profile", "vendor"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "ok" / "registry.yaml").read_text())["pluginConfig"]["vendor"]["immutableTags"] \
        == ["v*"]
