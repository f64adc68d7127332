"""kiln.api in process (starlette's TestClient, no sockets): versions, errors, parameters."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from starlette.datastructures import QueryParams
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.api.params import docker_bool, qbool, qfilters, qjson_map, qlabels
from kiln.api.routes_build import build_options
from kiln.api.server import TLSOptions, check_exposure, parse_host
from kiln.api.shapes import familiar
from kiln.errors import InvalidArgument
from kiln.ops.config import Config


@pytest.fixture
def client(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        yield c


def rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"#!/bin/sh\necho hi\n"
        info = tarfile.TarInfo("bin/hello")
        info.size, info.mode = len(data), 0o755
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_ping_headers_for_docker_and_podman(client):
    r = client.get("/_ping")
    assert r.status_code == 200 and r.text == "OK"
    assert r.headers["api-version"] == "1.56"
    assert r.headers["builder-version"] == "1"
    r = client.get("/v4.3.1/libpod/_ping")
    assert r.status_code == 200
    assert r.headers["libpod-api-version"].startswith("4.")
    assert client.head("/v1.24/_ping").status_code == 200


@pytest.mark.parametrize("version", ["1.24", "1.41", "1.56"])
def test_supported_versions(client, version):
    body = client.get(f"/v{version}/version").json()
    assert body["ApiVersion"] == "1.56" and body["MinAPIVersion"] == "1.24"


@pytest.mark.parametrize(("version", "word"), [("1.12", "too old"), ("1.99", "too new")])
def test_unsupported_versions_are_400(client, version, word):
    r = client.get(f"/v{version}/images/json")
    assert r.status_code == 400
    assert word in r.json()["message"]


def test_unknown_image_docker_and_libpod_bodies(client):
    r = client.get("/v1.41/images/nosuch/json")
    assert r.status_code == 404
    assert r.json() == {"message": "No such image: nosuch:latest"}  # as dockerd names it
    r = client.get("/v4.3.1/libpod/images/nosuch/json")
    body = r.json()
    assert r.status_code == 404 and body["response"] == 404
    assert body["message"] == "No such image: nosuch" and body["cause"]
    r = client.get("/v4.3.1/libpod/images/nosuch/exists")
    assert r.status_code == 404 and r.json()["message"] == "nosuch: image not known", r.text


def _repo_tags(archive: bytes) -> list[list[str]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return [m["RepoTags"] for m in json.load(member)]


def test_docker_save_writes_dockerds_repo_tags_and_libpod_podmans(client):
    for repo in ("example", "localhost/local"):
        r = client.post(f"/v1.41/images/create?fromSrc=-&repo={repo}&tag=1", content=rootfs_tar())
        assert r.status_code == 200, r.text
    # dockerd 20.10: the familiar name; podman 4.3: the full one; localhost/ stays in both
    for url in ("/v1.41/images/example:1/get", "/v1.41/images/get?names=example:1"):
        assert _repo_tags(client.get(url).content) == [["example:1"]]
    assert _repo_tags(client.get("/v1.41/images/localhost/local:1/get").content) == [
        ["localhost/local:1"]
    ]
    libpod = client.get("/v4.3.1/libpod/images/example:1/get?format=docker-archive").content
    assert _repo_tags(libpod) == [["docker.io/library/example:1"]]
    # and a docker load of it names the image as before (docker.io/library/ in the store)
    archive = client.get("/v1.41/images/example:1/get").content
    assert client.delete("/v1.41/images/example:1").status_code == 200
    r = client.post("/v1.41/images/load", content=archive)
    assert r.status_code == 200 and "Loaded image: example:1" in r.text, r.text
    names = client.get("/v4.3.1/libpod/images/json").json()
    assert sorted(n for i in names for n in i["Names"]) == [
        "docker.io/library/example:1",
        "localhost/local:1",
    ]


# dockerd 20.10's POST /images/load of an archive whose RepoTags holds one of these: a 200
# whose stream ends with this error, the image loaded unnamed all the same. kiln refuses
# before it loads anything, in the same 200 stream; docker load prints either and exits 1
DOCKERD_REFUSES = {"base": 'invalid tag "base"', "Base:1": "must be lowercase"}


@pytest.mark.parametrize("name", sorted(DOCKERD_REFUSES))
def test_docker_load_refuses_a_repo_tag_dockerd_refuses(client, name):
    """kiln loaded such an image unnamed and answered 'Loaded image ID'."""
    from parity_archives import archive_named

    r = client.post("/v1.41/images/load", content=archive_named(name))
    assert r.status_code == 200, r.text
    assert DOCKERD_REFUSES[name] in json.loads(r.text.splitlines()[-1])["error"], r.text
    assert client.get("/v1.41/images/json?all=1").json() == []


def test_unknown_route_is_404_json(client):
    r = client.get("/v1.41/nothing/here")
    assert r.status_code == 404 and r.json() == {"message": "page not found"}


def test_list_and_import_roundtrip(client):
    r = client.post(
        "/v1.41/images/create?fromSrc=-&repo=example&tag=1",
        content=rootfs_tar(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 200
    image_id = json.loads(r.text.splitlines()[-1])["status"]
    assert image_id.startswith("sha256:")
    images = client.get("/v1.41/images/json").json()
    assert [i["RepoTags"] for i in images] == [["example:1"]]
    assert images[0]["Id"] == image_id
    assert images[0]["Labels"] == {}
    libpod = client.get("/v4.3.1/libpod/images/json").json()
    # a Docker client's short name is on Docker Hub, as dockerd reads it
    assert libpod[0]["Names"] == ["docker.io/library/example:1"]
    assert client.post("/v1.41/images/example:1/tag?repo=other&tag=2").status_code == 201
    history = client.get("/v1.41/images/other:2/history").json()
    assert history[0]["Id"] == image_id
    r = client.delete("/v1.41/images/other:2")
    assert r.json() == [{"Untagged": "other:2"}]
    r = client.delete("/v1.41/images/" + image_id.removeprefix("sha256:"))
    assert {"Deleted": image_id} in r.json()
    assert client.get("/v1.41/images/json").json() == []


def test_a_bad_tag_is_refused_as_the_docker_client_gave_it(client):
    """``POST /images/X/tag?repo=a&tag=B C``: a 400 naming ``a:B C``; kiln named the name
    the store would have made of it, ``localhost/a:B C`` (podman's rule for short names,
    not the Docker route's)."""
    client.post("/v1.41/images/create?fromSrc=-&repo=example&tag=1", content=rootfs_tar(),
                headers={"Content-Type": "application/x-tar"})  # fmt: skip
    r = client.post("/v1.41/images/example:1/tag?repo=a&tag=B%20C")
    assert r.status_code == 400 and '"a:B C"' in r.json()["message"], r.text
    assert "localhost" not in r.json()["message"], r.text


def test_a_build_memory_limit_below_six_megabytes_is_refused_before_any_step(client):
    """dockerd: 'Minimum memory limit allowed is 6MB'; kiln ran the steps up to the first
    RUN, where runc failed ('unable to set memory limit to 1024')."""
    from api_server import dockerfile_context

    r = client.post("/v1.41/build?memory=1024", content=dockerfile_context("FROM scratch\n"),
                    headers={"Content-Type": "application/x-tar"})  # fmt: skip
    assert r.status_code == 400 and "6MB" in r.json()["message"], r.text


def test_save_that_fails_is_an_error_not_an_empty_200(client, tmp_path):
    # a layer blob gone from the store: docker save / podman save must fail, not write nothing
    r = client.post(
        "/v1.41/images/create?fromSrc=-&repo=broken&tag=1",
        content=rootfs_tar(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 200
    from kiln.store import Store

    with Store.open(str(tmp_path / "root")) as store:
        rec = store.resolve_image("broken:1")
        store.delete_blob(store.get_layer(rec.layers[0]).blob_digest)
    for url in ("/v1.41/images/broken:1/get", "/v4.3.1/libpod/images/broken:1/get"):
        r = client.get(url)
        assert r.status_code >= 400, url
        assert "not found in the store" in r.json()["message"]


def test_image_lists_show_labels(client):
    r = client.post(
        "/v1.41/images/create",
        params=[
            ("fromSrc", "-"),
            ("repo", "labelled"),
            ("tag", "1"),
            ("changes", "LABEL team=web"),
            ("changes", "LABEL tier=front"),
        ],
        content=rootfs_tar(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 200, r.text
    want = {"team": "web", "tier": "front"}
    assert client.get("/v1.41/images/json").json()[0]["Labels"] == want
    assert client.get("/v4.3.1/libpod/images/json").json()[0]["Labels"] == want


def test_build_rejects_bad_buildargs_naming_them(client):
    r = client.post("/v1.41/build?buildargs=notjson", content=b"")
    assert r.status_code == 400
    assert '"buildargs"' in r.json()["message"] and "notjson" in r.json()["message"]


def test_a_libpod_boolean_it_cannot_read_is_400(client):
    r = client.get("/v4.3.1/libpod/images/json?all=maybe")
    assert r.status_code == 400 and '"all"' in r.json()["message"]


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("True", True), ("yes", True), ("2", True), ("maybe", True), ("off", True),
     ("", False), ("0", False), ("false", False), ("FALSE", False), (" no ", False),
     ("none", False), (None, False)],
)  # fmt: skip
def test_docker_booleans_read_as_dockerd_reads_them(value, expected):
    """dockerd's httputils.BoolValue: only "", 0, no, false and none are false."""
    q = QueryParams({} if value is None else {"all": value})
    assert docker_bool(q, "all") is expected
    assert docker_bool(q, "all", default=True) is (True if value is None else expected)


def test_filters_both_docker_encodings():
    assert qfilters(QueryParams({"filters": '{"dangling":{"true":true}}'})) == ["dangling=true"]
    assert qfilters(QueryParams({"filters": '{"label":["a=b","c"]}'})) == ["label=a=b", "label=c"]
    with pytest.raises(InvalidArgument):
        qfilters(QueryParams({"filters": "[1]"}))


def test_params_helpers():
    assert qbool(QueryParams("q=1"), "q") is True
    assert qbool(QueryParams("q=false"), "q", True) is False
    assert qjson_map(QueryParams({"buildargs": '{"A":"1","B":null}'}), "buildargs") == {
        "A": "1",
        "B": "",
    }
    nulls = QueryParams({"buildargs": '{"A":"1","B":null}'})
    assert qjson_map(nulls, "buildargs", null_is_unset=True) == {"A": "1"}
    with pytest.raises(InvalidArgument):
        qjson_map(QueryParams({"buildargs": '{"A":1}'}), "buildargs")
    with pytest.raises(InvalidArgument):
        qjson_map(QueryParams({"buildargs": '{"A":"1","A":"2"}'}), "buildargs")
    assert qlabels(QueryParams({"labels": '{"a":"b"}'})) == {"a": "b"}
    assert qlabels(QueryParams({"labels": '["a=b","c="]'})) == {"a": "b", "c": ""}


def test_build_options_docker_and_libpod():
    q = QueryParams(
        [
            ("t", "a:1"),
            ("t", "b:2"),
            ("dockerfile", "sub/Dockerfile.x"),
            ("target", "s1"),
            ("buildargs", '{"X":"y"}'),
            ("nocache", "1"),
            ("q", "1"),
            ("pull", "1"),
            ("memory", "8388608"),
            ("networkmode", "none"),
            ("labels", '{"k":"v"}'),
        ]
    )
    opts = build_options(q, libpod=False)
    assert opts["tags"] == ["docker.io/library/a:1", "docker.io/library/b:2"] and opts[
        "dockerfiles"
    ] == ["sub/Dockerfile.x"]
    assert opts["target"] == "s1" and opts["build_args"] == {"X": "y"}
    assert opts["no_cache"] and opts["quiet"] and opts["pull"] == "always"
    assert opts["memory"] == 8388608 and opts["network"] == "none"
    assert opts["labels"] == {"k": "v"} and opts["image_format"] == "docker"
    q = QueryParams(
        [
            ("dockerfile", '["Containerfile"]'),
            ("layers", "false"),
            ("jobs", "2"),
            ("isolation", "2"),
            ("pullpolicy", "ifnewer"),
            ("outputformat", "application/vnd.oci.image.manifest.v1+json"),
        ]
    )
    opts = build_options(q, libpod=True)
    assert opts["dockerfiles"] == ["Containerfile"] and opts["layers"] is False
    assert opts["jobs"] == 2 and opts["isolation"] == "chroot" and opts["pull"] == "newer"
    assert opts["image_format"] == "oci"
    assert build_options(QueryParams(""), libpod=True)["dockerfiles"] == []
    # docker 20.10's client sends shmsize=0 when no --shm-size was given: the default
    assert build_options(QueryParams("shmsize=0"), libpod=False)["shm_size"] is None
    assert build_options(QueryParams("ulimits=null"), libpod=False)["ulimits"] == []
    with pytest.raises(InvalidArgument, match="shmsize"):
        build_options(QueryParams("shmsize=-1"), libpod=False)
    # a git repository or a tar by URL; never a path on the server's own disk
    assert build_options(QueryParams("remote=git://x/y"), libpod=False)["context"] == "git://x/y"
    for remote in ("file:///srv/r.git", "/etc", "ftp://x/y"):
        with pytest.raises(InvalidArgument, match="remote"):
            build_options(QueryParams({"remote": remote}), libpod=False)


@pytest.mark.parametrize(
    "query, rm, force_rm",
    [("", True, True), ("rm=1", True, True), ("rm=", True, True), ("rm=0", False, True),
     ("rm=False&forcerm=False", False, False), ("forcerm=0", True, False),
     ("rm=0&forcerm=1", True, True), ("forcerm=2", True, True)],
)  # fmt: skip
def test_docker_build_removal_as_dockerd_reads_rm_and_forcerm(query, rm, force_rm):
    """An empty rm is dockerd's default (true), forcerm implies rm; without forcerm kiln
    still removes after a failure (routes_build._removal says why)."""
    opts = build_options(QueryParams(query), libpod=False)
    assert (opts["rm"], opts["force_rm"]) == (rm, force_rm)


@pytest.mark.parametrize(
    "value, policy",
    [("1", "always"), ("True", "always"), ("2", "always"), ("yes", "always"), ("0", "missing"),
     ("", "missing"), ("no", "missing"), ("none", "missing"), ("never", "never"),
     ("ifnewer", "newer")],
)  # fmt: skip
def test_docker_build_pull_reads_as_dockerd_with_kilns_policy_words(value, policy):
    assert build_options(QueryParams({"pull": value}), libpod=False)["pull"] == policy


def test_libpod_build_removal_is_podmans():
    assert build_options(QueryParams("rm=0"), libpod=True)["rm"] is False
    assert build_options(QueryParams("forcerm=0"), libpod=True)["rm"] is True
    with pytest.raises(InvalidArgument, match="forcerm"):
        build_options(QueryParams("forcerm=2"), libpod=True)


def test_hosts_and_exposure():
    assert parse_host("unix:///run/x.sock").address == "/run/x.sock"
    lst = parse_host("tcp://127.0.0.1:2375")
    assert (lst.kind, lst.address, lst.port) == ("tcp", "127.0.0.1", 2375)
    check_exposure([lst], TLSOptions())
    public = parse_host("tcp://0.0.0.0:2376")
    with pytest.raises(InvalidArgument, match="beyond loopback"):
        check_exposure([public], TLSOptions())
    with pytest.raises(InvalidArgument):
        check_exposure([public], TLSOptions(cert="c", key="k"))  # TLS without client certs
    check_exposure([public], TLSOptions(verify=True, cacert="ca", cert="c", key="k"))
    with pytest.raises(InvalidArgument):
        parse_host("ftp://x")


def test_familiar_names():
    assert familiar("docker.io/library/busybox:latest") == "busybox:latest"
    assert familiar("docker.io/user/x:1") == "user/x:1"
    assert familiar("localhost/foo:1") == "localhost/foo:1"  # dockerd and podman keep it
    assert familiar("localhost:5000/foo:1") == "localhost:5000/foo:1"


def test_a_session_that_is_no_h2c_upgrade_is_refused_in_dockerd_s_words(client):
    """``POST /session`` is held open only as the h2c upgrade a BuildKit client dials
    (kiln.api.routes_session); anything else is dockerd's 400."""
    r = client.post("/v1.41/session")
    assert (r.status_code, r.json()) == (400, {"message": "no upgrade proto in request"})
    r = client.post("/session", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert (r.status_code, r.json()) == (400, {"message": "protocol websocket not supported"})
