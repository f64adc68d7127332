"""RegistryClient behaviour that needs no real server: digests, caps, streams, pagination."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from kiln.errors import DigestMismatch, InvalidArgument, Unavailable
from kiln.oci import Digest, Reference
from kiln.registry import RegistryClient, RegistryOptions
from kiln.registry.options import OptionValues
from registry_env import isolate_registry_env

REF = Reference.parse("reg.example/a/b:t")
MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'
    + b"0" * 64
    + b'","size":2},"layers":[]}'
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)


def _client(handler, **kw) -> RegistryClient:
    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return handler(request)

    return RegistryClient(
        RegistryOptions(transport=httpx.MockTransport(wrapped), retry_delay=0, **kw)
    )


def _manifest_response(body: bytes, digest: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": digest,
        },
    )


def test_manifest_digest_is_verified_against_header_and_reference() -> None:
    good = str(Digest.of_bytes(MANIFEST))
    client = _client(lambda r: _manifest_response(MANIFEST, good))
    assert client.get_manifest(REF)[2] == Digest.of_bytes(MANIFEST)
    assert client.get_manifest(REF.with_digest(good))[0] == MANIFEST
    other = "sha256:" + "1" * 64
    with pytest.raises(DigestMismatch):
        _client(lambda r: _manifest_response(MANIFEST, other)).get_manifest(REF)
    with pytest.raises(DigestMismatch):
        _client(lambda r: _manifest_response(MANIFEST, "")).get_manifest(REF.with_digest(other))


def test_manifest_size_is_capped() -> None:
    big = b" " * 5000 + MANIFEST
    client = _client(lambda r: _manifest_response(big, ""), max_manifest_size=4096)
    with pytest.raises(InvalidArgument, match="over the 4096-byte limit"):
        client.get_manifest(REF)


def test_blob_stream_that_ends_early_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Length": "10"}, stream=httpx.ByteStream(b"12345")
        )

    reader = _client(handler).open_blob(REF, Digest.of_bytes(b"x"))
    with pytest.raises(Unavailable, match="ended after 5 of 10 bytes"):
        reader.read()


def test_blob_offset_with_and_without_range_support() -> None:
    data = b"0123456789"

    def honours(request: httpx.Request) -> httpx.Response:
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        return httpx.Response(206, content=data[start:], headers={"Accept-Ranges": "bytes"})

    def ignores(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data)

    for handler in (honours, ignores):
        reader = _client(handler).open_blob(REF, Digest.of_bytes(data), offset=4)
        assert reader.read() == b"456789"
        assert reader.offset == 10


def test_tags_follow_relative_link_headers() -> None:
    pages = {
        "": (["a", "b"], '</v2/a/b/tags/list?n=2&last=b>; rel="next"'),
        "b": (["c"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        tags, link = pages[request.url.params.get("last", "")]
        headers = {"Link": link} if link else {}
        return httpx.Response(200, json={"name": "a/b", "tags": tags}, headers=headers)

    assert _client(handler, page_size=2).list_tags(REF) == ["a", "b", "c"]


@pytest.mark.parametrize("tags", [5, "abc", {"a": 1}])
def test_tags_that_are_not_a_list_are_a_clear_error(tags) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"name": "a/b", "tags": tags})

    with pytest.raises(InvalidArgument, match='listing tags of .*"tags" is not a list'):
        _client(handler).list_tags(REF)
    assert _client(lambda r: httpx.Response(200, json={"tags": None})).list_tags(REF) == []


def test_search_prefers_v1_search_then_falls_back_to_catalog() -> None:
    def v1(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/search"
        return httpx.Response(
            200,
            json={"results": [{"name": "team/tool", "description": "d", "star_count": 3}]},
        )

    (hit,) = _client(v1).search("tool", registry="reg.example")
    assert (hit.name, hit.description, hit.stars) == ("reg.example/team/tool", "d", 3)

    def catalog(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/search":
            return httpx.Response(404)
        return httpx.Response(200, json={"repositories": ["team/tool", "other/x"]})

    got = _client(catalog).search("TOOL", registry="reg.example")
    assert [r.name for r in got] == ["reg.example/team/tool"]


SEARCH_CONF = (
    'unqualified-search-registries = ["reg.example"]\n[aliases]\n"tool" = "quay.io/t/tool"\n'
)


@pytest.mark.parametrize(
    ("name", "podman", "dockerd"),
    [
        ("alpine", "reg.example/alpine:latest", "docker.io/library/alpine:latest"),
        ("kiln-test/absent:1", "reg.example/kiln-test/absent:1", "docker.io/kiln-test/absent:1"),
        ("library/alpine:3", "reg.example/library/alpine:3", "docker.io/library/alpine:3"),
        ("tool", "quay.io/t/tool:latest", "docker.io/library/tool:latest"),  # an alias
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("reg.example:5000/a/b:2", "reg.example:5000/a/b:2", "reg.example:5000/a/b:2"),
    ],
)
def test_docker_short_names_mean_docker_hub_as_dockerd_reads_them(
    tmp_path, name, podman, dockerd
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(SEARCH_CONF)
    for docker_short_names, want in ((False, podman), (True, dockerd)):
        opts = RegistryOptions(registries_conf=str(conf), docker_short_names=docker_short_names)
        with RegistryClient(opts) as client:
            assert [str(r) for r in client.resolve_short_name(name)] == [want]


def test_docker_short_names_search_docker_hub(tmp_path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(SEARCH_CONF)
    asked: list[str] = []

    def v1(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        return httpx.Response(200, json={"results": [{"name": "library/alpine"}]})

    (hit,) = _client(v1, registries_conf=str(conf), docker_short_names=True).search("alpine")
    assert asked == ["index.docker.io"] and hit.name == "docker.io/library/alpine"
    asked.clear()
    (hit,) = _client(v1, registries_conf=str(conf)).search("alpine")  # podman's: registries.conf
    assert asked == ["reg.example"] and hit.name == "reg.example/library/alpine"


def test_blob_read_again_after_its_end_is_empty_as_from_a_file() -> None:
    """A buffered reader (copy_image's layer tee) asks once more after the end: b"", not
    'read of closed file'."""
    import io

    data = b"0123456789"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data)

    reader = io.BufferedReader(_client(handler).open_blob(REF, Digest.of_bytes(data)), 4)
    assert reader.read() == data
    assert reader.read(4) == b""
    assert reader.read() == b""


def test_merged_takes_every_option_and_keeps_those_given_as_none() -> None:
    fields = {f.name for f in dataclasses.fields(RegistryOptions)}
    assert set(OptionValues.__annotations__) == fields  # its typed keywords name every field
    base = RegistryOptions(retries=5, creds="a:b")
    assert base.merged(retries=None, creds="u:p", timeout=3.0) == RegistryOptions(
        retries=5, creds="u:p", timeout=3.0
    )
    assert base.merged(tls_verify=None) is base
