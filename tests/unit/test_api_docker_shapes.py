"""Docker's image shapes by API version, as moby's image routes make them, for the versions
the dockerd of ``tests/integration/test_api_dockerd_parity.py`` (20.10, API 1.41) cannot
show: ``<none>`` placeholders before 1.43, ``VirtualSize`` before 1.44, ``Containers``
counted from 1.51; inspect's ``Comment``; dockerd's ``reference`` filter; and how the
router answers paths it has no route for."""

from __future__ import annotations

import io
import tarfile
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from kiln.api import reference_filter
from kiln.api.app import create_app
from kiln.api.shapes import docker_comment, docker_inspect, docker_summary
from kiln.ops.config import Config

ID = "sha256:" + "a" * 64


def summary(names=(), digests=(), containers=2):
    return SimpleNamespace(id=ID, parent_id="", names=list(names), repo_digests=list(digests),
                           created_ts=1700000000, size=40, labels={}, containers=containers)  # fmt: skip


TAGGED = summary(["docker.io/library/busybox:latest"])
DANGLING = summary()
DIGEST_ONLY = summary(digests=["docker.io/library/busybox@sha256:" + "b" * 64])


@pytest.mark.parametrize(
    "image, version, tags, digests",
    [
        (TAGGED, "1.41", ["busybox:latest"], None),
        (TAGGED, "1.42", ["busybox:latest"], None),
        (TAGGED, "1.43", ["busybox:latest"], []),
        (DANGLING, "1.24", ["<none>:<none>"], ["<none>@<none>"]),
        (DANGLING, "1.42", ["<none>:<none>"], ["<none>@<none>"]),
        (DANGLING, "1.43", [], []),
        (DANGLING, None, [], []),
        (DIGEST_ONLY, "1.42", None, ["busybox@sha256:" + "b" * 64]),
        (DIGEST_ONLY, "1.44", [], ["busybox@sha256:" + "b" * 64]),
    ],
)
def test_repo_tags_and_digests_by_version(image, version, tags, digests) -> None:
    out = docker_summary(image, version)
    assert (out["RepoTags"], out["RepoDigests"]) == (tags, digests)


@pytest.mark.parametrize("version", ["1.24", "1.41", "1.43", "1.44", "1.50", "1.51", None])
def test_virtual_size_and_containers_by_version(version) -> None:
    out = docker_summary(TAGGED, version)
    old = version is not None and float(version) < 1.44
    assert ("VirtualSize" in out) is old and out.get("VirtualSize", 40) == 40
    counted = version is None or float(version) >= 1.51
    assert out["Containers"] == (2 if counted else -1)
    assert docker_summary(TAGGED, version, count_containers=True)["Containers"] == 2
    assert out["SharedSize"] == -1 and out["Labels"] == {}


def test_inspect_comment_falls_back_to_the_last_history_entry() -> None:
    history = [{"comment": "first"}, {"created_by": "RUN x", "comment": "last"}]
    assert docker_comment({"Comment": "", "History": history}) == "last"
    assert docker_comment({"Comment": "own", "History": history}) == "own"
    assert docker_comment({"History": [{"created_by": "x"}]}) == ""
    assert docker_comment({}) == ""
    data = {"Id": ID, "Size": 7, "History": history}
    assert docker_inspect(data, "1.41")["Comment"] == "last"
    assert docker_inspect(data, "1.43")["VirtualSize"] == 7
    assert "VirtualSize" not in docker_inspect(data, "1.44")
    assert "VirtualSize" not in docker_inspect(data)


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("busybox", "docker.io/library/busybox:latest", True),
        ("busy*", "docker.io/library/busybox:latest", True),
        ("busybox:lat*", "docker.io/library/busybox:latest", True),
        ("kiln-test*", "docker.io/kiln-test/data:1", False),  # * stops at a /
        ("kiln-test/*", "docker.io/kiln-test/data:1", True),
        ("*:1", "docker.io/kiln-test/data:1", False),
        ("*:1", "docker.io/library/data:1", True),
        ("b?sybox", "docker.io/library/busybox:1", True),
        ("[ab]usybox", "docker.io/library/busybox:1", True),
        ("[^b]usybox", "docker.io/library/busybox:1", False),
        ("quay.io/org/*", "quay.io/org/web:2", True),
        ("localhost/web", "localhost/web:1", True),
        ("web", "localhost/web:1", False),  # dockerd keeps localhost/ in the familiar name
        ("busybox", "docker.io/library/busybox@sha256:" + "b" * 64, True),
        ("[a-c]usybox", "docker.io/library/busybox:1", True),
        ("[c-a]usybox", "docker.io/library/busybox:1", False),  # reversed: valid, matches none
        ("[^c-a]usybox", "docker.io/library/busybox:1", True),
        ("busy\\box", "docker.io/library/busybox:1", True),
    ],
)
def test_reference_filter_matches_as_dockerd(pattern, name, expected) -> None:
    assert reference_filter.name_matches(name, [pattern]) is expected


# what Go's path.Match refuses (dockerd 20.10: 500 "syntax error in pattern")
@pytest.mark.parametrize(
    "pattern", ["[", "[bad", "busybox:[1", "[]a]", "[^]", "[a-]", "[-a]", "x\\"]
)
def test_reference_filter_refuses_a_malformed_pattern_as_dockerd(pattern) -> None:
    with pytest.raises(reference_filter.BadPattern, match="^syntax error in pattern$"):
        reference_filter.check_patterns(["busybox", pattern])
    with pytest.raises(reference_filter.BadPattern):
        reference_filter.name_matches("docker.io/library/busybox:1", [pattern])


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path)))) as c:
        yield c


@pytest.mark.parametrize(
    "method, path",
    [("PUT", "/v1.41/images/json"), ("POST", "/v1.41/version"), ("DELETE", "/_ping"),
     ("GET", "/v1.x/images/json"), ("GET", "/vnope/images/json"), ("GET", "/v1.41/nothing")],
)  # fmt: skip
def test_docker_paths_without_a_route_are_page_not_found(client, method, path) -> None:
    r = client.request(method, path)
    assert (r.status_code, r.json()) == (404, {"message": "page not found"})


def test_libpod_keeps_405_and_bad_docker_versions_stay_400(client) -> None:
    r = client.put("/v4.3.1/libpod/images/json")
    assert r.status_code == 405 and r.json()["response"] == 405
    for version in ("1.99", "1.12", "1.2.3"):
        r = client.get(f"/v{version}/images/json")
        assert r.status_code == 400 and r.json()["message"]


@pytest.mark.parametrize("query", ["repo=sha256&tag=x", "repo=sha256", "repo=library/sha256"])
def test_docker_tag_refuses_a_repository_named_like_a_digest_algorithm(client, query) -> None:
    """dockerd's refusal: ``sha256:<hex>`` would name both an image ID and the tag."""
    r = client.post(f"/v1.41/images/anything/tag?{query}")
    assert r.status_code == 400 and "ambiguous" in r.json()["message"]


@pytest.mark.parametrize(
    "created, version, shown",
    [
        ("2023-11-14T22:13:20Z", "1.41", "2023-11-14T22:13:20Z"),
        ("2023-11-14T22:13:20.500000+00:00", "1.41", "2023-11-14T22:13:20.5Z"),
        ("2023-11-14T22:13:20.000000000Z", None, "2023-11-14T22:13:20Z"),
        ("2023-11-14T23:13:20.123456789+01:00", None, "2023-11-14T23:13:20.123456789+01:00"),
        ("not a time", None, "not a time"),  # shown as the config has it
        ("", "1.43", "0001-01-01T00:00:00Z"),  # Go's zero time, before 1.44
        (None, "1.44", ""),
    ],
)
def test_inspect_created_as_dockerd_prints_it(created, version, shown) -> None:
    assert docker_inspect({"Id": ID, "Created": created}, version)["Created"] == shown


def test_info_says_swarm_is_inactive_as_ping_does(client) -> None:
    body = client.get("/v1.41/info").json()
    assert body["Swarm"]["LocalNodeState"] == client.get("/_ping").headers["Swarm"] == "inactive"
    assert body["ContainerdCommit"] == body["RuncCommit"] == body["InitCommit"] == {"ID": ""}


def test_api_imports_set_no_environment(client) -> None:
    """dockerd's import and podman 4.3's service (the libpod route) give the image no
    ``Env`` but what the changes set (kiln import, the CLI, starts it with ``PATH``)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    r = client.post("/v1.41/images/create?fromSrc=-&repo=imp&tag=1&changes=ENV%20A%3D1",
                    content=tar.getvalue())  # fmt: skip
    assert r.status_code == 200 and '"error"' not in r.text
    assert client.get("/v1.41/images/imp:1/json").json()["Config"]["Env"] == ["A=1"]
    r = client.post("/v4.3.1/libpod/images/import?reference=imp:2", content=tar.getvalue())
    assert r.status_code == 200, r.text
    assert client.get("/v4.3.1/libpod/images/imp:2/json").json()["Config"].get("Env") is None


@pytest.mark.parametrize(
    "version, spelled_out",
    [("1.41", 17), ("1.49", 17), ("1.50", 8), ("1.51", 8), ("1.52", 0), (None, 0)],
)
def test_inspect_spells_out_unset_config_fields_as_dockerd(version, spelled_out) -> None:
    """moby's legacyConfigFields: unset fields shown with Go's zero values before 1.52."""
    data = {"Id": ID, "Config": {"Cmd": ["/bin/sh"], "Env": None, "WorkingDir": "/w"}}
    config = docker_inspect(data, version)["Config"]
    assert config["Cmd"] == ["/bin/sh"] and config["WorkingDir"] == "/w"  # set: kept
    assert len(set(config) - {"Cmd", "WorkingDir"}) == spelled_out - 2 * (spelled_out > 0)
    if spelled_out:
        assert config["Env"] is None and config["User"] == "" and config["Labels"] is None
    else:
        assert set(config) == {"Cmd", "WorkingDir"}
