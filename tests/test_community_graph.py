"""The image graph: `GET /api/v1/repositories/<name>/graph/<reference>` (index → platform
manifests → config and layers, referrers beside their subject, layers shared with other tags
marked, the config's labels), and the same graph drawn as SVG on the tag page, without script."""

from __future__ import annotations

import json
import os
import uuid

import requests

from tests.support.oci import (OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Client, artifact_manifest,
                               descriptor, digest, error_codes)
from tests.test_community import ALICE, api, make_user

SBOM = "application/spdx+json"


def push(client: Client, name: str, tag: str, layers: list[bytes], labels: dict | None = None) -> tuple[str, int]:
    """An image with these layers and labels; (its digest, its manifest's size)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}},
                         "rootfs": {"type": "layers", "diff_ids": []}, "nonce": uuid.uuid4().hex}).encode()
    client.push_blob(name, config)
    for layer in layers:
        client.push_blob(name, layer)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                       "layers": [descriptor(layer, OCI_LAYER) for layer in layers]}).encode()
    r = client.push_manifest(name, tag, body)
    assert r.status_code == 201, r.text
    return digest(body), len(body)


def repository_with_an_index(server, visibility: str = "public") -> dict:
    """alice's repository: v1 (two layers, labels), v2 (sharing v1's first layer), `multi` (an
    index of both), and an SBOM that refers to v1."""
    name = f"alice/g{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    session.auth = ALICE
    client = Client(server.url, session)
    shared, own, other = os.urandom(300), os.urandom(500), os.urandom(700)
    v1, v1_size = push(client, name, "v1", [shared, own], {"org.example.title": "<img src=x onerror=alert(1)>"})
    v2, v2_size = push(client, name, "v2", [shared, other])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": v1, "size": v1_size, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": v2, "size": v2_size,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}).encode()
    assert client.push_manifest(name, "multi", index, OCI_INDEX).status_code == 201
    sbom = b'{"spdxVersion": "SPDX-2.3"}'
    client.push_blob(name, sbom)
    client.push_blob(name, b"{}")
    referrer = artifact_manifest(SBOM, [(sbom, SBOM)], subject={"mediaType": OCI_MANIFEST, "digest": v1, "size": v1_size})
    body = json.dumps(referrer).encode()
    assert client.push_manifest(name, digest(body), body).status_code == 201
    r = requests.patch(api(server, f"/repositories/{name}"), auth=ALICE, json={"visibility": visibility})
    assert r.status_code == 200, r.text
    return {"name": name, "v1": v1, "v2": v2, "index": digest(index), "sbom": digest(body),
            "shared": digest(shared), "own": digest(own), "other": digest(other)}


def test_the_graph_of_an_index_reaches_platforms_layers_referrers_and_shared_layers(secured_registry):
    repo = repository_with_an_index(secured_registry)
    r = requests.get(api(secured_registry, f"/repositories/{repo['name']}/graph/multi"))
    assert r.status_code == 200, r.text
    graph = r.json()
    assert graph["digest"] == repo["index"] and graph["tagsCompared"] == 3 and graph["tagsComparedAll"]
    root = graph["root"]
    assert root["mediaType"] == OCI_INDEX and root["present"]
    first, second = root["manifests"]
    assert (first["digest"], first["platform"]) == (repo["v1"], "linux/amd64")
    assert (second["digest"], second["platform"]) == (repo["v2"], "linux/arm64/v8")
    assert [(layer["digest"], layer["size"]) for layer in first["layers"]] == [(repo["shared"], 300), (repo["own"], 500)]
    assert first["config"]["mediaType"] == OCI_CONFIG and first["config"]["size"] > 0
    assert first["labels"] == {"org.example.title": "<img src=x onerror=alert(1)>"}
    # the layer both images have is shared with v1 and v2; the graph of `multi` leaves itself out
    assert first["layers"][0]["sharedWith"] == ["v1", "v2"] and second["layers"][0]["sharedWith"] == ["v1", "v2"]
    assert first["layers"][1]["sharedWith"] == ["v1"] and second["layers"][1]["sharedWith"] == ["v2"]
    [sbom] = first["referrers"]
    assert (sbom["digest"], sbom["artifactType"], sbom["present"]) == (repo["sbom"], SBOM, True)
    assert second["referrers"] == [] and root["referrers"] == []


def test_the_graph_of_one_image_by_tag_and_by_digest(secured_registry):
    repo = repository_with_an_index(secured_registry)
    by_tag = requests.get(api(secured_registry, f"/repositories/{repo['name']}/graph/v2")).json()
    assert by_tag["root"]["manifests"] == [] and by_tag["root"]["labels"] == {}
    assert [layer["sharedWith"] for layer in by_tag["root"]["layers"]] == [["multi", "v1"], ["multi"]]
    by_digest = requests.get(api(secured_registry, f"/repositories/{repo['name']}/graph/{repo['v2']}")).json()
    assert by_digest["root"] == {**by_tag["root"], "layers": [
        {**layer, "sharedWith": sharing + ["v2"]} for layer, sharing in
        zip(by_tag["root"]["layers"], (["multi", "v1"], ["multi"]))]}


def test_the_graph_of_a_private_repository_is_for_those_who_may_pull_it(secured_registry):
    repo = repository_with_an_index(secured_registry, "private")
    path = api(secured_registry, f"/repositories/{repo['name']}/graph/multi")
    assert requests.get(path, auth=ALICE).status_code == 200
    assert requests.get(path).status_code == 401
    r = requests.get(path, auth=make_user(secured_registry))
    assert r.status_code == 403 and repo["v1"] not in r.text


def test_a_missing_or_malformed_reference_has_no_graph(secured_registry):
    repo = repository_with_an_index(secured_registry)
    for reference, status, code in (("nope", 404, "MANIFEST_UNKNOWN"), ("sha256:" + "0" * 64, 404, "MANIFEST_UNKNOWN"),
                                    ("bad%0Atag", 404, "MANIFEST_UNKNOWN")):
        r = requests.get(api(secured_registry, f"/repositories/{repo['name']}/graph/{reference}"))
        assert r.status_code == status and error_codes(r) == [code], reference
    r = requests.get(api(secured_registry, f"/repositories/alice/nothing-{uuid.uuid4().hex[:6]}/graph/v1"), auth=ALICE)
    assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"]


def test_the_tag_page_draws_the_graph_as_svg_with_a_node_per_layer(secured_registry):
    repo = repository_with_an_index(secured_registry)
    page = requests.get(f"{secured_registry.url}/r/{repo['name']}/tags/multi")
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg"):page.text.index("</svg>")]
    # four layers of the two images, and the SBOM's own layer
    assert svg.count('class="node layer') == 5 and svg.count('class="node manifest"') == 2
    assert svg.count('class="node index"') == 1 and svg.count('class="node referrer"') == 1
    assert svg.count('class="node layer shared"') == 4 and "referrer-edge" in svg
    assert "<script" not in svg and "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    labels = page.text[page.text.index("Labels and annotations"):]
    assert "org.example.title" in labels and "&lt;img src=x onerror=alert(1)&gt;" in labels
