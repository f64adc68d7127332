"""kiln serve's libpod routes against a real ``podman system service``: the same requests,
the same answers.

One private podman 4.3 service (Debian's, over its own vfs storage: :mod:`private_podman`)
and one ``kiln serve`` load the same docker-archives (:mod:`parity_archives`, with full
names: see :func:`parity_archives.with_full_names`); then every request of
:data:`REQUESTS` goes to both at ``/v4.3.1/libpod`` and the answers are compared after
:func:`normalised`: status, the headers podman's bindings read, and the JSON body.

What is deliberately not compared (each a decision; :data:`NOT_COMPARED` holds the fields):

* sizes (``Size``, ``VirtualSize``, the sizes in ``tree``'s text): podman sums its storage
  driver's files, kiln counts the layer tars.
* manifest digests (``Digest``, the digest half of ``RepoDigests``): each store writes its
  own manifest of a loaded image (podman keeps the archive's uncompressed layers, kiln
  compresses them), so the IDs (config digests) agree and the manifests do not.
* ``GraphDriver`` (vfs here, kiln's snapshotter there), ``NamesHistory`` and a listed
  image's ``History`` (podman keeps every name an image ever had, kiln the ones it has).
* ``Created`` of an image whose config records no time: podman shows when it was loaded.
* an empty list or map as ``null`` or left out: Go clients decode ``null``, ``[]``, ``{}`` and
  nothing alike; kiln answers ``[]``/``{}`` (Python clients index them), and adds fields of
  ``podman images --format json`` (``CreatedAt``, ``IsManifestList``, ``ReadOnly``).
* error wording: statuses and the shape ``{"cause", "message", "response"}`` are compared,
  with ``response`` the status.
* the statuses of :data:`PODMAN_STATUS`: podman 4.3's 500 for a user error or an
  unreachable registry, where kiln names the kind (400, 404, 503); a removal that names
  no image, which podman takes for every image.
* an unknown route or method: podman's router answers a text/plain "404 page not found"
  (405 without a body); kiln answers both in the error shape above. kiln also serves the
  libpod routes without a ``/v{version}`` prefix, which podman's router does not.

Known and left as they are, each test saying why where it meets one: the media type of a manifest list (podman 4.3 a Docker list, kiln an OCI index); how an
OCI archive is written (podman converts the image to OCI media types, changing its ID);
a multi-image oci-archive export (podman refuses it, kiln writes it); podman's leftover
unnamed image of a refused import; pull and push are not compared (a registry is needed):
podman 4.3 answers a pull's early errors (a short name that does not resolve, policy
never) 200 with an error line, kiln with the error's status (podman's client shows
either); a quiet push's failure is podman's 400, kiln's status of the error (a push's
quiet default: ``test_api_libpod_registry_params``). And one left for a decision: kiln counts an image as
a child of every image whose layer chain its own extends (``Store.children_of``: such a
"parent" is not dangling and is not removed without its children), where podman also
wants the child's history to extend the parent's; the image of two layers here is
therefore loaded, compared and removed by :func:`test_layers_answer_as_podman` alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from api_parity import differences, q
from api_server import request, start_server, stop_server
from parity_archives import MTIME, make_archives, with_full_names
from private_podman import PodmanService

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(not PodmanService.available(), reason="needs podman"),
]

PREFIX = "/v4.3.1/libpod"
BASE, DATA = "docker.io/library/busybox:latest", "docker.io/kiln-test/data:1"
MOVED = "docker.io/kiln-test/moved:1"
LAYERED = "docker.io/kiln-test/layered:1"
# the IDs of the images loaded, known once made (they depend on the host's busybox):
# paths name them as <base-id> and <data-id>, filled in when sent
IDS: dict[str, str] = {}
SEARCHED = "127.0.0.1:9/kiln-test"  # nothing listens on the discard port: no network needed


def image(name: str, route: str = "") -> str:
    """``/images/NAME/ROUTE`` as podman's bindings send it: NAME path-escaped (``/`` as
    ``%2F``; podman's router matches no slash in NAME)."""
    return f"/images/{urllib.parse.quote(name, safe=':@')}" + (f"/{route}" if route else "")


# (podman 4.3's status, kiln's) where kiln answers otherwise, each for a reason; only
# the statuses of these are compared
PODMAN_STATUS = {
    # podman's handlers' default 500 for a user error or an unreachable registry; kiln
    # names the kind
    ("GET", q("/images/json", filters={"nonsense": ["x"]})): (500, 400),
    ("GET", q("/images/json", filters={"since": ["kiln-test/none:1"]})): (500, 404),
    ("GET", image("kiln-test/none:1", "changes")): (500, 404),
    ("GET", q(image(DATA, "changes"), parent="kiln-test/none:1")): (500, 404),
    ("GET", q(image(DATA, "changes"), diffType="container")): (500, 404),  # no such container
    ("GET", q("/images/search", term=SEARCHED)): (500, 503),
    ("DELETE", image("<data-id:12>")): (500, 400),
    # podman removes every image when a request names none, and ignores all=true beside
    # names; kiln refuses both, as podman's command line does
    ("DELETE", "/images/remove"): (200, 400),
    ("DELETE", q("/images/remove", all="true", images=["x"])): (200, 400),
}
UNROUTED = [("PUT", "/images/json"), ("GET", "/no/such/route")]

# (method, path) sent to both, in order; a request that changes the store comes after the
# reads that should see the store without it
REQUESTS: list[tuple[str, str]] = [
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/images/json"),
    ("GET", q("/images/json", all="true")),
    ("GET", q("/images/json", filters={"dangling": ["true"]})),
    ("GET", q("/images/json", filters={"dangling": ["false"]})),
    ("GET", q("/images/json", filters={"reference": ["busybox"]})),
    ("GET", q("/images/json", filters={"reference": ["kiln-test/*"]})),
    ("GET", q("/images/json", filters={"reference": ["docker.io/kiln-test/data:1"]})),
    ("GET", q("/images/json", filters={"reference": {"busybox": True}})),  # the map form
    ("GET", q("/images/json", filters={"label": ["tier"]})),
    ("GET", q("/images/json", filters={"label": ["tier=base"]})),
    ("GET", q("/images/json", filters={"label": ["tier=other"]})),
    ("GET", q("/images/json", filters={"before": [DATA]})),
    ("GET", q("/images/json", filters={"since": [BASE]})),
    ("GET", q("/images/json", filters={"since": ["kiln-test/none:1"]})),
    ("GET", q("/images/json", filters={"until": ["2023-11-14T22:14:00Z"]})),
    ("GET", q("/images/json", filters={"nonsense": ["x"]})),
    ("GET", q("/images/json", filters={"after": [BASE]})),
    ("GET", q("/images/json", filters={"label!": ["tier"]})),
    ("GET", q("/images/json", filters={"id": ["<base-id>"]})),
    ("GET", q("/images/json", filters={"intermediate": ["false"]})),
    ("GET", q("/images/json", filters={"containers": ["false"]})),
    ("GET", q("/images/json", filters={"readonly": ["false"]})),
    ("GET", q("/images/json", filters={"readonly": ["true"]})),
    ("GET", q("/images/json", filters={"containers": ["true"]})),
    ("GET", q("/images/json", filters={"dangling": ["true"], "label": ["tier"]})),
    ("GET", image("busybox", "json")),
    ("GET", image(BASE, "json")),
    ("GET", image(DATA, "json")),
    ("GET", image("kiln-test/data:1", "json")),
    ("GET", image("<base-id:12>", "json")),
    ("GET", image("<base-id>", "json")),
    (
        "GET",
        image("sha256:<base-id>", "json"),
    ),
    ("GET", image("kiln-test/none:1", "json")),
    ("GET", image("busybox", "exists")),
    ("GET", image("<base-id:12>", "exists")),
    ("GET", image("kiln-test/none:1", "exists")),
    ("GET", image("busybox", "history")),
    ("GET", image(DATA, "history")),
    ("GET", image("kiln-test/none:1", "history")),
    ("GET", image("busybox", "tree")),
    ("GET", image(DATA, "tree")),
    ("GET", image("kiln-test/none:1", "tree")),
    ("GET", image(DATA, "changes")),
    ("GET", q(image(DATA, "changes"), parent=BASE)),
    ("GET", q(image(DATA, "changes"), diffType="image")),
    ("GET", q(image(DATA, "changes"), diffType="all")),
    ("GET", q(image(DATA, "changes"), diffType="bogus")),
    ("GET", q(image(DATA, "changes"), diffType="container")),
    ("GET", q(image(DATA, "changes"), parent="kiln-test/none:1")),
    ("GET", image("kiln-test/none:1", "changes")),
    ("GET", q("/images/search", term=SEARCHED)),
    ("POST", q(image(DATA, "tag"), repo="kiln-test/second", tag="2")),
    ("POST", q(image(DATA, "tag"), repo="quay.io/kiln-test/third")),
    ("POST", q(image("kiln-test/none:1", "tag"), repo="kiln-test/second", tag="3")),
    ("POST", q(image(DATA, "tag"), tag="x")),
    ("GET", q("/images/json", filters={"reference": ["kiln-test/*"]})),
    ("GET", image(DATA, "json")),
    (
        "POST",
        q(
            image("localhost/kiln-test/second:2", "untag"),
            repo="localhost/kiln-test/second",
            tag="2",
        ),
    ),
    (
        "POST",
        q(
            image("localhost/kiln-test/second:2", "untag"),
            repo="localhost/kiln-test/second",
            tag="2",
        ),
    ),
    ("POST", q(image("quay.io/kiln-test/third:latest", "untag"))),
    ("POST", q(image("kiln-test/none:1", "untag"))),
    ("DELETE", image("kiln-test/none:1")),
    ("DELETE", q("/images/remove", images=["kiln-test/none:1"])),
    ("DELETE", q("/images/remove", images=["kiln-test/none:1"], ignore="true")),
    ("DELETE", image("<data-id:12>")),  # by ID, with more than one name: needs force
    ("DELETE", q("/images/remove", images=["<data-id:12>"])),
    ("DELETE", image(DATA)),
    ("DELETE", q("/images/remove", images=["kiln-test/none:1", MOVED], force="true")),
    ("DELETE", q("/images/remove", images=["kiln-test/none:1", MOVED], ignore="true")),
    ("DELETE", q("/images/remove", all="true", images=["x"])),
    ("POST", q("/images/prune")),
    ("POST", q("/images/prune", filters={"dangling": ["true"]})),
    ("POST", q("/images/prune", all="true", filters={"label": ["tier=base"]})),
    ("GET", q("/images/json", all="true")),
    ("GET", q("/images/json", filters={"dangling": {"true": True}})),  # the map form
    *UNROUTED,
    ("DELETE", "/images/remove"),  # last: podman 4.3 removes every image
]

# whole-body fields left out of the comparison (see the module docstring)
NOT_COMPARED = {"Size", "VirtualSize", "Digest", "GraphDriver", "NamesHistory", "CreatedAt",
                "IsManifestList", "ReadOnly"}  # fmt: skip
EMPTY = (None, [], {}, False)  # Go's omitempty leaves out false too
HEADERS = ("content-type", "libpod-api-version")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")
_SIZE = re.compile(r"Size: +[0-9.]+[kMG]?B")
_NAMES = re.compile(r"\[([^\]]*)\]")  # tree's lists of names


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), MTIME
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layered_archive() -> bytes:
    """A docker-archive of :data:`LAYERED`: two layers, the first the data image's, and
    three history entries, one of them an empty layer (history, tree and whatrequires)."""
    layers = [_tar("hello.txt", b"hello\n"), _tar("bye.txt", b"bye\n")]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    history = [
        {"created": "2023-11-14T22:13:20Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /"},
        {"created": "2023-11-14T22:13:21Z", "created_by": "/bin/sh -c #(nop)  ENV A=1",
         "empty_layer": True},
        {"created": "2023-11-14T22:13:22Z", "created_by": "/bin/sh -c echo bye > /bye.txt",
         "comment": "second"},
    ]  # fmt: skip
    config = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:22Z",
              "config": {"Env": ["A=1"]}, "history": history,
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}  # fmt: skip
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    members = {f"{d[7:]}.tar": layer for d, layer in zip(diff_ids, layers, strict=True)}
    members[config_name] = config_bytes
    manifest = [{"Config": config_name, "RepoTags": [LAYERED], "Layers": list(members)[:2]}]
    members["manifest.json"] = json.dumps(manifest).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(content), MTIME
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("libpod-parity")
    # all but the last (no-time) archive: podman dates an image without a time when it
    # loaded it, which the filters by time would then tell apart
    archives = [with_full_names(a) for a in make_archives(work)[:-1]]
    for key, archive in (("base", archives[0]), ("data", archives[1])):
        with tarfile.open(archive) as tf:
            [entry] = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        IDS[key] = entry["Config"].removesuffix(".json")
    (work / "podman").mkdir()
    podman = PodmanService(str(work / "podman"))
    podman.start()
    try:
        (work / "kiln").mkdir()
        # the same registries.conf: no search registries, so a short name is looked up nowhere
        env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=podman.registries_conf)
        proc, sock = start_server(work / "kiln", env=env)
        try:
            for path in archives:
                for server in (podman.sock, sock):
                    status, _, body = request(server, "POST", PREFIX + "/images/load", path.read_bytes(),
                                              {"Content-Type": "application/x-tar"})  # fmt: skip
                    assert status == 200, body
            yield {"podman": podman.sock, "kiln": sock}
        finally:
            assert stop_server(proc) == 0
    finally:
        podman.stop()


def _plain(value: Any) -> Any:
    """``value`` with empties as None, fields of :data:`NOT_COMPARED` dropped and manifest
    digests blanked."""
    if isinstance(value, dict):
        out = {k: _plain(v) for k, v in value.items() if k not in NOT_COMPARED}
        return {k: v for k, v in out.items() if not any(v is e or v == e for e in EMPTY)} or None
    if isinstance(value, list):
        items = [_plain(v) for v in value]
        # the order of an image's names: podman puts a loaded name first, kiln last
        return (sorted(items) if all(isinstance(i, str) for i in items) else items) or None
    if isinstance(value, str):
        text = _SIZE.sub("Size: <size>", _DIGEST.sub("@<digest>", value))
        return _NAMES.sub(lambda m: "[" + " ".join(sorted(m.group(1).split())) + "]", text)
    return value


def normalised(method: str, path: str, answer: tuple[int, dict[str, str], bytes]) -> dict:
    """What of an answer is compared (see the module docstring)."""
    status, headers, raw = answer
    out: dict[str, Any] = {"status": status}
    if (method, path) in PODMAN_STATUS:
        theirs, ours = PODMAN_STATUS[method, path]
        return {"status": ours if status == theirs else status}
    if (method, path) in UNROUTED:
        return out  # podman's router; see the module docstring
    out["headers"] = {k: headers.get(k) for k in HEADERS}
    if method == "HEAD":  # podman's HEAD /_ping has no type, dockerd's (and kiln's) text/plain
        out["headers"].pop("content-type")
    if method == "HEAD" or not raw:
        return out
    if headers.get("content-type", "").startswith("text/plain"):
        out["body"] = raw.decode()
        return out
    body = json.loads(raw)
    if status >= 400:
        assert set(body) == {"cause", "message", "response"}, body
        assert body["response"] == status and body["message"], body
        return out
    if path.startswith("/images/json"):
        # "History" here is podman's NamesHistory; see the module docstring
        body = sorted(({k: v for k, v in i.items() if k != "History"} for i in body),
                      key=lambda i: i["Id"])  # fmt: skip
    elif path.split("?")[0].endswith("/changes"):
        body = sorted((c["Path"], c["Kind"]) for c in body)
    elif "/images/remove" in path or method == "DELETE":
        body = {k: sorted(v) if isinstance(v, list) else v for k, v in body.items()}
    elif path.startswith("/images/prune"):
        body = sorted(body, key=lambda r: r["Id"])
    out["body"] = _plain(body)
    return out


def answer(sock: str, method: str, path: str) -> dict:
    """One server's :func:`normalised` answer to ``method path`` (its IDs :func:`filled`)."""
    return normalised(method, path, request(sock, method, PREFIX + filled(path)))


@pytest.mark.parametrize("prefix", ["/v4.3.1", "/v4.0.0", "/v3.0.0", "/v5.1.0", "/v4", "/vnope"])
def test_version_prefixes_answer_as_podman(servers, prefix: str) -> None:
    """Any version of digits and dots is served (podman's router matches the prefix only);
    anything else is no route. (kiln also serves the libpod routes without a prefix, which
    podman does not: a client that sends none is served, not refused.)"""
    statuses = {
        name: request(sock, "GET", prefix + "/libpod/_ping")[0] for name, sock in servers.items()
    }
    assert statuses["podman"] == statuses["kiln"], statuses


def _body(sock: str, path: str) -> dict[str, Any]:
    status, _, raw = request(sock, "GET", PREFIX + path)
    assert status == 200, raw
    return json.loads(raw)


def _kinds(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The fields both have whose JSON types differ (null aside)."""
    return {k: (type(theirs[k]).__name__, type(ours[k]).__name__) for k in set(theirs) & set(ours)
            if None not in (theirs[k], ours[k]) and type(theirs[k]) is not type(ours[k])}  # fmt: skip


def test_version_answers_as_podman(servers) -> None:
    """``podman --remote version`` reads the "Podman Engine" component's ``APIVersion`` and
    the ``BuildTime`` (RFC 3339) of the answer."""
    podman, kiln = (_body(servers[n], "/version") for n in ("podman", "kiln"))
    assert set(podman) - set(kiln) == set() and not _kinds(podman, kiln)
    engines = {}
    for name, body in (("podman", podman), ("kiln", kiln)):
        [engine] = [c for c in body["Components"] if c["Name"] == "Podman Engine"]
        engines[name] = engine
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["BuildTime"]), body[
            "BuildTime"
        ]
    theirs, ours = engines["podman"]["Details"], engines["kiln"]["Details"]
    assert set(theirs) - set(ours) == set() and not _kinds(theirs, ours)
    for key in ("APIVersion", "MinAPIVersion"):
        assert theirs[key] == ours[key], key
    assert engines["podman"]["Version"] == engines["kiln"]["Version"]


# what podman's info has and kiln's has not, by section, each for a reason
INFO_MISSING_IN_KILN = {
    # podman's container runtime around runc (conmon, networks, cgroups, logs, slirp4netns,
    # seccomp...): kiln runs build steps only, and says what it has (runtime, emulators)
    "host": {"buildahVersion", "cgroupControllers", "cgroupManager", "cgroupVersion", "conmon",
             "cpuUtilization", "distribution", "eventLogger", "idMappings", "linkmode",
             "logDriver", "memFree", "memTotal", "networkBackend", "remoteSocket", "security",
             "serviceIsRemote", "slirp4netns", "swapFree", "swapTotal", "uptime"},
    # containers/storage's settings: kiln reads no storage.conf, keeps no run state apart
    # from its root and has no volumes or driver options
    "store": {"configFile", "graphOptions", "runRoot", "volumePath"},
    "version": set(),
    "": {"plugins"},  # podman's volume, network and log plugins
}  # fmt: skip


@pytest.mark.parametrize("section", sorted(INFO_MISSING_IN_KILN))
def test_info_has_podmans_fields(servers, section: str) -> None:
    """Every field of podman's info (and of its store and version sections) is in kiln's,
    with a value of the same JSON type, but for :data:`INFO_MISSING_IN_KILN`."""
    podman, kiln = (_body(servers[n], "/info") for n in ("podman", "kiln"))
    if section:
        podman, kiln = podman[section], kiln[section]
    assert set(podman) - set(kiln) == INFO_MISSING_IN_KILN[section]
    assert not _kinds(podman, kiln)
    if section == "store":
        assert set(podman["containerStore"]) <= set(kiln["containerStore"])
        assert kiln["imageStore"]["number"] == podman["imageStore"]["number"]


SAVED_FORMATS = ["", "docker-archive", "oci-archive", "oci-dir", "docker-dir"]


def _saved(raw: bytes) -> dict[str, Any]:
    """What an archive of busybox holds, as both write it: its layout and the image's
    name; the layer's bytes are compared by digest where both keep them uncompressed."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        names = set(tf.getnames())
        if "manifest.json" in names and "version" not in names:
            manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
            return {
                "layout": "docker-archive",
                "images": [(m["Config"], m["RepoTags"]) for m in manifest],
            }
        if "index.json" in names:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
            refs = [
                m.get("annotations", {}).get("org.opencontainers.image.ref.name")
                for m in index["manifests"]
            ]
            return {"layout": "oci", "refs": refs}
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        return {"layout": "dir", "config": manifest["config"]["digest"],
                "layers": len(manifest["layers"])}  # fmt: skip


@pytest.mark.parametrize("fmt", SAVED_FORMATS)
def test_get_answers_as_podman(servers, fmt: str) -> None:
    """``GET /images/{name}/get`` (podman --remote save): the status, the layout of each
    format (oci-archive when none is named, as podman's) and the name in it. Not compared:
    podman's content type of an archive ("application/octet"; kiln's is application/x-tar),
    and how each writes an OCI layout (podman converts the image to OCI media types, which
    changes its config and so its ID on a load; kiln keeps the image's own manifest)."""
    answers = {}
    for name, sock in servers.items():
        path = q(image(BASE, "get"), **({"format": fmt} if fmt else {}))
        status, _, raw = request(sock, "GET", PREFIX + path)
        answers[name] = {"status": status, **(_saved(raw) if status == 200 else {})}
    assert answers["podman"] == answers["kiln"]


MANIFEST_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", q("/manifests/kiln-test%2Flist:1", images=f"containers-storage:{BASE}"), None),
    ("POST", "/manifests/kiln-test%2Flist:2", None),
    ("POST", "/manifests/kiln-test%2Flist:2", None),  # the name is taken
    ("GET", "/manifests/kiln-test%2Flist:2/exists", None),
    ("GET", "/manifests/kiln-test%2Fnone:2/exists", None),
    ("GET", "/manifests/kiln-test%2Flist:2/json", None),
    ("GET", "/manifests/kiln-test%2Fnone:2/json", None),
    (
        "PUT",
        "/manifests/kiln-test%2Flist:2",
        {"operation": "update", "images": [f"containers-storage:{BASE}"]},
    ),
    (
        "PUT",
        "/manifests/kiln-test%2Flist:2",
        {"operation": "update", "images": [f"containers-storage:{DATA}"]},
    ),
    ("GET", "/manifests/kiln-test%2Flist:2/json", None),
    ("GET", "/manifests/kiln-test%2Flist:1/json", None),
    ("PUT", "/manifests/kiln-test%2Flist:2", {"operation": "bogus"}),
    ("DELETE", "/manifests/kiln-test%2Flist:1", None),
    ("DELETE", "/manifests/kiln-test%2Flist:1", None),
    ("DELETE", "/manifests/kiln-test%2Flist:2", None),
]

# (podman 4.3's status, kiln's), each for a reason
MANIFEST_STATUS = {
    # podman's handlers' default 500 for a name already taken; kiln's 409 is podman 5's
    ("POST", "/manifests/kiln-test%2Flist:2"): (500, 409),
    # podman's inspect answers 404 for any error; a short name that registries.conf does
    # not resolve is the user's (400), as kiln's pull says
    ("GET", "/manifests/kiln-test%2Fnone:2/json"): (404, 400),
}


def _manifest_answer(status: int, raw: bytes, method: str, path: str) -> dict[str, Any]:
    """Status, and of an inspect the instances (media type and platform; the digests are
    each store's own manifests of the image). Not compared: a list's own media type (podman
    4.3 writes a Docker manifest list, kiln an OCI index, which podman 5 writes too) and
    the IDs of lists (each store makes its own)."""
    out: dict[str, Any] = {"status": MANIFEST_STATUS.get((method, path), (status, status))[1]
                           if status == MANIFEST_STATUS.get((method, path), (0, 0))[0] else status}  # fmt: skip
    if raw and status < 300 and path.endswith("/json"):
        body = json.loads(raw)
        out["instances"] = [(m["mediaType"], m["platform"]) for m in body.get("manifests") or []]
    elif raw and status >= 400:
        body = json.loads(raw)
        assert set(body) == {"cause", "message", "response"} and body["response"] == status, body
    elif raw and method == "DELETE":
        body = json.loads(raw)
        out["removed"] = (
            body.get("Untagged"),
            len(body.get("Deleted") or []),
            body.get("ExitCode"),
        )
    return out


def test_manifest_lists_answer_as_podman(servers) -> None:
    """podman --remote manifest create/add/inspect/exists/rm, request by request, over
    the images both stores have; the lists are gone again at the end."""
    found = differences(servers, MANIFEST_REQUESTS, _manifest_request)
    assert not found, "\n".join(found)


def _manifest_request(sock: str, method: str, path: str, body: dict[str, Any] | None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    status, _, raw = request(sock, method, PREFIX + path, data,
                             {"Content-Type": "application/json"} if data else None)  # fmt: skip
    return _manifest_answer(status, raw, method, path)


def _one_file_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size, info.mtime = 2, MTIME
        tf.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


# (query, podman 4.3's status, kiln's): podman answers 500 for a bad name or change, kiln
# 400; and podman leaves the image it made unnamed behind when the name is refused, kiln
# nothing (the test removes podman's)
IMPORTS = [
    ({"reference": "kiln-test/imported:1", "message": "by hand",
      "changes": ['CMD ["/x"]', "ENV A=1"]}, 200, 200),
    ({"reference": "kiln-test/imported:2"}, 200, 200),
    ({"reference": "Bad"}, 500, 400),
    ({"reference": "kiln-test/imported:3", "changes": ["BOGUS x"]}, 500, 400),
]  # fmt: skip


@pytest.mark.parametrize("number", range(len(IMPORTS)))
def test_import_answers_as_podman(servers, number: int) -> None:
    """podman --remote import: the status, the answer's shape and the image made (its
    time and so its ID are each server's own); the image is removed again."""
    query, theirs, ours = IMPORTS[number]
    answers = {}
    for name, sock in servers.items():
        before = _image_ids(sock)
        status, _, raw = request(sock, "POST", PREFIX + q("/images/import", **query), _one_file_tar(),
                                 {"Content-Type": "application/x-tar"})  # fmt: skip
        out: dict[str, Any] = {"status": ours if (name, status) == ("podman", theirs) else status}
        if status != 200:
            left = _image_ids(sock) - before
            assert name == "podman" or not left, left  # a refused import makes nothing
            for image_id in left:
                request(sock, "DELETE", PREFIX + image(image_id))
        if status == 200:
            out["keys"] = sorted(json.loads(raw))
            _, _, body = request(sock, "GET", PREFIX + image(query["reference"], "json"))
            data = json.loads(body)
            out["image"] = {k: data.get(k) for k in ("RepoTags", "Comment", "Architecture", "Os")}
            out["config"] = data.get("Config")
            out["history"] = [
                {k: v for k, v in h.items() if k != "created"} for h in data.get("History") or []
            ]
            request(sock, "DELETE", PREFIX + image(query["reference"]))
        answers[name] = out
    assert answers["podman"] == answers["kiln"]


def _image_ids(sock: str) -> set[str]:
    return {i["Id"] for i in _body(sock, q("/images/json", all="true"))}


def test_load_answers_as_podman(servers, tmp_path) -> None:
    """podman --remote load: the names loaded, again (already there), a docker-archive's
    short names (``busybox:latest``, as ``docker save`` writes Docker Hub's images: podman
    4.3 puts them under ``localhost/``), and the errors of an archive that is none. The
    short names go again afterwards (the images keep their full names)."""
    short = make_archives(tmp_path)[:2]
    archives = [with_full_names(a) for a in short] + short
    bodies = [a.read_bytes() for a in archives] + [b"not a tar", b"", _one_file_tar()]
    answers: dict[str, list] = {"podman": [], "kiln": []}
    for body in bodies:
        for name, sock in servers.items():
            status, _, raw = request(sock, "POST", PREFIX + "/images/load", body,
                                     {"Content-Type": "application/x-tar"})  # fmt: skip
            if (name, status) == ("podman", 500):
                status = 400  # podman 4.3's default for an archive that is none; kiln's 400
            answers[name].append((status, json.loads(raw) if status == 200 else None))
    for sock in servers.values():
        for local in ("localhost/busybox:latest", "localhost/kiln-test/data:1"):
            request(sock, "DELETE", PREFIX + image(local))
    assert answers["podman"] == answers["kiln"]


LAYER_REQUESTS = [
    ("GET", image(LAYERED, "json")),
    ("GET", image(LAYERED, "history")),
    ("GET", image(LAYERED, "tree")),
    ("GET", image(LAYERED, "changes")),
    ("GET", q(image(DATA, "tree"), whatrequires="true")),
    ("GET", q(image(BASE, "tree"), whatrequires="true")),
    ("GET", q(image(LAYERED, "tree"), whatrequires="true")),
]
_LAYER_ID = re.compile(r"ID: ([0-9a-f]{12}) ")


def _bottom_only(m: re.Match) -> str:
    """A layer ID as is if it is a bottom layer's (its diff ID, in both stores), else blanked."""
    bottom = hashlib.sha256(_tar("hello.txt", b"hello\n")).hexdigest()[:12]
    return m.group(0) if m.group(1) == bottom else "ID: <id> "


def test_layers_answer_as_podman(servers) -> None:
    """An image of two layers over another's (history, tree, what requires a layer), loaded
    and removed again. Not compared: the IDs podman gives history entries below the top
    (an image whose top layer is the entry's, though nothing says it was made from it) and
    the IDs of layers above the first (c/storage's digest of parent and diff ID; kiln's
    are OCI chain IDs)."""
    for sock in servers.values():
        status, _, raw = request(sock, "POST", PREFIX + "/images/load", layered_archive(),
                                 {"Content-Type": "application/x-tar"})  # fmt: skip
        assert status == 200, raw
    try:
        found = differences(servers, LAYER_REQUESTS, _layer_answer)
    finally:
        for sock in servers.values():
            request(sock, "DELETE", PREFIX + image(LAYERED))
    assert not found, "\n".join(found)


def _layer_answer(sock: str, method: str, path: str) -> dict:
    """:func:`answer` without what of the layers above the first is each store's own."""
    out = answer(sock, method, path)
    body = out.get("body")
    if path.endswith("/history"):
        for entry in body[1:]:
            entry.pop("Id")
    elif isinstance(body, dict) and "Tree" in body:
        body["Tree"] = _LAYER_ID.sub(_bottom_only, body["Tree"])
    return out


def filled(path: str) -> str:
    """``path`` with the image IDs of :data:`IDS` for their placeholders."""
    for key, value in IDS.items():
        for mark, text in ((f"<{key}-id:12>", value[:12]), (f"<{key}-id>", value)):
            # as image() and q() quote them
            for form in (mark, urllib.parse.quote(mark, safe=":@"), urllib.parse.quote_plus(mark)):
                path = path.replace(form, text)
    return path


@pytest.mark.parametrize("route", ["json", "exists", "history"])
@pytest.mark.parametrize("form", ["repo@digest", "name:tag@digest", "other@digest", "repo@zero"])
def test_digest_references_answer_as_podman(servers, route: str, form: str) -> None:
    """An image named by its manifest digest (each store's own: see the module docstring),
    with its repository, with its tag too, with another repository and with a digest
    that names nothing."""
    answers = {}
    for name, sock in servers.items():
        digest = _body(sock, image(BASE, "json"))["Digest"]
        ref = {"repo@digest": f"docker.io/library/busybox@{digest}",
               "name:tag@digest": f"{BASE}@{digest}",
               "other@digest": f"docker.io/kiln-test/data@{digest}",
               "repo@zero": "docker.io/library/busybox@sha256:" + "0" * 64}[form]  # fmt: skip
        path = image(ref, route)
        answers[name] = normalised("GET", path, request(sock, "GET", PREFIX + path))
    assert answers["podman"] == answers["kiln"]


def test_the_libpod_api_answers_as_podman(servers) -> None:
    found = differences(servers, REQUESTS, answer)
    assert not found, "\n".join(found)
