"""`registry push / pull / copy / tags / inspect / delete / graph` against our registry and against
Distribution 2.8, with skopeo and docker reading what the client writes (and the reverse)."""

from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

from registry_core.client.manifests import host_platform
from registry_core.client.session import RegistrySession
from tests.support.engines import docker_engine
from tests.support.client import (FaultyProxy, Skopeo, cli, home, layout_blobs,  # noqa: F401
                                       plain_distribution, tagged_digest, unique, write_layout)


@pytest.fixture(params=["ours", "distribution"])
def host(request, registry, plain_distribution) -> str:
    """Each test using it runs against our registry and against Distribution 2.8."""
    return registry.host if request.param == "ours" else plain_distribution


@pytest.fixture
def skopeo(tmp_path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo")


def test_push_an_image_and_pull_it_back_bit_identical(host, tmp_path, home):
    digest = write_layout(tmp_path / "src", "v1", layer_sizes=(70_000, 5_000))
    ref = f"{host}/{unique()}:v1"
    pushed = cli("push", "--json", f"oci:{tmp_path / 'src'}:v1", ref).json()
    assert pushed["digest"] == digest
    assert pushed["blobs"] == {"total": 3, "uploaded": 3}
    pulled = cli("pull", "--json", ref, f"oci:{tmp_path / 'back'}").json()
    assert pulled["digest"] == digest
    assert tagged_digest(tmp_path / "back", "v1") == digest
    assert layout_blobs(tmp_path / "back") == layout_blobs(tmp_path / "src")


def test_push_a_two_platform_index_and_pull_it_whole_or_one_platform(host, tmp_path, home):
    index = write_layout(tmp_path / "src", "multi", platforms=("linux/amd64", "linux/arm64/v8"),
                         layer_sizes=(20_000, 3_000))
    ref = f"{host}/{unique()}:multi"
    pushed = cli("push", "--json", f"oci:{tmp_path / 'src'}:multi", ref).json()
    assert (pushed["digest"], pushed["manifests"], pushed["blobs"]["total"]) == (index, 3, 6)
    assert sorted(pushed["platforms"]) == ["linux/amd64", "linux/arm64/v8"]

    cli("pull", "--all-platforms", ref, f"oci:{tmp_path / 'all'}")
    assert tagged_digest(tmp_path / "all", "multi") == index
    assert layout_blobs(tmp_path / "all") == layout_blobs(tmp_path / "src")

    arm = cli("pull", "--json", "--platform", "linux/arm64", ref, f"oci:{tmp_path / 'arm'}").json()
    children = json.loads(layout_blobs(tmp_path / "src")[index])["manifests"]
    [arm_child] = [c for c in children if c["platform"]["architecture"] == "arm64"]
    assert arm["digest"] == arm_child["digest"] and arm["blobs"]["total"] == 3
    assert set(layout_blobs(tmp_path / "arm")) < set(layout_blobs(tmp_path / "src"))

    native = cli("pull", "--json", ref, f"oci:{tmp_path / 'native'}").json()  # default: this machine's
    assert native["platforms"] == [str(c) for c in [host_platform()]] or native["platforms"][0].startswith(
        f"{host_platform().os}/{host_platform().architecture}")


def test_a_second_push_skips_every_blob_the_registry_has(host, tmp_path, home):
    write_layout(tmp_path / "src", "1", layer_sizes=(10_000, 10_000))
    ref = f"{host}/{unique()}:1"
    cli("push", f"oci:{tmp_path / 'src'}:1", ref)
    again = cli("push", "--json", f"oci:{tmp_path / 'src'}:1", ref).json()
    assert again["blobs"] == {"total": 3, "exists": 3}
    assert again["bytesTransferred"] == 0


def test_copy_within_one_registry_mounts_instead_of_sending(host, tmp_path, home):
    write_layout(tmp_path / "src", "1", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(30_000,))
    source = f"{host}/{unique()}:1"
    cli("push", f"oci:{tmp_path / 'src'}:1", source)
    copied = cli("copy", "--json", source, f"{host}/{unique()}:copy").json()
    assert copied["blobs"] == {"total": 4, "mounted": 4}
    assert copied["bytesTransferred"] == 0


def test_copy_between_our_registry_and_distribution_both_ways(registry, plain_distribution, tmp_path, home):
    index = write_layout(tmp_path / "src", "x", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(40_000,))
    ours = f"{registry.host}/{unique()}:x"
    cli("push", f"oci:{tmp_path / 'src'}:x", ours)
    theirs = f"{plain_distribution}/{unique()}:y"
    there = cli("copy", "--json", ours, theirs).json()
    assert there["digest"] == index and there["blobs"] == {"total": 4, "uploaded": 4}
    back = f"{registry.host}/{unique()}:z"
    assert cli("copy", "--json", theirs, back).json()["digest"] == index
    cli("pull", "--all-platforms", back, f"oci:{tmp_path / 'back'}")
    assert layout_blobs(tmp_path / "back") == layout_blobs(tmp_path / "src")


def test_layers_transfer_in_parallel_up_to_jobs(registry, tmp_path, home):
    write_layout(tmp_path / "src", "1", layer_sizes=(1 << 20,) * 4)
    counts = {}
    for jobs in (1, 4):
        proxy = FaultyProxy(registry.host)
        try:
            cli("push", "-j", jobs, f"oci:{tmp_path / 'src'}:1", f"{proxy.host}/{unique()}:1")
        finally:
            proxy.close()
        counts[jobs] = proxy.max_concurrent
    assert counts[1] == 1
    assert counts[4] >= 3


def test_pull_into_a_docker_archive_that_skopeo_and_docker_load_read(registry, tmp_path, home, skopeo):
    write_layout(tmp_path / "src", "1", layer_sizes=(50_000, 1_000))
    ref = f"{registry.host}/{unique()}:1"
    cli("push", f"oci:{tmp_path / 'src'}:1", ref)
    archive = tmp_path / "image.tar"
    cli("pull", ref, f"docker-archive:{archive}")
    with tarfile.open(archive) as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())
        config = json.loads(tar.extractfile(entry["Config"]).read())
        for layer, diff_id in zip(entry["Layers"], config["rootfs"]["diff_ids"]):
            assert "sha256:" + hashlib.sha256(tar.extractfile(layer).read()).hexdigest() == diff_id
    assert entry["RepoTags"] == [ref]
    seen = json.loads(skopeo.run("inspect", f"docker-archive:{archive}").stdout)
    assert (seen["Architecture"], seen["Os"], seen["Layers"]) == ("amd64", "linux", config["rootfs"]["diff_ids"])
    skopeo.run("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'via-skopeo'}:1")
    with docker_engine(tmp_path / "docker") as docker:
        assert f"Loaded image: {ref}" in docker.run("load", "-i", str(archive)).stdout
        image_id = docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        config_digest = json.loads(layout_blobs(tmp_path / "src")[tagged_digest(tmp_path / "src", "1")])["config"]["digest"]
        assert image_id == config_digest


def test_skopeo_reads_the_layouts_pull_writes(registry, tmp_path, home, skopeo):
    index = write_layout(tmp_path / "src", "1", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(8_000,))
    ref = f"{registry.host}/{unique()}:1"
    cli("push", f"oci:{tmp_path / 'src'}:1", ref)
    cli("pull", "--all-platforms", ref, f"oci:{tmp_path / 'pulled'}:mine")
    raw = skopeo.run("inspect", "--raw", f"oci:{tmp_path / 'pulled'}:mine").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == index
    skopeo.run("copy", "--all", f"oci:{tmp_path / 'pulled'}:mine", f"oci:{tmp_path / 'copied'}:c")
    assert tagged_digest(tmp_path / "copied", "c") == index


def test_push_sends_images_skopeo_wrote_as_layouts_and_archives(registry, tmp_path, home, skopeo):
    sample = f"docker://{registry.host}/library/hello:latest"
    skopeo.run("copy", "--all", sample, f"oci:{tmp_path / 'layout'}:s")
    index = tagged_digest(tmp_path / "layout", "s")
    pushed = cli("push", "--json", f"oci:{tmp_path / 'layout'}:s", f"{registry.host}/{unique()}:s").json()
    assert pushed["digest"] == index

    skopeo.run("copy", "--override-arch", "arm64", sample, f"docker-archive:{tmp_path / 'a.tar'}:me/hello:1")
    target = f"{registry.host}/{unique()}:from-archive"
    cli("push", f"docker-archive:{tmp_path / 'a.tar'}", target)
    with tarfile.open(tmp_path / "a.tar") as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())
        archived_config = tar.extractfile(entry["Config"]).read()
        archived_layers = [tar.extractfile(name).read() for name in entry["Layers"]]
    assert json.loads(skopeo.run("inspect", "--config", "--raw", f"docker://{target}").stdout) == \
        json.loads(archived_config)
    cli("pull", target, f"docker-archive:{tmp_path / 'b.tar'}")
    with tarfile.open(tmp_path / "b.tar") as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())
        assert tar.extractfile(entry["Config"]).read() == archived_config
        assert [tar.extractfile(name).read() for name in entry["Layers"]] == archived_layers


def test_pull_of_a_platform_the_index_lacks_exits_4(registry, tmp_path, home):
    result = cli("pull", "--json", "--platform", "linux/s390x", f"{registry.host}/library/hello:latest",
                 f"oci:{tmp_path / 'x'}", expect=4)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "PLATFORM_UNKNOWN" and "linux/amd64" in error["message"]
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_a_docker_archive_of_an_index_needs_a_platform(registry, tmp_path, home):
    ref = f"{registry.host}/library/hello:latest"
    cli("pull", "--all-platforms", ref, f"docker-archive:{tmp_path / 'x.tar'}", expect=2)
    arm = cli("pull", "--json", "--platform", "linux/arm64", ref, f"docker-archive:{tmp_path / 'arm.tar'}").json()
    assert arm["platforms"] == ["linux/arm64/v8"]


def test_inspect_shows_platforms_sizes_config_and_raw_bytes(registry, home):
    ref = f"{registry.host}/library/hello:latest"
    summary = cli("inspect", "--json", ref).json()
    assert summary["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert summary["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert all(entry["imageSize"] > entry["size"] for entry in summary["manifests"])
    raw = cli("inspect", "--raw", ref).stdout_bytes
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == summary["digest"]
    arm = cli("inspect", "--json", "--platform", "linux/arm64", ref).json()
    assert arm["platform"] == "linux/arm64/v8" and arm["totalSize"] == arm["size"] + sum(
        layer["size"] for layer in arm["layers"]) + arm["config"]["size"]
    config = json.loads(cli("inspect", "--config", "--platform", "linux/arm64", ref).stdout)
    assert config["architecture"] == "arm64"
    human = cli("inspect", "--platform", "linux/amd64", ref).stdout
    assert "Platform    linux/amd64" in human and "layers)" in human


def test_tags_follow_pagination(host, registry, tmp_path, home):
    write_layout(tmp_path / "src", "1", layer_sizes=(100,))
    name = unique()
    for tag in ("a", "b", "c"):
        cli("push", f"oci:{tmp_path / 'src'}:1", f"{host}/{name}:{tag}")
    assert sorted(cli("tags", "--json", f"{host}/{name}").json()["tags"]) == ["a", "b", "c"]
    session = RegistrySession(host)
    assert sorted(session.tags(name, page_size=1)) == ["a", "b", "c"]
    if host == registry.host:  # Distribution 2.8 answers all tags at once whatever n is
        assert session.requests_made == 3


def test_delete_removes_the_manifest_behind_a_tag(host, tmp_path, home):
    digest = write_layout(tmp_path / "src", "1", layer_sizes=(100,))
    ref = f"{host}/{unique()}:gone"
    cli("push", f"oci:{tmp_path / 'src'}:1", ref)
    assert cli("delete", "--json", ref).json()["deleted"] == digest
    assert json.loads(cli("inspect", "--json", ref, expect=4).stdout)["error"]["exit"] == 4


def test_graph_shows_the_index_its_manifests_their_blobs_and_referrers(registry, home):
    ref = f"{registry.host}/library/hello:latest"
    tree = cli("graph", "--json", ref).json()
    assert tree["kind"] == "index" and [c["kind"] for c in tree["children"]] == ["manifest", "manifest"]
    amd64 = tree["children"][0]
    assert amd64["platform"] == "linux/amd64"
    assert [c["kind"] for c in amd64["children"]] == ["config", "layer", "layer"]
    [sbom] = amd64["referrers"]
    assert sbom["artifactType"] == "application/vnd.example.sbom.v1+json"
    text = cli("graph", ref).stdout.splitlines()
    assert text[0] == ref and text[1].startswith("└── index")
    assert any("referrer" in line for line in text) and any(line.strip().startswith("├── config") for line in text)


def test_errors_have_exit_statuses_and_json(registry, tmp_path, home):
    missing = cli("inspect", "--json", f"{registry.host}/no/such:thing", expect=4).json()
    assert missing["error"]["code"] in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    from tests.support.engines import free_port
    unreachable = cli("tags", "--json", f"127.0.0.1:{free_port()}/x", expect=6).json()
    assert unreachable["error"]["code"] == "UNREACHABLE"
    cli("push", f"{registry.host}/a:b", f"{registry.host}/c:d", expect=2)
    cli("push", f"oci:{tmp_path / 'nothing'}", f"{registry.host}/c:d", expect=4)
    cli("pull", "--platform", "linux", f"{registry.host}/a:b", f"oci:{tmp_path / 'x'}", expect=2)


def test_progress_bars_per_layer_and_overall_only_on_a_terminal(registry, tmp_path, home):
    import fcntl
    import os
    import pty
    import re
    import struct
    import sys
    import termios

    write_layout(tmp_path / "src", "1", layer_sizes=(200_000, 100_000))
    ref = f"{registry.host}/{unique()}:1"
    quiet = cli("push", f"oci:{tmp_path / 'src'}:1", ref)
    assert "%|" not in quiet.output  # not a terminal: no bars at all
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real `registry pull` whose stderr is a 100-column terminal
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        registry_command = os.path.join(os.path.dirname(sys.executable), "registry")
        os.execv(registry_command, [registry_command, "pull", ref, f"oci:{tmp_path / 'back'}"])
    output = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output.decode(errors="replace"))
    assert "total (3 blobs)" in text and "100%|" in text
    layer_digests = [d.split(":")[1][:12] for d in layout_blobs(tmp_path / "src")]
    assert sum(prefix in text for prefix in layer_digests) >= 2, text
