"""Content discovery: tags (distribution-spec end-8a/8b) and the catalog, with `n`/`last` paging and
`Link: <…>; rel="next"` headers."""

import uuid
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from tests.support.oci import Client, error_codes, unique_name

TAGS = ["v1", "v1.0", "v10", "V2", "a_b", "latest", "1.0", "A", "_underscore", "v1-rc", "v1.0.1", "z"]


@pytest.fixture(scope="module")
def tagged(registry) -> tuple[str, list[str]]:
    """A repository with every tag in TAGS on one manifest, and its tags in ASCII order.
    Made once for the module: the tests only read it."""
    client, name = Client(registry.url), unique_name()
    _, _, body = client.push_image(name, TAGS[0])
    for tag in TAGS[1:]:
        assert client.push_manifest(name, tag, body).status_code == 201
    return name, sorted(TAGS)


def walk(client, path, params):
    """Follow `Link: rel="next"` from `path` to the end, yielding each page's list."""
    url = client.url + path
    for _ in range(10000):
        r = client.get(url, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        yield body["tags"] if "tags" in body else body["repositories"]
        if "next" not in r.links:
            return
        assert r.headers["Link"].endswith('rel="next"'), r.headers["Link"]
        url, params = urljoin(url, r.links["next"]["url"]), None
    raise AssertionError("paging does not end")


# --- tags -----------------------------------------------------------------------------------------

def test_tags_are_listed_in_lexical_order(client, tagged):
    name, tags = tagged
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": name, "tags": tags}
    assert tags.index("V2") < tags.index("a_b") < tags.index("v1") < tags.index("v1.0") < tags.index("v10")
    assert "Link" not in r.headers


def test_tags_page_of_n_has_a_link_to_the_next_page(client, tagged):
    name, tags = tagged
    r = client.get(f"/v2/{name}/tags/list", params={"n": 3})
    assert r.status_code == 200
    assert r.json()["tags"] == tags[:3]
    link = r.links["next"]["url"]
    assert urlsplit(link).path == f"/v2/{name}/tags/list"
    assert parse_qs(urlsplit(link).query) == {"n": ["3"], "last": [tags[2]]}


@pytest.mark.parametrize("n", [1, 2, 5, len(TAGS) - 1])
def test_following_the_link_header_walks_all_tags(client, tagged, n):
    name, tags = tagged
    pages = list(walk(client, f"/v2/{name}/tags/list", {"n": n}))
    assert [tag for page in pages for tag in page] == tags
    assert all(len(page) == n for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= n


def test_n_of_at_least_the_number_of_tags_returns_all_without_a_link(client, tagged):
    name, tags = tagged
    for n in (len(TAGS), len(TAGS) + 1, 10000, 10**9):
        r = client.get(f"/v2/{name}/tags/list", params={"n": n})
        assert r.json()["tags"] == tags
        assert "Link" not in r.headers


def test_n_of_zero_returns_an_empty_list_without_a_link(client, tagged):
    name, tags = tagged
    r = client.get(f"/v2/{name}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"name": name, "tags": []}
    assert "Link" not in r.headers


def test_last_starts_after_the_given_tag(client, tagged):
    name, tags = tagged
    r = client.get(f"/v2/{name}/tags/list", params={"n": 2, "last": "v1"})
    start = tags.index("v1") + 1
    assert r.json()["tags"] == tags[start:start + 2]
    # `n` is optional with `last`; `last` need not be an existing tag.
    assert client.get(f"/v2/{name}/tags/list", params={"last": "v1"}).json()["tags"] == tags[start:]
    assert client.get(f"/v2/{name}/tags/list", params={"last": "b"}).json()["tags"] == [t for t in tags if t > "b"]
    r = client.get(f"/v2/{name}/tags/list", params={"n": 5, "last": tags[-1]})
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5"])
def test_n_that_is_not_a_whole_number_is_400(client, tagged, n):
    name, _ = tagged
    assert client.get(f"/v2/{name}/tags/list", params={"n": n}).status_code == 400


def test_tags_of_an_unknown_repository_is_404_name_unknown(client, name):
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]


def test_tags_of_a_repository_without_tags_is_an_empty_list(client, name):
    client.push_image(name)  # by digest: no tag
    assert client.get(f"/v2/{name}/tags/list").json() == {"name": name, "tags": []}
    client.push_image(name, "only")
    client.delete(f"/v2/{name}/manifests/only")
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": name, "tags": []}


def test_tags_list_follows_pushes_and_deletes(client, name):
    _, _, body = client.push_image(name, "b")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["b"]
    client.push_manifest(name, "a", body)
    client.push_manifest(name, "c", body)
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["a", "b", "c"]
    client.delete(f"/v2/{name}/manifests/b")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["a", "c"]


# --- catalog --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def family(registry) -> list[str]:
    """Repositories under a fresh prefix whose names sort with '-' before '/'; in lexical order."""
    client = Client(registry.url)
    prefix = f"cat{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}/a", f"{prefix}/a-b", f"{prefix}/a.b", f"{prefix}/a/b", f"{prefix}/a_b", f"{prefix}/b",
             f"{prefix}/b/c/d"]
    for repository in reversed(names):
        client.push_image(repository, "v1")
    assert sorted(names) == names
    return names


def ours(repositories, family):
    prefix = family[0].split("/")[0] + "/"
    return [r for r in repositories if r.startswith(prefix)]


def test_catalog_lists_repositories_in_lexical_order(client, family):
    r = client.get("/v2/_catalog")
    assert r.status_code == 200
    repositories = r.json()["repositories"]
    assert repositories == sorted(repositories)
    assert ours(repositories, family) == family


def test_catalog_paging_with_n_and_last_returns_the_names_after_last(client, family):
    r = client.get("/v2/_catalog", params={"n": 3, "last": family[0]})
    assert r.json()["repositories"] == family[1:4]
    link = urlsplit(r.links["next"]["url"])
    assert link.path == "/v2/_catalog"
    assert parse_qs(link.query) == {"n": ["3"], "last": [family[3]]}
    before = family[0].split("/")[0]  # sorts just before every name of the family
    assert client.get("/v2/_catalog", params={"n": 2, "last": before}).json()["repositories"] == family[:2]


def test_following_the_catalog_link_header_walks_every_repository(client, family):
    everything = client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
    walked = [repository for page in walk(client, "/v2/_catalog", {"n": 7}) for repository in page]
    assert walked == everything
    assert ours(walked, family) == family
    walked = []
    for page in walk(client, "/v2/_catalog", {"n": 2, "last": family[0].split("/")[0]}):
        walked += page
        if len(walked) >= len(family):
            break
    assert walked[:len(family)] == family


def test_catalog_with_n_of_zero_returns_an_empty_list_without_a_link(client, family):
    r = client.get("/v2/_catalog", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers


def test_catalog_shows_a_new_repository_at_once(client, name):
    assert name not in client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
    client.push_image(name, "v1")
    assert name in client.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
    r = client.get("/v2/_catalog", params={"n": 1, "last": name[:-1]})
    assert r.json()["repositories"] == [name]
