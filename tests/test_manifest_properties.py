"""Properties of manifest parsing (hypothesis): any body, with any Content-Type, is either a parsed
manifest whose descriptors are exactly what it declared, or MANIFEST_INVALID (400): never another
exception, which the server would answer with a 500. The bodies include deep nesting, huge arrays,
duplicate keys, wrong media types, lone surrogates and numbers past int64."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry_core.errors import RegistryError
from registry_core.registry.mediatypes import DOCKER_MANIFEST, MANIFEST_TYPES, OCI_MANIFEST, parse_manifest

settings.register_profile("manifests", max_examples=300, deadline=None)
settings.load_profile("manifests")

HEX = "0123456789abcdef"
digests = st.one_of(st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h),
                    st.text(HEX + "AZ:", max_size=70).map(lambda h: "sha256:" + h),
                    st.sampled_from(["md5:" + "0" * 32, "", "sha256:", "sha256:" + "a" * 64 + "\n"]))
sizes = st.one_of(st.integers(min_value=-5, max_value=2**64), st.floats(allow_nan=False), st.text(max_size=3),
                  st.none(), st.booleans())
media_types = st.one_of(st.sampled_from(list(MANIFEST_TYPES) + ["application/vnd.oci.image.layer.v1.tar",
                                                               "application/json", "", "text/plain"]),
                        st.text(max_size=20))
text = st.text(max_size=12)  # includes lone surrogates: hypothesis draws from every code point
descriptors = st.fixed_dictionaries({"mediaType": media_types, "digest": digests, "size": sizes},
                                    optional={"annotations": st.dictionaries(text, st.one_of(text, st.integers()),
                                                                             max_size=3),
                                              "platform": st.one_of(st.dictionaries(text, text, max_size=2), text),
                                              "urls": st.one_of(st.lists(text, max_size=2), text)})
manifests = st.fixed_dictionaries(
    {"schemaVersion": st.one_of(st.just(2), st.integers(), st.text(max_size=2)),
     "mediaType": media_types},
    optional={"config": descriptors, "layers": st.one_of(st.lists(descriptors, max_size=4), descriptors),
              "manifests": st.lists(descriptors, max_size=4), "subject": descriptors,
              "artifactType": st.one_of(text, st.integers()),
              "annotations": st.one_of(st.dictionaries(text, text, max_size=3), text)})
good_digests = st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h)
good_descriptors = st.fixed_dictionaries(
    {"mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.config.v1+json"]),
     "digest": good_digests, "size": st.integers(min_value=0, max_value=2**63 - 1)},
    optional={"annotations": st.dictionaries(text, text, max_size=3)})
good_images = st.fixed_dictionaries({"schemaVersion": st.just(2), "mediaType": st.just(OCI_MANIFEST),
                                     "config": good_descriptors, "layers": st.lists(good_descriptors, max_size=6)},
                                    optional={"annotations": st.dictionaries(text, text, max_size=3)})


def encode(document) -> bytes:
    return json.dumps(document, ensure_ascii=True).encode()  # \ud800 escapes survive as escapes


def deep(depth: int) -> bytes:
    return b'{"schemaVersion": 2, "annotations": ' + b"[" * depth + b"]" * depth + b"}"


def parse_or_invalid(body: bytes, content_type: str | None):
    try:
        return parse_manifest(body, content_type)
    except RegistryError as refused:
        assert refused.code == "MANIFEST_INVALID" and refused.status == 400, refused
        return None


@given(st.one_of(good_images, manifests), st.one_of(media_types, st.none()))
def test_any_manifest_document_parses_or_is_manifest_invalid(document, content_type):
    parsed = parse_or_invalid(encode(document), content_type)
    if parsed is None:
        return
    assert parsed.media_type in MANIFEST_TYPES
    for kept in [parsed.config, *parsed.layers, *parsed.manifests, parsed.subject]:
        if kept is None:
            continue
        assert isinstance(kept["size"], int) and 0 <= kept["size"] < 2**63
        assert kept["digest"].startswith(("sha256:", "sha512:")) and "\n" not in kept["digest"]
    if parsed.is_index:
        assert [d["digest"] for d in parsed.manifests] == [d["digest"] for d in document["manifests"]]
    else:
        assert [d["digest"] for d in parsed.layers] == [d["digest"] for d in document.get("layers", [])]
        assert parsed.config["digest"] == document["config"]["digest"]


@given(good_images, st.sampled_from([OCI_MANIFEST, None, "application/json"]))
def test_a_well_formed_image_manifest_parses_to_exactly_its_descriptors(document, content_type):
    try:
        parsed = parse_manifest(encode(document), content_type)
    except RegistryError as refused:  # only text that is not Unicode (a lone surrogate) may be refused
        assert "not valid Unicode" in refused.message, refused
        return
    assert parsed.config == {k: document["config"][k] for k in ("mediaType", "digest", "size")} | (
        {"annotations": document["config"]["annotations"]} if document["config"].get("annotations") else {})
    assert [(d["digest"], d["size"]) for d in parsed.layers] == [(d["digest"], d["size"]) for d in document["layers"]]


@given(st.binary(max_size=300), st.one_of(media_types, st.none()))
@example(b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": 1, "config": 2}', None)
@example(b'{"schemaVersion": 2, "x": "\\ud800"}', OCI_MANIFEST)
@example(b'{"schemaVersion": 2, "x": "\xed\xa0\x80"}', OCI_MANIFEST)
@example(b"\xff\xfe{}", None)
def test_any_bytes_parse_or_are_manifest_invalid(body, content_type):
    parse_or_invalid(body, content_type)


@pytest.mark.parametrize("depth", [65, 1_000, 50_000])
def test_deep_nesting_is_manifest_invalid(depth):
    with pytest.raises(RegistryError) as refused:
        parse_manifest(deep(depth), OCI_MANIFEST)
    assert refused.value.code == "MANIFEST_INVALID" and "levels deep" in refused.value.message


def test_a_huge_array_of_layers_parses_to_the_same_layers():
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "a" * 64, "size": 1}
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "b" * 64,
                           "size": 2}, "layers": [layer] * 20_000}
    assert len(parse_manifest(encode(document), OCI_MANIFEST).layers) == 20_000


@pytest.mark.parametrize("key", ["layers", "config", "mediaType", "digest"])
def test_a_key_given_twice_is_manifest_invalid(key):
    layer = '{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:' + "a" * 64 + '", "size": 1}'
    config = '{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:' + "b" * 64 + '", "size": 2}'
    bodies = {
        "layers": f'{{"schemaVersion": 2, "config": {config}, "layers": [], "layers": [{layer}]}}',
        "config": f'{{"schemaVersion": 2, "config": {config}, "config": {config}, "layers": []}}',
        "mediaType": f'{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}", "mediaType": "{DOCKER_MANIFEST}", '
                     f'"config": {config}, "layers": []}}',
        "digest": f'{{"schemaVersion": 2, "config": {config[:-1]}, "digest": "sha256:{"c" * 64}"}}, "layers": []}}',
    }
    with pytest.raises(RegistryError) as refused:
        parse_manifest(bodies[key].encode(), OCI_MANIFEST)
    assert refused.value.code == "MANIFEST_INVALID" and "twice" in refused.value.message
