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
* ``ParentId``/``Parent``: podman guesses a parent from shared layers (two images loaded
  separately, one of whose layers is the other's top, are parent and child); kiln keeps
  Docker's parent, the image a build started from.
* ``GraphDriver`` (vfs here, kiln's snapshotter there), ``NamesHistory`` and a listed
  image's ``History`` (podman keeps every name an image ever had, kiln the ones it has).
* ``Created`` of an image whose config records no time: podman shows when it was loaded.
* an empty list or map as ``null`` or left out: Go clients decode ``null``, ``[]``, ``{}`` and
  nothing alike; kiln answers ``[]``/``{}`` (Python clients index them), and adds fields of
  ``podman images --format json`` (``CreatedAt``, ``IsManifestList``, ``ReadOnly``).
* error wording: statuses and the shape ``{"cause", "message", "response"}`` are compared,
  with ``response`` the status.
* podman 4.3's 500 for a user error or an unreachable registry, where kiln names the kind
  (400, 404, 503): :data:`PODMAN_500`.
* an unknown route or method: podman's router answers a text/plain "404 page not found"
  (405 without a body); kiln answers both in the error shape above.

Where podman's own answer is not what kiln wants, :data:`KILN_ANSWERS` says why.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from api_server import request, start_server, stop_server
from parity_archives import make_archives, with_full_names
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
SEARCHED = "127.0.0.1:9/kiln-test"  # nothing listens on the discard port: no network needed


def image(name: str, route: str = "") -> str:
    """``/images/NAME/ROUTE`` as podman's bindings send it: NAME path-escaped (``/`` as
    ``%2F``; podman's router matches no slash in NAME)."""
    return f"/images/{urllib.parse.quote(name, safe=':@')}" + (f"/{route}" if route else "")


def q(path: str, **params: Any) -> str:
    """``path`` with ``params`` as its query; dicts become JSON filters, lists repeat."""
    items = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    return path + ("?" + urllib.parse.urlencode(items, doseq=True) if items else "")


# podman 4.3 answers these 500 (its handlers' default); kiln names the kind of error
PODMAN_500 = {
    ("GET", q("/images/json", filters={"nonsense": ["x"]})): 400,
    ("GET", q("/images/json", filters={"since": ["kiln-test/none:1"]})): 404,
    ("GET", image("kiln-test/none:1", "changes")): 404,
    ("GET", q("/images/search", term=SEARCHED)): 503,  # a registry that does not answer
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
    ("GET", image("busybox", "json")),
    ("GET", image(BASE, "json")),
    ("GET", image(DATA, "json")),
    ("GET", image("kiln-test/data:1", "json")),
    ("GET", image("25d0422c51ac", "json")),
    ("GET", image("25d0422c51ac4ff8319371f670d98dec3e48db288da720d6c1e9ece65d6a33a5", "json")),
    (
        "GET",
        image("sha256:25d0422c51ac4ff8319371f670d98dec3e48db288da720d6c1e9ece65d6a33a5", "json"),
    ),
    ("GET", image("kiln-test/none:1", "json")),
    ("GET", image("busybox", "exists")),
    ("GET", image("25d0422c51ac", "exists")),
    ("GET", image("kiln-test/none:1", "exists")),
    ("GET", image("busybox", "history")),
    ("GET", image(DATA, "history")),
    ("GET", image("kiln-test/none:1", "history")),
    ("GET", image("busybox", "tree")),
    ("GET", image(DATA, "tree")),
    ("GET", image("kiln-test/none:1", "tree")),
    ("GET", image(DATA, "changes")),
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
    ("DELETE", image(DATA)),
    ("DELETE", q("/images/remove", images=[MOVED], force="true")),
    ("POST", q("/images/prune")),
    ("POST", q("/images/prune", filters={"dangling": ["true"]})),
    ("POST", q("/images/prune", all="true", filters={"label": ["tier=base"]})),
    ("GET", q("/images/json", all="true")),
    *UNROUTED,
]

# whole-body fields left out of the comparison (see the module docstring)
NOT_COMPARED = {"Size", "VirtualSize", "Digest", "ParentId", "Parent", "GraphDriver",
                "NamesHistory", "CreatedAt", "IsManifestList", "ReadOnly"}  # fmt: skip
EMPTY = (None, [], {}, False)  # Go's omitempty leaves out false too
HEADERS = ("content-type", "libpod-api-version")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")
_SIZE = re.compile(r"Size: +[0-9.]+[kMG]?B")
_NAMES = re.compile(r"\[([^\]]*)\]")  # tree's lists of names


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("libpod-parity")
    # all but the last (no-time) archive: podman dates an image without a time when it
    # loaded it, which the filters by time would then tell apart
    archives = [with_full_names(a) for a in make_archives(work)[:-1]]
    (work / "podman").mkdir()
    podman = PodmanService(str(work / "podman"))
    podman.start()
    try:
        (work / "kiln").mkdir()
        proc, sock = start_server(work / "kiln")
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
    if status == 500 and (method, path) in PODMAN_500:
        out["status"] = PODMAN_500[method, path]
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
    elif path.endswith("/changes"):
        body = sorted((c["Path"], c["Kind"]) for c in body)
    elif "/images/remove" in path or method == "DELETE":
        body = {k: sorted(v) if isinstance(v, list) else v for k, v in body.items()}
    elif path.startswith("/images/prune"):
        body = sorted(body, key=lambda r: r["Id"])
    out["body"] = _plain(body)
    return out


def test_the_libpod_api_answers_as_podman(servers) -> None:
    differences = []
    for method, path in REQUESTS:
        answers = {
            name: normalised(method, path, request(sock, method, PREFIX + path))
            for name, sock in servers.items()
        }
        if answers["podman"] != answers["kiln"]:
            differences.append(
                f"{method} {path}\n  podman: {answers['podman']}\n  kiln:   {answers['kiln']}"
            )
    assert not differences, "\n".join(differences)
