"""kiln serve's Docker Engine API against a real dockerd: the same requests, the same answers.

One private dockerd (Debian's docker.io 20.10, API 1.41: :mod:`private_dockerd`) and one
``kiln serve`` load the same docker-archives, made here from Debian's busybox; then every
request of :data:`REQUESTS` goes to both at ``/v1.41`` and the answers are compared after
:func:`normalised`: status, the headers clients read, and the JSON body field by field.

What is deliberately not compared (each is a decision, said where it is made):

* ``Size`` (and ``VirtualSize``'s value): dockerd sums its overlay2 directories; kiln
  counts the layer tars (:mod:`kiln.ops.images`).
* ``SpaceReclaimed`` of a prune: kiln counts every blob that left its disk (configs and
  manifests too), dockerd the layers' sizes.
* ``Labels: null`` of an image without labels: kiln answers ``{}`` (``shapes.docker_summary``).
* inspect's ``Metadata.LastTagTime`` (kiln keeps no tagging times) and ``GraphDriver``;
  the ``Container``/``ContainerConfig`` of a build (each builder's own intermediate
  container: compared for loaded images, where both show the config's or empty ones).
* the wording of error messages, but for a 404 of a route that names an image: statuses
  are compared, and each body must be ``{"message": <non-empty string>}``.
* the history of an image whose config records none: dockerd shows no rows, kiln one
  per layer, as podman does.
* ``ParentId`` and ``Parent`` of the loaded images: dockerd answers the parent it recorded
  when it made the image (a classic build's previous step, a commit's container image),
  none for a loaded, pulled or imported one; kiln records no provenance and answers both,
  on every route, by podman's rule (``kiln.store.lineage``), which here makes the
  hand-made images without a history the parents of the data image on their layer. The
  libpod suite compares them; a build's, where both builders make an image a step and
  so agree, are compared here by the shape of the chain (the IDs are each builder's).
* API versions older than 1.24, which dockerd 20.10 still serves and current dockerd, like
  kiln, refuses.

The version-dependent shapes dockerd 20.10 cannot show (1.43, 1.44, 1.51) are tested
against moby's rules in ``tests/unit/test_api_docker_shapes.py``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from api_parity import answers, differences, q
from api_server import dockerfile_context, request, start_server, stop_server
from parity_archives import BASE, DATA, MOVED, MTIME, NO_TIME, ODD_TIME, make_archives
from private_dockerd import Dockerd

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(not Dockerd.available(), reason="needs dockerd (Debian's docker.io)"),
]


# (method, path) sent to both, in order; a request that changes the store comes after the
# reads that should see the store without it
REQUESTS: list[tuple[str, str]] = [
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/images/json"),
    ("GET", q("/images/json", all="1")),
    ("GET", q("/images/json", all="True")),
    ("GET", q("/images/json", all="2")),  # anything but 0/no/false/none is true
    ("GET", q("/images/json", all="")),
    ("GET", q("/images/json", all="off")),
    ("GET", q("/images/json", filters={"dangling": ["true"]})),
    ("GET", q("/images/json", filters={"dangling": ["false"]})),
    ("GET", q("/images/json", filters={"dangling": ["maybe"]})),
    ("GET", q("/images/json", filters={"reference": ["busy*"]})),
    ("GET", q("/images/json", filters={"reference": ["kiln-test/*"]})),
    ("GET", q("/images/json", filters={"reference": ["kiln-test/data:*"]})),
    ("GET", q("/images/json", filters={"reference": ["kiln-test*"]})),  # * stops at a /
    ("GET", q("/images/json", filters={"reference": ["*:1"]})),
    ("GET", q("/images/json", filters={"reference": ["busybox", "kiln-test/moved"]})),
    ("GET", q("/images/json", filters={"reference": {"busybox": True}})),  # the old map form
    ("GET", q("/images/json", filters={"label": ["tier"]})),
    ("GET", q("/images/json", filters={"label": ["tier=base"]})),
    ("GET", q("/images/json", filters={"label": ["tier=other"]})),
    ("GET", q("/images/json", filters={"before": [DATA]})),
    ("GET", q("/images/json", filters={"since": [BASE]})),
    ("GET", q("/images/json", filters={"since": ["kiln-test/none:1"]})),
    ("GET", q("/images/json", filters={"nonsense": ["x"]})),
    ("GET", f"/images/{BASE}/json"),
    ("GET", f"/images/{DATA}/json"),
    ("GET", f"/images/{ODD_TIME}/json"),  # Created as Go prints it
    ("GET", f"/images/{NO_TIME}/json"),
    ("GET", "/images/kiln-test/none:1/json"),
    ("GET", f"/images/{BASE}/history"),
    ("GET", "/images/kiln-test/none:1/history"),
    ("GET", "/images/kiln-test/none/history"),  # named with its default tag
    ("DELETE", "/images/kiln-test/none"),
    ("POST", q(f"/images/{DATA}/tag", repo="kiln-test/second", tag="2")),
    ("POST", q("/images/kiln-test/none:1/tag", repo="kiln-test/second", tag="3")),
    ("POST", q(f"/images/{DATA}/tag", repo="sha256", tag="x")),  # ambiguous with an ID
    ("POST", q(f"/images/{DATA}/tag", tag="x")),
    ("GET", q("/images/json", filters={"reference": ["kiln-test/*"]})),
    ("GET", f"/images/{DATA}/json"),
    ("DELETE", "/images/kiln-test/second:2"),
    ("DELETE", q(f"/images/{MOVED}", force="maybe", noprune="1")),
    ("DELETE", "/images/kiln-test/none:1"),
    ("POST", q("/images/prune", filters={"dangling": ["maybe"]})),
    ("POST", q("/images/prune", filters={"dangling": ["true"]})),
    ("GET", q("/images/json", all="1")),
    ("GET", "/images/kiln-test/nothing-here/json/extra"),
    ("PUT", "/images/json"),
    ("POST", f"/images/{BASE}/json"),
    ("GET", "/no/such/route"),
]

# dockerd 20.10 answers these user errors 500, current dockerd (errdefs.InvalidParameter)
# and kiln 400
STATUS_SINCE_20_10 = {
    ("POST", q(f"/images/{DATA}/tag", tag="x")): (500, 400),  # no repo
}

# whole-body fields compared per route (the rest: see the module docstring)
SUMMARY_FIELDS = ("Id", "RepoTags", "RepoDigests", "Created", "SharedSize", "Labels",
                  "Containers")  # fmt: skip
INSPECT_FIELDS = ("Id", "RepoTags", "RepoDigests", "Comment", "Created",
                  "Container", "ContainerConfig", "DockerVersion", "Author", "Architecture",
                  "Os", "RootFS")  # fmt: skip
HISTORY_FIELDS = ("Id", "Created", "CreatedBy", "Tags", "Comment")
CONFIG_FIELDS = ("Cmd", "Env", "Entrypoint", "Labels", "User", "WorkingDir")
HEADERS = ("api-version", "docker-experimental", "ostype", "content-type")


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("dockerd-parity")
    archives = make_archives(work)
    dockerd = Dockerd(str(work / "dockerd"))
    os.makedirs(dockerd.work, exist_ok=True)
    dockerd.start()
    try:
        for path in archives:
            dockerd.docker("load", "-q", "-i", str(path))
        (work / "kiln").mkdir()
        proc, sock = start_server(work / "kiln")
        try:
            for path in archives:
                status, _, body = request(sock, "POST", "/v1.41/images/load?quiet=1",
                                          path.read_bytes(), {"Content-Type": "application/x-tar"})  # fmt: skip
                assert status == 200 and b'"error"' not in body, body
            yield {"docker": dockerd.sock, "kiln": sock}
        finally:
            assert stop_server(proc) == 0
    finally:
        dockerd.stop()


def normalised(method: str, path: str, answer: tuple[int, dict[str, str], bytes]) -> dict:
    """What of an answer is compared (see the module docstring)."""
    status, headers, raw = answer
    out: dict[str, Any] = {"status": status}
    old, new = STATUS_SINCE_20_10.get((method, path), (None, None))
    if status == old:
        out["status"] = new
    # dockerd's router answers an unknown route before adding its headers
    if not (status == 404 and json.loads(raw or b"{}").get("message") == "page not found"):
        out["headers"] = {k: headers.get(k) for k in HEADERS if k != "api-version"}
        out["headers"]["api-version"] = bool(headers.get("api-version"))
    if method == "HEAD" or not raw:
        return out
    if headers.get("content-type", "").startswith("text/plain"):
        out["body"] = raw.decode()
        return out
    body = json.loads(raw)
    if status >= 400:
        assert set(body) == {"message"} and isinstance(body["message"], str) and body["message"]
        # "No such image: NAME" of a route that names an image (20.10's inspect says it twice)
        if status == 404 and not path.endswith("/json") and not path.startswith("/images/json"):
            out["message"] = body["message"]
        return out
    if path.startswith("/images/prune"):
        out["body"] = {"ImagesDeleted": body["ImagesDeleted"]}
    elif path.startswith("/images/json"):
        out["body"] = sorted((_summary(i) for i in body), key=lambda i: i["Id"])
    elif path.endswith("/json"):
        out["body"] = _inspect(body)
    elif path.endswith("/history"):
        out["body"] = [{k: e.get(k) for k in HISTORY_FIELDS} for e in body]
    else:
        out["body"] = body
    return out


GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z in Unix seconds


def _summary(item: dict) -> dict:
    out = {k: item.get(k, "<missing>") for k in SUMMARY_FIELDS}
    if out["Created"] == GO_ZERO_TIME:  # dockerd 20.10's, for no "created"; 0 since 25.0
        out["Created"] = 0
    out["Labels"] = out["Labels"] or {}
    out["VirtualSize"] = "VirtualSize" in item
    return out


def _inspect(body: dict) -> dict:
    out = {k: body.get(k, "<missing>") for k in INSPECT_FIELDS}
    out["Config"] = {k: (body["Config"] or {}).get(k) or None for k in CONFIG_FIELDS}
    out["ConfigFields"] = sorted(body["Config"] or {})  # spelled out even when unset
    out["VirtualSize"] = "VirtualSize" in body
    return out


def answer(sock: str, method: str, path: str, prefix: str = "/v1.41") -> dict:
    """One server's :func:`normalised` answer to ``method prefix+path``."""
    return normalised(method, path, request(sock, method, prefix + path))


def test_the_docker_api_answers_as_dockerd(servers) -> None:
    found = differences(servers, REQUESTS, answer)
    assert not found, "\n".join(found)


def test_a_registry_that_cannot_be_reached_answers_as_dockerd(servers) -> None:
    """A pull or search from a registry nobody answers at: 500 with a message, as dockerd
    (kiln answered 503, its ``Unavailable``'s status on the libpod routes)."""
    import socket

    with socket.socket() as closed:  # bound, never listening: a connection is refused
        closed.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{closed.getsockname()[1]}"
        for method, path in (
            ("POST", q("/images/create", fromImage=f"{registry}/kiln-test/x", tag="1")),
            ("GET", q("/images/search", term=f"{registry}/kiln-test")),
        ):
            by_server = answers(servers, answer, method, path)
            assert by_server["kiln"] == by_server["docker"], path
            assert by_server["kiln"]["status"] == 500


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.99", "/v1.x", "/vnope"])
def test_version_prefixes_answer_as_dockerd(servers, prefix: str) -> None:
    by_server = answers(servers, answer, "GET", "/images/json", prefix)
    statuses = {name: a["status"] for name, a in by_server.items()}
    assert statuses["docker"] == statuses["kiln"], statuses


# what dockerd 20.10 answers and kiln does not, each for a reason
MISSING_IN_KILN = {
    "/info": {"KernelMemory", "KernelMemoryTCP",  # dropped from the API at 1.42
              "BridgeNfIptables", "BridgeNfIp6tables"},  # kiln sets up no container networks
    "/version": set(),
    "/system/df": {"BuilderSize"},  # no longer set since API 1.40, dropped at 1.42
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(MISSING_IN_KILN))
def test_system_answers_have_dockerds_fields(servers, path: str) -> None:
    """Every field dockerd's answer has, kiln's has too, with a value of the same JSON type
    (null aside): clients index these objects (``info()["Swarm"]["LocalNodeState"]``)."""
    bodies = {}
    for name, sock in servers.items():
        status, _, raw = request(sock, "GET", "/v1.41" + path)
        assert status == 200
        bodies[name] = json.loads(raw)
    docker, kiln = bodies["docker"], bodies["kiln"]
    assert set(docker) - set(kiln) == MISSING_IN_KILN[path]
    kinds = {k: (type(docker[k]).__name__, type(kiln[k]).__name__) for k in set(docker) & set(kiln)
             if docker[k] is not None and kiln[k] is not None and type(docker[k]) is not type(kiln[k])}  # fmt: skip
    assert not kinds, kinds


BUILT = "kiln-test/built"
MULTI_STAGE = "FROM busybox AS a\nLABEL s=a\nFROM busybox AS b\nLABEL s=b\n"
SIMPLE = 'FROM busybox\nARG X\nLABEL x=$X\nENV E=1\nWORKDIR /w\nCMD ["sh", "-c", "true"]\n'

# (query, Dockerfile, the tag to inspect afterwards); dockerd's classic builder (API builds
# without version=2) against kiln's; no RUN step, which dockerd's private daemon could not
# network
BUILDS: list[tuple[dict[str, str], str, str | None]] = [
    ({"t": f"{BUILT}:1", "labels": '{"l": "v"}', "buildargs": '{"X": "1"}'}, SIMPLE, f"{BUILT}:1"),
    ({"t": f"{BUILT}:2", "q": "1"}, SIMPLE, f"{BUILT}:2"),
    # a label named "" (docker-py's labels={"": "x"}): dockerd sets it; the docker CLI
    # refuses --label =x before it sends anything, as kiln's command line does
    ({"t": f"{BUILT}:5", "labels": '{"": "x", "l": "v"}'}, SIMPLE, f"{BUILT}:5"),
    ({"t": f"{BUILT}:3", "target": "a", "rm": "", "forcerm": "0"}, MULTI_STAGE, f"{BUILT}:3"),
    ({"t": f"{BUILT}:4", "nocache": "True"}, MULTI_STAGE, f"{BUILT}:4"),
    ({"target": "nope"}, MULTI_STAGE, None),
    ({"buildargs": "notjson"}, SIMPLE, None),
    ({"labels": "notjson"}, SIMPLE, None),
    ({}, "FROMM busybox\n", None),
]


def _build_answer(sock: str, query: dict[str, str], dockerfile: str, tag: str | None) -> dict:
    status, headers, raw = request(sock, "POST", q("/v1.41/build", **query), dockerfile_context(dockerfile, MTIME),
                                   {"Content-Type": "application/x-tar"})  # fmt: skip
    out: dict[str, Any] = {"status": status, "content-type": headers.get("content-type")}
    if status != 200:
        assert set(json.loads(raw)) == {"message"}
        return out
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    out["error"] = [m["error"] for m in lines if "error" in m] != []
    streams = [m.get("stream", "") for m in lines]
    out["tagged"] = [s for s in streams if s.startswith("Successfully tagged")]
    out["built"] = any(s.startswith("Successfully built ") for s in streams) or any(
        s.startswith("sha256:") for s in streams
    )
    if tag is not None:
        found, _, body = request(sock, "GET", f"/v1.41/images/{tag}/json")
        if found != 200:
            out["image"] = found
            return out
        out["image"] = _inspect(json.loads(body))
        # each builder's own; DockerVersion is dockerd's release (Parent: each builder's
        # ID, its chain compared by test_a_classic_build_parents_each_image_on_...)
        for key in ("Id", "Created", "RootFS", "DockerVersion", "Container", "ContainerConfig"):
            out["image"].pop(key)
    return out


@pytest.mark.parametrize("number", range(len(BUILDS)))
def test_docker_builds_answer_as_dockerds_classic_builder(servers, number: int) -> None:
    query, dockerfile, tag = BUILDS[number]
    built = {name: _build_answer(sock, query, dockerfile, tag) for name, sock in servers.items()}
    docker, kiln = built["docker"], built["kiln"]
    differing = {k: (docker.get(k), kiln.get(k)) for k in set(docker) | set(kiln)
                 if docker.get(k) != kiln.get(k)}  # fmt: skip
    assert not differing, json.dumps(differing, sort_keys=True)


# Dockerfiles built through the classic builder's route on both: every step is an image,
# the parent (``Parent``, ``ParentId``) of the next one, named or not
LINEAGE_BUILDS = [
    "FROM busybox\nENV A=1\nLABEL x=y\n",
    'FROM busybox\nCOPY f /f\nEXPOSE 80\nUSER 1\nCMD ["sh"]\n',
    "FROM busybox\nENV A=1\nENV B=2\nCOPY f /f\n",
    "FROM busybox\nVOLUME /v\nENV A=1\nCOPY f /f\nENV B=1\nLABEL q=1\n",
    "FROM busybox AS a\nCOPY f /f\nFROM busybox\nCOPY --from=a /f /h\nLABEL z=1\n",
]


def _context_with_file(dockerfile: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", dockerfile.encode()), ("f", b"f\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _lineage(sock: str, name: str) -> list[tuple[int, bool, bool]]:
    """From the image up its ``Parent`` links: each image's count of history entries,
    whether it has a name, and whether the listing's ``ParentId`` says the same."""
    _, _, raw = request(sock, "GET", "/v1.41/images/json?all=1")
    listed = {i["Id"]: i["ParentId"] for i in json.loads(raw)}
    chain = []
    while name:
        _, _, raw = request(sock, "GET", f"/v1.41/images/{name}/json")
        image = json.loads(raw)
        _, _, raw = request(sock, "GET", f"/v1.41/images/{name}/history")
        chain.append((len(json.loads(raw)), bool(image["RepoTags"]),
                      listed.get(image["Id"]) == image["Parent"]))  # fmt: skip
        name = image["Parent"]
        assert len(chain) < 20, chain
    return chain


@pytest.mark.parametrize("number", range(len(LINEAGE_BUILDS)))
@pytest.mark.parametrize("labels", ["", '{"l": "v"}'])
def test_a_classic_build_parents_each_image_on_the_last_steps_as_dockerd(servers, number: int,
                                                                         labels: str) -> None:  # fmt: skip
    """dockerd's classic builder commits every step, a metadata one too, so a built
    image's parent is its last step's image (kiln committed only RUN/COPY/ADD steps: after
    ``ENV A=1`` and ``LABEL x=y`` the parent was the base). A second build is the same
    image, every step from the cache. Left as it is: a WORKDIR or VOLUME directory not
    made yet (kiln makes it in the next layer, dockerd in the step's own) keeps the steps
    after it in kiln's next image."""
    tag = f"kiln-test/lineage:{number}{'-labelled' if labels else ''}"
    query = {"t": tag, "labels": labels} if labels else {"t": tag}
    context = _context_with_file(LINEAGE_BUILDS[number])
    found = {}
    for name, sock in servers.items():
        ids = []
        for _ in range(2):
            status, _, raw = request(sock, "POST", q("/v1.41/build", **query), context,
                                     {"Content-Type": "application/x-tar"})  # fmt: skip
            assert status == 200 and b'"error"' not in raw, raw
            _, _, body = request(sock, "GET", f"/v1.41/images/{tag}/json")
            ids.append(json.loads(body)["Id"])
        found[name] = {"lineage": _lineage(sock, tag), "rebuilt the same": ids[0] == ids[1]}
        request(sock, "DELETE", f"/v1.41/images/{tag}")
    assert found["kiln"] == found["docker"]


IMPORTS = [
    {"fromSrc": "-", "repo": "kiln-test/imported", "tag": "1", "changes": 'CMD ["/x"]',
     "message": "by hand"},
    {"fromSrc": "-", "repo": "kiln-test/imported"},
    {"fromSrc": "-", "repo": "Bad"},
]  # fmt: skip


@pytest.mark.parametrize("number", range(len(IMPORTS)))
def test_docker_import_answers_as_dockerd(servers, number: int) -> None:
    """``docker import``: status, the one status line with the image ID, and the image."""
    query = IMPORTS[number]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size, info.mtime = 2, MTIME
        tf.addfile(info, io.BytesIO(b"hi"))
    by_server = {}
    for name, sock in servers.items():
        status, headers, raw = request(sock, "POST", q("/v1.41/images/create", **query),
                                       buf.getvalue(), {"Content-Type": "application/x-tar"})  # fmt: skip
        out: dict[str, Any] = {"status": status, "content-type": headers.get("content-type")}
        if status == 200:
            lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
            out["lines"] = [sorted(m) for m in lines]
            tag = f"{query['repo']}:{query.get('tag', 'latest')}"
            _, _, body = request(sock, "GET", f"/v1.41/images/{tag}/json")
            image = json.loads(body)
            assert lines[-1]["status"] == image["Id"]
            out["image"] = {k: image.get(k) for k in ("RepoTags", "Comment", "Architecture", "Os")}
            out["image"]["Config"] = {k: image["Config"].get(k) or None for k in CONFIG_FIELDS}
        by_server[name] = out
    assert by_server["docker"] == by_server["kiln"]
