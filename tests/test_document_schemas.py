"""The schemas of metadata documents check whole strings: a pattern ends at `\\Z`, since `$`
(jsonschema matches patterns with re.search) also matches before a trailing newline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from registry_core.meta import documents

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TAG = {"kind": "tag", "schemaVersion": 1, "name": "latest", "digest": "sha256:" + "a" * 64,
       "mediaType": "application/vnd.oci.image.manifest.v1+json"}
MANIFEST = {"kind": "manifest", "schemaVersion": 1, "digest": "sha256:" + "b" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10}


@pytest.mark.parametrize("document, field", [(TAG, "name"), (TAG, "digest"), (MANIFEST, "digest")])
def test_a_value_with_a_trailing_newline_is_invalid(document, field):
    documents.validate(document, "x.yaml")
    with pytest.raises(documents.DocumentInvalid, match=field):
        documents.validate({**document, field: document[field] + "\n"}, "x.yaml")


def test_no_schema_pattern_ends_with_a_dollar():
    for path in SCHEMAS.glob("*.yaml"):
        for line in path.read_text().splitlines():
            for pattern in re.findall(r'pattern: "([^"]*)"', line):
                assert not pattern.endswith("$"), f"{path}: {pattern} ends at $, which allows a trailing newline"
    assert yaml.safe_load((SCHEMAS / "tag.yaml").read_text())["properties"]["name"]["pattern"].endswith("\\Z")
