"""Pushing, pulling and deleting manifests: distribution-spec end-3 (GET/HEAD), end-7 (PUT), end-9
(DELETE); and the audit trail: every push, tag and delete is one commit in <store>/meta.git."""

import hashlib
import json
import os
from urllib.parse import urlsplit

import pytest

from tests.support.oci import (DOCKER_LIST, DOCKER_MANIFEST, EMPTY_DIGEST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
                               OCI_LAYER, OCI_MANIFEST, artifact_manifest, descriptor, digest, error_codes,
                               keepalive_exchange, meta_commits, meta_tip, raw_http,
                               unique_name)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
ARTIFACT = "application/vnd.example.notes.v1"


def encode(manifest: dict) -> bytes:
    return json.dumps(manifest).encode()


def image(client, name, media_type=OCI_MANIFEST, config_type=OCI_CONFIG, layer_type=OCI_LAYER, **fields) -> bytes:
    """Push a config and one layer; return the bytes of an image manifest that refers to them."""
    config = encode({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()})
    layer = os.urandom(128)
    client.push_blob(name, config)
    client.push_blob(name, layer)
    return encode({"schemaVersion": 2, "mediaType": media_type, "config": descriptor(config, config_type),
                   "layers": [descriptor(layer, layer_type)], **fields})


def index(client, name, media_type=OCI_INDEX, child_type=OCI_MANIFEST, **fields) -> bytes:
    """Push two platform images by digest; return the bytes of an index of them."""
    children = []
    for arch in ("amd64", "arm64"):
        parts = (DOCKER_CONFIG, DOCKER_LAYER) if child_type == DOCKER_MANIFEST else (OCI_CONFIG, OCI_LAYER)
        body = image(client, name, child_type, *parts)
        assert client.push_manifest(name, digest(body), body, child_type).status_code == 201
        children.append(descriptor(body, child_type, platform={"architecture": arch, "os": "linux"}))
    return encode({"schemaVersion": 2, "mediaType": media_type, "manifests": children, **fields})


def artifact(client, name) -> bytes:
    client.push_blob(name, b"{}")
    notes = b"release notes"
    client.push_blob(name, notes)
    return encode(artifact_manifest(ARTIFACT, [(notes, "text/plain")],
                                    annotations={"org.opencontainers.image.title": "notes"}))


KINDS = {
    "oci-manifest": (OCI_MANIFEST, lambda c, n: image(c, n)),
    "oci-index": (OCI_INDEX, lambda c, n: index(c, n)),
    "docker-manifest": (DOCKER_MANIFEST, lambda c, n: image(c, n, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)),
    "docker-manifest-list": (DOCKER_LIST, lambda c, n: index(c, n, DOCKER_LIST, DOCKER_MANIFEST)),
    "artifact": (OCI_MANIFEST, artifact),
}


def assert_pulls(client, name, reference, body, media_type):
    r = client.get(f"/v2/{name}/manifests/{reference}")
    assert r.status_code == 200, r.text
    assert r.content == body
    assert r.headers["Content-Type"] == media_type
    assert r.headers["Docker-Content-Digest"] == digest(body)
    assert r.headers["Content-Length"] == str(len(body))
    r = client.head(f"/v2/{name}/manifests/{reference}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Type"] == media_type
    assert r.headers["Docker-Content-Digest"] == digest(body)
    assert r.headers["Content-Length"] == str(len(body))


def assert_manifest_created(client, name, response, body):
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest(body)
    assert urlsplit(response.headers["Location"]).path == f"/v2/{name}/manifests/{digest(body)}"


def assert_rejected(response, status, code):
    assert response.status_code == status, response.text
    assert error_codes(response) == [code]


# --- push and pull (end-7, end-3) -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_manifest_pushed_by_tag_is_pulled_by_tag_and_digest_byte_for_byte(client, name, kind):
    media_type, make = KINDS[kind]
    body = make(client, name)
    r = client.push_manifest(name, "v1", body, media_type)
    assert_manifest_created(client, name, r, body)
    assert_pulls(client, name, "v1", body, media_type)
    assert_pulls(client, name, digest(body), body, media_type)
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_pushed_by_digest_is_pulled_by_digest_and_has_no_tag(client, name, kind):
    media_type, make = KINDS[kind]
    body = make(client, name)
    r = client.push_manifest(name, digest(body), body, media_type)
    assert_manifest_created(client, name, r, body)
    assert_pulls(client, name, digest(body), body, media_type)
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == []


def test_location_of_a_pushed_manifest_is_pullable(client, name):
    body = image(client, name)
    r = client.push_manifest(name, "latest", body)
    assert client.get(r.headers["Location"]).content == body


def test_manifest_bytes_are_kept_exactly_with_unusual_whitespace_and_key_order(client, name):
    config, layer = b'{"os":"linux"}', os.urandom(64)
    client.push_blob(name, config)
    client.push_blob(name, layer)
    body = ('{\n\t"layers"  :[ {"size":%d ,"digest":"%s",   "mediaType":"%s"}\n],\r\n'
            '  "config":{"digest":"%s","size":%d,"mediaType":"%s"},"schemaVersion" :2 ,'
            '"mediaType":"%s", "annotations": {"z": "\\u00e9t\\u00e9", "a": "\\/"}}\n\n   ' % (
                len(layer), digest(layer), OCI_LAYER, digest(config), len(config), OCI_CONFIG,
                OCI_MANIFEST)).encode()
    r = client.push_manifest(name, "odd", body)
    assert_manifest_created(client, name, r, body)
    assert_pulls(client, name, "odd", body, OCI_MANIFEST)
    assert_pulls(client, name, digest(body), body, OCI_MANIFEST)


def test_manifest_without_content_type_takes_its_media_type_from_the_body(client, name):
    body = image(client, name)
    r = client.put(f"/v2/{name}/manifests/plain", data=body)
    assert_manifest_created(client, name, r, body)
    assert client.head(f"/v2/{name}/manifests/plain").headers["Content-Type"] == OCI_MANIFEST


def test_content_type_parameters_are_ignored(client, name):
    body = image(client, name)
    r = client.push_manifest(name, "v1", body, OCI_MANIFEST + "; charset=utf-8")
    assert_manifest_created(client, name, r, body)
    assert client.head(f"/v2/{name}/manifests/v1").headers["Content-Type"] == OCI_MANIFEST


def test_manifest_pushed_by_sha512_digest_is_addressed_by_it(client, name):
    body = image(client, name)
    d = digest(body, "sha512")
    r = client.push_manifest(name, d, body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    r = client.get(f"/v2/{name}/manifests/{d}")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == d


def test_pushing_a_tag_again_moves_it_to_the_new_manifest(client, name):
    first, second = image(client, name), image(client, name)
    assert client.push_manifest(name, "latest", first).status_code == 201
    assert client.push_manifest(name, "latest", second).status_code == 201
    assert client.get(f"/v2/{name}/manifests/latest").content == second
    assert client.get(f"/v2/{name}/manifests/{digest(first)}").content == first


def test_one_manifest_can_have_many_tags(client, name):
    body = image(client, name)
    for tag in ("1", "1.0", "1.0.0", "latest"):
        assert client.push_manifest(name, tag, body).status_code == 201
    for tag in ("1", "1.0", "1.0.0", "latest"):
        assert client.get(f"/v2/{name}/manifests/{tag}").content == body


def test_tag_of_128_characters_is_accepted(client, name):
    body = image(client, name)
    tag = "T" + "x" * 127
    assert client.push_manifest(name, tag, body).status_code == 201
    assert client.get(f"/v2/{name}/manifests/{tag}").content == body


def test_foreign_layer_with_urls_need_not_be_in_the_repository(client, name):
    config = encode({"os": "windows"})
    client.push_blob(name, config)
    foreign = {"mediaType": DOCKER_FOREIGN_LAYER, "digest": digest(b"elsewhere"), "size": 9,
               "urls": ["https://example.com/layer.tar.gz"]}
    body = encode({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                   "config": descriptor(config, DOCKER_CONFIG), "layers": [foreign]})
    assert_manifest_created(client, name, client.push_manifest(name, "win", body, DOCKER_MANIFEST), body)


def test_manifest_with_a_subject_answers_with_oci_subject(client, name):
    subject_digest, _, subject_body = client.push_image(name, "base")
    body = image(client, name, subject=descriptor(subject_body, OCI_MANIFEST))
    r = client.push_manifest(name, digest(body), body)
    assert_manifest_created(client, name, r, body)
    assert r.headers["OCI-Subject"] == subject_digest
    assert "OCI-Subject" not in client.push_manifest(name, "plain", image(client, name)).headers


def test_manifest_of_4_mib_is_accepted(client, name):
    body = image(client, name)
    body = body[:-1] + b" " * (4 * 1024 * 1024 - len(body)) + b"}"
    assert len(body) == 4 * 1024 * 1024
    assert_manifest_created(client, name, client.push_manifest(name, "big", body), body)
    assert client.get(f"/v2/{name}/manifests/big").content == body


def test_manifest_over_4_mib_is_rejected_with_413(client, name):
    body = image(client, name)
    body = body[:-1] + b" " * (4 * 1024 * 1024 + 1 - len(body)) + b"}"
    r = client.push_manifest(name, "too-big", body)
    assert r.status_code == 413
    # Without a Content-Length (chunked transfer-encoding) the limit holds too.
    r = client.put(f"/v2/{name}/manifests/too-big", data=iter([body[:1 << 20], body[1 << 20:]]),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413
    assert client.get(f"/v2/{name}/manifests/too-big").status_code == 404


def test_truncated_manifest_body_is_400_and_nothing_is_stored(registry, client, name):
    body = image(client, name)
    head = (f"PUT /v2/{name}/manifests/v1 HTTP/1.1\r\nHost: {registry.host}\r\nContent-Type: {OCI_MANIFEST}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    answer = raw_http("127.0.0.1", registry.port, head, body[:len(body) // 2])
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert client.get(f"/v2/{name}/manifests/v1").status_code == 404
    assert client.push_manifest(name, "v1", body).status_code == 201


def test_connection_stays_usable_after_a_manifest_is_refused_with_413(registry, client, name):
    body = image(client, name)
    body = body[:-1] + b" " * (4 * 1024 * 1024 + 1 - len(body)) + b"}"
    put = (f"PUT /v2/{name}/manifests/too-big HTTP/1.1\r\nHost: {registry.host}\r\n"
           f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    ping = f"GET /v2/ HTTP/1.1\r\nHost: {registry.host}\r\n\r\n".encode()
    assert keepalive_exchange("127.0.0.1", registry.port, [put, ping, ping]) == [413, 200, 200]


# --- refused pushes -------------------------------------------------------------------------------

def test_manifest_referring_to_a_missing_blob_is_404_manifest_blob_unknown(client, name):
    config, layer = b"{}", os.urandom(32)
    client.push_blob(name, config)
    missing_layer = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                            "layers": [descriptor(layer, OCI_LAYER)]})
    assert_rejected(client.push_manifest(name, "v1", missing_layer), 404, "MANIFEST_BLOB_UNKNOWN")
    missing_config = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": descriptor(b"other config", OCI_CONFIG), "layers": []})
    assert_rejected(client.push_manifest(name, "v1", missing_config), 404, "MANIFEST_BLOB_UNKNOWN")
    assert client.get(f"/v2/{name}/manifests/v1").status_code == 404


def test_manifest_referring_to_a_blob_of_another_repository_is_404_manifest_blob_unknown(client, name):
    other = unique_name()
    body = image(client, other)
    assert_rejected(client.push_manifest(name, "v1", body), 404, "MANIFEST_BLOB_UNKNOWN")


def test_artifact_whose_empty_config_was_not_pushed_is_404_manifest_blob_unknown(client, name):
    notes = b"notes"
    client.push_blob(name, notes)
    body = encode(artifact_manifest(ARTIFACT, [(notes, "text/plain")]))
    assert_rejected(client.push_manifest(name, "v1", body), 404, "MANIFEST_BLOB_UNKNOWN")
    client.push_blob(name, b"{}")
    assert client.push_manifest(name, "v1", body).status_code == 201


def test_index_whose_child_manifest_is_missing_is_404_manifest_blob_unknown(client, name):
    child = image(client, name)  # its blobs are there, the child manifest itself is not
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(child, OCI_MANIFEST)]})
    assert_rejected(client.push_manifest(name, "v1", body, OCI_INDEX), 404, "MANIFEST_BLOB_UNKNOWN")
    client.push_manifest(name, digest(child), child)
    assert client.push_manifest(name, "v1", body, OCI_INDEX).status_code == 201


def _valid(config_digest=EMPTY_DIGEST, **changes):
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_EMPTY, "digest": config_digest, "size": 2}, "layers": []}
    manifest.update(changes)
    return {k: v for k, v in manifest.items() if v is not None}


INVALID = {
    "truncated-json": (b'{"schemaVersion": 2, "mediaType": ', OCI_MANIFEST),
    "not-json": (b"not json at all", OCI_MANIFEST),
    "not-utf8": (b"\xff\xfe{}", OCI_MANIFEST),
    "json-list": (b'["a", "list"]', OCI_MANIFEST),
    "schemaVersion-1": (encode(_valid(schemaVersion=1)), OCI_MANIFEST),
    "schemaVersion-string": (encode(_valid(schemaVersion="2")), OCI_MANIFEST),
    "schemaVersion-missing": (encode(_valid(schemaVersion=None)), OCI_MANIFEST),
    "content-type-index-body-manifest": (encode(_valid()), OCI_INDEX),
    "content-type-docker-body-oci": (encode(_valid()), DOCKER_MANIFEST),
    "content-type-manifest-body-index": (encode(_valid(mediaType=OCI_INDEX, manifests=[])), OCI_MANIFEST),
    "unknown-media-type": (encode(_valid(mediaType="application/vnd.example.unknown+json")),
                           "application/vnd.example.unknown+json"),
    "short-digest": (encode(_valid(config_digest="sha256:1234")), OCI_MANIFEST),
    "md5-digest": (encode(_valid(config_digest="md5:" + "0" * 32)), OCI_MANIFEST),
    "uppercase-digest": (encode(_valid(config_digest="sha256:" + "A" * 64)), OCI_MANIFEST),
    "descriptor-without-digest": (encode(_valid(config={"mediaType": OCI_EMPTY, "size": 2})), OCI_MANIFEST),
    "negative-size": (encode(_valid(config={"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": -1})),
                      OCI_MANIFEST),
    "size-over-int64": (encode(_valid(config={"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 10**30})),
                        OCI_MANIFEST),
    "float-size": (encode(_valid(config={"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2.0})),
                   OCI_MANIFEST),
    "layer-size-over-int64": (encode(_valid(layers=[{"mediaType": OCI_LAYER, "digest": EMPTY_DIGEST,
                                                     "size": 2**63}])), OCI_MANIFEST),
    "string-size": (encode(_valid(config={"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": "2"})),
                    OCI_MANIFEST),
    "bad-layer-digest": (encode(_valid(layers=[{"mediaType": OCI_LAYER, "digest": "sha256:xyz", "size": 1}])),
                         OCI_MANIFEST),
    "no-config": (encode(_valid(config=None)), OCI_MANIFEST),
    "index-without-manifests": (encode({"schemaVersion": 2, "mediaType": OCI_INDEX}), OCI_INDEX),
    "index-child-bad-digest": (encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:00", "size": 1}]}), OCI_INDEX),
    "bad-subject-digest": (encode(_valid(subject={"mediaType": OCI_MANIFEST, "digest": "nope", "size": 1})),
                           OCI_MANIFEST),
    "non-string-annotation": (encode(_valid(annotations={"a": 1})), OCI_MANIFEST),
    "docker-schema1": (encode(_valid(mediaType="application/vnd.docker.distribution.manifest.v1+json")),
                       "application/vnd.docker.distribution.manifest.v1+json"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_manifest_is_400_manifest_invalid(client, name, case):
    body, content_type = INVALID[case]
    client.push_blob(name, b"{}")
    assert_rejected(client.push_manifest(name, "v1", body, content_type), 400, "MANIFEST_INVALID")
    assert client.get(f"/v2/{name}/manifests/v1").status_code == 404


def test_manifest_pushed_by_the_wrong_digest_is_400_digest_invalid(client, name):
    body = image(client, name)
    wrong = digest(body + b" ")
    assert_rejected(client.push_manifest(name, wrong, body), 400, "DIGEST_INVALID")
    assert client.get(f"/v2/{name}/manifests/{wrong}").status_code == 404
    assert client.get(f"/v2/{name}/manifests/{digest(body)}").status_code == 404


@pytest.mark.parametrize("reference", ["sha256:baddigeststring", "md5:" + "0" * 32, "sha256:" + "F" * 64])
def test_manifest_pushed_by_a_malformed_digest_is_400_digest_invalid(client, name, reference):
    body = image(client, name)
    assert_rejected(client.push_manifest(name, reference, body), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("tag", ["-leading-dash", ".leading-dot", "x" * 129, "spa ce", "bad!tag", "é"])
def test_manifest_pushed_by_an_invalid_tag_is_400(client, name, tag):
    body = image(client, name)
    r = client.push_manifest(name, tag, body)
    assert r.status_code == 400, r.text
    assert error_codes(r) == ["TAG_INVALID"]


# --- pulling what is not there --------------------------------------------------------------------

def test_unknown_manifest_is_404_manifest_unknown(client, name):
    client.push_image(name, "v1")
    for reference in ("missing", digest(os.urandom(8)), "sha256:baddigeststring"):
        for method in ("GET", "HEAD"):
            assert client.request(method, f"/v2/{name}/manifests/{reference}").status_code == 404
        assert error_codes(client.get(f"/v2/{name}/manifests/{reference}")) == ["MANIFEST_UNKNOWN"]


def test_manifest_of_an_unknown_repository_is_404_name_unknown(client, name):
    r = client.get(f"/v2/{name}/manifests/latest")
    assert_rejected(r, 404, "NAME_UNKNOWN")
    assert client.head(f"/v2/{name}/manifests/latest").status_code == 404


def test_manifest_pushed_in_one_repository_is_not_in_another(client, name):
    d, _, _ = client.push_image(name, "v1")
    other = unique_name()
    client.push_image(other, "v1")
    r = client.get(f"/v2/{other}/manifests/{d}")
    assert_rejected(r, 404, "MANIFEST_UNKNOWN")


# --- delete (end-9) -------------------------------------------------------------------------------

def test_delete_manifest_by_digest_answers_202_then_it_and_its_tags_are_gone(client, name):
    d, _, body = client.push_image(name, "v1")
    client.push_manifest(name, "latest", body)
    kept, _, _ = client.push_image(name, "other")
    r = client.delete(f"/v2/{name}/manifests/{d}")
    assert r.status_code == 202
    for reference in (d, "v1", "latest"):
        r = client.get(f"/v2/{name}/manifests/{reference}")
        assert_rejected(r, 404, "MANIFEST_UNKNOWN")
        assert client.head(f"/v2/{name}/manifests/{reference}").status_code == 404
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["other"]
    assert client.get(f"/v2/{name}/manifests/{kept}").status_code == 200
    assert_rejected(client.delete(f"/v2/{name}/manifests/{d}"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_tag_only_untags(client, name):
    d, _, body = client.push_image(name, "v1")
    client.push_manifest(name, "latest", body)
    r = client.delete(f"/v2/{name}/manifests/v1")
    assert r.status_code == 202
    assert_rejected(client.get(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{name}/manifests/{d}").content == body
    assert client.get(f"/v2/{name}/manifests/latest").content == body
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["latest"]
    assert_rejected(client.delete(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_delete_in_an_unknown_repository_is_404_name_unknown(client, name):
    assert_rejected(client.delete(f"/v2/{name}/manifests/latest"), 404, "NAME_UNKNOWN")
    assert_rejected(client.delete(f"/v2/{name}/manifests/{digest(b'x')}"), 404, "NAME_UNKNOWN")


def test_delete_by_an_invalid_reference_is_400(client, name):
    client.push_image(name, "v1")
    assert client.delete(f"/v2/{name}/manifests/sha256:short").status_code == 400
    assert client.delete(f"/v2/{name}/manifests/-bad-tag").status_code == 400


def test_manifest_can_be_pushed_again_after_it_was_deleted(client, name):
    d, _, body = client.push_image(name, "v1")
    assert client.delete(f"/v2/{name}/manifests/{d}").status_code == 202
    assert client.push_manifest(name, "v1", body).status_code == 201
    assert client.get(f"/v2/{name}/manifests/v1").content == body


# --- the audit trail: one commit per change, authored by the acting user ----------------------------

def commits_for(registry, action):
    """Run `action`; return the commits it made in meta.git (newest first)."""
    before = meta_tip(registry.store)
    action()
    return meta_commits(registry.store, since=before)


def changed_paths(commit) -> set[str]:
    parent = commit.parents[0]
    return {delta.new_file.path for delta in parent.tree.diff_to_tree(commit.tree).deltas}


def test_every_push_tag_and_delete_is_one_commit_by_the_acting_user(registry, client, name):
    body, other = image(client, name), image(client, name)
    d = digest(body)
    prefix = f"repositories/{name}/"
    steps = [
        ("push by tag", lambda: client.push_manifest(name, "v1", body), "v1"),
        ("tag again", lambda: client.push_manifest(name, "latest", body), "latest"),
        ("push by digest", lambda: client.push_manifest(name, digest(other), other), digest(other)),
        ("untag", lambda: client.delete(f"/v2/{name}/manifests/v1"), "v1"),
        ("delete", lambda: client.delete(f"/v2/{name}/manifests/{d}"), d.split(":")[1]),
    ]
    for step, action, mentioned in steps:
        responses = []
        commits = commits_for(registry, lambda: responses.append(action()))
        assert responses[0].status_code in (201, 202), (step, responses[0].text)
        assert len(commits) == 1, step
        commit = commits[0]
        assert commit.author.name == "anonymous", step
        assert "Actor: anonymous" in commit.message, step
        assert name in commit.message, step
        if mentioned:
            assert mentioned in commit.message, step
        assert all(path.startswith(prefix) for path in changed_paths(commit)), step


def test_push_commit_records_the_tag_and_manifest_documents(registry, client, name):
    body = image(client, name)
    [commit] = commits_for(registry, lambda: client.push_manifest(name, "v1", body))
    hex_digest = digest(body).split(":")[1]
    # tags and manifests sit in buckets three folders deep, one hex digit each (meta/paths.py):
    # of the tag name's SHA-256, and of the manifest's digest
    tag_bucket = "/".join(hashlib.sha256(b"v1").hexdigest()[:3])
    manifest_bucket = "/".join(hex_digest[:3])
    assert changed_paths(commit) == {
        f"repositories/{name}/_repository.yaml",
        f"repositories/{name}/_tags/{tag_bucket}/v1.yaml",
        f"repositories/{name}/_manifests/sha256/{manifest_bucket}/{hex_digest}.yaml",
    }
    [untag] = commits_for(registry, lambda: client.delete(f"/v2/{name}/manifests/v1"))
    assert changed_paths(untag) == {f"repositories/{name}/_tags/{tag_bucket}/v1.yaml"}


def test_a_referrer_is_indexed_in_the_bucket_of_its_subjects_digest(registry, client, name):
    subject = image(client, name)
    client.push_manifest(name, "v1", subject)
    client.push_blob(name, b"{}")
    sbom = encode(artifact_manifest("application/spdx+json", [], subject=descriptor(subject, OCI_MANIFEST)))
    [commit] = commits_for(registry, lambda: client.push_manifest(name, digest(sbom), sbom))
    subject_hex, sbom_hex = digest(subject).split(":")[1], digest(sbom).split(":")[1]
    assert changed_paths(commit) == {
        f"repositories/{name}/_manifests/sha256/{'/'.join(sbom_hex[:3])}/{sbom_hex}.yaml",
        f"repositories/{name}/_referrers/sha256/{'/'.join(subject_hex[:3])}/{subject_hex}/sha256-{sbom_hex}.yaml",
    }


def test_commit_carries_the_request_id_and_client_address(registry, client, name):
    body = image(client, name)
    [commit] = commits_for(registry, lambda: client.put(
        f"/v2/{name}/manifests/v1", data=body,
        headers={"Content-Type": OCI_MANIFEST, "X-Request-Id": "req-test-1234"}))
    assert "Request-Id: req-test-1234" in commit.message
    assert "Client-Addr: 127.0.0.1" in commit.message


def test_blob_uploads_and_refused_pushes_make_no_commit(registry, client, name):
    def refused():
        client.push_blob(name, os.urandom(10))
        assert client.push_manifest(name, "v1", b"not json").status_code == 400
        assert client.delete(f"/v2/{name}/manifests/missing").status_code == 404
    assert commits_for(registry, refused) == []
