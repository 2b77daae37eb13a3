"""The referrers API: distribution-spec end-12a (GET /v2/<name>/referrers/<digest>) and end-12b
(`?artifactType=` filter), and pushing manifests with a `subject`."""

import json
import os

import pytest

from tests.support.oci import (OCI_INDEX, OCI_MANIFEST, artifact_manifest, descriptor, digest, error_codes,
                               unique_name)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
CUSTOM_CONFIG = "application/vnd.example.config.v1+json"
SBOM_ANNOTATIONS = {"org.example.sbom.format": "json", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def encode(manifest: dict) -> bytes:
    return json.dumps(manifest).encode()


def push(client, name, body: bytes, media_type=OCI_MANIFEST, reference=None) -> dict:
    """Push a manifest; return the descriptor the referrers API should list for it."""
    r = client.push_manifest(name, reference or digest(body), body, media_type)
    assert r.status_code == 201, r.text
    manifest = json.loads(body)
    expected = {"mediaType": media_type, "digest": digest(body), "size": len(body)}
    artifact_type = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
    if artifact_type:
        expected["artifactType"] = artifact_type
    if manifest.get("annotations"):
        expected["annotations"] = manifest["annotations"]
    return expected


def push_artifact(client, name, subject: dict, artifact_type: str, **annotations) -> dict:
    client.push_blob(name, b"{}")
    payload = os.urandom(32)
    client.push_blob(name, payload)
    manifest = artifact_manifest(artifact_type, [(payload, "application/octet-stream")], subject=subject)
    if annotations:
        manifest["annotations"] = annotations
    return push(client, name, encode(manifest))


def referrers(client, name, subject_digest, **params):
    r = client.get(f"/v2/{name}/referrers/{subject_digest}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    return index["manifests"], r


def by_digest(descriptors):
    return {d["digest"]: d for d in descriptors}


@pytest.fixture
def subject(client, name) -> dict:
    _, _, body = client.push_image(name, "base")
    return descriptor(body, OCI_MANIFEST)


@pytest.fixture
def attached(client, name, subject) -> dict[str, dict]:
    """Referrers of `subject` of every kind, by label; each the descriptor the API should return."""
    config = encode({"note": os.urandom(8).hex()})
    client.push_blob(name, config)
    image_with_subject = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                 "config": descriptor(config, CUSTOM_CONFIG), "layers": [], "subject": subject})
    return {
        "sbom": push_artifact(client, name, subject, SBOM, **SBOM_ANNOTATIONS),
        "signature": push_artifact(client, name, subject, SIGNATURE, **{"org.example.signature.fingerprint": "abcd"}),
        "second-sbom": push_artifact(client, name, subject, SBOM),
        "image": push(client, name, image_with_subject),
        "index": push(client, name, encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                                            "subject": subject, "annotations": {"kind": "bare index"}}), OCI_INDEX),
        "typed-index": push(client, name, encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                                                  "artifactType": SIGNATURE, "subject": subject}), OCI_INDEX),
    }


def test_referrers_list_every_manifest_with_that_subject(client, name, subject, attached):
    listed, _ = referrers(client, name, subject["digest"])
    assert len(listed) == len(attached)
    assert by_digest(listed) == by_digest(attached.values())


def test_referrers_descriptors_carry_media_type_size_artifact_type_and_annotations(client, name, subject, attached):
    listed = by_digest(referrers(client, name, subject["digest"])[0])
    sbom = listed[attached["sbom"]["digest"]]
    assert sbom["mediaType"] == OCI_MANIFEST
    assert sbom["artifactType"] == SBOM
    assert sbom["annotations"] == SBOM_ANNOTATIONS
    assert sbom["size"] == attached["sbom"]["size"]
    assert client.get(f"/v2/{name}/manifests/{sbom['digest']}").headers["Content-Length"] == str(sbom["size"])


def test_image_manifest_with_a_subject_and_no_artifact_type_is_listed_with_its_config_media_type(
        client, name, subject, attached):
    listed = by_digest(referrers(client, name, subject["digest"])[0])
    assert listed[attached["image"]["digest"]]["artifactType"] == CUSTOM_CONFIG


def test_index_with_a_subject_and_no_artifact_type_is_listed_without_one(client, name, subject, attached):
    listed = by_digest(referrers(client, name, subject["digest"])[0])
    index = listed[attached["index"]["digest"]]
    assert index["mediaType"] == OCI_INDEX
    assert "artifactType" not in index
    assert index["annotations"] == {"kind": "bare index"}
    assert listed[attached["typed-index"]["digest"]]["artifactType"] == SIGNATURE


def test_artifact_type_filter_lists_only_that_type_and_says_it_was_applied(client, name, subject, attached):
    listed, r = referrers(client, name, subject["digest"], artifactType=SBOM)
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert by_digest(listed) == by_digest([attached["sbom"], attached["second-sbom"]])
    listed, r = referrers(client, name, subject["digest"], artifactType=CUSTOM_CONFIG)
    assert by_digest(listed) == by_digest([attached["image"]])
    listed, r = referrers(client, name, subject["digest"], artifactType="application/vnd.example.none")
    assert listed == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"


def test_unfiltered_referrers_have_no_filters_applied_header(client, name, subject, attached):
    _, r = referrers(client, name, subject["digest"])
    assert "OCI-Filters-Applied" not in r.headers


def test_unknown_subject_has_an_empty_list_of_referrers(client, name, subject, attached):
    listed, r = referrers(client, name, digest(os.urandom(16)))
    assert listed == []
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    listed, _ = referrers(client, name, digest(os.urandom(16), "sha512"))
    assert listed == []


def test_subject_without_referrers_has_an_empty_list(client, name, subject):
    assert referrers(client, name, subject["digest"])[0] == []


def test_referrers_in_an_unknown_repository_are_an_empty_list_not_404(client, name):
    # "If the registry supports the referrers API, the registry MUST NOT return a 404 Not Found";
    # the conformance suite asks this of a repository nothing was pushed to yet.
    listed, _ = referrers(client, name, digest(os.urandom(16)))
    assert listed == []


@pytest.mark.parametrize("bad", ["sha256:1234", "md5:" + "0" * 32, "sha256:" + "A" * 64, "latest"])
def test_referrers_of_an_invalid_digest_is_400(client, name, subject, bad):
    r = client.get(f"/v2/{name}/referrers/{bad}")
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


def test_deleting_a_referrer_removes_it_from_the_list(client, name, subject, attached):
    gone = attached["signature"]["digest"]
    assert client.delete(f"/v2/{name}/manifests/{gone}").status_code == 202
    listed = by_digest(referrers(client, name, subject["digest"])[0])
    assert gone not in listed
    assert len(listed) == len(attached) - 1
    assert referrers(client, name, subject["digest"], artifactType=SIGNATURE)[0] == [attached["typed-index"]]


def test_untagging_a_referrer_keeps_it_in_the_list(client, name, subject):
    expected = push_artifact(client, name, subject, SBOM)
    body = client.get(f"/v2/{name}/manifests/{expected['digest']}").content
    assert client.push_manifest(name, "sbom", body).status_code == 201
    assert client.delete(f"/v2/{name}/manifests/sbom").status_code == 202
    assert referrers(client, name, subject["digest"])[0] == [expected]


def test_pushing_a_referrer_again_does_not_list_it_twice(client, name, subject):
    expected = push_artifact(client, name, subject, SBOM)
    body = client.get(f"/v2/{name}/manifests/{expected['digest']}").content
    assert client.push_manifest(name, "again", body).status_code == 201
    assert referrers(client, name, subject["digest"])[0] == [expected]


def test_referrer_may_be_pushed_before_its_subject(client, name):
    config = encode({"os": "linux", "nonce": os.urandom(8).hex()})
    absent = {"mediaType": OCI_MANIFEST, "digest": digest(config + b"!"), "size": 123}
    client.push_blob(name, b"{}")
    body = encode(artifact_manifest(SIGNATURE, [], subject=absent))
    r = client.push_manifest(name, "sig", body)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == absent["digest"]
    assert [d["digest"] for d in referrers(client, name, absent["digest"])[0]] == [digest(body)]


def test_referrers_are_listed_only_in_the_repository_of_the_referrer(client, name, subject, attached):
    other = unique_name()
    client.push_image(other, "v1")
    assert referrers(client, other, subject["digest"])[0] == []
