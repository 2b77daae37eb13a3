"""The client under faults: a connection dropped mid-layer (the upload resumes where the registry
says it stands; the download resumes with Range), and a corrupted download (an error, and nothing
is written)."""

from __future__ import annotations

import pytest

from tests.support.client import (FaultyProxy, cli, home, layout_blobs, plain_distribution,  # noqa: F401
                                       unique, write_layout)

LAYER = 8 << 20


@pytest.fixture
def image(tmp_path):
    digest = write_layout(tmp_path / "src", "1", layer_sizes=(LAYER,))
    return tmp_path / "src", digest


def test_upload_resumes_where_our_registry_stands_after_a_dropped_connection(registry, image, tmp_path, home):
    layout, digest = image
    proxy = FaultyProxy(registry.host, drop_upload_after=3 << 20)
    name = unique()
    try:
        pushed = cli("push", "--json", f"oci:{layout}:1", f"{proxy.host}/{name}:1").json()
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert pushed["resumedUploads"] == 1 and pushed["digest"] == digest
    assert proxy.bytes_up < LAYER * 1.3, "the layer was sent again from the start instead of resumed"
    cli("pull", f"{registry.host}/{name}:1", f"oci:{tmp_path / 'back'}")
    assert layout_blobs(tmp_path / "back") == layout_blobs(layout)


def test_upload_to_distribution_survives_a_dropped_connection(plain_distribution, image, tmp_path, home):
    """Distribution 2.8 cancels a session whose stored size no longer matches its Location's state,
    so the client starts that blob again; the push still completes, bit-identical."""
    layout, digest = image
    proxy = FaultyProxy(plain_distribution, drop_upload_after=3 << 20)
    name = unique()
    try:
        pushed = cli("push", "--json", "--chunk-size", "2M", f"oci:{layout}:1", f"{proxy.host}/{name}:1").json()
    finally:
        proxy.close()
    assert proxy.dropped == 1 and pushed["resumedUploads"] == 1
    cli("pull", f"{plain_distribution}/{name}:1", f"oci:{tmp_path / 'back'}")
    assert layout_blobs(tmp_path / "back") == layout_blobs(layout)


def test_download_resumes_with_a_range_request_after_a_dropped_connection(registry, image, tmp_path, home):
    layout, _ = image
    ref = f"{registry.host}/{unique()}:1"
    cli("push", f"oci:{layout}:1", ref)
    proxy = FaultyProxy(registry.host, drop_download_after=3 << 20)
    try:
        cli("pull", ref.replace(registry.host, proxy.host), f"oci:{tmp_path / 'back'}")
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert layout_blobs(tmp_path / "back") == layout_blobs(layout)


@pytest.mark.parametrize("destination", ["oci:{}", "oci:{}:t", "docker-archive:{}"])
def test_a_corrupted_download_fails_with_exit_5_and_writes_nothing(registry, image, tmp_path, home, destination):
    layout, _ = image
    ref = f"{registry.host}/{unique()}:1"
    cli("push", f"oci:{layout}:1", ref)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "image"
    proxy = FaultyProxy(registry.host, corrupt_download_at=1 << 20)
    try:
        result = cli("pull", "--json", ref.replace(registry.host, proxy.host), destination.format(target), expect=5)
    finally:
        proxy.close()
    assert proxy.corrupted == 1
    assert result.json()["error"]["code"] == "DIGEST_MISMATCH"
    assert list(out.iterdir()) == [], "a failed pull left files behind"


def test_a_corrupted_download_into_an_existing_layout_leaves_it_as_it_was(registry, image, tmp_path, home):
    layout, _ = image
    ref = f"{registry.host}/{unique()}:1"
    cli("push", f"oci:{layout}:1", ref)
    existing = tmp_path / "existing"
    write_layout(existing, "old", layer_sizes=(100,))
    before = {p.relative_to(existing): p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    proxy = FaultyProxy(registry.host, corrupt_download_at=1 << 20)
    try:
        cli("pull", ref.replace(registry.host, proxy.host), f"oci:{existing}:new", expect=5)
    finally:
        proxy.close()
    after = {p.relative_to(existing): p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "home", "src"]
